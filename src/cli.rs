//! The debugging and operator subcommands of the `fanhub` binary: `sub` and `pub` (the Rust
//! client, `fanhub::client`, against a running hub, like `nats sub` / `nats pub`), `stats` and `connections`
//! (pretty-printed admin API, optionally refreshing). Plain HTTP only: the admin listener is
//! meant for loopback or a private network. Output goes through `writeln!` on a locked stdout,
//! never `println!`, so a reader that goes away (`fanhub stats | head -1`) ends the command
//! with a write error that `main` turns into a quiet exit ([`is_broken_pipe`]), not a panic.

use std::io::Write as _;
#[cfg(feature = "client")]
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt as _, Empty};
use hyper::http::{header, Request, Uri};
use serde_json::{json, Value};
use tokio::net::TcpStream;

#[cfg(feature = "client")]
use fanhub::auth::{unix_now, MintRequest, SessionManager};
#[cfg(feature = "client")]
use fanhub::client::{Client, ClientOptions, Event, From, Transport};
#[cfg(feature = "client")]
use fanhub::config::Config;

#[cfg(feature = "client")]
/// How to reach and authenticate to a hub's WebSocket endpoint.
#[derive(Args, Clone)]
pub(crate) struct WsTarget {
    /// WebSocket URL of the hub (`ws://`, or `wss://` for a hub with TLS); with `--tcp`, the
    /// address of its raw TCP listener (`tcp://host:port`, or `tcps://host:port` for TLS).
    #[arg(long, env = "FANHUB_URL", default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// Connect over the hub's raw TCP transport (`tcp.listen`) instead of the WebSocket:
    /// `--url` is then `tcp://host:port` or `tcps://host:port`.
    #[arg(long)]
    tcp: bool,
    /// A PEM file of certificate authorities to trust for a `wss://` or `tcps://` URL, besides
    /// the system's (repeatable).
    #[arg(long = "tls-ca-file", env = "FANHUB_TLS_CA_FILE")]
    tls_ca_files: Vec<PathBuf>,
    /// JWT to connect with. Without it, one is minted with the key of `--config` (the dev
    /// secret in development mode).
    #[arg(long, env = "FANHUB_TOKEN")]
    token: Option<String>,
    /// Configuration whose key mints the token when `--token` is absent.
    #[arg(long, short, env = "FANHUB_CONFIG")]
    config: Option<PathBuf>,
}

