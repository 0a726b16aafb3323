//! The raw TCP transport (`docs/protocol.md` §10d) over real sockets: the version byte and the
//! token phase (each failure ends the connection as specified, with a Bye or silently), the
//! session over datagrams (subscribe, publish both ways across transports, resume, bye, ping,
//! keep-alive, time sync), malformed datagrams closing with a diagnostic while the hub stays
//! healthy, the admin view, and TLS. The client below is the test's own: a `TcpStream` and the
//! codec. Every wait is bounded.

use std::time::Duration;

use bytes::BytesMut;
use fanhub::config::Config;
use fanhub::protocol::frame::{decode_records, encode_publish};
use fanhub::protocol::tcp::{encode, token_payload, Datagram, Decoder, Kind, VERSION};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{admin, http, resumable_config, spawn_hub, spawn_hub_manual, test_config, Hub, Record, TIMEOUT};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A raw TCP client: writes bytes and datagrams, reads datagrams.
struct Tcp {
    io: Box<dyn Io>,
    buf: BytesMut,
    dec: Decoder,
    records: Vec<Record>,
    next_id: u64,
}

fn tcp_config() -> Config {
    let mut c = test_config();
    c.tcp.listen = Some("127.0.0.1:0".parse().unwrap());
    c
}

impl Tcp {
    async fn open(hub: &Hub) -> Tcp {
        let s = TcpStream::connect(hub.tcp.expect("tcp.listen is set")).await.unwrap();
        Tcp::over(Box::new(s))
    }

    fn over(io: Box<dyn Io>) -> Tcp {
        Tcp { io, buf: BytesMut::new(), dec: Decoder::new(1 << 30), records: Vec::new(), next_id: 0 }
    }

    /// Opens, sends the version and the token, expects the welcome.
    async fn connect(hub: &Hub, sub: &str) -> Tcp {
        let mut c = Tcp::open(hub).await;
        c.login(&hub.token(sub)).await;
        c
    }

    async fn login(&mut self, token: &str) {
        self.login_as(token, None).await;
    }

    /// Sends the version and a Token datagram with `client_id`, expects the welcome.
    async fn login_as(&mut self, token: &str, client_id: Option<&str>) {
        self.raw(&[VERSION]).await;
        self.send(Kind::Token, &token_payload(token, client_id)).await;
        let w = self.next_json().await;
        assert_eq!(w["type"], "welcome", "{w}");
    }

    async fn raw(&mut self, b: &[u8]) {
        self.io.write_all(b).await.unwrap();
    }

    async fn send(&mut self, kind: Kind, payload: &[u8]) {
        self.raw(&encode(kind, payload)).await;
    }

