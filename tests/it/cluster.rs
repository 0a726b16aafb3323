//! Cluster mode against a private `redis-server`: three nodes share one topic space (same
//! offsets, same order everywhere); a `reliable` subscriber whose node is killed (a real
//! `fanhub` process, SIGKILL) resumes on another node from its last offset with every message
//! exactly once; a Redis restart mid-stream is survived (readiness, `unavailable` for reliable
//! publishes, local best-effort delivery, recovery with a new epoch); a drain moves clients to
//! the other nodes without loss; and the admin API shows the cluster.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use fanhub::config::Config;
use serde_json::{json, Value};

pub(crate) const HEARTBEAT_MS: u64 = 200;

pub(crate) fn node_toml(redis: &RedisServer, node: &str, listen: &str) -> String {
    format!(
        r#"
node_id = "{node}"
[server]
listen = "{listen}"
admin_listen = "127.0.0.1:0"
shutdown_grace_ms = 2000
[websocket]
close_timeout_ms = 1000
[auth]
admin_tokens = ["{ADMIN_TOKEN}"]
api_keys = ["{API_KEY}"]
[demo]
enabled = false
[broker.redis]
url = "{url}"
heartbeat_ms = {HEARTBEAT_MS}
[[topics.declare]]
pattern = "rel/>"
policy = {{ kind = "reliable" }}
history = {{ max_messages = 10000 }}
"#,
        url = redis.url()
    )
}

/// A cluster node whose broker Redis is at `broker` (the server, or a proxy in front of it),
/// consuming `sources`.
pub(crate) async fn source_node(broker: &str, id: &str, sources: Vec<fanhub::config::SourceConfig>) -> Hub {
    let stub = RedisServer::not_started();
    let text = node_toml(&stub, id, "127.0.0.1:0").replace(&stub.url(), broker);
    let mut config = fanhub::config::Config::from_toml(&text).expect("node config");
    config.sources = sources;
    spawn_hub(config).await
}

