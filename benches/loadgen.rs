//! End-to-end load generator: S WebSocket subscribers on one topic, one publisher sending
//! P-byte messages as fast as a bounded in-flight window allows (or paced at a fixed rate).
//! Reports deliveries per second, latency p50/p99/p999 from timestamps embedded in the payload,
//! loss, and the server's CPU seconds (utime+stime from /proc, since load generator and server
//! share the machine). Speaks fanhub.v1 or the NATS text protocol over WebSocket, so the same
//! workload runs against nats-server in the same run (`deploy/bench.sh`).
//!
//! Cluster runs (`deploy/bench-cluster.sh`): several `--url`s spread the subscribers round-robin
//! over the nodes (the publisher uses the first), several `--server-pid`s sum the nodes' CPU, and
//! `--redis-pid` reports the Redis server's CPU in a last column of its own.
//!
//! `cargo bench --bench loadgen -- --target fanhub --url ws://127.0.0.1:8080/ws --token T
//!  --subs 1000 --size 256 --messages 500 --window 256 --server-pid PID`

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderValue, Uri};
use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_websockets::{Message, WebSocketStream};

#[path = "support/procfs.rs"]
mod procfs;
use procfs::{proc_cpu_secs, proc_rss_kb};

#[derive(Parser, Clone)]
struct Args {
    /// `fanhub` or `nats`.
    #[arg(long, default_value = "fanhub")]
    target: String,
    /// WebSocket URL (loopback only). Repeatable or comma-separated: subscribers are spread
    /// round-robin over the URLs, the publisher uses the first.
    #[arg(long, required_unless_present = "prepare_upstream", value_delimiter = ',')]
    url: Vec<String>,
    /// fanhub token.
    #[arg(long, default_value = "")]
    token: String,
    /// Subscribers.
    #[arg(long, default_value_t = 1000)]
    subs: usize,
    /// Payload bytes (at least 16: index and send time are embedded).
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Messages to publish.
    #[arg(long, default_value_t = 500)]
    messages: u64,
    /// Most messages in flight (published, not yet received by every subscriber).
    #[arg(long, default_value_t = 256)]
    window: u64,
    /// Publish at this many messages per second instead of the window.
    #[arg(long)]
    rate: Option<u64>,
    /// Server process id, for CPU and RSS. Repeatable or comma-separated: CPU and RSS are
    /// summed over the processes.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Redis server process id: its CPU seconds get a column of their own (the last one).
    #[arg(long)]
    redis_pid: Option<u32>,
    /// Only open and hold `subs` subscribed connections, and report server RSS per connection.
    #[arg(long)]
    idle: bool,
    /// Spread connections over source addresses 127.0.0.1 ..= 127.0.0.N.
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// Runtime worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Give up waiting for deliveries after this long.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Label of the result row.
    #[arg(long, default_value = "")]
    label: String,
    /// fanhub subscribers: `raw` (a minimal WebSocket reader, as thin as the NATS one), `sdk`
    /// (`fanhub::client`: resume tracking, dedupe, a task per connection and a channel per
    /// subscription), to measure what the client costs, `sse` (server-sent events,
    /// `GET /v1/sse`, read with hyper) or `tcp` (the raw TCP transport at `--tcp`), to measure
    /// what those transports cost the hub.
    #[arg(long, default_value = "raw")]
    client: String,
    /// The hub's raw TCP listener, for `--client tcp` (the publisher stays on the WebSocket).
    #[arg(long)]
    tcp: Option<SocketAddr>,
    /// Publish upstream instead of over the WebSocket, to what the hub consumes as a source into
    /// `bench/load`: `redis://…` — `XADD` to the stream `bench` (field `payload`); `nats://…` —
    /// a JetStream publish to `bench.load` (stream `BENCH`, created if absent); `postgres://…` —
    /// rows of `fanhub_bench_outbox` (topic `bench.load`; the table and its notification
    /// trigger created if absent) in one `INSERT` per batch; `kafka://…` (built with the `kafka`
    /// feature) — records of the topic `bench.load` (one partition, created if absent). Up to
    /// 64 at a time, acknowledged by the upstream. Latency is then produce-to-subscriber.
    #[arg(long)]
    upstream: Option<String>,
    /// Only create what `--upstream` publishes to (stream, table, topic) and exit, so the hub's
    /// source finds it when it starts.
    #[arg(long, requires = "upstream")]
    prepare_upstream: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

type Ws = WebSocketStream<TcpStream>;

/// A subscribed connection.
enum Sub {
    /// The socket, and NATS bytes read past the handshake.
    Raw(Ws, BytesMut),
    /// The client and its subscription.
    Sdk(fanhub::client::Client, fanhub::client::Subscription),
    /// A server-sent events response body.
    Sse(hyper::body::Incoming),
    /// A raw TCP connection, and bytes read past the `subscribed` answer.
    Tcp(TcpStream, BytesMut),
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

async fn connect(url: &str, n: usize, sources: u8, protocol: Option<&'static str>) -> Ws {
    let uri: Uri = url.parse().expect("url");
    let host: Ipv4Addr = uri.host().expect("host").parse().expect("loopback IPv4 address");
    assert!(host.is_loopback(), "the load generator only targets loopback");
    let addr = SocketAddr::new(IpAddr::V4(host), uri.port_u16().unwrap_or(80));
    let sock = TcpSocket::new_v4().expect("socket");
    if sources > 1 {
        let src = Ipv4Addr::new(127, 0, 0, 1 + (n % sources as usize) as u8);
        sock.bind(SocketAddr::new(IpAddr::V4(src), 0)).expect("bind source");
    }
    let tcp = sock.connect(addr).await.expect("connect");
    tcp.set_nodelay(true).unwrap();
    let mut b = tokio_websockets::ClientBuilder::from_uri(uri);
    if let Some(p) = protocol {
        b = b.add_header(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p)).unwrap();
    }
    b.connect_on(tcp).await.expect("websocket handshake").0
}

async fn next_text(ws: &mut Ws) -> serde_json::Value {
    loop {
        let m = ws.next().await.expect("closed").expect("ws error");
        if let Some(t) = m.as_text() {
            return serde_json::from_str(t).unwrap();
        }
    }
}

/// Opens a subscribed connection; returns it ready.
async fn subscriber(args: &Args, n: usize) -> Sub {
    if args.target == "fanhub" && args.client == "sdk" {
        assert_eq!(args.sources, 1, "--client sdk connects from 127.0.0.1 only");
        let opts = fanhub::client::ClientOptions::new([sub_url(args, n)]).with_token(args.token.clone());
        let client = fanhub::client::Client::connect(opts).await.expect("client connect");
        let sub = client.subscribe(args_topic(args), fanhub::client::From::Live).await.expect("subscribe");
        return Sub::Sdk(client, sub);
    }
    if args.target == "fanhub" && args.client == "sse" {
        return sse_subscriber(args, n).await;
    }
    if args.target == "fanhub" && args.client == "tcp" {
        return tcp_subscriber(args, n).await;
    }
    let (ws, buf) = raw_subscriber(args, n).await;
    Sub::Raw(ws, buf)
}

/// `GET /v1/sse?topics=…` on the host of subscriber `n`'s URL; returns once the response head
/// is in (200), with the body still to read.
async fn sse_subscriber(args: &Args, n: usize) -> Sub {
    use http_body_util::Empty;
    let uri: Uri = sub_url(args, n).parse().expect("url");
    let host: Ipv4Addr = uri.host().expect("host").parse().expect("loopback IPv4 address");
    assert!(host.is_loopback(), "the load generator only targets loopback");
    let sock = TcpSocket::new_v4().expect("socket");
    if args.sources > 1 {
        let src = Ipv4Addr::new(127, 0, 0, 1 + (n % args.sources as usize) as u8);
        sock.bind(SocketAddr::new(IpAddr::V4(src), 0)).expect("bind source");
    }
    let tcp = sock.connect(SocketAddr::new(IpAddr::V4(host), uri.port_u16().unwrap_or(80))).await.expect("connect");
    tcp.set_nodelay(true).unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.expect("http handshake");
    tokio::spawn(conn);
    let req = axum::http::Request::get(format!("/v1/sse?topics={}", args_topic(args)))
        .header(header::HOST, uri.authority().expect("authority").as_str())
        .header(header::AUTHORIZATION, format!("Bearer {}", args.token))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.expect("GET /v1/sse");
    assert_eq!(resp.status(), 200, "GET /v1/sse");
    Sub::Sse(resp.into_body())
}

/// The raw TCP transport: version byte, Token datagram, `welcome`, `subscribe`, `subscribed`.
async fn tcp_subscriber(args: &Args, n: usize) -> Sub {
    use fanhub::protocol::tcp::{encode, Decoder, Kind, VERSION};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = args.tcp.expect("--client tcp needs --tcp ADDR");
    assert!(addr.ip().is_loopback(), "the load generator only targets loopback");
    let sock = TcpSocket::new_v4().expect("socket");
    if args.sources > 1 {
        let src = Ipv4Addr::new(127, 0, 0, 1 + (n % args.sources as usize) as u8);
        sock.bind(SocketAddr::new(IpAddr::V4(src), 0)).expect("bind source");
    }
    let mut tcp = sock.connect(addr).await.expect("connect");
    tcp.set_nodelay(true).unwrap();
    tcp.write_all(&[VERSION]).await.unwrap();
    tcp.write_all(&encode(Kind::Token, args.token.as_bytes())).await.unwrap();
    let subscribe = serde_json::json!({"op":"subscribe","id":1,"topic":args_topic(args)}).to_string();
    tcp.write_all(&encode(Kind::Control, subscribe.as_bytes())).await.unwrap();
    let dec = Decoder::new(64 << 20);
    let mut buf = BytesMut::new();
    loop {
        while let Some(d) = dec.decode(&mut buf).expect("datagram") {
            if d.kind != Kind::Control {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&d.payload).unwrap();
            match v["type"].as_str() {
                Some("welcome") => {}
                Some("subscribed") => return Sub::Tcp(tcp, buf),
                _ => panic!("unexpected answer {v}"),
            }
        }
        assert!(tcp.read_buf(&mut buf).await.expect("read") > 0, "closed before subscribed");
    }
}

/// The payloads of the record events in `buf` (whole events only; the rest stays).
fn sse_payloads(buf: &mut BytesMut, mut on_payload: impl FnMut(&[u8])) {
    use base64::Engine as _;
    while let Some(end) = find(buf, b"\n\n") {
        let event = buf.split_to(end + 2);
        // Records are the events without an `event:` line; their data is one JSON line here
        // (the payloads are binary, so base64).
        let Some(line) = event[..].split(|b| *b == b'\n').find(|l| l.starts_with(b"data: ")) else { continue };
        if event.starts_with(b"event:") || event.windows(7).any(|w| w == b"\nevent:") {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&line[6..]).expect("record JSON");
        let data = base64::engine::general_purpose::STANDARD.decode(v["data"].as_str().expect("base64 data")).unwrap();
        on_payload(&data);
    }
}

async fn raw_subscriber(args: &Args, n: usize) -> (Ws, BytesMut) {
    if args.target == "nats" {
        let mut ws = connect(sub_url(args, n), n, args.sources, None).await;
        let cmd = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"protocol\":1}}\r\nSUB {} 1\r\nPING\r\n",
            nats_subject(args)
        );
        ws.send(Message::binary(Bytes::from(cmd))).await.unwrap();
        let mut buf = BytesMut::new();
        loop {
            let m = ws.next().await.expect("closed").expect("ws error");
            buf.extend_from_slice(m.as_payload());
            if let Some(p) = find(&buf, b"PONG\r\n") {
                let _ = buf.split_to(p + 6);
                return (ws, buf);
            }
        }
    }
    let mut ws = connect(sub_url(args, n), n, args.sources, Some("fanhub.v1")).await;
    ws.send(Message::text(serde_json::json!({"op":"connect","token":args.token}).to_string())).await.unwrap();
    let w = next_text(&mut ws).await;
    assert_eq!(w["type"], "welcome", "{w}");
    ws.send(Message::text(serde_json::json!({"op":"subscribe","id":1,"topic":args_topic(args)}).to_string()))
        .await
        .unwrap();
    let s = next_text(&mut ws).await;
    assert_eq!(s["type"], "subscribed", "{s}");
    (ws, BytesMut::new())
}

