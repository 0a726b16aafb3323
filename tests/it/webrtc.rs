//! WebRTC data channels against the real server, with a str0m peer of our own on loopback: the
//! peer signals over `POST /v1/rtc/offer`, connects and subscribes on the `fanhub` channel,
//! and receives frames of 1 KiB to 512 KiB (chunked above `webrtc.chunk_size`) byte for byte:
//! a `reliable` topic on the reliable channel with no loss, a best-effort topic on the lossy
//! channel with every frame whole. Bad signaling input gets a clear error and leaves nothing.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use fanhub::client::rtc::{Offer, PeerOutput, RtcPeer};
use fanhub::protocol::frame::decode_records;
use serde_json::{json, Value};
use tokio::net::UdpSocket;

/// A WebRTC peer: the client's sans-IO peer (both fanhub channels, chunk reassembly) on one
/// loopback UDP socket, driven step by step by the test.
struct Peer {
    rtc: RtcPeer,
    socket: UdpSocket,
    local: SocketAddr,
    open: bool,
    /// JSON control messages received.
    control_msgs: VecDeque<Value>,
    /// Whole records received (reassembled), with the channel they came on (true: reliable).
    records: VecDeque<(bool, Record)>,
}

/// A peer that has made its offer and waits for the answer.
struct Offering {
    offer: Offer,
    socket: UdpSocket,
}

async fn offering() -> (Offering, String) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (offer, sdp) = Offer::new(socket.local_addr().unwrap(), Instant::now()).unwrap();
    (Offering { offer, socket }, sdp)
}

impl Offering {
    async fn complete(self, answer: &str) -> Peer {
        let local = self.socket.local_addr().unwrap();
        let mut p = Peer {
            rtc: self.offer.accept(answer).expect("an SDP answer"),
            socket: self.socket,
            local,
            open: false,
            control_msgs: VecDeque::new(),
            records: VecDeque::new(),
        };
        p.run_until("the control channel open", |p| p.open).await;
        p
    }
}

/// Signals over `POST /v1/rtc/offer`; returns the peer and its session path.
async fn peer_with_session(hub: &Hub, token: &str) -> (Peer, String) {
    let (o, offer) = offering().await;
    let auth = format!("Bearer {token}");
    let r = http(
        hub.addr,
        "POST",
        "/v1/rtc/offer",
        &[("Authorization", &auth), ("Content-Type", "application/sdp")],
        &offer,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    let location = r.header("location").expect("a Location").to_owned();
    assert!(location.starts_with("/v1/rtc/sessions/"), "{location}");
    (o.complete(&r.body).await, location)
}

async fn peer(hub: &Hub, token: &str) -> Peer {
    peer_with_session(hub, token).await.0
}

impl Peer {
    /// Drives the peer until `done` holds (bounded by [`TIMEOUT`]).
    async fn run_until(&mut self, what: &str, done: impl Fn(&Peer) -> bool) {
        let deadline = tokio::time::Instant::now() + TIMEOUT * 3;
        let mut buf = vec![0u8; 2048];
        loop {
            let timeout = loop {
                match self.rtc.poll() {
                    PeerOutput::Wait(t) => break t,
                    PeerOutput::Transmit { to, bytes } => {
                        assert!(to.ip().is_loopback(), "only loopback traffic");
                        self.socket.send_to(&bytes, to).await.unwrap();
                    }
                    PeerOutput::Open => self.open = true,
                    PeerOutput::Control(text) => {
                        self.control_msgs.push_back(serde_json::from_slice(&text).expect("JSON"))
                    }
                    PeerOutput::Records { lossy, bytes } => self.push_records(!lossy, &bytes),
                    PeerOutput::Corrupt(e) => panic!("a malformed chunk: {e}"),
                    PeerOutput::Closed(why) => panic!("the peer closed while waiting for {what}: {why}"),
                }
            };
            if done(self) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {} records {:?}, control {:?}",
                self.records.len(),
                self.records.iter().map(|(c, r)| (*c, r.topic.clone(), r.offset, r.payload.len())).collect::<Vec<_>>(),
                self.control_msgs
            );
            let wait = timeout.saturating_duration_since(Instant::now()).min(Duration::from_millis(50));
            match tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await {
                Ok(Ok((n, source))) => self.rtc.receive(Instant::now(), source, self.local, &buf[..n]).unwrap(),
                _ => self.rtc.advance(Instant::now()).unwrap(),
            }
        }
    }

    fn push_records(&mut self, reliable: bool, bytes: &[u8]) {
        for r in decode_records(bytes) {
            let r = r.expect("a whole record");
            self.records.push_back((reliable, Record::from(&r)));
        }
    }

    async fn send(&mut self, msg: Value) {
        assert!(self.rtc.send_text(&msg.to_string()), "the control channel is open");
    }

    async fn request(&mut self, msg: Value) -> Value {
        let id = msg["id"].as_u64().expect("an id");
        self.send(msg).await;
        self.run_until("a reply", |p| p.control_msgs.iter().any(|m| m["id"] == id)).await;
        let pos = self.control_msgs.iter().position(|m| m["id"] == id).unwrap();
        self.control_msgs.remove(pos).unwrap()
    }
}