pub(crate) async fn wait_ready(addr: std::net::SocketAddr) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        // `http` panics on a refused connection: a starting process may not listen yet.
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            let r = tokio::time::timeout(Duration::from_secs(1), http(addr, "GET", "/readyz", &[], "")).await;
            if r.is_ok_and(|r| r.status == 200) {
                return;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "node at {addr} never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An in-process node.
pub(crate) async fn node(redis: &RedisServer, id: &str) -> Hub {
    let config = Config::from_toml(&node_toml(redis, id, "127.0.0.1:0")).expect("config");
    let hub = spawn_hub(config).await;
    wait_ready(hub.addr).await;
    hub
}

/// Waits until `hub`'s cluster view lists `n` nodes.
async fn wait_nodes(hub: &Hub, n: usize) -> Value {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let v = admin(hub, "GET", "/v1/admin/cluster", "").await.json();
        if v["nodes"].as_array().map_or(0, Vec::len) == n {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "never saw {n} nodes: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn payload_index(r: &Record) -> u64 {
    serde_json::from_slice::<Value>(&r.payload).expect("JSON payload")["i"].as_u64().expect("i")
}

#[tokio::test]
async fn a_publish_on_one_node_reaches_every_node_in_order_with_the_same_offsets() {
    let redis = RedisServer::start().await;
    let (a, b, c) = (node(&redis, "A").await, node(&redis, "B").await, node(&redis, "C").await);
    let mut on_b = b.connect("sub-b").await;
    let mut on_c = c.connect("sub-c").await;
    let sb = on_b.subscribe("cl/t").await;
    let sc = on_c.subscribe("cl/t").await;
    assert_eq!(sb["head"], sc["head"], "both nodes see the same head: {sb} {sc}");
    let mut publisher = a.connect("pub").await;
    let mut offsets = Vec::new();
    for i in 0..200 {
        offsets.push(publisher.publish_json("cl/t", json!({ "i": i })).await);
    }
    assert_eq!(offsets, (1..=200).collect::<Vec<u64>>(), "Redis assigns consecutive offsets");
    let rb = on_b.records(200).await;
    let rc = on_c.records(200).await;
    for (rb, rc) in rb.iter().zip(&rc) {
        assert_eq!((rb.offset, rb.epoch, &rb.payload), (rc.offset, rc.epoch, &rc.payload));
    }
    assert_eq!(rb.iter().map(|r| r.offset).collect::<Vec<_>>(), offsets);
    assert_eq!(rb.iter().map(payload_index).collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
    // A has no subscriber of the topic: it never joined the channel, so none of it reached A.
    let view_a = admin(&a, "GET", "/v1/admin/cluster", "").await.json();
    assert_eq!(view_a["traffic"]["messages_in"], 0, "{view_a}");
    assert_eq!(view_a["traffic"]["published"], 200, "{view_a}");
    // The other direction, and a backend publish on the HTTP API.
    let mut on_a = a.connect("sub-a").await;
    on_a.subscribe("cl/t").await;
    let off = on_c.publish_json("cl/t", json!({ "i": 200 })).await;
    let r =
        http(b.addr, "POST", "/v1/publish", &[("X-Api-Key", API_KEY)], r#"{"topic":"cl/t","data":{"i":201}}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["offset"], off + 1);
    for sub in [&mut on_a, &mut on_b, &mut on_c] {
        let got = sub.records(2).await;
        assert_eq!(got.iter().map(|r| (r.offset, payload_index(r))).collect::<Vec<_>>(), [(201, 200), (202, 201)]);
    }
    // A late subscriber on a node that never held the topic replays from Redis history.
    let d = node(&redis, "D").await;
    let mut late = d.connect("late").await;
    let s = late.subscribe_from("cl/t", 150).await;
    assert_eq!((s["recovered"].as_bool(), s["replayed"].as_u64()), (Some(true), Some(53)), "{s}");
    let got = late.records(53).await;
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), (150..=202).collect::<Vec<u64>>());
    // B's only subscriber leaves: within a maintenance pass B leaves the channel.
    on_b.request(json!({"op": "unsubscribe", "topic": "cl/t"})).await;
    tokio::time::sleep(Duration::from_millis(HEARTBEAT_MS * 3)).await;
    let before = admin(&b, "GET", "/v1/admin/cluster", "").await.json()["traffic"]["messages_in"].clone();
    on_c.publish_json("cl/t", json!({ "i": 202 })).await;
    on_c.records(1).await;
    let after = admin(&b, "GET", "/v1/admin/cluster", "").await.json()["traffic"]["messages_in"].clone();
    assert_eq!(before, after, "B left the channel after its last subscriber");
    // The cluster view.
    let view = wait_nodes(&a, 4).await;
    assert_eq!(view["broker"], "redis");
    assert_eq!(view["ready"], true);
    let ids: Vec<&str> = view["nodes"].as_array().unwrap().iter().map(|n| n["node_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["A", "B", "C", "D"]);
    assert!(view["traffic"]["published"].as_u64().unwrap() >= 200, "{view}");
    let metrics = admin(&c, "GET", "/metrics", "").await.body;
    for series in ["fanhub_broker_up 1", "fanhub_cluster_nodes ", "fanhub_broker_messages_received_total "] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    let rows = admin(&b, "GET", "/v1/admin/connections", "").await.json();
    assert!(rows["items"].as_array().unwrap().iter().all(|r| r["node_id"] == "B"), "{rows}");
    for hub in [a, b, c, d] {
        hub.shutdown().await;
    }
}

/// A `fanhub serve` process: a real node to SIGKILL.
pub(crate) struct NodeProcess {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) child: tokio::process::Child,
    _config: tempfile_path::TempPath,
}

mod tempfile_path {
    /// A file removed on drop.
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

pub(crate) async fn node_process(redis: &RedisServer, id: &str) -> NodeProcess {
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let path = std::env::temp_dir().join(format!("fanhub-cluster-{id}-{}-{port}.toml", std::process::id()));
    std::fs::write(&path, node_toml(redis, id, &addr.to_string())).unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fanhub"))
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("FANHUB_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn fanhub");
    wait_ready(addr).await;
    NodeProcess { addr, child, _config: tempfile_path::TempPath(path) }
}

#[tokio::test]
async fn reliable_subscribers_of_a_killed_node_resume_on_another_exactly_once() {
    const N: u64 = 600;
    let redis = RedisServer::start().await;
    let a = node(&redis, "A").await;
    let mut b = node_process(&redis, "B").await;
    let c = node(&redis, "C").await;
    let token = a.token("survivor");
    let mut subs = Vec::new();
    for _ in 0..3 {
        let mut s = Client::open(&format!("ws://{}/ws", b.addr), &[]).await;
        let w = s.request(json!({"op": "connect", "token": token})).await;
        assert_eq!(w["type"], "welcome", "{w}");
        assert_eq!(w["node_id"], "B");
        s.subscribe("rel/stream").await;
        subs.push(s);
    }
    // The publisher on A never stops while B dies.
    let mut publisher = a.connect("publisher").await;
    let publishing = tokio::spawn(async move {
        for i in 0..N {
            let off = publisher.publish_json("rel/stream", json!({ "i": i })).await;
            assert_eq!(off, i + 1);
            // Paced (about 1 s in all), so B dies mid-stream.
            if i % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
        publisher
    });
    // Each subscriber reads until B is killed.
    let mut got: Vec<Vec<Record>> = Vec::new();
    for s in &mut subs {
        got.push(s.records(100).await);
    }
    b.child.start_kill().unwrap();
    b.child.wait().await.unwrap();
    let mut resumed = Vec::new();
    for (mut s, mut before) in subs.into_iter().zip(got) {
        let (rest, _closed) = s.read_until_close().await;
        before.extend(rest);
        let last = before.last().unwrap();
        let mut on_c = c.connect("survivor").await;
        let r = on_c
            .request(json!({"op": "subscribe", "topic": "rel/stream", "offset": last.offset + 1, "epoch": last.epoch}))
            .await;
        assert_eq!(r["type"], "subscribed", "{r}");
        assert_eq!(r["recovered"], true, "{r}");
        resumed.push((on_c, before));
    }
    let _publisher = tokio::time::timeout(TIMEOUT * 3, publishing).await.expect("publisher hung").unwrap();
    for (mut on_c, mut all) in resumed {
        let missing = (N - all.len() as u64) as usize;
        all.extend(on_c.records(missing).await);
        let offsets: Vec<u64> = all.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (1..=N).collect::<Vec<u64>>(), "every message exactly once, in order");
        assert_eq!(all.iter().map(payload_index).collect::<Vec<_>>(), (0..N).collect::<Vec<_>>());
        on_c.assert_alive().await;
    }
    a.shutdown().await;
    c.shutdown().await;
}

#[tokio::test]
async fn a_redis_restart_mid_stream_is_survived_with_each_policy_kept() {
    let mut redis = RedisServer::start().await;
    let a = node(&redis, "A").await;
    let b = node(&redis, "B").await;
    let mut rel = b.connect("rel-sub").await;
    rel.subscribe("rel/r").await;
    let mut be = b.connect("be-sub").await;
    be.subscribe("be/x").await;
    let mut pa = a.connect("pub-a").await;
    let mut pb = b.connect("pub-b").await;
    let mut acked_reliable = Vec::new();
    for i in 0..20 {
        pa.publish_json("rel/r", json!({ "i": i })).await;
        acked_reliable.push(i);
        pa.publish_json("be/x", json!({ "i": i })).await;
    }
    assert_eq!(be.records(20).await.len(), 20);

    redis.stop();
    // Readiness drops within a maintenance pass.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while http(a.addr, "GET", "/readyz", &[], "").await.status != 503 {
        assert!(tokio::time::Instant::now() < deadline, "A stayed ready without Redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = http(a.addr, "GET", "/readyz", &[], "").await.json();
    assert_eq!(r["broker"]["ready"], false, "{r}");
    // Reliable publishes are refused, never silently dropped; the connection stays up.
    let r = pa.request(json!({"op": "publish", "topic": "rel/r", "data": {"i": -1}})).await;
    assert_eq!((r["type"].as_str(), r["code"].as_str()), (Some("error"), Some("unavailable")), "{r}");
    let r =
        http(a.addr, "POST", "/v1/publish", &[("X-Api-Key", API_KEY)], r#"{"topic":"rel/r","data":{"i":-2}}"#).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (503, Some("unavailable")), "{}", r.body);
    // Best-effort: delivered to the publishing node's own subscribers.
    let wait_down = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let r = pb.request(json!({"op": "publish", "topic": "be/x", "data": {"i": 100}})).await;
        assert_eq!(r["type"], "published", "{r}");
        let rec = be.next_record().await;
        if payload_index(&rec) == 100 {
            break;
        }
        assert!(tokio::time::Instant::now() < wait_down, "no local delivery while Redis is down");
    }
    pa.assert_alive().await;

    redis.restart().await;
    wait_ready(a.addr).await;
    wait_ready(b.addr).await;
    // Reliable publishes work again; the subscriber on B gets every acknowledged one.
    let mut after = Vec::new();
    for i in 20..40 {
        let r = pa.request(json!({"op": "publish", "topic": "rel/r", "data": {"i": i}})).await;
        if r["type"] == "published" {
            after.push(i);
        } else {
            assert_eq!(r["code"], "unavailable", "{r}");
        }
    }
    assert!(!after.is_empty(), "reliable publishes never came back");
    acked_reliable.extend(after);
    let got = rel.records(acked_reliable.len()).await;
    assert_eq!(got.iter().map(payload_index).collect::<Vec<_>>(), acked_reliable);
    let epochs: std::collections::BTreeSet<u64> = got.iter().map(|r| r.epoch).collect();
    assert_eq!(epochs.len(), 2, "Redis lost everything (no persistence): the epoch changed once");
    // Best-effort flows through Redis again (node B's channel was restored).
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        pa.publish_json("be/x", json!({ "i": 500 })).await;
        let rec = tokio::time::timeout(Duration::from_millis(500), be.next_record()).await;
        if rec.is_ok_and(|r| payload_index(&r) == 500) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "best-effort never flowed through Redis again");
    }
    rel.assert_alive().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_drain_moves_clients_to_the_other_nodes_without_loss() {
    const N: u64 = 400;
    let redis = RedisServer::start().await;
    let (a, b, c) = (node(&redis, "A").await, node(&redis, "B").await, node(&redis, "C").await);
    wait_nodes(&a, 3).await;
    let mut subs = Vec::new();
    for i in 0..4 {
        let mut s = a.connect(&format!("drained-{i}")).await;
        s.subscribe("rel/drain").await;
        subs.push(s);
    }
    let mut publisher = c.connect("publisher").await;
    let publishing = tokio::spawn(async move {
        for i in 0..N {
            publisher.publish_json("rel/drain", json!({ "i": i })).await;
            // Paced, so the drain happens mid-stream.
            if i % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
        publisher
    });
    let mut before = Vec::new();
    for s in &mut subs {
        before.push(s.records(50).await);
    }
    let r = admin(&a, "POST", "/v1/admin/drain", "{}").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut moved = Vec::new();
    for (mut s, mut all) in subs.into_iter().zip(before) {
        let (rest, closed) = s.read_until_close().await;
        all.extend(rest);
        let bye = closed.messages.iter().find(|m| m["type"] == "bye").unwrap_or_else(|| panic!("a bye: {closed:?}"));
        let urls: Vec<String> = bye["reconnect"]
            .as_array()
            .expect("reconnect URLs")
            .iter()
            .map(|u| u.as_str().unwrap().to_owned())
            .collect();
        let peers = [b.ws_url(), c.ws_url()];
        assert!(!urls.is_empty() && urls.iter().all(|u| peers.contains(u)), "advice names B and C: {urls:?}");
        let target = if urls[0] == b.ws_url() { &b } else { &c };
        let mut next = target.connect("moved").await;
        let last = all.last().cloned();
        let from = last.as_ref().map_or(1, |r| r.offset + 1);
        let mut req = json!({"op": "subscribe", "topic": "rel/drain", "offset": from});
        if let Some(l) = &last {
            req["epoch"] = json!(l.epoch);
        }
        let r = next.request(req).await;
        assert_eq!((r["type"].as_str(), r["recovered"].as_bool()), (Some("subscribed"), Some(true)), "{r}");
        moved.push((next, all));
    }
    tokio::time::timeout(TIMEOUT * 3, publishing).await.expect("publisher hung").unwrap();
    for (mut next, mut all) in moved {
        let missing = (N - all.len() as u64) as usize;
        all.extend(next.records(missing).await);
        assert_eq!(all.iter().map(|r| r.offset).collect::<Vec<_>>(), (1..=N).collect::<Vec<u64>>());
    }
    for hub in [a, b, c] {
        hub.shutdown().await;
    }
}

#[tokio::test]
async fn a_node_started_before_redis_is_not_ready_until_redis_answers() {
    let mut redis = RedisServer::not_started();
    let config = Config::from_toml(&node_toml(&redis, "early", "127.0.0.1:0")).expect("config");
    let hub = spawn_hub(config).await;
    let r = http(hub.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["broker"], json!({"kind": "redis", "ready": false}));
    assert_eq!(http(hub.addr, "GET", "/healthz", &[], "").await.status, 200, "alive all the same");
    let mut c = hub.connect("early-client").await;
    let r = c.request(json!({"op": "publish", "topic": "rel/x", "data": 1})).await;
    assert_eq!(r["code"], "unavailable", "{r}");
    let r = c.request(json!({"op": "subscribe", "topic": "rel/x", "offset": 1})).await;
    assert_eq!(r["code"], "unavailable", "an offset needs Redis history: {r}");
    c.subscribe("rel/x").await;
    let view = admin(&hub, "GET", "/v1/admin/cluster", "").await.json();
    assert_eq!((view["broker"].as_str(), view["ready"].as_bool()), (Some("redis"), Some(false)), "{view}");
    // Redis comes up: the node connects by itself, joins the channel of its live subscriber.
    redis.restart().await;
    wait_ready(hub.addr).await;
    let mut p = hub.connect("publisher").await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let off = p.publish_json("rel/x", json!({ "i": 7 })).await;
        if let Ok(rec) = tokio::time::timeout(Duration::from_millis(500), c.next_record()).await {
            assert_eq!((rec.offset, payload_index(&rec)), (off, 7));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the live subscriber never got Redis traffic");
    }
    hub.shutdown().await;
}
