//! The Redis Streams source against real `redis-server`s: entries reach WebSocket subscribers in
//! order with their upstream position; an upstream restart and a hub restart lose and repeat
//! nothing; a stalled mapping does not hold up the others; poison goes to the dead letter (a hub
//! topic, and a stream in the upstream that is committed past only once written); an
//! unreachable upstream leaves the node serving.

use std::collections::HashMap;
use std::time::Duration;

use fanhub::config::{BackpressureMode, ConsumerSettings, MappingConfig, SourceConfig};
use redis::AsyncCommands;
use serde_json::{json, Value};

use crate::common::*;

/// The source `fleet` (as [`redis_source`] parses it) with these mappings.
fn source(url: &str, mappings: Vec<MappingConfig>) -> SourceConfig {
    source_of("redis", url, "", mappings)
}

async fn redis_con(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

async fn xadd(con: &mut redis::aio::MultiplexedConnection, key: &str, n: u64) -> String {
    let payload = json!({ "n": n }).to_string();
    con.xadd(key, "*", &[("payload", payload.as_str()), ("trace", "t")]).await.unwrap()
}

async fn pending(con: &mut redis::aio::MultiplexedConnection, key: &str) -> u64 {
    let v: redis::Value = redis::cmd("XPENDING").arg(key).arg("fanhub.fleet").query_async(con).await.unwrap();
    match v {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n as u64,
            _ => 0,
        },
        _ => 0,
    }
}