#[cfg(feature = "client")]
/// `fanhub sub`.
#[derive(Args)]
pub(crate) struct SubArgs {
    /// Topic to subscribe to (`a/b/c`).
    topic: String,
    /// Start at this offset (replay from history, then live).
    #[arg(long)]
    offset: Option<u64>,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Print each message as one JSON object per line (topic, offset, epoch, payload, and
    /// `meta` when the message has metadata).
    #[arg(long)]
    json: bool,
    /// Show each message's metadata (where a message from an upstream source came from: source,
    /// upstream, partition, position, …) in the text output too: `[topic #offset meta {…}]`.
    #[arg(long)]
    meta: bool,
    /// Receive over WebRTC data channels (signaled on `--url`'s host and port) instead of the
    /// WebSocket.
    #[cfg(feature = "client-webrtc")]
    #[arg(long, conflicts_with = "tcp")]
    webrtc: bool,
    #[command(flatten)]
    target: WsTarget,
}

#[cfg(feature = "client")]
/// `fanhub pub`.
#[derive(Args)]
pub(crate) struct PubArgs {
    /// Topic to publish on.
    topic: String,
    /// Payload: sent as JSON when it parses as JSON, otherwise as a JSON string.
    data: String,
    /// Publish it this many times.
    #[arg(long, default_value_t = 1)]
    count: u64,
    #[command(flatten)]
    target: WsTarget,
}

/// How to reach the admin API.
#[derive(Args, Clone)]
pub(crate) struct AdminTarget {
    /// Base URL of the admin listener.
    #[arg(long, env = "FANHUB_ADMIN_URL", default_value = "http://127.0.0.1:9090")]
    admin_url: String,
    /// Admin bearer token (one of `auth.admin_tokens`).
    #[arg(long, env = "FANHUB_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Refresh every this many seconds until interrupted.
    #[arg(long, short)]
    watch: Option<f64>,
}

/// `fanhub connections`.
#[derive(Args)]
pub(crate) struct ConnectionsArgs {
    /// Only connections subscribed to this topic.
    #[arg(long)]
    topic: Option<String>,
    /// Only connections of this user (token subject).
    #[arg(long)]
    user: Option<String>,
    /// Rows to show.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    admin: AdminTarget,
}

#[cfg(feature = "client")]
/// The token `--token` gives, or one minted with the key of `--config`.
fn token(target: &WsTarget) -> anyhow::Result<String> {
    if let Some(t) = &target.token {
        return Ok(t.clone());
    }
    let config = Config::load(target.config.as_deref(), std::env::vars())?;
    let sessions = SessionManager::new(&config.auth).map_err(anyhow::Error::msg)?;
    let req = MintRequest {
        subject: "fanhub-cli".into(),
        subscribe: vec![">".into()],
        publish: vec![">".into()],
        ttl_secs: 3600,
    };
    Ok(sessions.mint(&req, unix_now()).map_err(anyhow::Error::msg)?.token)
}

#[cfg(feature = "client")]
/// A client of the hub at `--url` (it reconnects and resumes by itself).
async fn client(target: &WsTarget, transport: Transport) -> anyhow::Result<Client> {
    let transport = if target.tcp { Transport::Tcp } else { transport };
    let mut options = ClientOptions::new([target.url.clone()]).with_token(token(target)?);
    options.transport = transport;
    options.tls_ca_files.clone_from(&target.tls_ca_files);
    Client::connect(options).await.with_context(|| format!("connecting to {}", target.url))
}

#[cfg(feature = "client")]
/// `fanhub sub TOPIC`: prints every message until interrupted (or `--count`). Across a
/// reconnect it resumes after the last message printed; missed messages are reported on stderr.
pub(crate) async fn sub(args: SubArgs) -> anyhow::Result<()> {
    #[cfg(feature = "client-webrtc")]
    let transport = if args.webrtc { Transport::WebRtc } else { Transport::WebSocket };
    #[cfg(not(feature = "client-webrtc"))]
    let transport = Transport::WebSocket;
    let client = client(&args.target, transport).await?;
    let from = args.offset.map_or(From::Live, |offset| From::Offset { offset, epoch: None });
    let mut sub = client.subscribe(&args.topic, from).await?;
    eprintln!("subscribed to {} (head offset {})", args.topic, sub.info.head);
    let mut seen = 0u64;
    while args.count.is_none_or(|c| seen < c) {
        let event = tokio::select! {
            e = sub.next() => e,
            _ = tokio::signal::ctrl_c() => break,
        };
        let m = match event {
            Some(Event::Message(m)) => m,
            Some(Event::Gap(g)) => {
                eprintln!("missed messages of {}: {:?} from offset {} to {:?}", g.topic, g.reason, g.from, g.to);
                continue;
            }
            None => bail!("the subscription ended (the client stopped; see the hub's log)"),
        };
        let text = std::str::from_utf8(&m.payload).ok();
        let mut out = std::io::stdout().lock();
        if args.json {
            let payload = match (m.is_json(), text) {
                (true, Some(t)) => serde_json::from_str(t).unwrap_or(Value::Null),
                (false, Some(t)) => json!(t),
                _ => json!({ "base64": base64_encode(&m.payload) }),
            };
            let mut line = json!({"topic": m.topic, "offset": m.offset, "epoch": m.epoch, "payload": payload});
            if m.meta.is_some() {
                line["meta"] = m.meta_json().unwrap_or_else(|| json!(m.meta_str()));
            }
            writeln!(out, "{line}")?;
        } else {
            let shown = text.map_or_else(|| format!("<{} bytes>", m.payload.len()), str::to_owned);
            match m.meta_str().filter(|_| args.meta) {
                Some(meta) => writeln!(out, "[{} #{} meta {meta}] {shown}", m.topic, m.offset)?,
                None => writeln!(out, "[{} #{}] {shown}", m.topic, m.offset)?,
            }
        }
        out.flush()?;
        seen += 1;
    }
    client.close().await;
    Ok(())
}

#[cfg(feature = "client")]
fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[cfg(feature = "client")]
/// `fanhub pub TOPIC DATA`: publishes and prints each assigned offset.
pub(crate) async fn publish(args: PubArgs) -> anyhow::Result<()> {
    let client = client(&args.target, Transport::WebSocket).await?;
    let data: Value = serde_json::from_str(&args.data).unwrap_or_else(|_| Value::String(args.data.clone()));
    for _ in 0..args.count {
        let p = client.publish_json(&args.topic, &data).await?;
        writeln!(std::io::stdout().lock(), "published {} offset {}", args.topic, p.offset)?;
    }
    client.close().await;
    Ok(())
}

/// GET `path` on the admin listener.
async fn admin_get(target: &AdminTarget, path: &str) -> anyhow::Result<Value> {
    let base: Uri = target.admin_url.parse().with_context(|| format!("invalid URL {}", target.admin_url))?;
    if base.scheme_str() != Some("http") {
        bail!("--admin-url must be an http:// URL");
    }
    let host = base.host().ok_or_else(|| anyhow!("--admin-url has no host"))?;
    let port = base.port_u16().unwrap_or(80);
    let tcp = TcpStream::connect((host, port)).await.with_context(|| format!("connecting to {}", target.admin_url))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let mut req = Request::get(path).header(header::HOST, format!("{host}:{port}"));
    if let Some(t) = &target.admin_token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = sender.send_request(req.body(Empty::<Bytes>::new())?).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    let v: Value = serde_json::from_slice(&body).with_context(|| format!("{status}: not JSON"))?;
    if !status.is_success() {
        bail!("{status}: {} {}", v["code"], v["message"]);
    }
    Ok(v)
}

/// Writes `text` to stdout and flushes it.
fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Whether `e` is a write to a pipe whose reader has gone (`fanhub stats | head -1`).
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

async fn repeat<F, Fut>(watch: Option<f64>, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    let Some(secs) = watch else {
        return Ok(write_stdout(&f().await?)?);
    };
    let period = Duration::from_secs_f64(secs.max(0.2));
    loop {
        let text = f().await?;
        // Clear the screen and home the cursor, then draw.
        write_stdout(&format!("\x1b[2J\x1b[H{text}"))?;
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn render_stats(s: &Value) -> String {
    let mut out = String::new();
    let n = |v: &Value| v.as_f64().map_or_else(|| v.to_string(), |x| format!("{x:.0}"));
    out.push_str(&format!("node {}  up {} s\n\n", s["node_id"].as_str().unwrap_or("?"), s["uptime_secs"]));
    out.push_str(&format!(
        "connections  {} active, {} live   accepted {}  rejected {}\n",
        s["active_connections"], s["live_connections"], s["connections_accepted"], s["connections_rejected"]
    ));
    for key in ["connections_by_protocol", "connections_by_state"] {
        if let Some(m) = s[key].as_object() {
            let parts: Vec<String> =
                m.iter().filter(|(_, v)| v != &&json!(0)).map(|(k, v)| format!("{k} {v}")).collect();
            out.push_str(&format!("  {:<24} {}\n", key.trim_start_matches("connections_"), parts.join(", ")));
        }
    }
    out.push_str(&format!("topics       {}   subscriptions {}\n\n", s["topics"], s["subscriptions"]));
    let r = &s["rates"];
    out.push_str("                 total          per second\n");
    for (label, total, rate) in [
        ("messages in", &s["messages_in"], &r["messages_in_per_sec"]),
        ("deliveries", &s["deliveries"], &r["deliveries_per_sec"]),
        ("messages out", &s["messages_out"], &r["messages_out_per_sec"]),
        ("bytes in", &s["bytes_in"], &r["bytes_in_per_sec"]),
        ("bytes out", &s["bytes_out"], &r["bytes_out_per_sec"]),
    ] {
        out.push_str(&format!("  {label:<14} {:>14} {:>14}\n", n(total), n(rate)));
    }
    out.push('\n');
    for key in ["dropped", "auth_failures"] {
        if let Some(m) = s[key].as_object() {
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
            out.push_str(&format!("{key:<14} {}\n", parts.join(", ")));
        }
    }
    out.push_str(&format!(
        "slow-consumer disconnects {}   violations {}\n",
        s["slow_consumer_disconnects"], s["violations"]
    ));
    out
}

/// `fanhub stats`.
pub(crate) async fn stats(admin: AdminTarget) -> anyhow::Result<()> {
    let a = admin.clone();
    repeat(admin.watch, || {
        let a = a.clone();
        async move { Ok(render_stats(&admin_get(&a, "/v1/admin/stats").await?)) }
    })
    .await
}

/// A column of the connections table: its header, the row's field, and its alignment.
const CONNECTION_COLUMNS: [(&str, &str, Align); 9] = [
    ("ID", "id", Align::Right),
    ("PROTOCOL", "protocol", Align::Left),
    ("REMOTE", "remote_addr", Align::Left),
    ("USER", "subject", Align::Left),
    ("STATE", "state", Align::Left),
    ("SUBS", "subscriptions", Align::Right),
    ("QUEUE", "queue_depth", Align::Right),
    ("SENT", "sent_messages", Align::Right),
    ("DROPPED", "dropped", Align::Right),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// Lays out `rows` under the `columns`' headers, each column as wide as its widest cell, two
/// spaces apart (numbers right-aligned), with no trailing spaces.
fn table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let width =
        |i: usize| rows.iter().map(|r| r[i].chars().count()).chain([columns[i].0.chars().count()]).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns.len()).map(width).collect();
    let headers: Vec<String> = columns.iter().map(|(h, _)| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&headers).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(columns)
            .zip(&widths)
            .map(|((cell, (_, align)), &w)| match align {
                Align::Left => format!("{cell:<w$}"),
                Align::Right => format!("{cell:>w$}"),
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn render_connections(page: &Value) -> String {
    let columns: Vec<(&str, Align)> = CONNECTION_COLUMNS.iter().map(|(h, _, a)| (*h, *a)).collect();
    let rows: Vec<Vec<String>> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            CONNECTION_COLUMNS
                .iter()
                .map(|(_, field, _)| match &r[*field] {
                    Value::String(s) if !s.is_empty() => s.clone(),
                    Value::String(_) | Value::Null => "-".to_owned(),
                    v => v.to_string(),
                })
                .collect()
        })
        .collect();
    let mut out = table(&columns, &rows);
    out.push_str(&format!("{} of {} connections\n", rows.len(), page["total"]));
    out
}

/// `fanhub connections`.
pub(crate) async fn connections(args: ConnectionsArgs) -> anyhow::Result<()> {
    let mut path = format!("/v1/admin/connections?limit={}", args.limit);
    for (k, v) in [("topic", &args.topic), ("user", &args.user)] {
        if let Some(v) = v {
            path.push_str(&format!("&{k}={}", encode_query(v)));
        }
    }
    let a = args.admin.clone();
    repeat(args.admin.watch, || {
        let (a, path) = (a.clone(), path.clone());
        async move { Ok(render_connections(&admin_get(&a, &path).await?)) }
    })
    .await
}

fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where each cell of a line starts and ends (cells are separated by two or more spaces).
    fn cell_spans(line: &str) -> Vec<(usize, usize)> {
        let chars: Vec<char> = line.chars().collect();
        let mut spans = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == ' ' {
                i += 1;
                continue;
            }
            let start = i;
            while i < chars.len() && !(chars[i] == ' ' && chars.get(i + 1).is_none_or(|c| *c == ' ')) {
                i += 1;
            }
            spans.push((start, i));
        }
        spans
    }

    #[test]
    fn connection_columns_line_up_whatever_the_widths() {
        let page = json!({"total": 3, "items": [
            {"id": 7, "protocol": "websocket", "remote_addr": "127.0.0.1:40000", "subject": "a",
             "state": "active", "subscriptions": 1, "queue_depth": 0, "sent_messages": 5, "dropped": 0},
            {"id": 123_456_789, "protocol": "webrtc", "remote_addr": "[2001:db8::1]:65535",
             "subject": "a-subject-much-longer-than-its-header", "state": "monitored_violation",
             "subscriptions": 12345, "queue_depth": 99_999_999, "sent_messages": 1_234_567_890_123_u64, "dropped": 42},
            {"id": 8, "protocol": "ws", "remote_addr": "10.0.0.1:1", "subject": "",
             "state": "active", "subscriptions": 0, "queue_depth": 0, "sent_messages": 0, "dropped": 0},
        ]});
        let text = render_connections(&page);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[4], "3 of 3 connections");
        let spans: Vec<Vec<(usize, usize)>> = lines[..4].iter().map(|l| cell_spans(l)).collect();
        for (line, s) in lines.iter().zip(&spans) {
            assert_eq!(s.len(), CONNECTION_COLUMNS.len(), "every cell is there: {line:?}");
            assert_eq!(*line, line.trim_end(), "no trailing spaces");
        }
        for (i, (header, _, align)) in CONNECTION_COLUMNS.iter().enumerate() {
            let edge = |s: &Vec<(usize, usize)>| if *align == Align::Left { s[i].0 } else { s[i].1 };
            assert!(spans.iter().all(|s| edge(s) == edge(&spans[0])), "column {header} is aligned:\n{text}");
        }
    }
}
