//! The admin stats stream: Server-Sent Events carrying the same `stats` document as
//! `GET /v1/admin/stats`, one per sampler tick, with the `?token=` form of admin auth that a
//! browser `EventSource` needs. (Access control is in `admin_auth.rs`, the OpenAPI document in
//! `openapi.rs`.)

use crate::common::*;
use serde_json::Value;

#[tokio::test]
async fn the_stats_stream_sends_stats_events() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hub = spawn_hub(test_config()).await;
    let _c = hub.connect("s").await;
    let mut tcp = tokio::net::TcpStream::connect(hub.admin).await.unwrap();
    let req = format!("GET /v1/admin/stats/stream?token={ADMIN_TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "stream ended");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if text.matches("event: stats").count() >= 2 {
                return text.into_owned();
            }
        }
    };
    let text = tokio::time::timeout(TIMEOUT, read).await.expect("two stats events");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.to_ascii_lowercase().contains("content-type: text/event-stream"), "{text}");
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).expect("a data line");
    let v: Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["active_connections"], 1);
    assert!(v["rates"]["deliveries_per_sec"].is_number(), "{v}");
    hub.shutdown().await;
}