async fn connected_peer(hub: &Hub, subject: &str) -> Peer {
    let token = hub.token(subject);
    let mut p = peer(hub, &token).await;
    let w = p.request(json!({"op": "connect", "id": 1})).await;
    assert_eq!(w["type"], "welcome", "{w}");
    p
}

#[tokio::test]
async fn a_webrtc_peer_receives_every_frame_whole_from_1_kib_to_512_kib() {
    let hub = spawn_hub(rtc_config()).await;
    let mut p = connected_peer(&hub, "rtc-viewer").await;
    for (id, topic) in [(2, "rel/video"), (3, "be/video")] {
        let s = p.request(json!({"op": "subscribe", "id": id, "topic": topic})).await;
        assert_eq!(s["type"], "subscribed", "{s}");
    }
    let rows = admin(&hub, "GET", "/v1/admin/connections?protocol=webrtc", "").await.json();
    assert_eq!(rows["total"], 1, "the peer is listed as a webrtc connection: {rows}");
    let mut publisher = hub.connect("camera").await;
    let sizes = [1024, 16 * 1024, 16 * 1024 + 1, 100_000, 512 * 1024];
    for (i, &size) in sizes.iter().enumerate() {
        publisher.publish_bin("rel/video", &frame(i, size)).await;
        publisher.publish_bin("be/video", &frame(i + 100, size)).await;
    }
    // Reliable: every frame. Lossy (maxRetransmits 0): whatever arrives is whole; a frame that
    // lost a chunk is absent (this peer's default-sized UDP buffer can overflow on a 512 KiB burst).
    p.run_until("every reliable frame", |p| {
        p.records.iter().filter(|(_, r)| r.topic == "rel/video").count() == sizes.len()
    })
    .await;
    let settle = tokio::time::Instant::now() + Duration::from_millis(300);
    p.run_until("the lossy channel to settle", |_| tokio::time::Instant::now() >= settle).await;
    let got: Vec<(bool, Record)> = p.records.drain(..).collect();
    let (rel, be): (Vec<_>, Vec<_>) = got.into_iter().partition(|(_, r)| r.topic == "rel/video");
    assert!(rel.iter().all(|(reliable_channel, _)| *reliable_channel), "reliable records on the reliable channel");
    assert!(be.iter().all(|(reliable_channel, _)| !*reliable_channel), "best-effort records on the lossy channel");
    assert_eq!(rel.iter().map(|(_, r)| r.offset).collect::<Vec<_>>(), (1..=sizes.len() as u64).collect::<Vec<_>>());
    for (i, (_, r)) in rel.iter().enumerate() {
        assert_eq!(r.payload, frame(i, sizes[i]), "reliable frame {i} ({} bytes) is byte-exact", sizes[i]);
    }
    assert!(be.iter().any(|(_, r)| r.offset == 1), "the small best-effort frames arrive on loopback: {}", be.len());
    for (_, r) in &be {
        let i = (r.offset - 1) as usize;
        assert_eq!(r.payload, frame(i + 100, sizes[i]), "best-effort frame at offset {} is whole", r.offset);
    }
    // The peer says bye: the hub answers and forgets it.
    let r = p.request(json!({"op": "bye", "id": 9})).await;
    assert_eq!(r["type"], "closed", "{r}");
    hub.eventually("the peer is unregistered", |m| m.connection_stats().active_connections == 1).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn bad_signaling_gets_a_clear_error_and_leaves_nothing() {
    let hub = spawn_hub(rtc_config()).await;
    let token = hub.token("rtc-bad");
    let auth = format!("Bearer {token}");
    let offer = |body: &'static str, auth: Option<String>| {
        let addr: SocketAddr = hub.addr;
        async move {
            let mut headers = vec![("Content-Type", "application/sdp")];
            let a;
            if let Some(x) = auth {
                a = x;
                headers.push(("Authorization", a.as_str()));
            }
            http(addr, "POST", "/v1/rtc/offer", &headers, body).await
        }
    };
    let r = offer("this is not SDP", Some(auth.clone())).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("invalid_argument")), "{}", r.body);
    let r = offer("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", Some(auth.clone())).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("no data channel"), "{}", r.body);
    let r = offer("v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n", Some(auth.clone())).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("invalid_argument")), "{}", r.body);
    let r = offer("v=0\r\n", None).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("unauthenticated")), "{}", r.body);
    let r = offer("v=0\r\n", Some("Bearer not-a-jwt".into())).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(hub.manager.connection_stats().active_connections, 0);
    // A peer that never says connect does not stop the hub from shutting down cleanly.
    let _silent = peer(&hub, &token).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn signaling_over_the_websocket_creates_a_peer_that_receives_frames() {
    let hub = spawn_hub(rtc_config()).await;
    let mut ws = hub.connect("ws-signaler").await;
    let (o, offer) = offering().await;
    let r = ws.request(json!({"op": "rtc_offer", "sdp": offer})).await;
    assert_eq!(r["type"], "rtc_answer", "{r}");
    let session = r["session"].as_u64().unwrap();
    let mut p = o.complete(r["sdp"].as_str().unwrap()).await;
    let w = p.request(json!({"op": "connect", "id": 1})).await;
    assert_eq!((w["type"].as_str(), w["conn_id"].as_u64()), (Some("welcome"), Some(session)), "{w}");
    p.request(json!({"op": "subscribe", "id": 2, "topic": "rel/ws"})).await;
    ws.publish_bin("rel/ws", &frame(1, 40_000)).await;
    p.run_until("the frame", |p| !p.records.is_empty()).await;
    assert_eq!(p.records[0].1.payload, frame(1, 40_000));
    // Bad WebSocket signaling: each a clear error, the connection stays.
    let r = ws.request(json!({"op": "rtc_offer", "sdp": "garbage"})).await;
    assert_eq!((r["type"].as_str(), r["code"].as_str()), (Some("error"), Some("invalid_argument")), "{r}");
    let r = ws
        .request(
            json!({"op": "rtc_candidate", "session": 999_999, "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}),
        )
        .await;
    assert_eq!(r["code"], "not_found", "{r}");
    let r = ws.request(json!({"op": "rtc_candidate", "session": session, "candidate": "candidate:nonsense"})).await;
    assert_eq!(r["code"], "invalid_argument", "{r}");
    let r = ws.request(json!({"op": "rtc_candidate", "session": session, "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"})).await;
    assert_eq!(r["type"], "rtc_candidate_added", "{r}");
    ws.assert_alive().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn sessions_are_owned_trickle_and_delete_answer_and_a_deleted_peer_is_gone() {
    let hub = spawn_hub(rtc_config()).await;
    let token = hub.token("owner");
    let (mut p, location) = peer_with_session(&hub, &token).await;
    let w = p.request(json!({"op": "connect", "id": 1})).await;
    assert_eq!(w["type"], "welcome", "{w}");
    let owner = format!("Bearer {token}");
    let other = format!("Bearer {}", hub.token("someone-else"));
    let frag = "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n";
    let r = http(hub.addr, "PATCH", "/v1/rtc/sessions/999999", &[("Authorization", &owner)], frag).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (404, Some("not_found")), "{}", r.body);
    let r = http(hub.addr, "PATCH", &location, &[("Authorization", &other)], frag).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("permission_denied")), "{}", r.body);
    let r = http(hub.addr, "PATCH", &location, &[], frag).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = http(hub.addr, "PATCH", &location, &[("Authorization", &owner)], "nothing useful").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("invalid_argument")), "{}", r.body);
    let r = http(hub.addr, "PATCH", &location, &[("Authorization", &owner)], frag).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(hub.manager.connection_stats().active_connections, 1);
    let r = http(hub.addr, "DELETE", &location, &[("Authorization", &owner)], "").await;
    assert_eq!(r.status, 204, "{}", r.body);
    hub.eventually("the deleted peer is unregistered", |m| m.connection_stats().active_connections == 0).await;
    let r = http(hub.addr, "DELETE", &location, &[("Authorization", &owner)], "").await;
    assert_eq!(r.status, 404, "a deleted session is gone: {}", r.body);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_peer_that_vanishes_is_unregistered_when_its_ice_consent_expires() {
    let hub = spawn_hub(rtc_config()).await;
    let mut p = connected_peer(&hub, "vanishing").await;
    p.request(json!({"op": "subscribe", "id": 2, "topic": "be/gone"})).await;
    assert_eq!(hub.manager.connection_stats().active_connections, 1);
    // The peer process dies: no bye, no DTLS close, its socket gone. Only ICE notices.
    drop(p);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while hub.manager.connection_stats().active_connections != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the vanished peer was never unregistered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(hub.manager.connection_stats().subscriptions, 0, "its subscription went with it");
    hub.shutdown().await;
}

