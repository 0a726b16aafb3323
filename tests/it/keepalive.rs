//! Keep-alive and time sync: the server pings on an interval; a connection that answers nothing
//! past the idle timeout is closed (4007) and cleaned up, one that answers stays; time sync
//! works in both directions. The keep-alive tests run the hub on a manual clock and step it by
//! one ping interval at a time.

use std::time::Duration;

use crate::common::*;
use fanhub::hub::ConnId;
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn fast_keepalive() -> fanhub::config::Config {
    let mut c = test_config();
    c.session.ping_interval_ms = 100;
    c.session.idle_timeout_ms = 400;
    c
}

/// A bare WebSocket client that never answers pings (tungstenite always would).
struct Mute(TcpStream);

impl Mute {
    async fn connect(hub: &Hub, token: &str) -> Mute {
        let mut tcp = TcpStream::connect(hub.addr).await.unwrap();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: fanhub.v1\r\n\r\n",
            hub.addr
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.unwrap());
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
        let mut m = Mute(tcp);
        m.send_text(&json!({"op": "connect", "token": token}).to_string()).await;
        m
    }

    async fn send_text(&mut self, text: &str) {
        let mask = [1u8, 2, 3, 4];
        let len = text.len();
        let mut frame = vec![0x81];
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        frame.extend_from_slice(&mask);
        frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.0.write_all(&frame).await.unwrap();
    }

    /// Next frame: (opcode, payload).
    async fn frame(&mut self) -> (u8, Vec<u8>) {
        let b0 = self.0.read_u8().await.unwrap();
        let b1 = self.0.read_u8().await.unwrap();
        let len = match b1 & 0x7f {
            126 => self.0.read_u16().await.unwrap() as usize,
            127 => self.0.read_u64().await.unwrap() as usize,
            n => n as usize,
        };
        let mut payload = vec![0; len];
        self.0.read_exact(&mut payload).await.unwrap();
        (b0 & 0x0f, payload)
    }
}

#[tokio::test]
async fn a_client_that_answers_no_pings_is_closed_as_idle_and_cleaned_up() {
    let hub = spawn_hub_manual(fast_keepalive()).await;
    let mut m = Mute::connect(&hub, &hub.token("mute")).await;
    let (mut pings, mut texts) = (0, Vec::new());
    let (op, payload) = tokio::time::timeout(TIMEOUT, m.frame()).await.expect("welcome");
    assert_eq!(op, 0x1);
    texts.push(serde_json::from_slice::<serde_json::Value>(&payload).unwrap());
    let code = loop {
        // One ping interval at a time: each step brings a ping, or (at 400 ms) the idle close.
        let pending_close = texts.last().is_some_and(|t: &serde_json::Value| t["type"] == "bye");
        if !pending_close {
            hub.advance(Duration::from_millis(100));
        }
        let (op, payload) = tokio::time::timeout(TIMEOUT, m.frame()).await.expect("server never closed");
        match op {
            0x1 => texts.push(serde_json::from_slice::<serde_json::Value>(&payload).unwrap()),
            0x9 => pings += 1,
            0x8 => break u16::from_be_bytes([payload[0], payload[1]]),
            other => panic!("unexpected opcode {other}"),
        }
    };
    assert_eq!(code, 4007);
    assert!(pings >= 1, "the server pinged before giving up");
    assert_eq!(texts[0]["type"], "welcome");
    let bye = texts.last().unwrap();
    assert_eq!((bye["type"].as_str(), bye["reason"].as_str()), (Some("bye"), Some("idle_timeout")), "{bye}");
    hub.eventually("the idle connection is unregistered", |m| m.connection_stats().active_connections == 0).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_connected_past_the_idle_timeout() {
    let hub = spawn_hub_manual(fast_keepalive()).await;
    let mut c = hub.connect("alive").await;
    // Eight pings at 100 ms span twice the 400 ms idle timeout; tungstenite answers each.
    let mut pings = 0;
    while pings < 8 {
        hub.advance(Duration::from_millis(100));
        match tokio::time::timeout(TIMEOUT, c.ws.next()).await.expect("hung") {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Close(f))) => panic!("closed although pongs were sent: {f:?}"),
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
    c.assert_alive().await;
    assert_eq!(hub.manager.connection_stats().active_connections, 1);
    hub.shutdown().await;
}

#[tokio::test]
async fn client_initiated_time_sync_returns_four_timestamps() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("clock").await;
    let t1 = unix_us();
    let r = c.request(json!({"op": "time_sync", "t1": t1})).await;
    let t4 = unix_us();
    assert_eq!(r["type"], "time_sync");
    assert_eq!(r["t1"], t1);
    let (t2, t3) = (r["t2"].as_i64().unwrap(), r["t3"].as_i64().unwrap());
    assert!(t2 <= t3, "server receive before send");
    let rtt = (t4 - t1) - (t3 - t2);
    assert!(rtt >= 0, "same clock on loopback: rtt {rtt}");
    hub.shutdown().await;
}