/// The URL subscriber `n` connects to: round-robin over `--url`.
fn sub_url(args: &Args, n: usize) -> &str {
    &args.url[n % args.url.len()]
}

fn args_topic(_: &Args) -> &'static str {
    "bench/load"
}

fn nats_subject(_: &Args) -> &'static str {
    "bench.load"
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

struct Shared {
    receipts: Vec<AtomicU32>,
    received: AtomicU64,
    /// Deliveries per `--url` (for the loss report of multi-URL runs).
    per_url: Vec<AtomicU64>,
}

/// Reads deliveries until `expected` arrived or the connection ends; returns latencies in µs.
async fn receive(args: Arc<Args>, sub: Sub, shared: Arc<Shared>, expected: u64, url: usize) -> Vec<u32> {
    let mut lat = Vec::with_capacity(expected as usize);
    let mut got = 0;
    let on_payload = |p: &[u8], lat: &mut Vec<u32>| {
        let idx = u64::from_be_bytes(p[0..8].try_into().unwrap());
        let sent = u64::from_be_bytes(p[8..16].try_into().unwrap());
        lat.push(now_us().saturating_sub(sent).min(u32::MAX as u64) as u32);
        shared.receipts[idx as usize].fetch_add(1, Relaxed);
        shared.received.fetch_add(1, Relaxed);
        shared.per_url[url].fetch_add(1, Relaxed);
    };
    let (mut ws, mut buf) = match sub {
        Sub::Raw(ws, buf) => (ws, buf),
        Sub::Tcp(mut tcp, mut buf) => {
            use tokio::io::AsyncReadExt as _;
            let dec = fanhub::protocol::tcp::Decoder::new(64 << 20);
            while got < expected {
                while let Some(d) = dec.decode(&mut buf).expect("datagram") {
                    if d.kind == fanhub::protocol::tcp::Kind::Data {
                        for r in fanhub::protocol::frame::decode_records(&d.payload) {
                            on_payload(r.expect("record").payload, &mut lat);
                            got += 1;
                        }
                    }
                }
                if got >= expected || tcp.read_buf(&mut buf).await.map_or(true, |n| n == 0) {
                    break;
                }
            }
            return lat;
        }
        Sub::Sse(mut body) => {
            use http_body_util::BodyExt as _;
            let mut buf = BytesMut::new();
            while got < expected {
                let Some(Ok(frame)) = body.frame().await else { break };
                let Ok(data) = frame.into_data() else { continue };
                buf.extend_from_slice(&data);
                sse_payloads(&mut buf, |p| {
                    on_payload(p, &mut lat);
                    got += 1;
                });
            }
            return lat;
        }
        Sub::Sdk(_client, mut sub) => {
            while got < expected {
                match sub.next().await {
                    Some(fanhub::client::Event::Message(m)) => {
                        on_payload(&m.payload, &mut lat);
                        got += 1;
                    }
                    Some(fanhub::client::Event::Gap(g)) => eprintln!("loadgen: gap {g:?}"),
                    None => break,
                }
            }
            return lat;
        }
    };
    while got < expected {
        let Some(Ok(m)) = ws.next().await else { break };
        if args.target == "nats" {
            buf.extend_from_slice(m.as_payload());
            while let Some(eol) = find(&buf, b"\r\n") {
                if buf.starts_with(b"MSG ") {
                    let line = std::str::from_utf8(&buf[..eol]).unwrap();
                    let n: usize = line.rsplit(' ').next().unwrap().parse().unwrap();
                    if buf.len() < eol + 2 + n + 2 {
                        break;
                    }
                    on_payload(&buf[eol + 2..eol + 2 + n], &mut lat);
                    got += 1;
                    let _ = buf.split_to(eol + 2 + n + 2);
                } else {
                    if buf.starts_with(b"PING") {
                        ws.send(Message::binary(Bytes::from_static(b"PONG\r\n"))).await.unwrap();
                    }
                    let _ = buf.split_to(eol + 2);
                }
            }
        } else if m.is_binary() {
            for r in fanhub::protocol::frame::decode_records(m.as_payload()) {
                on_payload(r.expect("record").payload, &mut lat);
                got += 1;
            }
        }
    }
    lat
}

