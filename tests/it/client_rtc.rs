//! The Rust client over WebRTC data channels (`Transport::WebRtc`) against the real server: it
//! signals on the endpoint's HTTP side, receives frames of every size whole (chunked above the
//! hub's chunk size), `reliable` topics on the reliable channel in order and best-effort ones
//! on the lossy channel, publishes over its channel, resumes a `reliable` topic exactly once
//! after the hub ends its sessions, and a refused token is a typed error.

use std::time::Duration;

use crate::common::*;
use fanhub::client::{Client, ClientError, ClientOptions, Event, From, Status, Transport};
use fanhub::hub::TopicName;

fn rtc_options(hub: &Hub, subject: &str) -> ClientOptions {
    let mut o = ClientOptions::new([hub.ws_url()]).with_token(hub.token(subject));
    o.transport = Transport::WebRtc;
    o.backoff.initial = Duration::from_millis(20);
    o.backoff.max = Duration::from_millis(200);
    o
}

async fn next_event(sub: &mut fanhub::client::Subscription) -> Event {
    tokio::time::timeout(TIMEOUT * 3, sub.next()).await.expect("no event in time").expect("the subscription ended")
}

#[tokio::test]
async fn a_webrtc_client_gets_whole_frames_of_every_size_and_publishes_over_its_channel() {
    let hub = spawn_hub(rtc_config()).await;
    let client = Client::connect(rtc_options(&hub, "rtc-viewer")).await.expect("connect over WebRTC");
    let rows = admin(&hub, "GET", "/v1/admin/connections?protocol=webrtc", "").await.json();
    assert_eq!(rows["total"], 1, "the client is a webrtc connection: {rows}");
    let mut rel = client.subscribe("rel/video", From::Live).await.expect("subscribe rel/video");
    let mut be = client.subscribe("be/video", From::Live).await.expect("subscribe be/video");
    let camera = Client::connect(ClientOptions::new([hub.ws_url()]).with_token(hub.token("camera"))).await.unwrap();

    let sizes = [1024, 16 * 1024, 16 * 1024 + 1, 100_000, 512 * 1024];
    for (i, &size) in sizes.iter().enumerate() {
        camera.publish("rel/video", frame(i, size)).await.unwrap();
    }
    for (i, &size) in sizes.iter().enumerate() {
        match next_event(&mut rel).await {
            Event::Message(m) => {
                assert_eq!(m.offset, i as u64 + 1, "in order");
                assert!(m.payload == frame(i, size), "reliable frame {i} ({size} bytes) is byte-exact");
            }
            e => panic!("expected frame {i}, got {e:?}"),
        }
    }
    // The lossy channel, with nothing else in flight: small frames, one of them chunked.
    for (i, size) in [(0, 1000), (1, 16 * 1024 + 100)] {
        camera.publish("be/video", frame(i + 100, size)).await.unwrap();
        match next_event(&mut be).await {
            Event::Message(m) => assert!(m.payload == frame(i + 100, size), "best-effort frame {i} is whole"),
            e => panic!("expected a best-effort frame, got {e:?}"),
        }
    }
    // A publish over the data channel gets its answer, and comes back.
    let p = client.publish("rel/video", frame(9, 40_000)).await.expect("publish over WebRTC");
    assert_eq!(p.offset, sizes.len() as u64 + 1);
    match next_event(&mut rel).await {
        Event::Message(m) => assert!(m.offset == p.offset && m.payload == frame(9, 40_000)),
        e => panic!("expected our own frame, got {e:?}"),
    }
    // close says bye: the hub forgets the peer at once (not after ICE consent expires).
    client.close().await;
    hub.eventually("the peer is unregistered", |m| m.connection_stats().active_connections == 1).await;
    camera.close().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_webrtc_client_resumes_a_reliable_topic_exactly_once_after_the_hub_ends_its_sessions() {
    let hub = spawn_hub(resumable_config()).await;
    let mut opts = rtc_options(&hub, "rtc-resume");
    // The hub drops a deleted session without a word: the keep-alive finds out.
    opts.keepalive_interval = Duration::from_millis(200);
    opts.keepalive_timeout = Duration::from_millis(300);
    let client = Client::connect(opts).await.expect("connect");
    let mut status = client.status();
    let mut sub = client.subscribe("rel/t", From::Oldest).await.unwrap();
    let topic = TopicName::new("rel/t").unwrap();
    let token = hub.token("rtc-resume");
    let auth = format!("Bearer {token}");
    const CUTS: u64 = 4;
    const CHUNK: u64 = 50;
    let mut got = Vec::new();
    let mut delays = Vec::new();
    let mut conn_id = hub_conn_id(&hub).await;
    for round in 0..CUTS {
        for _ in 0..CHUNK {
            hub.manager.route_data(&topic, b"m", 0, now()).unwrap();
        }
        while (got.len() as u64) < round * 2 * CHUNK + CHUNK / 2 {
            got.push(next_offset(&mut sub).await);
        }
        let path = format!("/v1/rtc/sessions/{conn_id}");
        let r = http(hub.addr, "DELETE", &path, &[("Authorization", &auth)], "").await;
        assert_eq!(r.status, 204, "{}", r.body);
        let cut_at = std::time::Instant::now();
        for _ in 0..CHUNK {
            hub.manager.route_data(&topic, b"m", 0, now()).unwrap();
        }
        // Back on a new session.
        conn_id = loop {
            match tokio::time::timeout(TIMEOUT * 3, status.recv()).await.expect("no reconnect in time") {
                Ok(Status::Connected { conn_id: c, .. }) if c != conn_id => break c,
                Ok(_) => {}
                Err(e) => panic!("status: {e}"),
            }
        };
        let first_after_cut = (round * 2 + 1) * CHUNK + 1;
        while !got.contains(&first_after_cut) {
            got.push(next_offset(&mut sub).await);
        }
        delays.push(cut_at.elapsed());
        while (got.len() as u64) < (round + 1) * 2 * CHUNK {
            got.push(next_offset(&mut sub).await);
        }
    }
    delays.sort();
    // Found by the keep-alive (200 ms of silence, then 300 ms after a ping), then a new offer.
    println!(
        "WebRTC resume after a session ended, over {CUTS} ends: median {:?}, slowest {:?}",
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
    assert_eq!(got, (1..=CUTS * 2 * CHUNK).collect::<Vec<_>>(), "every message once, in order");
    client.close().await;
    hub.shutdown().await;
}

/// The one WebRTC connection's id (its session id).
async fn hub_conn_id(hub: &Hub) -> u64 {
    let rows = admin(hub, "GET", "/v1/admin/connections?protocol=webrtc", "").await.json();
    rows["items"][0]["id"].as_u64().unwrap_or_else(|| panic!("one webrtc connection: {rows}"))
}

async fn next_offset(sub: &mut fanhub::client::Subscription) -> u64 {
    match next_event(sub).await {
        Event::Message(m) => m.offset,
        e => panic!("expected a message, got {e:?}"),
    }
}

#[tokio::test]
async fn a_refused_token_over_webrtc_is_a_typed_error() {
    let hub = spawn_hub(rtc_config()).await;
    let mut o = rtc_options(&hub, "x");
    o.token = Some("not-a-jwt".into());
    match Client::connect(o).await {
        Err(ClientError::Unauthenticated(m)) => assert!(!m.is_empty()),
        other => panic!("expected Unauthenticated, got {other:?}"),
    }
    assert_eq!(hub.manager.connection_stats().active_connections, 0, "nothing registered");
    hub.shutdown().await;
}
