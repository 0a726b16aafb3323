//! The video page (`/video`) in headless Debian Chromium (playwright-core, never a downloaded
//! browser), against a real hub with the demo publisher on. `web-demo/ci-setup.sh` installs
//! Chromium and playwright-core.
//!
//! `web-demo/tests/video.mjs` watches the demo video over WebRTC (the canvas changes, the frame
//! counter advances, the latency and the dropped frames are shown) and over WebSocket, and makes
//! the page fall back from WebRTC to WebSocket: without `RTCPeerConnection`, with the offer
//! refused, and when WebRTC does not connect in time.

use crate::common::*;

// Multi-threaded like the real server, so the demo's frames, the hub's WebRTC driver and the
// test's own tasks do not wait on each other on a loaded machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_page_plays_the_demo_video_over_webrtc_and_over_websocket_in_chromium() {
    let hub = spawn_hub(demo_config()).await;
    browser_script("video.mjs", &[&format!("http://{}", hub.addr)]).await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_page_falls_back_to_websocket_when_webrtc_does_not_connect_in_chromium() {
    let hub = spawn_hub(demo_config()).await;
    browser_script("video.mjs", &[&format!("http://{}", hub.addr), "fallback"]).await;
    hub.shutdown().await;
}
