//! The server-sent events transport (`GET /v1/sse`), from a raw HTTP/1.1 client that reads the
//! chunked body as it comes, from `curl -N` and from a browser's `EventSource`: records of every
//! encoding, resume with `Last-Event-ID`, the documented refusals, keep-alive comments, the admin
//! view, kicks, and a slow SSE client's isolation.

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine as _;
use fanhub::auth::MintRequest;
use fanhub::hub::{ConnId, DeliveryPolicy, HistoryLimits, ReliableOverflow};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// One server-sent event, as a client parses it.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    id: Option<String>,
    event: String,
    data: String,
}

impl Event {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {:?}", self.data))
    }
}

#[derive(Debug)]
enum Item {
    Event(Event),
    Comment(String),
}

/// A raw SSE client: HTTP/1.1 over TCP, the chunked body decoded and parsed as it arrives.
pub(crate) struct SseClient {
    tcp: TcpStream,
    raw: Vec<u8>,
    text: String,
    items: VecDeque<Item>,
    ended: bool,
    headers: Vec<(String, String)>,
}

/// Opens `path` with `headers`: the open stream, or the refusal (status and JSON body).
async fn sse_open(hub: &Hub, path: &str, headers: &[(&str, &str)]) -> Result<SseClient, (u16, Value)> {
    let mut tcp = TcpStream::connect(hub.addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n", hub.addr);
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(TIMEOUT, tcp.read(&mut buf)).await.expect("response head hung").unwrap();
        assert!(n > 0, "connection closed before the response head");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(raw[..head_end].to_vec()).unwrap();
    let rest = raw[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut c = SseClient { tcp, raw: rest, text: String::new(), items: VecDeque::new(), ended: false, headers };
    if status != 200 {
        let len: usize = c.header("content-length").expect("an error has a length").parse().unwrap();
        while c.raw.len() < len {
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(TIMEOUT, c.tcp.read(&mut buf)).await.expect("error body hung").unwrap();
            assert!(n > 0);
            c.raw.extend_from_slice(&buf[..n]);
        }
        assert_eq!(c.header("content-type"), Some("application/json"));
        return Err((status, serde_json::from_slice(&c.raw[..len]).expect("JSON error body")));
    }
    assert_eq!(c.header("content-type"), Some("text/event-stream"));
    assert_eq!(c.header("transfer-encoding"), Some("chunked"));
    c.parse();
    Ok(c)
}

pub(crate) async fn sse(hub: &Hub, path: &str, headers: &[(&str, &str)]) -> SseClient {
    match sse_open(hub, path, headers).await {
        Ok(c) => c,
        Err((status, body)) => panic!("SSE refused: {status} {body}"),
    }
}

impl SseClient {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Moves complete chunks from `raw` to `text`, and complete events from `text` to `items`.
    fn parse(&mut self) {
        while let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&self.raw[..eol]).unwrap().trim(), 16).unwrap();
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                break;
            }
            if self.raw.len() < eol + 2 + size + 2 {
                break;
            }
            let chunk = self.raw[eol + 2..eol + 2 + size].to_vec();
            self.text.push_str(std::str::from_utf8(&chunk).expect("chunks end on character boundaries"));
            self.raw.drain(..eol + 2 + size + 2);
        }
        while let Some(end) = self.text.find("\n\n") {
            let block: String = self.text.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, "message".to_owned(), Vec::new());
            for line in block.lines().filter(|l| !l.is_empty()) {
                if let Some(c) = line.strip_prefix(':') {
                    self.items.push_back(Item::Comment(c.trim().to_owned()));
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => id = Some(value.to_owned()),
                    "event" => event = value.to_owned(),
                    "data" => data.push(value.to_owned()),
                    other => panic!("unexpected field {other:?} in {block:?}"),
                }
            }
            if !data.is_empty() {
                self.items.push_back(Item::Event(Event { id, event, data: data.join("\n") }));
            }
        }
    }

    /// The next event or comment; `None` when the stream ended.
    async fn next_item(&mut self) -> Option<Item> {
        loop {
            if let Some(i) = self.items.pop_front() {
                return Some(i);
            }
            if self.ended {
                return None;
            }
            let mut buf = [0u8; 16 * 1024];
            let n = tokio::time::timeout(TIMEOUT, self.tcp.read(&mut buf)).await.expect("SSE stream hung").unwrap();
            if n == 0 {
                self.ended = true;
                continue;
            }
            self.raw.extend_from_slice(&buf[..n]);
            self.parse();
        }
    }

    /// The next event (comments skipped); panics at the end of the stream.
    async fn next_event(&mut self) -> Event {
        loop {
            match self.next_item().await {
                Some(Item::Event(e)) => return e,
                Some(Item::Comment(_)) => {}
                None => panic!("the stream ended while waiting for an event"),
            }
        }
    }

    /// The next event of type `kind`, skipping others.
    pub(crate) async fn next_of(&mut self, kind: &str) -> Event {
        loop {
            let e = self.next_event().await;
            if e.event == kind {
                return e;
            }
        }
    }

    /// `n` record (`message`) events.
    pub(crate) async fn messages(&mut self, n: usize) -> Vec<Event> {
        let mut out = Vec::new();
        while out.len() < n {
            out.push(self.next_of("message").await);
        }
        out
    }
}