/// The payload of message `idx`: its index and send time, padded to `--size`.
fn payload(args: &Args, idx: u64) -> Vec<u8> {
    let mut payload = vec![0u8; args.size.max(16)];
    payload[0..8].copy_from_slice(&idx.to_be_bytes());
    payload[8..16].copy_from_slice(&now_us().to_be_bytes());
    payload
}

/// Where `--upstream` publishes.
enum Upstream {
    Redis(redis::aio::MultiplexedConnection),
    Nats(async_nats::jetstream::Context),
    /// The connection, and the paced inserts under way (each its own transaction, so a slow
    /// commit does not hold back the rate: the connection pipelines them).
    Postgres(Arc<tokio_postgres::Client>, Vec<tokio::task::JoinHandle<()>>),
    #[cfg(feature = "kafka")]
    Kafka(rdkafka::producer::FutureProducer),
}

/// The bench outbox, as an application would create it (the hub only reads it).
const BENCH_OUTBOX: &str = "
    CREATE TABLE IF NOT EXISTS fanhub_bench_outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, topic text NOT NULL, key text,
        headers jsonb, payload bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
    CREATE OR REPLACE FUNCTION fanhub_bench_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_notify('fanhub_bench_outbox', ''); RETURN NULL; END $$;
    CREATE OR REPLACE TRIGGER fanhub_bench_outbox_notify AFTER INSERT ON fanhub_bench_outbox
        FOR EACH STATEMENT EXECUTE FUNCTION fanhub_bench_outbox_notify();";

