//! The public demo pages in headless Debian Chromium (playwright-core, never a downloaded
//! browser), against a real hub on ephemeral loopback ports: the telemetry page (`/`) and the
//! protocol console (`/console`). `web-demo/ci-setup.sh` installs Chromium and playwright-core.
//!
//! The console gets a development token, connects, subscribes, publishes through its form and
//! shows the messages; it shows a binary payload as hex, and after a maintenance drain it
//! reconnects and resumes after the last offset it received.

use crate::common::*;

#[tokio::test]
async fn console_subscribes_publishes_and_receives_in_chromium() {
    let hub = spawn_hub(test_config()).await;
    let public = format!("http://{}", hub.addr);
    let admin = format!("http://{}", hub.admin);
    browser_script("console.mjs", &[&public, &admin, ADMIN_TOKEN]).await;
    hub.shutdown().await;
}

/// Every page and asset is served, without a token on the admin listener too (the dashboard
/// loads the same assets), and the vendored chart library is the npm package pinned in
/// `web-demo/package-lock.json`, byte for byte.
#[tokio::test]
async fn pages_and_assets_are_served_and_the_vendored_chart_library_is_the_pinned_package() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web-demo");
    for (vendored, installed) in [
        ("uPlot.iife.min.js", "dist/uPlot.iife.min.js"),
        ("uPlot.min.css", "dist/uPlot.min.css"),
        ("LICENSE", "LICENSE"),
    ] {
        let installed = std::fs::read(root.join("node_modules/uplot").join(installed))
            .unwrap_or_else(|e| panic!("uplot {installed} ({e}): run web-demo/ci-setup.sh"));
        assert!(
            std::fs::read(root.join("assets/vendor/uplot").join(vendored)).unwrap() == installed,
            "web-demo/assets/vendor/uplot/{vendored} differs from the pinned npm package: copy it again"
        );
    }
    let hub = spawn_hub(test_config()).await;
    for (path, file, kind) in [
        ("/assets/site.css", "assets/site.css", "text/css; charset=utf-8"),
        ("/assets/site.js", "assets/site.js", "text/javascript; charset=utf-8"),
        ("/assets/uplot.js", "assets/vendor/uplot/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        ("/assets/uplot.css", "assets/vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
    ] {
        for addr in [hub.addr, hub.admin] {
            let r = http(addr, "GET", path, &[], "").await;
            assert_eq!(r.status, 200, "{path} on {addr}: {}", r.body);
            assert_eq!(r.header("content-type"), Some(kind), "{path}");
            assert_eq!(r.body.as_bytes(), std::fs::read(root.join(file)).unwrap(), "{path}");
        }
    }
    for (path, file) in
        [("/", "telemetry.html"), ("/video", "video.html"), ("/console", "console.html"), ("/rtc", "rtc.html")]
    {
        let r = http(hub.addr, "GET", path, &[], "").await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        assert_eq!(r.body.as_bytes(), std::fs::read(root.join(file)).unwrap(), "{path}");
    }
    let r = http(hub.admin, "GET", "/dashboard", &[], "").await;
    assert_eq!((r.status, r.body.as_bytes()), (200, std::fs::read(root.join("dashboard.html")).unwrap().as_slice()));
    // Only the listed files: nothing else under /assets, and the admin API still needs its token.
    assert_eq!(http(hub.addr, "GET", "/assets/..%2FCargo.toml", &[], "").await.status, 404);
    assert_eq!(http(hub.admin, "GET", "/assets/nope.js", &[], "").await.status, 401);
    assert_eq!(http(hub.admin, "GET", "/v1/admin/stats", &[], "").await.status, 401);
    hub.shutdown().await;
}

#[tokio::test]
async fn telemetry_page_charts_live_streams_and_resumes_after_a_cut_in_chromium() {
    let hub = spawn_hub(demo_config()).await;
    browser_script("telemetry.mjs", &[&format!("http://{}", hub.addr)]).await;
    hub.shutdown().await;
}
