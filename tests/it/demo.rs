//! The built-in demo publisher: in development mode it publishes a simulated fleet's
//! telemetry, each stream only while it has subscribers, and synthetic video (JPEG frames,
//! received whole over WebRTC data channels and over the WebSocket); its events topic is
//! `reliable`; only the hub publishes on the demo topics; outside development mode it cannot
//! be turned on.

use crate::common::*;
use fanhub::client::{Client, ClientError, ClientOptions, Event, From, Transport};
use fanhub::hub::{DeliveryPolicy, TopicName};
use fanhub::protocol::ErrorCode;

#[tokio::test]
async fn a_watched_stream_gets_live_samples_and_an_unwatched_one_is_not_published() {
    let hub = spawn_hub(demo_config()).await;
    let client = Client::connect(ClientOptions::new([hub.ws_url()]).with_token(hub.token("viewer"))).await.unwrap();
    let mut speed = client.subscribe("demo/vehicle/1/speed", From::Live).await.unwrap();
    let mut offsets = Vec::new();
    while offsets.len() < 20 {
        match tokio::time::timeout(TIMEOUT, speed.next()).await.expect("demo samples").unwrap() {
            Event::Message(m) => {
                assert!(m.is_json());
                let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                let kmh = v["kmh"].as_f64().unwrap_or_else(|| panic!("{v}"));
                assert!((60.0..=330.0).contains(&kmh), "{v}");
                assert!(v["t_us"].as_u64().unwrap() > 0);
                offsets.push(m.offset);
            }
            Event::Gap(g) => panic!("{g:?}"),
        }
    }
    assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
    // Twenty ticks went by: the streams nobody watches were not published at all.
    for stream in ["demo/vehicle/2/speed", "demo/vehicle/1/rpm", "demo/vehicle/2/gps"] {
        assert!(hub.manager.topic_info(&TopicName::new(stream).unwrap()).is_none(), "{stream} was published");
    }
    let events = TopicName::new("demo/vehicle/1/events").unwrap();
    assert!(matches!(hub.manager.delivery_policy(&events), DeliveryPolicy::Reliable { .. }));
    // Only the hub publishes there.
    match client.publish("demo/vehicle/1/speed", "{\"kmh\": 999}").await {
        Err(ClientError::Refused { code: ErrorCode::PermissionDenied, .. }) => {}
        other => panic!("expected permission_denied, got {other:?}"),
    }
    client.close().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn video_frames_arrive_whole_as_jpegs_over_webrtc_and_over_the_websocket() {
    let mut config = demo_config();
    // Every frame (about 16 KiB) travels in several chunks over the data channel.
    config.webrtc.chunk_size = 4096;
    let hub = spawn_hub(config).await;
    for transport in [Transport::WebRtc, Transport::WebSocket] {
        let mut o = ClientOptions::new([hub.ws_url()]).with_token(hub.token("viewer"));
        o.transport = transport;
        let client = Client::connect(o).await.unwrap();
        let mut video = client.subscribe("demo/video/cam1", From::Live).await.unwrap();
        let mut frames = 0;
        let mut last = 0;
        while frames < 10 {
            match tokio::time::timeout(TIMEOUT, video.next()).await.expect("video frames").unwrap() {
                Event::Message(m) => {
                    let f = &m.payload;
                    assert!(f.starts_with(&[0xFF, 0xD8]) && f.ends_with(&[0xFF, 0xD9]), "{transport:?}: a whole JPEG");
                    assert!(f.len() > 8 * 1024, "{transport:?}: {} bytes", f.len());
                    assert!(m.offset > last);
                    last = m.offset;
                    frames += 1;
                }
                // Best effort: a frame may be skipped, never split.
                Event::Gap(g) => assert_eq!(g.reason, fanhub::client::GapReason::Skipped),
            }
        }
        client.close().await;
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn the_demo_runs_in_development_mode_only() {
    // Unset: on in development mode, off with a real key.
    let mut dev = test_config();
    dev.demo.enabled = None;
    assert!(dev.demo_enabled());
    assert!(dev.hub().topics.declare.iter().any(|d| d.pattern.starts_with("demo/")));
    let mut prod = test_config();
    prod.demo.enabled = None;
    prod.auth.hs256_secret = Some("a-real-secret-of-enough-length-for-hs256".into());
    assert!(!prod.demo_enabled());
    assert!(!prod.hub().topics.declare.iter().any(|d| d.pattern.starts_with("demo/")));
    // Asked for outside development mode: a clear configuration error.
    prod.demo.enabled = Some(true);
    let problems = prod.validate().unwrap_err();
    assert!(problems.iter().any(|p| p.key == "demo.enabled"), "{problems:?}");
    let mut bad = test_config();
    bad.demo.rate_hz = 0;
    assert!(bad.validate().unwrap_err().iter().any(|p| p.key == "demo.rate_hz"));
}

#[tokio::test]
async fn get_v1_demo_describes_the_running_demo_and_is_absent_without_it() {
    let hub = spawn_hub(demo_config()).await;
    let r = http(hub.addr, "GET", "/v1/demo", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = r.json();
    assert_eq!(d["vehicles"], serde_json::json!([1, 2]));
    assert_eq!(d["streams"], serde_json::json!(["speed", "rpm", "engine_temp", "brake_temp", "suspension", "gps"]));
    assert_eq!((d["rate_hz"].as_u64(), d["events"].as_str()), (Some(50), Some("events")));
    assert_eq!((d["video_topic"].as_str(), d["video_fps"].as_u64()), (Some("demo/video/cam1"), Some(30)));
    assert_eq!((d["video_width"].as_u64(), d["video_height"].as_u64()), (Some(640), Some(360)));
    hub.shutdown().await;

    let hub = spawn_hub(test_config()).await;
    let r = http(hub.addr, "GET", "/v1/demo", &[], "").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (404, Some("not_found")));
    hub.shutdown().await;
}