impl Upstream {
    async fn connect(url: &str) -> Self {
        if url.starts_with("nats://") {
            let client = async_nats::connect(url).await.expect("nats connect");
            let js = async_nats::jetstream::new(client);
            js.get_or_create_stream(async_nats::jetstream::stream::Config {
                name: "BENCH".into(),
                subjects: vec!["bench.>".into()],
                ..Default::default()
            })
            .await
            .expect("stream BENCH");
            Upstream::Nats(js)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (client, connection) =
                tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("postgres connect");
            tokio::spawn(connection);
            client.batch_execute(BENCH_OUTBOX).await.expect("bench outbox");
            Upstream::Postgres(Arc::new(client), Vec::new())
        } else if let Some(brokers) = url.strip_prefix("kafka://") {
            Self::kafka(brokers).await
        } else {
            Upstream::Redis(redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap())
        }
    }

    #[cfg(feature = "kafka")]
    async fn kafka(brokers: &str) -> Self {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        use rdkafka::ClientConfig;
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", brokers).create().expect("kafka admin");
        let topic = NewTopic::new("bench.load", 1, TopicReplication::Fixed(1));
        let created = admin.create_topics(&[topic], &AdminOptions::new()).await.expect("create topic");
        if let Err((name, e)) = &created[0] {
            assert_eq!(*e, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists, "topic {name}: {e}");
        }
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "0")
            .create()
            .expect("kafka producer");
        Upstream::Kafka(producer)
    }

    #[cfg(not(feature = "kafka"))]
    async fn kafka(_: &str) -> Self {
        panic!("--upstream kafka://… needs the load generator built with --features kafka")
    }
}