#[tokio::test]
async fn stream_entries_reach_websocket_subscribers_in_order_with_their_upstream_position() {
    let redis = RedisServer::start().await;
    let mut con = redis_con(&redis.url()).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(xadd(&mut con, "telemetry.car-1", n).await);
    }
    let mut config = resumable_config();
    config.sources = vec![source(&redis.url(), vec![mapping("telemetry.{device}", "rel/telemetry/{device}")])];
    let hub = spawn_hub(config).await;
    until(&hub, "the first 20 published", |v| mapping_view(v, 0)["published"] == 20).await;

    let mut sub = hub.connect("sub").await;
    sub.subscribe_from("rel/telemetry/car-1", 1).await;
    for n in 20..40 {
        ids.push(xadd(&mut con, "telemetry.car-1", n).await);
    }
    let got = sub.records(40).await;
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), (1..=40).collect::<Vec<_>>());
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (0..40).collect::<Vec<_>>());
    for (r, id) in got.iter().zip(&ids) {
        assert_eq!(r.flags & 0x01, 0x01, "JSON payloads are flagged JSON");
        assert_eq!(
            r.meta.as_ref().unwrap(),
            &json!({"source":"fleet","upstream":"telemetry.car-1","partition":"telemetry.car-1",
                    "position": id,"headers":{"trace":"t"}})
        );
    }
    // Lag is measured every second: wait for a measurement after the last commit.
    let v = until(&hub, "every entry acknowledged, no lag", |v| {
        mapping_view(v, 0)["commits"] == 40 && mapping_view(v, 0)["lag"] == 0
    })
    .await;
    let m = mapping_view(&v, 0);
    assert_eq!((m["received"].as_u64(), m["lag"].as_u64()), (Some(40), Some(0)), "{m:#}");
    assert_eq!(v["items"][0]["consumers"][0]["state"], "connected");
    assert_eq!(pending(&mut con, "telemetry.car-1").await, 0, "nothing left unacknowledged");
    let health = http(hub.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(health.json()["sources"]["not_connected"], json!([]));
    let metrics = admin(&hub, "GET", "/metrics", "").await.body;
    assert!(
        metrics.contains(r#"fanhub_source_published_total{source="fleet",mapping="telemetry.{device}"} 40"#),
        "{metrics}"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn an_upstream_restart_mid_stream_loses_nothing_and_repeats_nothing() {
    let mut redis = RedisServer::start_persistent().await;
    let mut con = redis_con(&redis.url()).await;
    let mut config = resumable_config();
    config.sources = vec![source(&redis.url(), vec![mapping("orders", "rel/orders")])];
    let hub = spawn_hub(config).await;
    until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe("rel/orders").await;
    for n in 0..100 {
        xadd(&mut con, "orders", n).await;
    }
    let first = sub.records(50).await;
    redis.restart().await;
    let mut con = redis_con(&redis.url()).await;
    for n in 100..200 {
        xadd(&mut con, "orders", n).await;
    }
    let mut got = first;
    got.extend(sub.records(150).await);
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>());
    let v = until(&hub, "all acknowledged", |v| mapping_view(v, 0)["published"] == 200).await;
    assert!(v["items"][0]["consumers"][0]["failures"].as_u64().unwrap() >= 1, "{v:#}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sub.buffered_records().is_empty(), "no duplicate after the restart");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_restarted_hub_resumes_after_the_committed_position() {
    let redis = RedisServer::start_persistent().await;
    let mut con = redis_con(&redis.url()).await;
    let mut config = resumable_config();
    config.sources = vec![source(&redis.url(), vec![mapping("orders", "rel/orders")])];
    for n in 0..30 {
        xadd(&mut con, "orders", n).await;
    }
    let hub = spawn_hub(config.clone()).await;
    until(&hub, "30 published", |v| mapping_view(v, 0)["published"] == 30).await;
    hub.shutdown().await;
    assert_eq!(pending(&mut con, "orders").await, 0, "a clean stop commits what it published");
    for n in 30..60 {
        xadd(&mut con, "orders", n).await;
    }
    let hub = spawn_hub(config).await;
    until(&hub, "the 30 new ones published", |v| mapping_view(v, 0)["published"] == 30).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe_from("rel/orders", 1).await;
    let got = sub.records(30).await;
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (30..60).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sub.buffered_records().is_empty(), "nothing published twice");
    hub.shutdown().await;
}

/// Two mappings on the shared consumer; `slow/…` has a subscriber that reads nothing on a
/// `reliable` + `apply_backpressure` topic, so the hub cannot take its records.
async fn stalled_mapping(mode: BackpressureMode, exclusive: bool) -> (Value, Vec<Record>) {
    let redis = RedisServer::start().await;
    let mut con = redis_con(&redis.url()).await;
    let (hub, stalled, mut fast) =
        stalled_hub(mode, exclusive.then(ConsumerSettings::default), |m| source(&redis.url(), m)).await;
    for n in 0..300 {
        let _: String = con.xadd("slow", "*", &[("payload", stalled_payload(n))]).await.unwrap();
    }
    until_stuck(&hub).await;
    for n in 0..200 {
        xadd(&mut con, "fast", n).await;
    }
    let got = fast.records(200).await;
    let v = until_lag_measured(&hub, mode).await;
    drop(stalled);
    hub.shutdown().await;
    (v, got)
}

#[tokio::test]
async fn a_stalled_mapping_under_apply_backpressure_pauses_alone_and_the_other_keeps_flowing() {
    let (v, fast) = stalled_mapping(BackpressureMode::ApplyBackpressure, false).await;
    assert_eq!(fast.iter().map(n_of).collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
    let slow = mapping_view(&v, 0);
    assert_eq!(slow["paused"], true, "{slow:#}");
    assert!(slow["pauses"].as_u64().unwrap() >= 1);
    assert_eq!(slow["dropped"], json!({"drop_oldest":0,"drop_newest":0,"duplicate":0,"dead_letter":0}));
    assert!(slow["received"].as_u64().unwrap() < 300, "the paused stream is not fetched: {slow:#}");
    assert!(slow["lag"].as_u64().unwrap() > 0, "{slow:#}");
}

#[tokio::test]
async fn a_stalled_mapping_under_drop_oldest_drops_and_counts_and_the_other_keeps_flowing() {
    let (v, fast) = stalled_mapping(BackpressureMode::DropOldest, false).await;
    assert_eq!(fast.iter().map(n_of).collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
    let slow = mapping_view(&v, 0);
    assert!(slow["dropped"]["drop_oldest"].as_u64().unwrap() > 0, "{slow:#}");
    assert_eq!(slow["paused"], false);
}

#[tokio::test]
async fn a_stalled_mapping_with_an_exclusive_consumer_is_isolated() {
    let (v, fast) = stalled_mapping(BackpressureMode::ApplyBackpressure, true).await;
    assert_eq!(fast.iter().map(n_of).collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
    let consumers = &v["items"][0]["consumers"];
    assert_eq!(consumers.as_array().unwrap().len(), 2, "{consumers:#}");
    assert_eq!(consumers[1]["exclusive_mapping"], 0);
    assert_eq!(consumers[1]["group"], "fanhub.fleet.0");
    assert_eq!(mapping_view(&v, 0)["paused"], true);
}

#[tokio::test]
async fn a_poison_record_goes_to_the_dead_letter_counted_and_the_stream_continues() {
    let redis = RedisServer::start().await;
    let mut con = redis_con(&redis.url()).await;
    let mut config = test_config();
    let mut m = mapping("events", "events/all");
    m.payload_field = Some("/data".into());
    let mut s = source(&redis.url(), vec![m]);
    s.dead_letter = Some("dead/fleet".into());
    config.sources = vec![s];
    let hub = spawn_hub(config).await;
    until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe("events/all").await;
    let mut dead = hub.connect("dead").await;
    dead.subscribe("dead/fleet").await;
    let _: String = con.xadd("events", "*", &[("payload", r#"{"data":{"n":1}}"#)]).await.unwrap();
    let bad: String = con.xadd("events", "*", &[("payload", "not json")]).await.unwrap();
    let _: String = con.xadd("events", "*", &[("payload", r#"{"data":{"n":2}}"#)]).await.unwrap();
    let got = sub.records(2).await;
    assert_eq!(
        got.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
        [br#"{"n":1}"#.to_vec(), br#"{"n":2}"#.to_vec()]
    );
    let d = dead.next_record().await;
    assert_eq!(d.payload, b"not json");
    let meta = d.meta.unwrap();
    assert_eq!((meta["reason"].as_str(), meta["position"].as_str()), (Some("payload_field"), Some(bad.as_str())));
    assert!(meta["error"].as_str().unwrap().contains("not JSON"), "{meta}");
    let v = until(&hub, "all three committed", |v| mapping_view(v, 0)["commits"] == 3).await;
    assert_eq!(mapping_view(&v, 0)["dropped"]["dead_letter"], 1);
    assert_eq!(pending(&mut con, "events").await, 0);
    hub.shutdown().await;
}

/// The entries of the stream `key`: id and fields (values as text, lossy).
async fn entries(con: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<(String, HashMap<String, String>)> {
    let reply: redis::streams::StreamRangeReply = con.xrange_all(key).await.unwrap();
    reply
        .ids
        .into_iter()
        .map(|e| {
            let fields = e
                .map
                .into_iter()
                .map(|(k, v)| match v {
                    redis::Value::BulkString(b) => (k, String::from_utf8_lossy(&b).into_owned()),
                    other => panic!("field {k}: {other:?}"),
                })
                .collect();
            (e.id, fields)
        })
        .collect()
}

/// Successful and failed `XADD`s the server ran (`INFO commandstats`).
async fn xadd_calls(con: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(con).await.unwrap();
    let calls = info.lines().find_map(|l| l.strip_prefix("cmdstat_xadd:calls="));
    calls.map_or(0, |c| c.split(',').next().unwrap().parse().unwrap())
}

/// The source `fleet` reading `events` through [`data_field_mapping`], its upstream dead letter
/// the stream `events.dead`.
fn dead_letter_source(url: &str) -> SourceConfig {
    let mut s = source(url, vec![data_field_mapping()]);
    s.upstream_dead_letter = Some("events.dead".into());
    s
}

/// `{"data":{"n":n}}` (key `k<n>`), or a payload that is not JSON (key `bad`), to `events`; its id.
async fn add_event(con: &mut redis::aio::MultiplexedConnection, n: Option<u64>) -> String {
    match n {
        Some(n) => {
            let payload = json!({ "data": { "n": n } }).to_string();
            con.xadd("events", "*", &[("payload", payload.as_str()), ("key", &format!("k{n}"))]).await.unwrap()
        }
        None => con.xadd("events", "*", &[("payload", "not json"), ("key", "bad"), ("trace", "t")]).await.unwrap(),
    }
}

#[tokio::test]
async fn a_poison_record_goes_to_the_upstream_dead_letter_stream_and_the_hub_topic_and_is_committed() {
    let redis = RedisServer::start().await;
    let mut con = redis_con(&redis.url()).await;
    let mut config = test_config();
    let mut s = dead_letter_source(&redis.url());
    s.dead_letter = Some("dead/fleet".into());
    config.sources = vec![s];
    let hub = spawn_hub(config).await;
    let v = until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    assert_eq!(v["items"][0]["upstream_dead_letter"], "events.dead");
    let mut sub = hub.connect("sub").await;
    sub.subscribe("events/all").await;
    let mut dead = hub.connect("dead").await;
    dead.subscribe("dead/fleet").await;
    add_event(&mut con, Some(1)).await;
    let bad = add_event(&mut con, None).await;
    add_event(&mut con, Some(2)).await;
    let got = sub.records(2).await;
    assert_eq!(
        got.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
        [br#"{"n":1}"#.to_vec(), br#"{"n":2}"#.to_vec()]
    );
    let v = until(&hub, "all three committed", |v| mapping_view(v, 0)["commits"] == 3).await;
    let m = mapping_view(&v, 0);
    assert_eq!((m["upstream_dead_letters"].as_u64(), m["dropped"]["dead_letter"].as_u64()), (Some(1), Some(1)));
    assert_eq!(pending(&mut con, "events").await, 0, "the committed position moved past the poison");

    let dlq = entries(&mut con, "events.dead").await;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let f = &dlq[0].1;
    let field = |k: &str| f.get(k).map(String::as_str);
    assert_eq!(
        [field("payload"), field("source"), field("upstream"), field("position"), field("reason"), field("key")],
        [Some("not json"), Some("fleet"), Some("events"), Some(bad.as_str()), Some("payload_field"), Some("bad")]
    );
    assert!(field("error").unwrap().contains("not JSON"), "{f:?}");
    // Both dead letters got it: the hub topic too, as before.
    let d = dead.next_record().await;
    assert_eq!((d.payload.as_slice(), d.meta.unwrap()["position"].as_str()), (&b"not json"[..], Some(bad.as_str())));
    let metrics = admin(&hub, "GET", "/metrics", "").await.body;
    assert!(
        metrics.contains(r#"fanhub_source_upstream_dead_letters_total{source="fleet",mapping="events"} 1"#),
        "{metrics}"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn an_upstream_dead_letter_that_cannot_be_written_keeps_the_record_uncommitted_and_is_retried() {
    let redis = RedisServer::start().await;
    let mut con = redis_con(&redis.url()).await;
    // A string where the dead-letter stream should be: every XADD to it fails (WRONGTYPE).
    let _: () = con.set("events.dead", "x").await.unwrap();
    let mut config = test_config();
    config.sources = vec![dead_letter_source(&redis.url())];
    let hub = spawn_hub(config).await;
    until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe("events/all").await;
    add_event(&mut con, Some(1)).await;
    add_event(&mut con, None).await;
    add_event(&mut con, Some(2)).await;
    assert_eq!(n_of(&sub.next_record().await), 1);
    // The test's own 3 XADDs, then the hub's attempts: at least two, so it retried.
    poll("two attempts at the dead letter", || {
        let mut con = con.clone();
        async move { (xadd_calls(&mut con).await >= 5).then_some(()) }
    })
    .await;
    let v = until(&hub, "the first record committed, the failures counted", |v| {
        mapping_view(v, 0)["commits"] == 1 && mapping_view(v, 0)["upstream_dead_letter_failures"].as_u64() >= Some(2)
    })
    .await;
    let m = mapping_view(&v, 0);
    assert_eq!((m["published"].as_u64(), m["upstream_dead_letters"].as_u64()), (Some(1), Some(0)), "{m:#}");
    assert_eq!(pending(&mut con, "events").await, 2, "the poison and the record behind it stay uncommitted");

    // The stream can be written now: the poison lands, and the stream goes on behind it.
    let _: () = con.del("events.dead").await.unwrap();
    assert_eq!(n_of(&sub.next_record().await), 2);
    add_event(&mut con, Some(3)).await;
    assert_eq!(n_of(&sub.next_record().await), 3);
    let v = until(&hub, "all four committed", |v| mapping_view(v, 0)["commits"] == 4).await;
    assert_eq!(mapping_view(&v, 0)["upstream_dead_letters"], 1);
    assert_eq!(pending(&mut con, "events").await, 0);
    let dlq = entries(&mut con, "events.dead").await;
    assert_eq!(dlq.len(), 1, "written once: {dlq:?}");
    assert_eq!(dlq[0].1["payload"], "not json");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_stop_while_the_upstream_dead_letter_fails_leaves_the_record_for_the_next_start() {
    let redis = RedisServer::start().await;
    let mut con = redis_con(&redis.url()).await;
    let _: () = con.set("events.dead", "x").await.unwrap();
    let mut config = test_config();
    config.sources = vec![dead_letter_source(&redis.url())];
    let hub = spawn_hub(config.clone()).await;
    until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    add_event(&mut con, Some(1)).await;
    let bad = add_event(&mut con, None).await;
    poll("an attempt at the dead letter", || {
        let mut con = con.clone();
        async move { (xadd_calls(&mut con).await >= 3).then_some(()) }
    })
    .await;
    until(&hub, "the first record committed", |v| mapping_view(v, 0)["commits"] == 1).await;
    hub.shutdown().await;
    assert_eq!(pending(&mut con, "events").await, 1, "the poison stays uncommitted over the stop");

    let _: () = con.del("events.dead").await.unwrap();
    let hub = spawn_hub(config).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe("events/all").await;
    let v = until(&hub, "the poison written and committed", |v| mapping_view(v, 0)["commits"] == 1).await;
    assert_eq!(mapping_view(&v, 0)["upstream_dead_letters"], 1);
    assert_eq!(pending(&mut con, "events").await, 0);
    let dlq = entries(&mut con, "events.dead").await;
    assert_eq!((dlq.len(), dlq[0].1["position"].as_str()), (1, bad.as_str()));
    add_event(&mut con, Some(2)).await;
    assert_eq!(n_of(&sub.next_record().await), 2);
    hub.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_upstream_at_start_leaves_the_node_serving_and_readiness_names_it() {
    let mut redis = RedisServer::not_started();
    let mut config = resumable_config();
    config.sources = vec![source(&redis.url(), vec![mapping("orders", "rel/orders")])];
    let hub = spawn_hub(config).await;
    let v = until(&hub, "a failed attempt", |v| v["items"][0]["consumers"][0]["failures"].as_u64() > Some(0)).await;
    let c = &v["items"][0]["consumers"][0];
    assert_eq!(c["state"], "retrying");
    assert!(c["error"].as_str().unwrap().to_lowercase().contains("refused"), "{c:#}");
    let ready = http(hub.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 200, "the node serves without its upstream");
    assert_eq!(ready.json()["sources"]["not_connected"], json!(["fleet"]));
    let mut sub = hub.connect("sub").await;
    sub.subscribe("rel/orders").await;
    redis.restart().await;
    until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    let mut con = redis_con(&redis.url()).await;
    for n in 0..10 {
        xadd(&mut con, "orders", n).await;
    }
    let got = sub.records(10).await;
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    hub.shutdown().await;
}

/// A cluster node whose broker Redis is reached through `broker` (a proxy or the server), with
/// the Redis Streams source `fleet` reading `orders` from `upstream` into `rel/orders`.
async fn cluster_node(broker: &str, upstream: &RedisServer, id: &str) -> Hub {
    crate::cluster::source_node(broker, id, vec![source(&upstream.url(), vec![mapping("orders", "rel/orders")])]).await
}

#[tokio::test]
async fn in_cluster_mode_one_node_consumes_and_a_node_cut_off_hands_over_without_loss_or_duplicate() {
    let broker = RedisServer::start().await;
    let upstream = RedisServer::start().await;
    let mut con = redis_con(&upstream.url()).await;
    let proxy = Proxy::start(format!("127.0.0.1:{}", broker.port).parse().unwrap()).await;
    // A first: it takes the lease; B then waits on standby.
    let a = cluster_node(&format!("redis://{}/", proxy.addr), &upstream, "src-node-a").await;
    until(&a, "A consumes", |v| consumer_state(v) == "connected").await;
    let b = cluster_node(&broker.url(), &upstream, "src-node-b").await;
    let v = until(&b, "B on standby", |v| consumer_state(v) == "standby").await;
    assert!(v["items"][0]["consumers"][0]["error"].as_str().unwrap().contains("src-node-a"), "{v:#}");
    let ready = http(b.addr, "GET", "/readyz", &[], "").await;
    assert_eq!((ready.status, ready.json()["sources"]["not_connected"].clone()), (200, json!([])), "standby is ready");

    let mut sub = b.connect("sub").await;
    sub.subscribe("rel/orders").await;
    for n in 0..50 {
        xadd(&mut con, "orders", n).await;
    }
    let mut got = sub.records(50).await;
    // A loses the cluster's Redis: it cannot publish nor renew its lease; B takes over.
    proxy.refuse(true);
    proxy.cut();
    for n in 50..100 {
        xadd(&mut con, "orders", n).await;
    }
    until(&b, "B consumes", |v| consumer_state(v) == "connected").await;
    got.extend(sub.records(50).await);
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (0..100).collect::<Vec<_>>());
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), (1..=100).collect::<Vec<_>>());
    // A comes back: on standby, and whatever it still held is refused by the cluster's ledger.
    proxy.refuse(false);
    until(&a, "A on standby", |v| consumer_state(v) == "standby").await;
    until(&a, "A's lane empty", |v| mapping_view(v, 0)["buffered"] == 0).await;
    xadd(&mut con, "orders", 100).await;
    let next = sub.next_record().await;
    assert_eq!((n_of(&next), next.offset), (100, 101), "nothing published twice in between");
    a.shutdown().await;
    b.shutdown().await;
}