/// No SSE connection is registered.
fn no_sse(m: &fanhub::hub::ConnectionManager) -> bool {
    m.connection_stats().connections_by_protocol.get("sse").copied().unwrap_or(0) == 0
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Publishes bytes flagged as JSON text in a binary frame (acknowledged).
async fn publish_json_frame(c: &mut Client, topic: &str, id: u32, payload: &[u8]) -> u64 {
    let frame = fanhub::protocol::frame::encode_publish(topic, id, fanhub::protocol::frame::FLAG_JSON, payload);
    c.ws.send(Message::binary(frame)).await.expect("send");
    let r = c.reply(u64::from(id)).await;
    assert_eq!(r["type"], "published", "{r}");
    r["offset"].as_u64().unwrap()
}

#[tokio::test]
async fn sse_streams_json_and_binary_records_to_a_raw_http_client_and_a_websocket_subscriber_gets_them_too() {
    let hub = spawn_hub(test_config()).await;
    let token = hub.token("viewer");
    let mut s = sse(&hub, "/v1/sse?topics=a/json,a/bin", &[("Authorization", &bearer(&token))]).await;
    let welcome = s.next_event().await;
    assert_eq!(welcome.event, "welcome");
    assert_eq!(welcome.json()["session"]["subject"], "viewer");
    let (sa, sb) = (s.next_of("subscribed").await, s.next_of("subscribed").await);
    let (ea, eb) = (sa.json()["epoch"].as_u64().unwrap(), sb.json()["epoch"].as_u64().unwrap());
    assert_eq!(sa.json()["topic"], "a/json");
    assert_eq!(sb.json()["topic"], "a/bin");
    // Before any record the id holds where each topic starts: nothing received yet.
    assert_eq!(sb.id.as_deref(), Some(format!("{ea}:0,{eb}:0").as_str()));

    let mut ws_sub = hub.connect("ws-viewer").await;
    ws_sub.subscribe("a/json").await;
    ws_sub.subscribe("a/bin").await;
    let mut publisher = hub.connect("publisher").await;
    publisher.publish_json("a/json", json!({"speed": 187.5, "note": "line\nbreak"})).await;
    let binary = [0u8, 1, 2, 0xfe, 0xff, b'\n', b'\r'];
    publisher.publish_bin("a/bin", &binary).await;
    publish_json_frame(&mut publisher, "a/json", 77, b"{\n  \"pretty\": [1,\r\n 2]\n}").await;

    let m = s.messages(3).await;
    let d: Vec<Value> = m.iter().map(Event::json).collect();
    assert_eq!(d[0]["topic"], "a/json");
    assert_eq!((d[0]["offset"].as_u64(), d[0]["epoch"].as_u64()), (Some(1), Some(ea)));
    assert_eq!(d[0]["encoding"], "json");
    assert_eq!(d[0]["data"], json!({"speed": 187.5, "note": "line\nbreak"}), "JSON embedded as JSON");
    assert!(d[0]["ts"].as_u64().unwrap() > 1_600_000_000_000_000, "ts is µs since the UNIX epoch");
    assert_eq!(m[0].id.as_deref(), Some(format!("{ea}:1,{eb}:0").as_str()));
    assert_eq!(d[1]["topic"], "a/bin");
    assert_eq!(d[1]["encoding"], "base64");
    let bytes = base64::engine::general_purpose::STANDARD.decode(d[1]["data"].as_str().unwrap()).unwrap();
    assert_eq!(bytes, binary);
    assert_eq!(m[1].id.as_deref(), Some(format!("{ea}:1,{eb}:1").as_str()));
    // JSON text with line breaks spans several data lines and still parses.
    assert_eq!(d[2]["encoding"], "json");
    assert_eq!(d[2]["data"], json!({"pretty": [1, 2]}));
    assert_eq!(m[2].id.as_deref(), Some(format!("{ea}:2,{eb}:1").as_str()));

    let got = ws_sub.records(3).await;
    assert_eq!(
        got.iter().map(|r| (r.topic.as_str(), r.offset)).collect::<Vec<_>>(),
        [("a/json", 1), ("a/bin", 1), ("a/json", 2)]
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn sse_token_in_the_access_token_parameter_opens_the_stream() {
    let hub = spawn_hub(test_config()).await;
    let token = hub.token("browser");
    let mut s = sse(&hub, &format!("/v1/sse?topics=q/t&access_token={token}"), &[]).await;
    assert_eq!(s.next_event().await.json()["session"]["subject"], "browser");
    assert_eq!(s.next_of("subscribed").await.json()["topic"], "q/t");
    let mut p = hub.connect("p").await;
    p.publish_json("q/t", json!(42)).await;
    assert_eq!(s.messages(1).await[0].json()["data"], json!(42));
    hub.shutdown().await;
}

/// Reads `n` records and returns their (topic, offset) and the last event id.
async fn offsets(s: &mut SseClient, n: usize) -> (Vec<(String, u64)>, String) {
    let m = s.messages(n).await;
    let got = m.iter().map(|e| (e.json()["topic"].as_str().unwrap().to_owned(), e.json()["offset"].as_u64().unwrap()));
    (got.collect(), m.last().and_then(|e| e.id.clone()).unwrap())
}

#[tokio::test]
async fn sse_resume_with_last_event_id_delivers_every_record_exactly_once() {
    let hub = spawn_hub(resumable_config()).await;
    let token = hub.token("resumer");
    let auth = bearer(&token);
    let mut p = hub.connect("p").await;
    for i in 1..=3 {
        p.publish_json("rel/a", json!({"a": i})).await;
    }
    let path = "/v1/sse?topics=rel/a,rel/b";
    let mut s = sse(&hub, path, &[("Authorization", &auth)]).await;
    s.next_of("subscribed").await;
    let started = s.next_of("subscribed").await;
    let ea = hub.manager.topic_info(&fanhub::hub::TopicName::new("rel/a").unwrap()).unwrap().epoch;
    assert!(started.id.as_deref().unwrap().starts_with(&format!("{ea}:3,")), "live from the head: {started:?}");

    p.publish_json("rel/a", json!({"a": 4})).await;
    p.publish_json("rel/b", json!({"b": 1})).await;
    let (got, id) = offsets(&mut s, 2).await;
    assert_eq!(got, [("rel/a".to_owned(), 4), ("rel/b".to_owned(), 1)]);
    // Published while it is gone: picked up on resume.
    drop(s);
    p.publish_json("rel/a", json!({"a": 5})).await;
    p.publish_json("rel/b", json!({"b": 2})).await;
    p.publish_json("rel/b", json!({"b": 3})).await;

    let mut s = sse(&hub, path, &[("Authorization", &auth), ("Last-Event-ID", &id)]).await;
    let (a, b) = (s.next_of("subscribed").await.json(), s.next_of("subscribed").await.json());
    assert_eq!((a["recovered"].as_bool(), a["replayed"].as_u64()), (Some(true), Some(1)), "{a}");
    assert_eq!((b["recovered"].as_bool(), b["replayed"].as_u64()), (Some(true), Some(2)), "{b}");
    let (mut got, _) = offsets(&mut s, 3).await;
    got.sort();
    assert_eq!(got, [("rel/a".to_owned(), 5), ("rel/b".to_owned(), 2), ("rel/b".to_owned(), 3)]);
    p.publish_json("rel/a", json!({"a": 6})).await;
    let (got, id) = offsets(&mut s, 1).await;
    assert_eq!(got, [("rel/a".to_owned(), 6)], "live after the replay, nothing twice");
    drop(s);

    // The same position as a query parameter (a page that kept the id); nothing missed, so
    // nothing replayed.
    let mut s = sse(&hub, &format!("{path}&last_event_id={id}"), &[("Authorization", &auth)]).await;
    assert_eq!(s.next_of("subscribed").await.json()["replayed"], 0);
    assert_eq!(s.next_of("subscribed").await.json()["replayed"], 0);
    p.publish_json("rel/b", json!({"b": 4})).await;
    assert_eq!(offsets(&mut s, 1).await.0, [("rel/b".to_owned(), 4)]);
    hub.shutdown().await;
}

#[tokio::test]
async fn sse_bad_requests_get_the_documented_json_errors_and_the_hub_stays_healthy() {
    let mut config = test_config();
    config.limits.max_subscriptions_per_connection = 2;
    let hub = spawn_hub(config).await;
    let good = bearer(&hub.token("u"));
    let expired = hub
        .sessions
        .mint(
            &MintRequest { subject: "u".into(), subscribe: vec![">".into()], publish: vec![], ttl_secs: 60 },
            hub.now().unix_secs() - 3600,
        )
        .unwrap()
        .token;
    let narrow = bearer(&hub.token_with("n", &["allowed/>"], &[], 3600));
    // (path, headers, status, code, a word of the message)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        ("/v1/sse?topics=t", vec![], 401, "unauthenticated", "missing_token"),
        ("/v1/sse?topics=t", vec![("Authorization", "Bearer garbage".into())], 401, "unauthenticated", "malformed"),
        ("/v1/sse?topics=t&access_token=garbage", vec![], 401, "unauthenticated", "malformed"),
        ("/v1/sse?topics=t", vec![("Authorization", bearer(&expired))], 401, "unauthenticated", "expired"),
        ("/v1/sse?topics=a//b", vec![("Authorization", good.clone())], 400, "invalid_argument", "invalid topic"),
        ("/v1/sse", vec![("Authorization", good.clone())], 400, "invalid_argument", "topics"),
        ("/v1/sse?topics=", vec![("Authorization", good.clone())], 400, "invalid_argument", "topics"),
        ("/v1/sse?topics=a,a", vec![("Authorization", good.clone())], 400, "invalid_argument", "twice"),
        ("/v1/sse?topics=a,b,c", vec![("Authorization", good.clone())], 429, "resource_exhausted", "max_sub"),
        ("/v1/sse?topics=allowed/x,other", vec![("Authorization", narrow)], 403, "permission_denied", "other"),
        (
            "/v1/sse?topics=a",
            vec![("Authorization", good.clone()), ("Last-Event-ID", "nope".into())],
            400,
            "invalid_argument",
            "Last-Event-ID",
        ),
        (
            "/v1/sse?topics=a,b",
            vec![("Authorization", good.clone()), ("Last-Event-ID", "5:1".into())],
            400,
            "invalid_argument",
            "1 positions for 2 topics",
        ),
        ("/v1/sse?topics=a&last_event_id=1:x", vec![("Authorization", good.clone())], 400, "invalid_argument", "epoch"),
    ];
    for (path, headers, status, code, needle) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let Err((got, body)) = sse_open(&hub, path, &h).await else { panic!("{path} {headers:?} was not refused") };
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{path}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(needle), "{path}: {message:?} should mention {needle:?}");
    }
    let stats = hub.manager.connection_stats();
    assert_eq!(stats.active_connections, 0, "nothing was registered");
    assert!(stats.auth_failures["expired"] >= 1 && stats.auth_failures["missing_token"] >= 1);
    assert_eq!(http(hub.addr, "GET", "/healthz", &[], "").await.status, 200);
    let mut s = sse(&hub, "/v1/sse?topics=a", &[("Authorization", &good)]).await;
    assert_eq!(s.next_of("subscribed").await.json()["topic"], "a");
    hub.shutdown().await;
}