/// Publishes `pending` upstream: one Redis pipeline, JetStream publishes or Kafka records
/// awaited together, or one multi-row `INSERT` (not awaited when `paced`: see
/// [`Upstream::Postgres`]; [`finish`] awaits them).
async fn xadd_all(up: &mut Upstream, pending: &mut Vec<Vec<u8>>, paced: bool) {
    if pending.is_empty() {
        return;
    }
    match up {
        Upstream::Redis(con) => {
            let mut pipe = redis::pipe();
            for p in pending.drain(..) {
                pipe.cmd("XADD").arg("bench").arg("*").arg("payload").arg(p).ignore();
            }
            pipe.query_async::<()>(con).await.expect("XADD");
        }
        Upstream::Nats(js) => {
            let mut acks = Vec::with_capacity(pending.len());
            for p in pending.drain(..) {
                acks.push(js.publish("bench.load", p.into()).await.expect("publish"));
            }
            for a in acks {
                a.await.expect("JetStream ack");
            }
        }
        Upstream::Postgres(db, under_way) => {
            let rows: Vec<Vec<u8>> = std::mem::take(pending);
            let db = db.clone();
            let insert = async move {
                db.execute(
                    "INSERT INTO fanhub_bench_outbox (topic, payload) SELECT 'bench.load', unnest($1::bytea[])",
                    &[&rows],
                )
                .await
                .expect("INSERT");
            };
            if paced {
                under_way.retain(|h| !h.is_finished());
                under_way.push(tokio::spawn(insert));
            } else {
                insert.await;
            }
        }
        #[cfg(feature = "kafka")]
        Upstream::Kafka(producer) => {
            let records: Vec<Vec<u8>> = std::mem::take(pending);
            let sends: Vec<_> = records
                .iter()
                .map(|p| {
                    let record = rdkafka::producer::FutureRecord::<(), Vec<u8>>::to("bench.load").payload(p);
                    producer.send(record, Duration::from_secs(30))
                })
                .collect();
            for s in sends {
                s.await.expect("Kafka produce");
            }
        }
    }
}

