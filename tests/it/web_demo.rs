//! The web demo page and the operator dashboard in headless Debian Chromium (playwright-core,
//! never a downloaded browser), against a real hub on ephemeral loopback ports.
//!
//! The demo page gets a development token, connects, subscribes, publishes through its form and
//! shows the messages; it shows a binary payload as hex, and after a maintenance drain it
//! reconnects and resumes after the last offset it received. The dashboard streams live stats,
//! lists the connections and kicks one. `web-demo/ci-setup.sh` installs Chromium and
//! playwright-core.

use std::time::Duration;

use crate::common::*;

/// Longer than the scripts' own 30 s guard: they report their failure themselves.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `node web-demo/tests/<script> <args…>` from the crate root; panics with its output
/// unless it exits 0.
async fn node(script: &str, args: &[&str]) {
    node_ok(script, node_script(script, args), SCRIPT_TIMEOUT, "web-demo/ci-setup.sh installs what it needs").await;
}

#[tokio::test]
async fn demo_page_subscribes_publishes_and_receives_in_chromium() {
    let hub = spawn_hub(test_config()).await;
    let public = format!("http://{}", hub.addr);
    let admin = format!("http://{}", hub.admin);
    node("demo.mjs", &[&public, &admin, ADMIN_TOKEN]).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn dashboard_shows_live_connections_in_chromium() {
    let hub = spawn_hub(test_config()).await;
    let mut watched = hub.connect("dashboard-watcher").await;
    watched.subscribe("dashboard/watched").await;
    let mut kicked = hub.connect("kick-me").await;
    node("dashboard.mjs", &[&format!("http://{}", hub.admin), ADMIN_TOKEN, "kick-me"]).await;
    let closed = kicked.expect_close().await;
    assert_eq!(closed.code, Some(4005), "kicked from the dashboard: {closed:?}");
    assert!(closed.messages.iter().any(|m| m["type"] == "bye" && m["reason"] == "kicked"), "{closed:?}");
    watched.assert_alive().await;
    hub.shutdown().await;
}
