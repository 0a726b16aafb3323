//! The Rust client over the raw TCP transport (`tcp://host:port` endpoints, `docs/protocol.md`
//! §10d) against a real hub: subscribe and publish, with WebSocket peers seeing its publishes
//! and it theirs; a resume exactly once after the connection is cut (through the
//! fault-injecting proxy, which forwards raw bytes); a refused token (the hub closes without a
//! word) failing `connect` with a clear error after the initial attempts; its client id sent in
//! the Token datagram (listed by the hub, replacing an older client); an operator's kick (a Bye
//! datagram) ending it for good; TLS (`tcps://`) trusting a CA file;
//! `fanhub sub --tcp` printing what `fanhub pub --tcp` publishes; and the metadata of an
//! upstream source's messages (a Redis Streams source) reaching the client over TCP and a
//! WebSocket alike, and `fanhub sub`'s output. Every wait is bounded.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fanhub::client::{Client, ClientError, ClientOptions, Event, From, Status, Transport};
use fanhub::config::Config;
use fanhub::hub::TopicName;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::*;

fn with_tcp(mut c: Config) -> Config {
    c.tcp.listen = Some("127.0.0.1:0".parse().unwrap());
    c
}

fn tcp_url(hub: &Hub) -> String {
    format!("tcp://{}", hub.tcp.expect("tcp.listen is set"))
}

fn options(endpoint: String, token: String) -> ClientOptions {
    let mut o = ClientOptions::new([endpoint]).with_token(token);
    o.transport = Transport::Tcp;
    o.backoff.initial = Duration::from_millis(20);
    o.backoff.max = Duration::from_millis(200);
    o
}