/// Waits for what [`xadd_all`] left under way.
async fn finish(up: &mut Upstream) {
    if let Upstream::Postgres(_, under_way) = up {
        for h in under_way.drain(..) {
            h.await.expect("INSERT");
        }
    }
}

fn publish_frame(args: &Args, idx: u64) -> Bytes {
    let payload = payload(args, idx);
    if args.target == "nats" {
        let mut b = BytesMut::with_capacity(payload.len() + 40);
        b.put_slice(format!("PUB {} {}\r\n", nats_subject(args), payload.len()).as_bytes());
        b.put_slice(&payload);
        b.put_slice(b"\r\n");
        b.freeze()
    } else {
        Bytes::from(fanhub::protocol::frame::encode_publish(args_topic(args), 0, 0, &payload))
    }
}

fn sum_cpu_secs(pids: &[u32]) -> f64 {
    pids.iter().map(|&p| proc_cpu_secs(p)).sum()
}

fn sum_rss_kb(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| proc_rss_kb(p)).sum()
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)] as f64 / 1000.0
}

async fn run(args: Arc<Args>) {
    if args.prepare_upstream {
        Upstream::connect(args.upstream.as_deref().unwrap_or_default()).await;
        return;
    }
    let pids = &args.server_pid;
    let rss_before = sum_rss_kb(pids);
    let open_cpu0 = sum_cpu_secs(pids);
    let mut conns = Vec::with_capacity(args.subs);
    let opened = Instant::now();
    for chunk in (0..args.subs).collect::<Vec<_>>().chunks(200) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|&n| {
                let a = args.clone();
                tokio::spawn(async move { subscriber(&a, n).await })
            })
            .collect();
        for t in tasks {
            conns.push(t.await.unwrap());
        }
    }
    if args.idle {
        // Connect, authenticate and subscribe, all of them: what that cost the server.
        let (open_secs, open_cpu) = (opened.elapsed().as_secs_f64(), sum_cpu_secs(pids) - open_cpu0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = sum_rss_kb(pids);
        println!(
            "| {} | {} | idle | {} connections | server RSS {:.1} MB → {:.1} MB | {:.2} KB per connection | opened in {:.1} s | {:.0} connects per server-CPU-s |",
            args.label,
            args.target,
            args.subs,
            rss_before as f64 / 1024.0,
            rss as f64 / 1024.0,
            rss.saturating_sub(rss_before) as f64 / args.subs as f64,
            open_secs,
            if open_cpu > 0.0 { args.subs as f64 / open_cpu } else { f64::NAN }
        );
        return;
    }
    let shared = Arc::new(Shared {
        receipts: (0..args.messages).map(|_| AtomicU32::new(0)).collect(),
        received: AtomicU64::new(0),
        per_url: args.url.iter().map(|_| AtomicU64::new(0)).collect(),
    });
    let readers: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(n, sub)| {
            let url = n % args.url.len();
            tokio::spawn(receive(args.clone(), sub, shared.clone(), args.messages, url))
        })
        .collect();
    let mut publisher = connect(&args.url[0], 0, 1, (args.target == "fanhub").then_some("fanhub.v1")).await;
    if args.target == "nats" {
        publisher
            .send(Message::binary(Bytes::from_static(
                b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\n",
            )))
            .await
            .unwrap();
    } else {
        publisher
            .send(Message::text(serde_json::json!({"op":"connect","token":args.token}).to_string()))
            .await
            .unwrap();
        let w = next_text(&mut publisher).await;
        assert_eq!(w["type"], "welcome", "{w}");
    }
    let mut upstream = match &args.upstream {
        Some(url) => Some(Upstream::connect(url).await),
        None => None,
    };
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let cpu0 = sum_cpu_secs(pids);
    let own_cpu0 = proc_cpu_secs("self");
    let redis_cpu0 = args.redis_pid.map(proc_cpu_secs);
    let t0 = Instant::now();
    let subs = args.subs as u32;
    let mut acked = 0u64;
    let mut progress = Instant::now();
    let mut ticker = args.rate.map(|r| tokio::time::interval(Duration::from_secs_f64(1.0 / r as f64)));
    'publish: for idx in 0..args.messages {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        } else {
            loop {
                while acked < idx && shared.receipts[acked as usize].load(Relaxed) >= subs {
                    acked += 1;
                    progress = Instant::now();
                }
                if idx - acked < args.window {
                    break;
                }
                if let Some(con) = upstream.as_mut() {
                    xadd_all(con, &mut pending, false).await;
                }
                // The window is full and its oldest message has not reached every subscriber
                // for `timeout_secs`: it never will. Stop publishing rather than wait forever.
                if progress.elapsed() >= Duration::from_secs(args.timeout_secs) {
                    eprintln!(
                        "loadgen: window stalled: message {acked} reached {} of {subs} subscribers in {} s; \
                         stopped publishing after {idx} of {} messages",
                        shared.receipts[acked as usize].load(Relaxed),
                        args.timeout_secs,
                        args.messages
                    );
                    break 'publish;
                }
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
        }
        match upstream.as_mut() {
            Some(con) => {
                pending.push(payload(&args, idx));
                if pending.len() >= 64 || args.rate.is_some() {
                    xadd_all(con, &mut pending, args.rate.is_some()).await;
                }
            }
            None => publisher.send(Message::binary(publish_frame(&args, idx))).await.unwrap(),
        }
    }
    if let Some(con) = upstream.as_mut() {
        xadd_all(con, &mut pending, false).await;
        finish(con).await;
    }
    let expected = args.messages * args.subs as u64;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    while shared.received.load(Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = sum_cpu_secs(pids) - cpu0;
    let own_cpu = proc_cpu_secs("self") - own_cpu0;
    let redis_cpu = args.redis_pid.map(proc_cpu_secs).zip(redis_cpu0).map(|(a, b)| a - b);
    let received = shared.received.load(Relaxed);
    if received < expected {
        let incomplete: Vec<u64> =
            (0..args.messages).filter(|&i| shared.receipts[i as usize].load(Relaxed) < subs).collect();
        let per_url: Vec<String> = args
            .url
            .iter()
            .zip(&shared.per_url)
            .enumerate()
            .map(|(i, (u, n))| {
                let s = (args.subs + args.url.len() - 1 - i) / args.url.len();
                format!("{u}: {} of {}", n.load(Relaxed), s as u64 * args.messages)
            })
            .collect();
        eprintln!(
            "loadgen: {} deliveries missing; {} of {} messages incomplete (first {:?}, last {:?}); per URL: {}",
            expected - received,
            incomplete.len(),
            args.messages,
            incomplete.first(),
            incomplete.last(),
            per_url.join(", ")
        );
    }
    let mut lat = Vec::with_capacity(received as usize);
    for r in readers {
        if r.is_finished() {
            lat.extend(r.await.unwrap());
        } else {
            r.abort();
        }
    }
    lat.sort_unstable();
    let mode = match args.rate {
        Some(r) => format!("paced {r}/s"),
        None => format!("window {}", args.window),
    };
    println!(
        "| {} | {} | S={} P={} N={} {} | {:.0} deliveries/s | {:.0} per server-CPU-s | p50 {:.2} ms | p99 {:.2} ms | p999 {:.2} ms | loss {} | server CPU {:.2} s in {:.2} s | load generator CPU {:.2} s ({:.2} µs per delivery) | {} |",
        args.label,
        args.target,
        args.subs,
        args.size,
        args.messages,
        mode,
        received as f64 / elapsed,
        if cpu > 0.0 { received as f64 / cpu } else { f64::NAN },
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        pct(&lat, 0.999),
        expected - received,
        cpu,
        elapsed,
        own_cpu,
        if received > 0 { own_cpu * 1e6 / received as f64 } else { f64::NAN },
        redis_cpu.map(|c| format!("redis CPU {c:.2} s")).unwrap_or_default()
    );
}

fn main() {
    let args = Arc::new(Args::parse());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(args));
}