#[tokio::test]
async fn sse_keepalive_comments_arrive_while_nothing_is_published() {
    let mut config = test_config();
    config.session.ping_interval_ms = 100;
    let hub = spawn_hub(config).await;
    let mut s = sse(&hub, "/v1/sse?topics=quiet", &[("Authorization", &bearer(&hub.token("k")))]).await;
    let mut comments = 0;
    while comments < 3 {
        match s.next_item().await.expect("stream ended") {
            Item::Comment(c) => {
                assert_eq!(c, "keep-alive");
                comments += 1;
            }
            Item::Event(e) => assert_ne!(e.event, "message", "nothing was published"),
        }
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn sse_connection_is_listed_as_protocol_sse_and_leaves_when_the_client_hangs_up() {
    let mut config = test_config();
    config.session.ping_interval_ms = 100;
    let hub = spawn_hub(config).await;
    let mut s = sse(&hub, "/v1/sse?topics=x/y", &[("Authorization", &bearer(&hub.token("lister")))]).await;
    let id = s.next_of("welcome").await.json()["conn_id"].as_u64().unwrap();
    s.next_of("subscribed").await;
    let list = admin(&hub, "GET", "/v1/admin/connections?protocol=sse", "").await.json();
    assert_eq!(list["total"], 1, "{list}");
    let row = &list["items"][0];
    assert_eq!((row["id"].as_u64(), row["protocol"].as_str()), (Some(id), Some("sse")));
    assert_eq!((row["subject"].as_str(), row["subscriptions"].as_u64()), (Some("lister"), Some(1)));
    let stats = admin(&hub, "GET", "/v1/admin/stats", "").await.json();
    assert_eq!(stats["connections_by_protocol"]["sse"], 1, "{stats}");
    let metrics = admin(&hub, "GET", "/metrics", "").await.body;
    assert!(metrics.contains("protocol=\"sse\""), "metrics count SSE connections");

    drop(s);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let list = admin(&hub, "GET", "/v1/admin/connections", "").await.json();
        if list["total"] == 0 && hub.manager.connection_stats().active_connections == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the SSE connection outlived its client: {list}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn sse_kick_from_the_admin_api_ends_the_stream_with_a_bye_event() {
    let hub = spawn_hub(test_config()).await;
    let mut s = sse(&hub, "/v1/sse?topics=k/t", &[("Authorization", &bearer(&hub.token("kicked")))]).await;
    let id = s.next_of("welcome").await.json()["conn_id"].as_u64().unwrap();
    s.next_of("subscribed").await;
    assert_eq!(admin(&hub, "DELETE", &format!("/v1/admin/connections/{id}"), "").await.status, 200);
    let bye = s.next_of("bye").await.json();
    assert_eq!((bye["reason"].as_str(), bye["code"].as_u64()), (Some("kicked"), Some(4005)), "{bye}");
    assert!(s.next_item().await.is_none(), "the stream ends after the bye");
    hub.eventually("the kicked connection is gone", |m| m.client_info(ConnId(id)).is_none()).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn sse_shutdown_delivers_what_is_queued_then_a_bye_event_advising_reconnect() {
    let mut config = test_config();
    config.server.reconnect_urls = vec!["ws://other.example:8080/ws".into()];
    let mut hub = spawn_hub(config).await;
    let mut s = sse(&hub, "/v1/sse?topics=sd/t", &[("Authorization", &bearer(&hub.token("sd")))]).await;
    s.next_of("subscribed").await;
    let mut p = hub.connect("p").await;
    p.publish_json("sd/t", json!("before")).await;
    hub.begin_shutdown();
    assert_eq!(s.messages(1).await[0].json()["data"], "before");
    let bye = s.next_of("bye").await.json();
    assert_eq!((bye["reason"].as_str(), bye["code"].as_u64()), (Some("shutdown"), Some(1001)), "{bye}");
    assert_eq!(bye["reconnect"], json!(["ws://other.example:8080/ws"]));
    assert!(s.next_item().await.is_none(), "the stream ends after the bye");
    hub.wait_stopped().await;
}

#[tokio::test]
async fn sse_subscribe_refused_after_the_stream_started_is_an_error_event_then_a_bye() {
    let mut config = test_config();
    config.topics.allow_undeclared = false;
    declare_topics(&mut config, "known/>", reliable(64), None);
    let hub = spawn_hub(config).await;
    let mut s = sse(&hub, "/v1/sse?topics=known/a,unknown", &[("Authorization", &bearer(&hub.token("e")))]).await;
    let err = s.next_of("error").await.json();
    assert_eq!((err["code"].as_str(), err["topic"].as_str()), (Some("not_found"), Some("unknown")), "{err}");
    let bye = s.next_of("bye").await.json();
    assert_eq!(bye["reason"], "normal", "{bye}");
    assert!(s.next_item().await.is_none());
    hub.eventually("the connection is gone", |m| m.connection_stats().active_connections == 0).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn sse_slow_client_is_disconnected_by_the_policy_without_slowing_a_websocket_subscriber() {
    const MESSAGES: u64 = 200;
    const CHUNK: u64 = 16;
    const SIZE: usize = 64 * 1024;
    let mut config = test_config();
    declare_topics(
        &mut config,
        "slow/>",
        DeliveryPolicy::Reliable {
            queue_messages: 32,
            queue_bytes: 1 << 30,
            overflow: ReliableOverflow::Disconnect,
            backpressure_timeout_ms: 0,
        },
        Some(HistoryLimits { max_messages: 0, ..Default::default() }),
    );
    let hub = spawn_hub(config).await;
    let mut stuck = sse(&hub, "/v1/sse?topics=slow/t", &[("Authorization", &bearer(&hub.token("stuck")))]).await;
    let stuck_id = ConnId(stuck.next_of("welcome").await.json()["conn_id"].as_u64().unwrap());
    stuck.next_of("subscribed").await;
    // From here on the SSE client reads nothing.
    let mut reader = hub.connect("reader").await;
    reader.subscribe("slow/t").await;
    let topic = fanhub::hub::TopicName::new("slow/t").unwrap();
    for chunk in 0..MESSAGES / CHUNK {
        for _ in 0..CHUNK {
            hub.manager.route_data(&topic, &vec![7u8; SIZE], 0, now()).unwrap();
        }
        // Paced by the WebSocket reader only: it must never be behind because of the stuck one.
        let got = reader.records(CHUNK as usize).await;
        assert_eq!(got.last().unwrap().offset, (chunk + 1) * CHUNK);
    }
    assert_eq!(hub.manager.connection_stats().slow_consumer_disconnects, 1);
    hub.eventually("the stuck SSE client is unregistered", |m| m.client_info(stuck_id).is_none()).await;
    // Its HTTP connection is dropped once the close timeout has passed with nothing read.
    let drained = async {
        let mut buf = vec![0u8; 256 * 1024];
        while matches!(stuck.tcp.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::time::timeout(TIMEOUT, drained).await.expect("the stuck client's connection was never closed");
    hub.eventually("no SSE connection left", no_sse).await;
    hub.shutdown().await;
}

async fn line(lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>) -> String {
    let next = tokio::time::timeout(TIMEOUT, lines.next_line()).await.expect("curl hung");
    next.unwrap().expect("curl ended early")
}

#[tokio::test]
async fn sse_curl_receives_events() {
    let mut config = test_config();
    // A peer that hangs up is noticed at the next write: a keep-alive comment at the latest.
    config.session.ping_interval_ms = 100;
    let hub = spawn_hub(config).await;
    let token = hub.token("curl");
    let url = format!("http://{}/v1/sse?topics=curl/t", hub.addr);
    let mut child = tokio::process::Command::new("curl")
        .args(["-N", "-s", "--max-time", "30", "-H", &format!("Authorization: Bearer {token}"), &url])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("curl runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    while line(&mut lines).await != "event: subscribed" {}
    let mut p = hub.connect("p").await;
    for i in 1..=3 {
        p.publish_json("curl/t", json!({"n": i})).await;
    }
    let mut data = Vec::new();
    while data.len() < 3 {
        let line = line(&mut lines).await;
        if let Some(d) = line.strip_prefix("data: ").filter(|d| d.contains("\"encoding\"")) {
            data.push(serde_json::from_str::<Value>(d).unwrap());
        }
    }
    assert_eq!(data.iter().map(|d| d["data"]["n"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3]);
    child.kill().await.unwrap();
    hub.eventually("curl's connection is gone", no_sse).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn sse_eventsource_in_chromium_receives_records_and_resumes_once_after_a_reconnect() {
    let hub = spawn_hub(resumable_config()).await;
    let base = format!("http://{}", hub.addr);
    let admin_url = format!("http://{}", hub.admin);
    let token = hub.token("browser");
    browser_script("sse.mjs", &[&base, &admin_url, &token, API_KEY, ADMIN_TOKEN]).await;
    hub.shutdown().await;
}