    /// The next datagram; `None` at end of stream.
    async fn next(&mut self) -> Option<Datagram> {
        tokio::time::timeout(TIMEOUT, async {
            loop {
                if let Some(d) = self.dec.decode(&mut self.buf).expect("the server's framing") {
                    return Some(d);
                }
                match self.io.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("timed out waiting for a datagram")
    }

    /// Every datagram until the server closes.
    async fn until_eof(&mut self) -> Vec<Datagram> {
        let mut all = Vec::new();
        while let Some(d) = self.next().await {
            all.push(d);
        }
        all
    }

    /// The next control message (records are kept, pings answered).
    async fn next_json(&mut self) -> Value {
        loop {
            let d = self.next().await.expect("the connection closed");
            match d.kind {
                Kind::Control => return serde_json::from_slice(&d.payload).unwrap(),
                Kind::Data => self.keep_records(&d.payload),
                Kind::Ping => self.send(Kind::Pong, &[]).await,
                other => panic!("unexpected {other:?}: {:?}", d.payload),
            }
        }
    }

    fn keep_records(&mut self, payload: &[u8]) {
        for r in decode_records(payload) {
            let r = r.expect("a well-formed record");
            self.records.push(Record::from(&r));
        }
    }

    async fn request(&mut self, mut msg: Value) -> Value {
        self.next_id += 1;
        msg["id"] = json!(self.next_id);
        self.send(Kind::Control, msg.to_string().as_bytes()).await;
        loop {
            let v = self.next_json().await;
            if v["id"] == self.next_id {
                return v;
            }
        }
    }

    async fn records(&mut self, n: usize) -> Vec<Record> {
        while self.records.len() < n {
            let d = self.next().await.expect("the connection closed");
            match d.kind {
                Kind::Data => self.keep_records(&d.payload),
                Kind::Ping => self.send(Kind::Pong, &[]).await,
                _ => {}
            }
        }
        self.records.drain(..n).collect()
    }

    async fn publish(&mut self, topic: &str, payload: &[u8]) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(Kind::Publish, &encode_publish(topic, id as u32, 0, payload)).await;
        loop {
            let v = self.next_json().await;
            if v["id"] == id {
                return v;
            }
        }
    }
}

fn json_of(d: &Datagram) -> Value {
    serde_json::from_slice(&d.payload).unwrap()
}

/// The last datagram is a Bye with `reason`.
fn ends_with_bye(all: &[Datagram], reason: &str) {
    let last = all.last().unwrap_or_else(|| panic!("no datagram before the close"));
    assert_eq!(last.kind, Kind::Bye, "{all:?}");
    assert_eq!(json_of(last)["reason"], reason, "{all:?}");
}

async fn connections(hub: &Hub, query: &str) -> Value {
    admin(hub, "GET", &format!("/v1/admin/connections{query}"), "").await.json()
}

/// Waits (bounded) until the admin API lists `n` connections.
async fn listed(hub: &Hub, n: u64) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while connections(hub, "").await["total"] != n {
        assert!(tokio::time::Instant::now() < deadline, "connection count never reached {n}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn tcp_an_unsupported_version_or_garbage_gets_a_bye_then_the_close() {
    let hub = spawn_hub(tcp_config()).await;
    for first in [&[0x02u8][..], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"] {
        let mut c = Tcp::open(&hub).await;
        c.raw(first).await;
        let all = c.until_eof().await;
        assert_eq!(all.len(), 1, "{all:?}");
        ends_with_bye(&all, "unsupported_version");
        assert!(json_of(&all[0])["message"].as_str().unwrap().contains("0x01"));
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn tcp_a_draining_node_answers_a_new_client_with_reconnect_advice_then_a_bye() {
    let mut config = tcp_config();
    config.server.reconnect_urls = vec!["ws://other.example:8080/ws".into()];
    let hub = spawn_hub(config).await;
    assert_eq!(admin(&hub, "POST", "/v1/admin/drain", "").await.status, 200);
    let mut c = Tcp::open(&hub).await;
    c.raw(&[VERSION]).await;
    let all = c.until_eof().await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].kind, Kind::Reconnect);
    assert_eq!(json_of(&all[0])["urls"], json!(["ws://other.example:8080/ws"]));
    ends_with_bye(&all, "maintenance");
    assert_eq!(admin(&hub, "DELETE", "/v1/admin/drain", "").await.status, 200);
    Tcp::connect(&hub, "after").await;
    hub.shutdown().await;
}

#[tokio::test]
async fn tcp_a_silent_client_is_closed_at_the_version_and_at_the_token_timeouts() {
    let mut config = tcp_config();
    config.tcp.version_timeout_ms = 100;
    config.session.auth_timeout_ms = 100;
    let hub = spawn_hub(config).await;
    let mut c = Tcp::open(&hub).await;
    assert!(c.until_eof().await.is_empty());
    let mut c = Tcp::open(&hub).await;
    c.raw(&[VERSION]).await;
    assert!(c.until_eof().await.is_empty(), "no Bye before the welcome");
    listed(&hub, 0).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn tcp_an_invalid_expired_or_missing_token_closes_at_once_without_a_bye() {
    let hub = spawn_hub_manual(tcp_config()).await;
    let expired = hub.token_with("old", &[">"], &[">"], 1);
    hub.advance(Duration::from_secs(120));
    let connect = json!({"op": "connect", "token": hub.token("x")}).to_string();
    for (kind, payload) in [
        (Kind::Token, b"not-a-jwt".to_vec()),
        (Kind::Token, expired.into_bytes()),
        (Kind::Control, connect.into_bytes()),
        (Kind::Token, vec![0xff, 0xfe]),
    ] {
        let mut c = Tcp::open(&hub).await;
        c.raw(&[VERSION]).await;
        c.send(kind, &payload).await;
        let all = c.until_eof().await;
        assert!(all.is_empty(), "{kind:?}: {all:?}");
    }
    listed(&hub, 0).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn tcp_a_client_id_in_the_token_datagram_is_listed_and_replaces_an_older_connection_as_over_websocket() {
    let hub = spawn_hub(tcp_config()).await;
    let mut first = Tcp::open(&hub).await;
    first.login_as(&hub.token("dev"), Some("sensor-7")).await;
    let mut plain = Tcp::connect(&hub, "plain").await;
    let rows = connections(&hub, "?protocol=tcp&user=dev").await;
    assert_eq!((rows["total"].as_u64(), rows["items"][0]["client_id"].as_str()), (Some(1), Some("sensor-7")), "{rows}");
    let rows = connections(&hub, "?user=plain").await;
    assert_eq!(rows["items"][0]["client_id"], Value::Null, "a token alone, as before: {rows}");

    // The same subject and client id over TCP again: the older connection is replaced.
    let mut second = Tcp::open(&hub).await;
    second.login_as(&hub.token("dev"), Some("sensor-7")).await;
    ends_with_bye(&first.until_eof().await, "replaced");
    // And over a WebSocket: the client id is one, whatever the transport.
    let token = hub.token("dev");
    let _ws = hub.connect_with(json!({"op": "connect", "token": token, "client_id": "sensor-7"})).await;
    ends_with_bye(&second.until_eof().await, "replaced");
    listed(&hub, 2).await;
    let rows = connections(&hub, "?user=dev").await;
    assert_eq!(rows["total"], 1, "{rows}");
    assert_eq!(
        (rows["items"][0]["protocol"].as_str(), rows["items"][0]["client_id"].as_str()),
        (Some("websocket"), Some("sensor-7"))
    );
    assert_eq!(plain.request(json!({"op": "subscribe", "topic": "still/here"})).await["type"], "subscribed");
    hub.shutdown().await;
}

#[tokio::test]
async fn tcp_an_invalid_client_id_is_refused_with_the_error_a_websocket_connect_gets_then_a_bye() {
    let hub = spawn_hub(tcp_config()).await;
    let token = hub.token("dev");
    let long = "x".repeat(129);
    // (what, the client id's bytes in the Token datagram, why it is refused)
    let cases: [(&str, &[u8], &str); 5] = [
        ("empty", b"", "1 to 128 bytes long (this one has 0)"),
        ("129 bytes", long.as_bytes(), "1 to 128 bytes long (this one has 129)"),
        ("a control character", b"a\nb", "control characters (it has U+000A)"),
        ("a second 0x00", b"a\0b", "control characters (it has U+0000)"),
        ("not UTF-8", b"\xff\xfe", "not UTF-8"),
    ];
    for (what, id, why) in cases {
        let mut payload = token.clone().into_bytes();
        payload.push(0);
        payload.extend_from_slice(id);
        let mut t = Tcp::open(&hub).await;
        t.raw(&[VERSION]).await;
        t.send(Kind::Token, &payload).await;
        let all = t.until_eof().await;
        assert_eq!(all.len(), 2, "{what}: an error, then the Bye: {all:?}");
        let error = json_of(&all[0]);
        assert_eq!((all[0].kind, error["type"].as_str()), (Kind::Control, Some("error")), "{what}: {all:?}");
        ends_with_bye(&all, "unauthenticated");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(why), "{what}: {message}");
        // The same client id in a WebSocket `connect` (JSON can carry every case but bytes that
        // are not UTF-8): the same code and the same words, then close 4001.
        let Ok(id) = std::str::from_utf8(id) else {
            assert_eq!(error["code"], "unauthenticated", "{what}: {error}");
            continue;
        };
        let mut ws = hub.open().await;
        ws.send_json(json!({"op": "connect", "token": token, "client_id": id})).await;
        let closed = ws.expect_close().await;
        assert_eq!(closed.code, Some(4001), "{what}: {closed:?}");
        assert_eq!(closed.messages[0]["code"], error["code"], "{what}: {closed:?}");
        assert_eq!(closed.messages[0]["message"], error["message"], "{what}: {closed:?}");
    }
    listed(&hub, 0).await;
    // The token was fine all along: with a valid client id it connects.
    let mut ok = Tcp::open(&hub).await;
    ok.login_as(&token, Some("fixed")).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn tcp_subscribe_and_publish_reach_tcp_and_websocket_subscribers_alike() {
    let hub = spawn_hub(tcp_config()).await;
    let mut t = Tcp::connect(&hub, "tcp").await;
    let s = t.request(json!({"op": "subscribe", "topic": "mix/a"})).await;
    assert_eq!(s["type"], "subscribed", "{s}");
    let mut w = hub.connect("ws").await;
    w.subscribe("mix/a").await;
    // TCP → both.
    let p = t.publish("mix/a", b"from tcp").await;
    assert_eq!(p["type"], "published", "{p}");
    let got = t.records(1).await;
    assert_eq!((got[0].topic.as_str(), got[0].payload.as_slice()), ("mix/a", &b"from tcp"[..]));
    assert_eq!(w.next_record().await, got[0]);
    // WebSocket → both.
    w.publish_bin("mix/a", b"from ws").await;
    let got = t.records(1).await;
    assert_eq!(got[0].payload, b"from ws");
    assert_eq!(w.next_record().await, got[0]);
    // Listed as tcp, active.
    let listed = connections(&hub, "?protocol=tcp").await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["items"][0]["state"], "active", "{listed}");
    hub.shutdown().await;
}

#[tokio::test]
async fn tcp_a_subscriber_resumes_from_an_offset_exactly_once() {
    let mut config = resumable_config();
    config.tcp.listen = Some("127.0.0.1:0".parse().unwrap());
    let hub = spawn_hub(config).await;
    let mut w = hub.connect("ws").await;
    let mut first = 0;
    for i in 0..5u8 {
        let o = w.publish_bin("rel/r", &[i]).await;
        if i == 0 {
            first = o;
        }
    }
    let mut t = Tcp::connect(&hub, "tcp").await;
    let s = t.request(json!({"op": "subscribe", "topic": "rel/r", "offset": first + 2})).await;
    assert_eq!(s["type"], "subscribed", "{s}");
    w.publish_bin("rel/r", &[5]).await;
    let got = t.records(4).await;
    let seen: Vec<(u64, u8)> = got.iter().map(|r| (r.offset, r.payload[0])).collect();
    assert_eq!(seen, [(first + 2, 2), (first + 3, 3), (first + 4, 4), (first + 5, 5)]);
    // Nothing more (no duplicate): a ping's pong comes next.
    t.send(Kind::Ping, &[]).await;
    let d = t.next().await.unwrap();
    assert_eq!(d.kind, Kind::Pong, "{d:?}");
    hub.shutdown().await;
}

#[tokio::test]
async fn tcp_bye_either_way_ends_the_connection() {
    let hub = spawn_hub(tcp_config()).await;
    let mut t = Tcp::connect(&hub, "leaver").await;
    t.send(Kind::Bye, br#"{"reason":"normal","message":"done"}"#).await;
    let all = t.until_eof().await;
    assert!(all.iter().all(|d| d.kind == Kind::Control), "{all:?}");
    let mut t = Tcp::connect(&hub, "kicked").await;
    let id = connections(&hub, "?protocol=tcp").await["items"][0]["id"].as_u64().unwrap();
    let r = admin(&hub, "DELETE", &format!("/v1/admin/connections/{id}"), "").await;
    assert!(r.status < 300, "{}", r.body);
    ends_with_bye(&t.until_eof().await, "kicked");
    listed(&hub, 0).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn tcp_ping_is_answered_and_a_silent_client_is_closed_by_the_keepalive() {
    let mut config = tcp_config();
    config.session.ping_interval_ms = 100;
    config.session.idle_timeout_ms = 400;
    let hub = spawn_hub(config).await;
    let mut t = Tcp::connect(&hub, "quiet").await;
    t.send(Kind::Ping, &[]).await;
    let mut kinds = Vec::new();
    while let Some(d) = t.next().await {
        kinds.push(d.kind);
        if d.kind == Kind::Bye {
            assert_eq!(json_of(&d)["reason"], "idle_timeout", "{d:?}");
        }
    }
    assert!(kinds.contains(&Kind::Pong), "{kinds:?}");
    assert!(kinds.contains(&Kind::Ping), "the server's keep-alive: {kinds:?}");
    assert_eq!(kinds.last(), Some(&Kind::Bye), "{kinds:?}");
    hub.shutdown().await;
}

#[tokio::test]
async fn tcp_time_sync_is_requested_and_an_unanswered_one_does_not_end_the_connection() {
    let mut config = tcp_config();
    config.session.time_sync_interval_ms = 100;
    let hub = spawn_hub(config).await;
    let mut t = Tcp::connect(&hub, "clock").await;
    let q = t.next_json().await;
    assert_eq!(q["type"], "time_sync_request", "{q}");
    let now = crate::common::unix_us();
    let reply = json!({"op": "time_sync_reply", "seq": q["seq"], "t1": q["t1"], "t2": now, "t3": now});
    t.send(Kind::Control, reply.to_string().as_bytes()).await;
    // Two more requests, unanswered: the connection stays.
    for _ in 0..2 {
        assert_eq!(t.next_json().await["type"], "time_sync_request");
    }
    let s = t.request(json!({"op": "subscribe", "topic": "still/here"})).await;
    assert_eq!(s["type"], "subscribed", "{s}");
    hub.shutdown().await;
}

#[tokio::test]
async fn tcp_a_client_whose_clock_offset_averages_over_the_limit_is_closed_as_a_violation() {
    let mut config = tcp_config();
    config.session.time_sync_interval_ms = 50;
    config.session.max_clock_offset_ms = 100;
    let hub = spawn_hub(config).await;
    let mut honest = Tcp::connect(&hub, "honest").await;
    let mut t = Tcp::connect(&hub, "skewed").await;
    // The skewed client's clock is 1 s behind; the honest one's agrees with the hub's.
    for (c, skew_us) in [(&mut honest, 0), (&mut t, -1_000_000)] {
        let q = c.next_json().await;
        assert_eq!(q["type"], "time_sync_request", "{q}");
        let now = crate::common::unix_us() + skew_us;
        let reply = json!({"op": "time_sync_reply", "seq": q["seq"], "t1": q["t1"], "t2": now, "t3": now});
        c.send(Kind::Control, reply.to_string().as_bytes()).await;
    }
    let all = t.until_eof().await;
    ends_with_bye(&all, "violation");
    let message = json_of(all.last().unwrap())["message"].as_str().unwrap().to_owned();
    assert!(message.contains("max_clock_offset_ms = 100"), "{message}");
    assert!(hub.manager.connection_stats().violations >= 1);
    let s = honest.request(json!({"op": "subscribe", "topic": "still/here"})).await;
    assert_eq!(s["type"], "subscribed", "the honest client stays: {s}");
    hub.shutdown().await;
}

#[tokio::test]
async fn tcp_rate_and_size_violations_move_the_connection_to_monitored_violation_then_close_it() {
    let mut config = tcp_config();
    config.limits.publish_rate_per_second = 1;
    config.limits.publish_burst = 1;
    config.limits.max_message_size = 64;
    config.limits.violations_to_monitor = 2;
    config.limits.violations_to_close = 3;
    config.limits.violations_window_ms = 600_000;
    // The hub's clock stands still: the rate limit refills nothing between the publishes.
    let hub = spawn_hub_manual(config).await;
    let mut t = Tcp::connect(&hub, "flooder").await;
    assert_eq!(t.publish("v/t", b"one").await["type"], "published");
    let r = t.publish("v/t", b"two").await;
    assert_eq!((r["type"].as_str(), r["code"].as_str()), (Some("error"), Some("rate_limited")), "{r}");
    let r = t.publish("v/t", &[0u8; 100]).await;
    assert_eq!(
        (r["code"].as_str(), r["limit"].as_str()),
        (Some("resource_exhausted"), Some("max_message_size")),
        "{r}"
    );
    let rows = connections(&hub, "?protocol=tcp").await;
    assert_eq!(rows["items"][0]["state"], "monitored_violation", "{rows}");
    // The third violation ends it: an error, then a Bye `violation`, then the close.
    t.send(Kind::Publish, &encode_publish("v/t", 0, 0, &[0u8; 100])).await;
    let all = t.until_eof().await;
    ends_with_bye(&all, "violation");
    listed(&hub, 0).await;
    assert_eq!(hub.manager.connection_stats().violations, 3);
    hub.shutdown().await;
}

#[tokio::test]
async fn tcp_publishing_over_the_byte_rate_is_refused_then_monitored_then_closed_and_resumes_as_time_passes() {
    use crate::limits::{byte_rate_config, state_of};
    let mut config = byte_rate_config();
    config.tcp.listen = Some("127.0.0.1:0".parse().unwrap());
    // The hub's clock moves only when the test advances it.
    let hub = spawn_hub_manual(config).await;
    let mut watcher = Tcp::connect(&hub, "watcher").await;
    assert_eq!(watcher.request(json!({"op": "subscribe", "topic": "bytes/t"})).await["type"], "subscribed");
    let mut t = Tcp::connect(&hub, "flooder").await;
    let big = [5u8; 600];
    let refused = |r: &Value| {
        assert_eq!(
            (r["type"].as_str(), r["code"].as_str(), r["limit"].as_str()),
            (Some("error"), Some("rate_limited"), Some("publish_bytes_per_second")),
            "{r}"
        );
    };

    assert_eq!(t.publish("bytes/t", &big).await["offset"], 1);
    // The burst (1000 bytes) is spent: 600 more need 200 ms more.
    let r = t.publish("bytes/t", &big).await;
    refused(&r);
    assert_eq!(r["retry_after_ms"], 200, "{r}");
    assert_eq!(state_of(&hub, "flooder").await, "active", "one violation is only counted");

    hub.advance(Duration::from_millis(200));
    assert_eq!(t.publish("bytes/t", &big).await["offset"], 2, "the refused message passes once the bytes refill");
    // Sent at once, the next one finds the bucket empty: 600 ms to wait, and not one less.
    let r = t.publish("bytes/t", &big).await;
    refused(&r);
    assert_eq!(r["retry_after_ms"], 600, "{r}");
    assert_eq!(state_of(&hub, "flooder").await, "monitored_violation");
    hub.advance(Duration::from_millis(599));
    let r = t.publish("bytes/t", &big).await;
    refused(&r);
    assert_eq!(r["retry_after_ms"], 1, "{r}");
    hub.advance(Duration::from_millis(1));
    assert_eq!(t.publish("bytes/t", &big).await["offset"], 3, "monitored, but still served");
    // The fourth violation: the refusal, then a Bye `violation`, then the close.
    t.send(Kind::Publish, &encode_publish("bytes/t", 0, 0, &big)).await;
    let all = t.until_eof().await;
    ends_with_bye(&all, "violation");
    let errors: Vec<Value> = all.iter().filter(|d| d.kind == Kind::Control).map(json_of).collect();
    assert_eq!(errors.len(), 1, "{all:?}");
    refused(&errors[0]);
    assert_eq!(errors[0]["publish_seq"], 7, "{}", errors[0]);
    listed(&hub, 1).await;
    assert_eq!(hub.manager.connection_stats().violations, 4);

    // The hub stays healthy: the watcher got exactly the accepted messages, in order, and
    // publishes and receives as before.
    let got: Vec<u64> = watcher.records(3).await.iter().map(|r| r.offset).collect();
    assert_eq!(got, [1, 2, 3]);
    assert_eq!(watcher.publish("bytes/t", b"still fine").await["offset"], 4);
    assert_eq!(watcher.records(1).await[0].payload, b"still fine");
    assert_eq!(http(hub.addr, "GET", "/healthz", &[], "").await.status, 200);
    hub.shutdown().await;
}

#[tokio::test]
async fn tcp_malformed_datagrams_close_with_a_diagnostic_and_the_hub_stays_healthy() {
    let hub = spawn_hub(tcp_config()).await;
    let limit = fanhub::transport::ws::frame_limit(hub.manager.limits().max_message_size) + 1;
    let over = ((limit + 1) as u32).to_be_bytes();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad type", vec![0, 0, 0, 1, 0x7f], "protocol_error"),
        ("zero length", vec![0, 0, 0, 0], "protocol_error"),
        ("over the limit", over.to_vec(), "message_too_big"),
        ("4 GiB", vec![0xff, 0xff, 0xff, 0xff], "message_too_big"),
        ("data from a client", encode(Kind::Data, b"x").to_vec(), "protocol_error"),
        ("a second token", encode(Kind::Token, b"x").to_vec(), "protocol_error"),
        ("truncated", encode(Kind::Control, b"{}")[..5].to_vec(), "protocol_error"),
    ];
    for (what, bytes, reason) in cases {
        let mut t = Tcp::connect(&hub, "bad").await;
        t.raw(&bytes).await;
        if what == "truncated" {
            t.io.shutdown().await.unwrap();
        }
        let all = t.until_eof().await;
        let error = all.iter().find(|d| d.kind == Kind::Control).map(json_of);
        assert_eq!(error.as_ref().map(|e| e["type"].clone()), Some(json!("error")), "{what}: {all:?}");
        ends_with_bye(&all, reason);
    }
    listed(&hub, 0).await;
    assert_eq!(http(hub.addr, "GET", "/healthz", &[], "").await.status, 200);
    let mut ok = Tcp::connect(&hub, "after").await;
    assert_eq!(ok.request(json!({"op": "subscribe", "topic": "fine"})).await["type"], "subscribed");
    hub.shutdown().await;
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn tcp_over_tls_runs_the_same_session() {
    use std::sync::Arc;
    let cert = crate::common::SelfSigned::new("tcp-tls");
    let mut config = tcp_config();
    config.tcp.tls.cert_path = cert.cert_path();
    config.tcp.tls.key_path = cert.key_path();
    let hub = spawn_hub(config).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(cert.der.clone())).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(hub.tcp.unwrap()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, tcp).await.unwrap();
    let mut t = Tcp::over(Box::new(tls));
    t.login(&hub.token("secure")).await;
    assert_eq!(t.request(json!({"op": "subscribe", "topic": "sec/a"})).await["type"], "subscribed");
    assert_eq!(t.publish("sec/a", b"sealed").await["type"], "published");
    assert_eq!(t.records(1).await[0].payload, b"sealed");
    t.send(Kind::Bye, br#"{"reason":"normal","message":""}"#).await;
    t.until_eof().await;
    hub.shutdown().await;
}

/// One message, four transports: what a TCP client publishes reaches WebSocket, WebRTC, SSE and
/// TCP subscribers alike, and what a WebSocket or WebRTC client publishes reaches the TCP one.
#[cfg(all(feature = "webrtc", feature = "client-webrtc"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_publishes_reach_websocket_webrtc_sse_and_tcp_subscribers_and_theirs_reach_tcp() {
    use base64::Engine as _;
    use fanhub::client::{Client as Sdk, ClientOptions, Event, From, Transport};
    let hub = spawn_hub(tcp_config()).await;
    let topic = "mix/all";
    let mut ws = hub.connect("ws").await;
    ws.subscribe(topic).await;
    let mut rtc_options = ClientOptions::new([hub.ws_url()]).with_token(hub.token("rtc"));
    rtc_options.transport = Transport::WebRtc;
    let rtc = Sdk::connect(rtc_options).await.expect("connect over WebRTC");
    let mut rtc_sub = rtc.subscribe(topic, From::Live).await.unwrap();
    let token = hub.token("sse");
    let mut sse = crate::sse::sse(&hub, &format!("/v1/sse?topics={topic}&access_token={token}"), &[]).await;
    sse.next_of("subscribed").await;
    let mut tcp_sub = Tcp::connect(&hub, "tcp-sub").await;
    assert_eq!(tcp_sub.request(json!({"op": "subscribe", "topic": topic})).await["type"], "subscribed");
    let mut tcp_pub = Tcp::connect(&hub, "tcp-pub").await;

    let answer = tcp_pub.publish(topic, b"from tcp").await;
    assert_eq!(answer["type"], "published", "{answer}");
    assert_eq!(ws.next_record().await.payload, b"from tcp");
    let sse_event = sse.messages(1).await.remove(0).json();
    assert_eq!(sse_event["data"], base64::engine::general_purpose::STANDARD.encode(b"from tcp"));
    assert_eq!(tcp_sub.records(1).await[0].payload, b"from tcp");
    match tokio::time::timeout(TIMEOUT, rtc_sub.next()).await.expect("a WebRTC delivery").unwrap() {
        Event::Message(m) => assert_eq!(&m.payload[..], b"from tcp"),
        other => panic!("{other:?}"),
    }

    // The other way: WebSocket and WebRTC publishers, the TCP subscriber.
    ws.publish_bin(topic, b"from ws").await;
    rtc.publish(topic, bytes::Bytes::from_static(b"from webrtc")).await.unwrap();
    let got: Vec<Vec<u8>> = tcp_sub.records(2).await.into_iter().map(|r| r.payload).collect();
    assert_eq!(got, [b"from ws".to_vec(), b"from webrtc".to_vec()]);
    rtc.close().await;
    hub.shutdown().await;
}