#[tokio::test]
async fn server_initiated_time_sync_records_rtt_and_offset() {
    let mut config = test_config();
    config.session.ping_interval_ms = 100;
    config.session.time_sync_interval_ms = 100;
    let hub = spawn_hub(config).await;
    let mut c = hub.connect("clock").await;
    let id = ConnId(c.welcome["conn_id"].as_u64().unwrap());
    let req = c.next_of_type("time_sync_request").await;
    let t2 = unix_us();
    c.send_json(json!({"op": "time_sync_reply", "seq": req["seq"], "t1": req["t1"], "t2": t2, "t3": unix_us()})).await;
    hub.eventually("rtt recorded", |m| m.client_info(id).is_some_and(|i| i.rtt_us.is_some())).await;
    let info = hub.manager.client_info(id).unwrap();
    assert!(info.rtt_us.unwrap() >= 0);
    assert!(info.clock_offset_us.unwrap().abs() < 60_000_000, "same machine, same clock");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_exactly_one_idle_timeout_after_its_last_frame_not_at_a_ping_tick() {
    // The defaults: pings every 20 s, idle timeout 60 s. The last frame comes 7 s in, so the
    // idle deadline (67 s) falls between two ping ticks (60 s and 80 s).
    let mut config = test_config();
    config.session.ping_interval_ms = 20_000;
    config.session.idle_timeout_ms = 60_000;
    config.session.time_sync_interval_ms = 3_600_000;
    let hub = spawn_hub_manual(config).await;
    let mut m = Mute::connect(&hub, &hub.token("quiet")).await;
    assert_eq!(m.frame().await.0, 0x1, "welcome");
    hub.advance(Duration::from_secs(7));
    m.send_text(&json!({"op": "ping", "id": 1}).to_string()).await;
    let (op, pong) = m.frame().await;
    assert_eq!((op, serde_json::from_slice::<serde_json::Value>(&pong).unwrap()["type"].clone()), (0x1, json!("pong")));
    for at in [20, 40, 60] {
        hub.advance(Duration::from_secs(if at == 20 { 13 } else { 20 }));
        assert_eq!(m.frame().await.0, 0x9, "a ping at {at} s, and no close yet (silent for {} s)", at - 7);
    }
    hub.advance(Duration::from_secs(7));
    let (op, bye) = m.frame().await;
    assert_eq!(op, 0x1);
    let bye: serde_json::Value = serde_json::from_slice(&bye).unwrap();
    assert_eq!((bye["type"].as_str(), bye["reason"].as_str()), (Some("bye"), Some("idle_timeout")), "{bye}");
    assert_eq!(bye["message"], "nothing received for 60000 ms", "closed at the deadline, not at the next ping tick");
    let (op, close) = m.frame().await;
    assert_eq!((op, u16::from_be_bytes([close[0], close[1]])), (0x8, 4007));
    hub.shutdown().await;
}
