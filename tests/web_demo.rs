//! The web demo and the operator dashboard in headless Debian Chromium (Playwright, no browser
//! download): the demo page gets a development token, connects, subscribes, publishes through
//! its form and shows the messages; the dashboard streams live stats and lists connections.
//! `web-demo/ci-setup.sh` installs what these need.

mod common;

use common::*;

async fn node(script: &str, args: &[&str]) {
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = tokio::process::Command::new("node")
        .arg(format!("{dir}/web-demo/tests/{script}"))
        .args(args)
        .current_dir(format!("{dir}/web-demo"))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out).await.expect("browser test hung").unwrap();
    assert!(
        out.status.success(),
        "{script} failed (run web-demo/ci-setup.sh first):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn demo_page_subscribes_publishes_and_receives_in_chromium() {
    let hub = spawn_hub(test_config()).await;
    node("demo.mjs", &[&format!("http://{}", hub.addr)]).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn dashboard_shows_live_connections_in_chromium() {
    let hub = spawn_hub(test_config()).await;
    let mut watched = hub.connect("dashboard-watcher").await;
    node("dashboard.mjs", &[&format!("http://{}", hub.admin), ADMIN_TOKEN]).await;
    watched.assert_alive().await;
    hub.shutdown().await;
}