#[tokio::test]
async fn rtc_config_tells_peers_the_ice_servers_channels_and_chunk_size() {
    let mut config = rtc_config();
    config.webrtc.ice_servers = vec![serde_json::from_value(json!({
        "urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "c"
    }))
    .unwrap()];
    let hub = spawn_hub(config).await;
    let r = http(hub.addr, "GET", "/v1/rtc/config", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["enabled"], true);
    assert_eq!(v["ice_servers"], json!([{"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "c"}]));
    assert_eq!(v["channels"], json!({"control": "fanhub", "lossy": "fanhub-lossy"}));
    assert_eq!(v["chunk_size"], 16384);
    hub.shutdown().await;
    let mut off = rtc_config();
    off.webrtc.enabled = false;
    let hub = spawn_hub(off).await;
    assert_eq!(http(hub.addr, "GET", "/v1/rtc/config", &[], "").await.json()["enabled"], false);
    let token = hub.token("x");
    let r = http(hub.addr, "POST", "/v1/rtc/offer", &[("Authorization", &format!("Bearer {token}"))], "v=0\r\n").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (404, Some("not_found")), "{}", r.body);
    hub.shutdown().await;
}

/// The host candidate's port in an SDP answer.
fn candidate_port(answer: &str) -> u16 {
    let line = answer.lines().find(|l| l.starts_with("a=candidate:")).expect("a host candidate");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[4], "127.0.0.1", "{line}");
    fields[5].parse().expect("a port")
}

#[tokio::test]
async fn peers_are_spread_over_the_drivers_each_on_its_own_port_and_all_receive() {
    let mut config = rtc_config();
    config.webrtc.drivers = 3;
    let hub = spawn_hub(config).await;
    let token = hub.token("spread");
    let auth = format!("Bearer {token}");
    let (mut peers, mut ports, mut sessions) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..4 {
        let (o, offer) = offering().await;
        let r = http(hub.addr, "POST", "/v1/rtc/offer", &[("Authorization", &auth)], &offer).await;
        assert_eq!(r.status, 201, "{}", r.body);
        ports.push(candidate_port(&r.body));
        sessions.push(r.header("location").expect("a Location").to_owned());
        peers.push(o.complete(&r.body).await);
    }
    // Placed on the least loaded driver: three drivers, three ports, the fourth peer shares one.
    let mut distinct = ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "one port per driver, peers spread: {ports:?}");
    for (i, p) in peers.iter_mut().enumerate() {
        let w = p.request(json!({"op": "connect", "id": 1})).await;
        assert_eq!(w["type"], "welcome", "peer {i}: {w}");
        let s = p.request(json!({"op": "subscribe", "id": 2, "topic": "rel/spread"})).await;
        assert_eq!(s["type"], "subscribed", "peer {i}: {s}");
    }
    let mut publisher = hub.connect("camera").await;
    for i in 0..3 {
        publisher.publish_bin("rel/spread", &frame(i, 40_000)).await;
    }
    for (n, p) in peers.iter_mut().enumerate() {
        p.run_until("three frames", |p| p.records.len() == 3).await;
        for (i, (_, r)) in p.records.iter().enumerate() {
            assert_eq!(r.payload, frame(i, 40_000), "peer {n} frame {i} is byte-exact");
        }
    }
    // Each session is found on its own driver: DELETE of the first peer ends exactly that one,
    // and the peer sharing its driver goes on receiving.
    let r = http(hub.addr, "DELETE", &sessions[0], &[("Authorization", &auth)], "").await;
    assert_eq!(r.status, 204, "{}", r.body);
    hub.eventually("the deleted peer is gone", |m| m.connection_stats().active_connections == 4).await;
    publisher.publish_bin("rel/spread", &frame(3, 40_000)).await;
    for p in &mut peers[1..] {
        p.run_until("the fourth frame", |p| p.records.len() == 4).await;
        assert_eq!(p.records[3].1.payload, frame(3, 40_000));
    }
    hub.shutdown().await;
}
