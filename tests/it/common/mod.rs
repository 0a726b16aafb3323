//! Shared integration-test harness: a real server on ephemeral ports and a real, independent
//! WebSocket client (tokio-tungstenite). Every wait has a timeout that only guards against
//! hangs; no test sleeps to wait for an event.
#![allow(dead_code)]

mod proxy;
mod sources;
#[allow(unused_imports)] // used by the client tests (feature `client`)
pub use proxy::Proxy;
pub use sources::*;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fanhub::auth::{MintRequest, SessionManager};
use fanhub::clock::{Clock, ManualClock};
use fanhub::config::Config;
use fanhub::hub::ConnectionManager;
use fanhub::protocol::frame::decode_records;
use fanhub::{Listeners, Server};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The current time on the system clock (for calls into the hub from a test).
pub fn now() -> fanhub::hub::Now {
    fanhub::clock::Clock::System.now()
}

/// Wall-clock µs since the UNIX epoch.
pub fn unix_us() -> i64 {
    now().unix_us
}

/// Wall-clock ms since the UNIX epoch.
pub fn unix_ms() -> u64 {
    now().unix_ms()
}

/// Guard against hangs only.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const API_KEY: &str = "test-api-key";

/// `Authorization` header with the test admin token.
pub const ADMIN_AUTH: (&str, &str) = ("Authorization", "Bearer test-admin-token");

/// A request to the admin listener with the admin token.
pub async fn admin(hub: &Hub, method: &str, path: &str, body: &str) -> HttpResponse {
    http(hub.admin, method, path, &[ADMIN_AUTH], body).await
}

/// Declares `pattern` with `policy` and `history` (the default history when `None`).
pub fn declare_topics(
    config: &mut Config,
    pattern: &str,
    policy: fanhub::hub::DeliveryPolicy,
    history: Option<fanhub::hub::HistoryLimits>,
) {
    config.topics.declare.push(fanhub::hub::TopicDecl {
        pattern: pattern.into(),
        policy: Some(policy),
        history,
        max_subscribers: None,
        publishers: None,
        description: None,
    });
}

/// A `reliable` policy that disconnects subscribers past `queue_messages`.
pub fn reliable(queue_messages: u32) -> fanhub::hub::DeliveryPolicy {
    fanhub::hub::DeliveryPolicy::Reliable {
        queue_messages,
        queue_bytes: 1 << 30,
        overflow: fanhub::hub::ReliableOverflow::Disconnect,
        backpressure_timeout_ms: 1000,
    }
}

/// [`test_config`] with `rel/>` `reliable` and a history of 100 000 messages: a client that
/// resumes gets everything it missed.
pub fn resumable_config() -> Config {
    let mut config = test_config();
    declare_topics(
        &mut config,
        "rel/>",
        reliable(100_000),
        Some(fanhub::hub::HistoryLimits { max_messages: 100_000, ..Default::default() }),
    );
    config
}

/// A configuration for tests: development secret, admin token and API key set.
pub fn test_config() -> Config {
    let mut c = Config::default();
    c.auth.admin_tokens = vec![ADMIN_TOKEN.into()];
    c.auth.api_keys = vec![API_KEY.into()];
    c.server.shutdown_grace_ms = 2000;
    c.session.close_timeout_ms = 1000;
    // The demo publisher stays off unless a test is about it (its events would count).
    c.demo.enabled = Some(false);
    c
}

/// The WebRTC tests' configuration: `rel/>` is `reliable`; everything else is best-effort.
pub fn rtc_config() -> Config {
    let mut c = test_config();
    c.topics.declare = vec![serde_json::from_value(json!({
        "pattern": "rel/>", "policy": {"kind": "reliable"}
    }))
    .unwrap()];
    c
}

/// A frame whose bytes depend on its index and size, so any corruption shows.
pub fn frame(i: usize, size: usize) -> Vec<u8> {
    (0..size).map(|j| ((j * 31 + i * 7) % 251) as u8).collect()
}

pub struct Hub {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The raw TCP transport's address, when the configuration turns it on (`tcp.listen`).
    pub tcp: Option<SocketAddr>,
    pub manager: Arc<ConnectionManager>,
    pub sessions: Arc<SessionManager>,
    /// The hub's clock: the system's, or a manual one the test advances.
    pub clock: Clock,
    manual: Option<Arc<ManualClock>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), fanhub::server::ServerError>>>,
}

/// A hub on the system clock.
pub async fn spawn_hub(config: Config) -> Hub {
    spawn_hub_on(config, Clock::System, None).await
}

