//! The operator dashboard (`/dashboard`, admin listener) in headless Debian Chromium
//! (playwright-core, never a downloaded browser), against a real hub on ephemeral loopback
//! ports. `web-demo/ci-setup.sh` installs Chromium and playwright-core.

use crate::common::*;

#[tokio::test]
async fn dashboard_shows_live_connections_in_chromium() {
    let hub = spawn_hub(test_config()).await;
    let mut watched = hub.connect("dashboard-watcher").await;
    watched.subscribe("dashboard/watched").await;
    let mut kicked = hub.connect("kick-me").await;
    browser_script("dashboard.mjs", &[&format!("http://{}", hub.admin), ADMIN_TOKEN, "kick-me"]).await;
    let closed = kicked.expect_close().await;
    assert_eq!(closed.code, Some(4005), "kicked from the dashboard: {closed:?}");
    assert!(closed.messages.iter().any(|m| m["type"] == "bye" && m["reason"] == "kicked"), "{closed:?}");
    watched.assert_alive().await;
    hub.shutdown().await;
}