async fn next_message(sub: &mut fanhub::client::Subscription) -> fanhub::client::Message {
    match tokio::time::timeout(TIMEOUT, sub.next()).await.expect("no message in time") {
        Some(Event::Message(m)) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test]
async fn over_tcp_the_client_subscribes_and_publishes_and_websocket_peers_see_it_both_ways() {
    let hub = spawn_hub(with_tcp(test_config())).await;
    let client = Client::connect(options(tcp_url(&hub), hub.token("tcp-client"))).await.expect("connect over tcp");
    let mut sub = client.subscribe("mix/t", From::Live).await.unwrap();
    let mut ws = hub.connect("ws-peer").await;
    ws.subscribe("mix/t").await;

    // The TCP client's publishes reach itself and the WebSocket peer.
    let a = client.publish_json("mix/t", &json!({"from": "tcp"})).await.unwrap();
    let b = client.publish("mix/t", &b"raw"[..]).await.unwrap();
    assert_eq!((a.offset, b.offset, a.epoch), (1, 2, sub.info.epoch));
    let m = next_message(&mut sub).await;
    assert!(m.is_json() && &m.payload[..] == br#"{"from":"tcp"}"#, "{m:?}");
    let m = next_message(&mut sub).await;
    assert!(!m.is_json() && &m.payload[..] == b"raw", "{m:?}");
    let got = ws.records(2).await;
    assert_eq!((got[0].payload.as_slice(), got[1].payload.as_slice()), (&br#"{"from":"tcp"}"#[..], &b"raw"[..]));

    // The WebSocket peer's publish reaches the TCP client.
    assert_eq!(ws.publish_bin("mix/t", b"from ws").await, 3);
    let m = next_message(&mut sub).await;
    assert_eq!((m.offset, &m.payload[..]), (3, &b"from ws"[..]));

    // Refusals are typed, as on a WebSocket.
    let e = client.publish("bad topic", &b"x"[..]).await.unwrap_err();
    assert!(matches!(e, ClientError::Refused { code: fanhub::protocol::ErrorCode::InvalidArgument, .. }), "{e:?}");

    // The hub lists it as a tcp connection; health() says it has no HTTP side to ask.
    let rows = admin(&hub, "GET", "/v1/admin/connections", "").await.json();
    let protocols: Vec<&str> =
        rows["items"].as_array().unwrap().iter().filter_map(|r| r["protocol"].as_str()).collect();
    assert!(protocols.contains(&"tcp"), "{rows}");
    let health = client.health().await.unwrap();
    assert!(!health.healthy && health.error.as_deref().is_some_and(|e| e.contains("no HTTP side")), "{health:?}");
    assert_eq!(health.circuit, fanhub::client::CircuitState::Closed);

    // `close` says bye: the hub lets the connection go.
    client.close().await;
    hub.eventually("the tcp connection is gone", |m| m.connection_stats().active_connections == 1).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn over_tcp_the_client_resumes_exactly_once_after_its_connection_is_cut() {
    let hub = spawn_hub(with_tcp(resumable_config())).await;
    let proxy = Proxy::start(hub.tcp.unwrap()).await;
    let client = Client::connect(options(format!("tcp://{}", proxy.addr), hub.token("c"))).await.unwrap();
    let mut status = client.status();
    let mut sub = client.subscribe("rel/tcp", From::Live).await.unwrap();
    let topic = TopicName::new("rel/tcp").unwrap();
    let publish = |n: u64| {
        for _ in 0..n {
            hub.manager.route_data(&topic, b"m", 0, now()).unwrap();
        }
    };
    publish(5);
    let mut got: Vec<u64> = Vec::new();
    while got.len() < 5 {
        got.push(next_message(&mut sub).await.offset);
    }
    proxy.cut();
    // Published while the client is away: it gets them on resuming, once.
    publish(5);
    loop {
        match tokio::time::timeout(TIMEOUT, status.recv()).await.expect("no reconnect").unwrap() {
            Status::Connected { .. } => break,
            Status::Closed { error } => panic!("closed: {error:?}"),
            _ => {}
        }
    }
    while got.len() < 10 {
        got.push(next_message(&mut sub).await.offset);
    }
    publish(1);
    got.push(next_message(&mut sub).await.offset);
    assert_eq!(got, (1..=11).collect::<Vec<_>>(), "every message once, in order");
    assert_eq!(proxy.accepted(), 2, "one reconnect for one cut");
    client.close().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn over_tcp_a_refused_token_fails_connect_with_a_clear_error_after_the_initial_attempts() {
    let hub = spawn_hub(with_tcp(test_config())).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut opts = options(tcp_url(&hub), "not-a-jwt".into()).with_token_provider(move || {
        c.fetch_add(1, Ordering::SeqCst);
        async { Ok("still-not-a-jwt".to_owned()) }
    });
    opts.initial_attempts = 2;
    match Client::connect(opts).await {
        Err(ClientError::Connect(m)) => {
            assert!(m.contains("before `welcome`") && m.contains("refuses a token"), "{m}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    // Each silent close may be a refused token: a fresh one is asked for after each attempt.
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(hub.manager.connection_stats().active_connections, 0);
    hub.shutdown().await;
}

#[tokio::test]
async fn over_tcp_a_kick_ends_the_client_with_a_typed_error_and_no_reconnect() {
    let hub = spawn_hub(with_tcp(test_config())).await;
    let client = Client::connect(options(tcp_url(&hub), hub.token("kicked"))).await.unwrap();
    let mut status = client.status();
    let mut sub = client.subscribe("k/t", From::Live).await.unwrap();
    let rows = admin(&hub, "GET", "/v1/admin/connections", "").await.json();
    let id = rows["items"][0]["id"].as_u64().unwrap();
    assert_eq!(admin(&hub, "DELETE", &format!("/v1/admin/connections/{id}"), "").await.status, 200);
    assert_eq!(tokio::time::timeout(TIMEOUT, sub.next()).await.unwrap(), None, "the subscription ends");
    let mut bye = None;
    let closed = loop {
        match tokio::time::timeout(TIMEOUT, status.recv()).await.unwrap().unwrap() {
            Status::Bye { reason, .. } => bye = Some(reason),
            Status::Closed { error } => break error,
            Status::Connecting { endpoint } => panic!("reconnected to {endpoint} after a kick"),
            _ => {}
        }
    };
    assert_eq!(bye, Some(fanhub::protocol::CloseReason::Kicked), "the Bye datagram's reason");
    assert!(closed.unwrap().contains("Kicked"));
    assert!(matches!(client.publish("k/t", &b"x"[..]).await, Err(ClientError::Closed)));
    hub.shutdown().await;
}

#[tokio::test]
async fn over_tcp_the_client_sends_its_client_id_which_the_hub_lists_and_a_newer_client_with_it_replaces() {
    let hub = spawn_hub(with_tcp(test_config())).await;
    let options = || options(tcp_url(&hub), hub.token("device")).with_client_id("rust-tcp-1");
    let first = Client::connect(options()).await.expect("connect over tcp with a client id");
    let mut status = first.status();
    let rows = admin(&hub, "GET", "/v1/admin/connections?protocol=tcp", "").await.json();
    assert_eq!(
        (rows["total"].as_u64(), rows["items"][0]["client_id"].as_str()),
        (Some(1), Some("rust-tcp-1")),
        "{rows}"
    );

    // A second client with the same subject and client id replaces the first, for good.
    let second = Client::connect(options()).await.expect("the second connects");
    let closed = loop {
        match tokio::time::timeout(TIMEOUT, status.recv()).await.unwrap().unwrap() {
            Status::Closed { error } => break error,
            Status::Connecting { endpoint } => panic!("reconnected to {endpoint} after being replaced"),
            _ => {}
        }
    };
    assert!(closed.is_some_and(|e| e.contains("Replaced")), "closed as replaced");
    hub.eventually("one connection left", |m| m.connection_stats().active_connections == 1).await;
    let rows = admin(&hub, "GET", "/v1/admin/connections?protocol=tcp", "").await.json();
    assert_eq!(rows["items"][0]["client_id"], "rust-tcp-1", "{rows}");
    second.publish("still/here", &b"x"[..]).await.expect("the newer client works");
    hub.shutdown().await;
}

#[cfg(feature = "client-tls")]
#[tokio::test]
async fn over_tcps_the_client_connects_trusting_a_ca_file() {
    let cert = crate::common::SelfSigned::new("client-tcps");
    let mut config = with_tcp(test_config());
    config.tcp.tls.cert_path = cert.cert_path();
    config.tcp.tls.key_path = cert.key_path();
    let hub = spawn_hub(config).await;
    let url = format!("tcps://{}", hub.tcp.unwrap());

    let client = Client::connect(options(url.clone(), hub.token("sealed")).with_tls_ca_file(cert.cert_path()))
        .await
        .expect("tcps connect");
    let mut sub = client.subscribe("sec/t", From::Live).await.unwrap();
    client.publish_json("sec/t", &json!({"over": "tcps"})).await.unwrap();
    assert_eq!(&next_message(&mut sub).await.payload[..], br#"{"over":"tcps"}"#);
    client.close().await;

    let mut untrusting = options(url, hub.token("sealed"));
    untrusting.initial_attempts = 1;
    match Client::connect(untrusting).await {
        Err(ClientError::Connect(m)) => assert!(m.to_lowercase().contains("certificate"), "{m}"),
        other => panic!("expected a certificate error, got {other:?}"),
    }
    hub.shutdown().await;
}

fn fanhub() -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_fanhub"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FANHUB_")) {
        c.env_remove(k);
    }
    c.kill_on_drop(true);
    c
}

#[tokio::test]
async fn the_cli_client_sub_tcp_prints_what_pub_tcp_publishes() {
    let hub = spawn_hub(with_tcp(test_config())).await;
    let url = tcp_url(&hub);
    let token = hub.token("cli");
    let mut sub = fanhub()
        .args(["sub", "cli/tcp", "--count", "2", "--json", "--tcp", "--url", &url, "--token", &token])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(sub.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(TIMEOUT, err.next_line()).await.expect("sub hung").unwrap().unwrap();
    assert!(line.contains("subscribed to cli/tcp"), "{line}");

    let out = fanhub()
        .args(["pub", "cli/tcp", r#"{"n":1}"#, "--count", "2", "--tcp", "--url", &url, "--token", &token])
        .output();
    let out = tokio::time::timeout(TIMEOUT, out).await.expect("pub hung").unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed.lines().collect::<Vec<_>>(), ["published cli/tcp offset 1", "published cli/tcp offset 2"]);

    let got = tokio::time::timeout(TIMEOUT, sub.wait_with_output()).await.expect("sub never exited").unwrap();
    assert!(got.status.success());
    let lines: Vec<serde_json::Value> =
        String::from_utf8(got.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!((lines[0]["offset"].as_u64(), lines[1]["offset"].as_u64()), (Some(1), Some(2)));
    assert_eq!(lines[1]["payload"], json!({"n": 1}));

    // A ws:// URL with --tcp is refused before anything connects, naming the fix.
    let out = fanhub().args(["pub", "cli/tcp", "x", "--tcp", "--url", &hub.ws_url(), "--token", &token]).output();
    let out = tokio::time::timeout(TIMEOUT, out).await.expect("pub hung").unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tcp://host:port"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    hub.shutdown().await;
}

/// Entries of a Redis Streams source reach the Rust client with their metadata split off the
/// payload — over a WebSocket and over raw TCP alike — and `fanhub sub` shows it: a `meta`
/// field with `--json`, `[topic #offset meta {…}]` with `--meta`.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_sources_messages_reach_the_client_over_websocket_and_tcp_with_their_metadata_and_sub_prints_it() {
    use redis::AsyncCommands;
    let redis = RedisServer::start().await;
    let mut con = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let mut ids: Vec<String> = Vec::new();
    for n in 0..3 {
        let payload = json!({ "n": n }).to_string();
        ids.push(
            con.xadd("orders", "*", &[("payload", payload.as_str()), ("key", "car-7"), ("trace", "t")]).await.unwrap(),
        );
    }
    let mut config = with_tcp(resumable_config());
    config.sources = vec![redis_source(&redis.url(), "orders", "rel/orders")];
    let hub = spawn_hub(config).await;
    let meta = |id: &str| {
        json!({"source": "fleet", "upstream": "orders", "partition": "orders", "position": id,
               "key": "car-7", "headers": {"trace": "t"}})
    };

    let mut ws = options(hub.ws_url(), hub.token("ws-client"));
    ws.transport = Transport::WebSocket;
    for (name, o) in [("websocket", ws), ("tcp", options(tcp_url(&hub), hub.token("tcp-client")))] {
        let client = Client::connect(o).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut sub = client.subscribe("rel/orders", From::Oldest).await.unwrap();
        for (n, id) in ids.iter().enumerate() {
            let m = next_message(&mut sub).await;
            assert_eq!(m.offset, n as u64 + 1, "{name}");
            assert_eq!(&m.payload[..], json!({ "n": n }).to_string().as_bytes(), "{name}: payload without the block");
            assert!(m.is_json(), "{name}: {m:?}");
            assert_eq!(m.meta_json(), Some(meta(id)), "{name}: {:?}", m.meta_str());
        }
        // A client's own publish on the same topic has none.
        client.publish("rel/orders", &b"mine"[..]).await.unwrap();
        let m = next_message(&mut sub).await;
        assert_eq!((&m.payload[..], m.meta.as_ref()), (&b"mine"[..], None), "{name}");
        client.close().await;
    }

    let token = hub.token("cli");
    let sub = |extra: &[&str]| {
        let mut args = vec!["sub", "rel/orders", "--offset", "1", "--count", "3", "--url"];
        args.extend_from_slice(extra);
        args.extend(["--token", token.as_str()]);
        fanhub().args(&args).output()
    };
    let tcp = tcp_url(&hub);
    let ws_url = hub.ws_url();
    let (json_out, text_out) = tokio::join!(sub(&[tcp.as_str(), "--tcp", "--json"]), sub(&[ws_url.as_str(), "--meta"]));
    let (json_out, text_out) = (json_out.unwrap(), text_out.unwrap());
    assert!(json_out.status.success(), "{}", String::from_utf8_lossy(&json_out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(json_out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!((&lines[0]["payload"], &lines[0]["meta"]), (&json!({"n": 0}), &meta(&ids[0])));
    assert_eq!((&lines[2]["payload"], &lines[2]["meta"]), (&json!({"n": 2}), &meta(&ids[2])));
    assert!(text_out.status.success(), "{}", String::from_utf8_lossy(&text_out.stderr));
    let text = String::from_utf8(text_out.stdout).unwrap();
    let first = text.lines().next().unwrap_or_default();
    let (head, payload) = first.split_once("] ").unwrap_or_else(|| panic!("{text}"));
    let shown: serde_json::Value = serde_json::from_str(head.strip_prefix("[rel/orders #1 meta ").unwrap()).unwrap();
    assert_eq!((shown, payload), (meta(&ids[0]), r#"{"n":0}"#), "{text}");
    hub.shutdown().await;
}