/// A hub whose time moves only when the test calls [`Hub::advance`]: timeouts, keep-alive,
/// token expiry and rate limits are tested by advancing it, never by sleeping.
pub async fn spawn_hub_manual(config: Config) -> Hub {
    let (clock, handle) = Clock::manual();
    spawn_hub_on(config, clock, Some(handle)).await
}

async fn spawn_hub_on(config: Config, clock: Clock, manual: Option<Arc<ManualClock>>) -> Hub {
    let mut listeners = Listeners::ephemeral().await.expect("bind");
    listeners.tcp = config.tcp.listen.map(|a| fanhub::server::listen(a).expect("bind tcp"));
    let tcp = listeners.tcp.as_ref().map(|l| l.local_addr().unwrap());
    let addr = listeners.public.local_addr().unwrap();
    let admin = listeners.admin.local_addr().unwrap();
    let server = Server::with_clock(config, &listeners, clock.clone()).expect("server");
    let manager = server.manager();
    let sessions = server.sessions();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(listeners, async move {
        let _ = rx.await;
    }));
    Hub { addr, admin, tcp, manager, sessions, clock, manual, stop: Some(tx), task: Some(task) }
}

impl Hub {
    /// The hub's time.
    pub fn now(&self) -> fanhub::hub::Now {
        self.clock.now()
    }

    /// Moves a manual hub's clock forward (its timers fire).
    pub fn advance(&self, by: Duration) {
        self.manual.as_ref().expect("a hub from spawn_hub_manual").advance(by);
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// A token for `sub` allowed everything.
    pub fn token(&self, sub: &str) -> String {
        self.token_with(sub, &[">"], &[">"], 3600)
    }

    pub fn token_with(&self, sub: &str, subscribe: &[&str], publish: &[&str], ttl_secs: u64) -> String {
        self.sessions
            .mint(
                &MintRequest {
                    subject: sub.into(),
                    subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
                    publish: publish.iter().map(|s| s.to_string()).collect(),
                    ttl_secs,
                },
                self.now().unix_secs(),
            )
            .unwrap()
            .token
    }

    /// Opens a WebSocket (subprotocol fanhub.v1) without sending anything.
    pub async fn open(&self) -> Client {
        Client::open(&self.ws_url(), &[]).await
    }

    /// Opens and connects as `sub` (all topics allowed).
    pub async fn connect(&self, sub: &str) -> Client {
        let token = self.token(sub);
        self.connect_with(json!({"op": "connect", "token": token})).await
    }

    /// Opens and sends `connect_msg`, expecting a welcome.
    pub async fn connect_with(&self, connect_msg: Value) -> Client {
        let mut c = self.open().await;
        let mut msg = connect_msg;
        msg["id"] = json!(0);
        c.send_json(msg).await;
        let w = c.reply(0).await;
        assert_eq!(w["type"], "welcome", "connect failed: {w}");
        c.welcome = w;
        c
    }

    /// Waits (bounded) until `f` holds, polling hub state — for facts only visible inside.
    pub async fn eventually(&self, what: &str, f: impl Fn(&ConnectionManager) -> bool) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while !f(&self.manager) {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(TIMEOUT, t).await.expect("shutdown hung").expect("join").expect("run");
        }
    }

    /// Starts shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    pub async fn wait_stopped(mut self) {
        if let Some(t) = self.task.take() {
            tokio::time::timeout(TIMEOUT, t).await.expect("shutdown hung").expect("join").expect("run");
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub offset: u64,
    pub epoch: u64,
    pub flags: u8,
    /// The metadata block (messages from upstream sources).
    pub meta: Option<Value>,
    pub payload: Vec<u8>,
}

impl From<&fanhub::protocol::frame::RecordRef<'_>> for Record {
    fn from(r: &fanhub::protocol::frame::RecordRef<'_>) -> Self {
        Record {
            topic: r.topic.into(),
            offset: r.offset,
            epoch: r.epoch,
            flags: r.flags,
            meta: r.meta.map(|m| serde_json::from_str(m).expect("record metadata is JSON")),
            payload: r.payload.to_vec(),
        }
    }
}

/// How the server ended the connection.
#[derive(Debug)]
pub struct Closed {
    pub code: Option<u16>,
    pub reason: String,
    /// Control messages seen before the close (e.g. error, bye, reconnect).
    pub messages: Vec<Value>,
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub welcome: Value,
    json: VecDeque<Value>,
    records: VecDeque<Record>,
    next_id: u64,
}

impl Client {
    pub async fn open(url: &str, extra_headers: &[(&str, &str)]) -> Client {
        Self::try_open(url, extra_headers).await.expect("connect")
    }

    /// Opens a WebSocket, returning the handshake error instead of panicking.
    pub async fn try_open(
        url: &str,
        extra_headers: &[(&str, &str)],
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        Self::try_open_with(url, extra_headers, None).await
    }

    #[cfg(feature = "tls")]
    /// Opens a `wss://` WebSocket with `tls` (rustls, trusting the test CA), returning the
    /// handshake error instead of panicking.
    pub async fn try_open_tls(
        url: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        Self::try_open_with(url, &[], Some(tokio_tungstenite::Connector::Rustls(tls))).await
    }

    async fn try_open_with(
        url: &str,
        extra_headers: &[(&str, &str)],
        connector: Option<tokio_tungstenite::Connector>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert("Sec-WebSocket-Protocol", "fanhub.v1".parse().unwrap());
        for (k, v) in extra_headers {
            let name: tokio_tungstenite::tungstenite::http::HeaderName = k.parse().unwrap();
            req.headers_mut().insert(name, v.parse().unwrap());
        }
        let (ws, resp) = tokio::time::timeout(
            TIMEOUT,
            tokio_tungstenite::connect_async_tls_with_config(req, None, false, connector),
        )
        .await
        .expect("connect hung")?;
        assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), "fanhub.v1");
        Ok(Client { ws, welcome: Value::Null, json: VecDeque::new(), records: VecDeque::new(), next_id: 1000 })
    }

    pub async fn send_json(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.expect("send");
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }

    /// Reads one frame into the buffers. Returns Err(Closed) when the connection ends.
    async fn pump(&mut self) -> Result<(), Closed> {
        let msg = tokio::time::timeout(TIMEOUT, self.ws.next()).await.expect("timed out waiting for the server");
        match msg {
            Some(Ok(Message::Text(t))) => {
                self.json.push_back(serde_json::from_str(&t).expect("server sent invalid JSON"));
                Ok(())
            }
            Some(Ok(Message::Binary(b))) => {
                for r in decode_records(&b) {
                    let r = r.expect("server sent a malformed record");
                    self.records.push_back(Record::from(&r));
                }
                Ok(())
            }
            Some(Ok(Message::Close(frame))) => Err(self.closed(frame)),
            Some(Ok(_)) => Ok(()),
            Some(Err(_)) | None => Err(self.closed(None)),
        }
    }

    fn closed(&mut self, frame: Option<CloseFrame>) -> Closed {
        Closed {
            code: frame.as_ref().map(|f| u16::from(f.code)),
            reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
            messages: self.json.drain(..).collect(),
        }
    }

    /// Next control message.
    pub async fn next_json(&mut self) -> Value {
        loop {
            if let Some(v) = self.json.pop_front() {
                return v;
            }
            if let Err(c) = self.pump().await {
                panic!("connection closed while waiting for a control message: {c:?}");
            }
        }
    }

    /// Next control message of `ty`, skipping others (pings, time sync requests…).
    pub async fn next_of_type(&mut self, ty: &str) -> Value {
        let wait = async {
            loop {
                if let Some(pos) = self.json.iter().position(|v| v["type"] == ty) {
                    return self.json.remove(pos).unwrap();
                }
                if let Err(c) = self.pump().await {
                    panic!("connection closed while waiting for {ty}: {c:?}");
                }
            }
        };
        tokio::time::timeout(TIMEOUT, wait).await.unwrap_or_else(|_| panic!("timed out waiting for {ty}"))
    }

    /// The control message answering request `id`.
    pub async fn reply(&mut self, id: u64) -> Value {
        let wait = async {
            loop {
                if let Some(pos) = self.json.iter().position(|v| v["id"] == id) {
                    return self.json.remove(pos).unwrap();
                }
                if let Err(c) = self.pump().await {
                    panic!("connection closed while waiting for reply {id}: {c:?}");
                }
            }
        };
        tokio::time::timeout(TIMEOUT, wait).await.unwrap_or_else(|_| panic!("timed out waiting for reply {id}"))
    }

    /// Sends `msg` with a fresh id and returns the reply.
    pub async fn request(&mut self, mut msg: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        msg["id"] = json!(id);
        self.send_json(msg).await;
        self.reply(id).await
    }

    pub async fn subscribe(&mut self, topic: &str) -> Value {
        let r = self.request(json!({"op": "subscribe", "topic": topic})).await;
        assert_eq!(r["type"], "subscribed", "{r}");
        r
    }

    pub async fn subscribe_from(&mut self, topic: &str, offset: u64) -> Value {
        let r = self.request(json!({"op": "subscribe", "topic": topic, "offset": offset})).await;
        assert_eq!(r["type"], "subscribed", "{r}");
        r
    }

    /// Publishes JSON `data` and returns the assigned offset.
    pub async fn publish_json(&mut self, topic: &str, data: Value) -> u64 {
        let r = self.request(json!({"op": "publish", "topic": topic, "data": data})).await;
        assert_eq!(r["type"], "published", "{r}");
        r["offset"].as_u64().unwrap()
    }

    /// Publishes bytes with the binary frame (acknowledged).
    pub async fn publish_bin(&mut self, topic: &str, payload: &[u8]) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let frame = fanhub::protocol::frame::encode_publish(topic, id as u32, 0, payload);
        self.ws.send(Message::binary(frame)).await.expect("send");
        let r = self.reply(id).await;
        assert_eq!(r["type"], "published", "{r}");
        r["offset"].as_u64().unwrap()
    }

    /// Publishes bytes with the binary frame, no acknowledgement.
    pub async fn publish_bin_noack(&mut self, topic: &str, payload: &[u8]) {
        let frame = fanhub::protocol::frame::encode_publish(topic, 0, 0, payload);
        self.ws.send(Message::binary(frame)).await.expect("send");
    }

    pub async fn next_record(&mut self) -> Record {
        loop {
            if let Some(r) = self.records.pop_front() {
                return r;
            }
            if let Err(c) = self.pump().await {
                panic!("connection closed while waiting for a record: {c:?}");
            }
        }
    }

    pub async fn records(&mut self, n: usize) -> Vec<Record> {
        let mut out = Vec::with_capacity(n);
        let wait = async {
            while out.len() < n {
                out.push(self.next_record().await);
            }
        };
        if tokio::time::timeout(TIMEOUT * 3, wait).await.is_err() {
            panic!("timed out waiting for {n} records");
        }
        out
    }

    /// Records received so far without waiting.
    pub fn buffered_records(&mut self) -> Vec<Record> {
        self.records.drain(..).collect()
    }

    /// Reads until the server closes; returns how (records are discarded).
    pub async fn expect_close(&mut self) -> Closed {
        loop {
            if let Err(c) = self.pump().await {
                return c;
            }
        }
    }

    /// Reads until the server closes, keeping records too.
    pub async fn read_until_close(&mut self) -> (Vec<Record>, Closed) {
        loop {
            if let Err(c) = self.pump().await {
                return (self.records.drain(..).collect(), c);
            }
        }
    }

    /// Sends a ping op and waits for the pong: proves the connection is alive and every
    /// earlier reply has been read.
    pub async fn assert_alive(&mut self) {
        let r = self.request(json!({"op": "ping"})).await;
        assert_eq!(r["type"], "pong", "{r}");
    }
}

// ---- plain HTTP/1.1, spoken by hand (no HTTP client dependency) ----

/// A response read by [`http`].
pub struct HttpResponse {
    pub status: u16,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), read to the end.
pub async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", addr);
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" || method == "PUT" || !body.is_empty() {
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    http_raw(addr, &req).await
}

/// Sends `request` (a complete HTTP/1.1 request) on a fresh connection and reads the response
/// to the end.
pub async fn http_raw(addr: SocketAddr, request: &str) -> HttpResponse {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut raw)).await.expect("response hung").unwrap();
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header/body separator");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    HttpResponse { status, headers, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").expect("chunk size line");
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

// ---- a private redis-server per test ----

/// A `redis-server` on a free loopback port, without persistence, killed on drop. `restart`
/// kills it and starts a fresh one on the same port (everything in it is lost).
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
    /// Where an append-only file keeps the data across restarts ([`Self::start_persistent`]).
    dir: Option<std::path::PathBuf>,
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An empty scratch directory for a private server of `kind` on `port` (the caller removes it
/// when done).
pub fn scratch_dir(kind: &str, port: u16) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fanhub-{kind}-{port}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        let port = free_port();
        let mut s = RedisServer { port, child: None, dir: None };
        s.spawn().await;
        s
    }

    /// A `redis-server` that writes every command to an append-only file (fsync always): a
    /// restart keeps everything, as a production upstream does.
    pub async fn start_persistent() -> RedisServer {
        let port = free_port();
        let dir = scratch_dir("redis", port);
        let mut s = RedisServer { port, child: None, dir: Some(dir) };
        s.spawn().await;
        s
    }

    /// A free port for a Redis that is not running yet ([`Self::restart`] starts it).
    pub fn not_started() -> RedisServer {
        let port = free_port();
        RedisServer { port, child: None, dir: None }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut args = vec!["--port", &port, "--bind", "127.0.0.1", "--save", ""];
        let dir = self.dir.as_ref().map(|d| d.to_string_lossy().into_owned());
        match &dir {
            Some(d) => args.extend(["--appendonly", "yes", "--appendfsync", "always", "--dir", d.as_str()]),
            None => args.extend(["--appendonly", "no"]),
        }
        let child = std::process::Command::new("redis-server")
            .args(&args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (the test command installs it)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", self.port)).await {
                let mut buf = [0u8; 7];
                if tcp.write_all(b"PING\r\n").await.is_ok()
                    && tcp.read_exact(&mut buf).await.is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A Redis Streams source named `fleet` at `url` with one mapping, stream `upstream` → hub topic
/// `topic`, as an operator writes it (the parser fills in the defaults: headers copied into the
/// metadata, groups created at the stream's start).
pub fn redis_source(url: &str, upstream: &str, topic: &str) -> fanhub::config::SourceConfig {
    source_of("redis", url, "", vec![mapping(upstream, topic)])
}

/// Runs `web-demo/tests/{script}` with Node (piped stdout and stderr, killed when dropped): the
/// headless-Chromium tests' driver scripts.
pub fn node_script(script: &str, args: &[&str]) -> tokio::process::Child {
    let script = format!("web-demo/tests/{script}");
    let mut all = vec![script.as_str()];
    all.extend_from_slice(args);
    node_command(&all)
}

/// Runs the headless-Chromium driver `web-demo/tests/{script} {args…}` and panics with its
/// output unless it exits 0. The limit is longer than the scripts' own 30 s guard: they report
/// their failure themselves.
pub async fn browser_script(script: &str, args: &[&str]) {
    let hint = "web-demo/ci-setup.sh installs Chromium and playwright-core";
    node_ok(script, node_script(script, args), Duration::from_secs(60), hint).await;
}

/// A configuration with the demo publisher on (two vehicles at 50 Hz, video at 30 fps).
pub fn demo_config() -> Config {
    let mut c = test_config();
    c.demo.enabled = Some(true);
    c.demo.vehicles = 2;
    c.demo.rate_hz = 50;
    c.demo.video_fps = 30;
    c
}

/// Waits for a `node` child (from [`node_command`] or [`node_script`]) up to `limit`; panics with
/// its output unless it exits 0 (`hint` says what installs its needs), else prints the output.
pub async fn node_ok(what: &str, child: tokio::process::Child, limit: Duration, hint: &str) {
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} still running after {limit:?}"))
        .expect("wait for node");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed ({}); {hint}\n--- stdout\n{stdout}\n--- stderr\n{stderr}", out.status);
    println!("{what}:\n{stdout}{stderr}");
}

/// Runs `node {args…}` from the crate root (piped stdout and stderr, killed when dropped).
pub fn node_command(args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new("node")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node ({e}); run web-demo/ci-setup.sh"))
}

/// `der` as PEM text under `label` (`CERTIFICATE`, `PRIVATE KEY`).
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|l| std::str::from_utf8(l).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// A self-signed certificate for 127.0.0.1, as `cert.pem` and `key.pem` in a fresh temporary
/// directory (removed on drop).
pub struct SelfSigned {
    pub dir: std::path::PathBuf,
    pub der: Vec<u8>,
}

impl SelfSigned {
    pub fn new(name: &str) -> SelfSigned {
        let dir = std::env::temp_dir().join(format!("fanhub-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        std::fs::write(dir.join("cert.pem"), pem("CERTIFICATE", cert.cert.der())).unwrap();
        std::fs::write(dir.join("key.pem"), pem("PRIVATE KEY", &cert.signing_key.serialize_der())).unwrap();
        SelfSigned { dir, der: cert.cert.der().to_vec() }
    }

    pub fn cert_path(&self) -> std::path::PathBuf {
        self.dir.join("cert.pem")
    }

    pub fn key_path(&self) -> std::path::PathBuf {
        self.dir.join("key.pem")
    }
}

impl Drop for SelfSigned {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
