//! The NATS JetStream source against real `nats-server -js`es (one per test, on a free port, with
//! its own store): messages reach WebSocket subscribers in order with their stream sequence; an
//! upstream restart and a hub restart lose and repeat nothing; a stalled mapping does not hold
//! up the others; poison goes to the dead letter (a hub topic, and a subject of a stream upstream
//! that is acknowledged past only once written); an unreachable upstream (or a missing stream)
//! leaves the node serving.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use fanhub::config::{BackpressureMode, ConsumerSettings, MappingConfig, SourceConfig};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::common::*;

/// The stream every test creates.
const STREAM: &str = "FLEET";

/// A private `nats-server` with JetStream on a free loopback port and its own store directory
/// (removed on drop); [`Self::restart`] brings it back on the same port with the same store.
struct NatsServer {
    port: u16,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

impl NatsServer {
    async fn start() -> NatsServer {
        let mut s = NatsServer::not_started();
        s.spawn().await;
        s
    }

    /// A free port and a fresh store for a server that is not running yet ([`Self::restart`]
    /// starts it).
    fn not_started() -> NatsServer {
        let port = free_port();
        let dir = scratch_dir("nats", port);
        NatsServer { port, dir, child: None }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let port = self.port.to_string();
        let dir = self.dir.to_string_lossy().into_owned();
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd", &dir])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server (the test command installs it)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", self.port)).await {
                let mut buf = [0u8; 5];
                if tcp.read_exact(&mut buf).await.is_ok() && &buf == b"INFO " {
                    return;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "nats-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server (SIGKILL: nothing is flushed on the way out).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn source(url: &str, mappings: Vec<MappingConfig>) -> SourceConfig {
    source_of("nats", url, &format!("stream = \"{STREAM}\""), mappings)
}

async fn js(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.unwrap())
}

async fn create_stream(js: &jetstream::Context, subjects: &[&str]) {
    let config = jetstream::stream::Config {
        name: STREAM.into(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    js.create_stream(config).await.unwrap();
}

/// Publishes `{"n": n}` on `subject` with the headers `trace: t` and `key: <key>`; its stream
/// sequence.
async fn publish(js: &jetstream::Context, subject: &str, key: &str, n: u64) -> u64 {
    publish_raw(js, subject, key, json!({ "n": n }).to_string().into_bytes()).await
}

async fn publish_raw(js: &jetstream::Context, subject: &str, key: &str, payload: Vec<u8>) -> u64 {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("trace", "t");
    headers.insert("key", key);
    let ack = js.publish_with_headers(subject.to_owned(), headers, payload.into()).await.unwrap();
    ack.await.unwrap().sequence
}

/// Deliveries of `durable` not acknowledged yet.
async fn unacknowledged(js: &jetstream::Context, durable: &str) -> usize {
    let stream = js.get_stream(STREAM).await.unwrap();
    stream.consumer_info(durable).await.unwrap().num_ack_pending
}

/// Polls `durable` until every delivery is acknowledged (JetStream takes acks asynchronously).
async fn until_all_acknowledged(js: &jetstream::Context, durable: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n = unacknowledged(js, durable).await;
        if n == 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{n} deliveries of {durable} still unacknowledged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn stream_messages_reach_websocket_subscribers_in_order_with_their_stream_sequence() {
    let nats = NatsServer::start().await;
    let js = js(&nats.url()).await;
    create_stream(&js, &["telemetry.>"]).await;
    let mut seqs = Vec::new();
    for n in 0..20 {
        seqs.push(publish(&js, "telemetry.car-1", "car-1", n).await);
    }
    let mut config = resumable_config();
    config.sources = vec![source(&nats.url(), vec![mapping("telemetry.{device}", "rel/telemetry/{device}")])];
    let hub = spawn_hub(config).await;
    until(&hub, "the first 20 published", |v| mapping_view(v, 0)["published"] == 20).await;

    let mut sub = hub.connect("sub").await;
    sub.subscribe_from("rel/telemetry/car-1", 1).await;
    for n in 20..40 {
        seqs.push(publish(&js, "telemetry.car-1", "car-1", n).await);
    }
    let got = sub.records(40).await;
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), (1..=40).collect::<Vec<_>>());
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (0..40).collect::<Vec<_>>());
    for (r, seq) in got.iter().zip(&seqs) {
        assert_eq!(r.flags & 0x01, 0x01, "JSON payloads are flagged JSON");
        assert_eq!(
            r.meta.as_ref().unwrap(),
            &json!({"source":"fleet","upstream":"telemetry.car-1","partition":STREAM,
                    "position": seq.to_string(),"key":"car-1","headers":{"trace":"t"}})
        );
    }
    let v = until(&hub, "every message acknowledged", |v| mapping_view(v, 0)["commits"] == 40).await;
    let m = mapping_view(&v, 0);
    assert_eq!(m["received"].as_u64(), Some(40), "{m:#}");
    assert_eq!(v["items"][0]["consumers"][0]["state"], "connected");
    assert_eq!(v["items"][0]["consumers"][0]["group"], "fanhub.fleet");
    until_all_acknowledged(&js, "fanhub_fleet-0").await;
    until(&hub, "no lag", |v| mapping_view(v, 0)["lag"] == 0).await;
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
    let mut nats = NatsServer::start().await;
    let js1 = js(&nats.url()).await;
    create_stream(&js1, &["orders"]).await;
    let mut config = resumable_config();
    config.sources = vec![source(&nats.url(), vec![mapping("orders", "rel/orders")])];
    let hub = spawn_hub(config).await;
    until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe("rel/orders").await;
    for n in 0..100 {
        publish(&js1, "orders", "o", n).await;
    }
    let first = sub.records(50).await;
    nats.restart().await;
    drop(js1);
    let js = js(&nats.url()).await;
    for n in 100..200 {
        publish(&js, "orders", "o", n).await;
    }
    let mut got = first;
    got.extend(sub.records(150).await);
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>());
    let v = until(&hub, "all published", |v| mapping_view(v, 0)["published"] == 200).await;
    assert!(v["items"][0]["consumers"][0]["failures"].as_u64().unwrap() >= 1, "{v:#}");
    // Whatever JetStream delivers again (acknowledgements lost with the server) is skipped.
    until_all_acknowledged(&js, "fanhub_fleet-0").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sub.buffered_records().is_empty(), "no duplicate after the restart");
    assert_eq!(mapping_view(&sources(&hub).await, 0)["published"], 200);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_restarted_hub_resumes_after_the_committed_position() {
    let nats = NatsServer::start().await;
    let js = js(&nats.url()).await;
    create_stream(&js, &["orders"]).await;
    let mut config = resumable_config();
    config.sources = vec![source(&nats.url(), vec![mapping("orders", "rel/orders")])];
    for n in 0..30 {
        publish(&js, "orders", "o", n).await;
    }
    let hub = spawn_hub(config.clone()).await;
    until(&hub, "30 published", |v| mapping_view(v, 0)["published"] == 30).await;
    hub.shutdown().await;
    until_all_acknowledged(&js, "fanhub_fleet-0").await;
    let info = js.get_stream(STREAM).await.unwrap().consumer_info("fanhub_fleet-0").await.unwrap();
    assert_eq!(info.ack_floor.stream_sequence, 30, "a clean stop commits what it published");
    for n in 30..60 {
        publish(&js, "orders", "o", n).await;
    }
    let hub = spawn_hub(config).await;
    until(&hub, "the 30 new ones published", |v| mapping_view(v, 0)["published"] == 30).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe_from("rel/orders", 1).await;
    let got = sub.records(30).await;
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (30..60).collect::<Vec<_>>());
    assert_eq!(got[0].meta.as_ref().unwrap()["position"], "31");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sub.buffered_records().is_empty(), "nothing published twice");
    hub.shutdown().await;
}

#[tokio::test]
async fn deliveries_a_dead_node_left_unacknowledged_come_again_at_once_and_in_order() {
    let nats = NatsServer::start().await;
    let js = js(&nats.url()).await;
    create_stream(&js, &["orders"]).await;
    for n in 0..100 {
        publish(&js, "orders", "o", n).await;
    }
    // A node that pulled 60 and died after acknowledging the first 20: 40 deliveries stay
    // unacknowledged, and JetStream would send them again only after its 30 s ack wait.
    let stream = js.get_stream(STREAM).await.unwrap();
    let durable: jetstream::consumer::PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("fanhub_fleet-0".into()),
            filter_subject: "orders".into(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = durable.fetch().max_messages(60).messages().await.unwrap();
    let mut pulled = 0;
    while let Some(m) = futures_util::StreamExt::next(&mut batch).await {
        let m = m.unwrap();
        if pulled < 20 {
            m.ack().await.unwrap();
        }
        pulled += 1;
    }
    assert_eq!(pulled, 60);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while stream.consumer_info("fanhub_fleet-0").await.unwrap().ack_floor.stream_sequence < 20 {
        assert!(tokio::time::Instant::now() < deadline, "the 20 acknowledgements did not land");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(batch);

    let mut config = resumable_config();
    config.sources = vec![source(&nats.url(), vec![mapping("orders", "rel/orders")])];
    let hub = spawn_hub(config).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe_from("rel/orders", 1).await;
    let got = tokio::time::timeout(Duration::from_secs(15), sub.records(80))
        .await
        .expect("the unacknowledged ones come again well before the ack wait");
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (20..100).collect::<Vec<_>>());
    assert_eq!(got[0].meta.as_ref().unwrap()["position"], "21");
    until_all_acknowledged(&js, "fanhub_fleet-0").await;
    until(&hub, "80 committed", |v| mapping_view(v, 0)["commits"] == 80).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sub.buffered_records().is_empty(), "nothing published twice");
    hub.shutdown().await;
}

/// Two mappings on the shared consumer; `slow…` has a subscriber that reads nothing on a
/// `reliable` + `apply_backpressure` topic, so the hub cannot take its records.
async fn stalled_mapping(mode: BackpressureMode, exclusive: bool) -> (Value, Vec<Record>) {
    let nats = NatsServer::start().await;
    let js = js(&nats.url()).await;
    create_stream(&js, &["slow", "fast"]).await;
    let (hub, stalled, mut fast) =
        stalled_hub(mode, exclusive.then(ConsumerSettings::default), |m| source(&nats.url(), m)).await;
    for n in 0..300 {
        publish_raw(&js, "slow", "s", stalled_payload(n)).await;
    }
    until_stuck(&hub).await;
    for n in 0..200 {
        publish(&js, "fast", "f", n).await;
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
    assert!(slow["received"].as_u64().unwrap() < 300, "the paused durable is not pulled: {slow:#}");
    assert!(slow["lag"].as_u64().unwrap() > 0, "{slow:#}");
    assert_eq!(mapping_view(&v, 1)["published"], 200);
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
    let nats = NatsServer::start().await;
    let js = js(&nats.url()).await;
    create_stream(&js, &["events"]).await;
    let mut config = test_config();
    let mut m = mapping("events", "events/all");
    m.payload_field = Some("/data".into());
    let mut s = source(&nats.url(), vec![m]);
    s.dead_letter = Some("dead/fleet".into());
    config.sources = vec![s];
    let hub = spawn_hub(config).await;
    until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe("events/all").await;
    let mut dead = hub.connect("dead").await;
    dead.subscribe("dead/fleet").await;
    publish_raw(&js, "events", "e", br#"{"data":{"n":1}}"#.to_vec()).await;
    let bad = publish_raw(&js, "events", "e", b"not json".to_vec()).await;
    publish_raw(&js, "events", "e", br#"{"data":{"n":2}}"#.to_vec()).await;
    let got = sub.records(2).await;
    assert_eq!(
        got.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
        [br#"{"n":1}"#.to_vec(), br#"{"n":2}"#.to_vec()]
    );
    let d = dead.next_record().await;
    assert_eq!(d.payload, b"not json");
    let meta = d.meta.unwrap();
    assert_eq!(
        (meta["reason"].as_str(), meta["position"].as_str()),
        (Some("payload_field"), Some(bad.to_string().as_str()))
    );
    assert!(meta["error"].as_str().unwrap().contains("not JSON"), "{meta}");
    let v = until(&hub, "all three committed", |v| mapping_view(v, 0)["commits"] == 3).await;
    assert_eq!(mapping_view(&v, 0)["dropped"]["dead_letter"], 1);
    until_all_acknowledged(&js, "fanhub_fleet-0").await;
    hub.shutdown().await;
}

/// The source `fleet` reading `events` through [`data_field_mapping`], its upstream dead letter
/// the subject `dead.fleet`.
fn dead_letter_source(url: &str) -> SourceConfig {
    let mut s = source(url, vec![data_field_mapping()]);
    s.upstream_dead_letter = Some("dead.fleet".into());
    s
}

/// Publishes `{"data":{"n": n}}` to `events` (key `e`), or, without `n`, a payload that is not JSON;
/// its stream sequence.
async fn publish_event(js: &jetstream::Context, n: Option<u64>) -> u64 {
    let payload = n.map_or(b"not json".to_vec(), |n| json!({ "data": { "n": n } }).to_string().into_bytes());
    publish_raw(js, "events", "e", payload).await
}

/// The fanhub headers of a dead letter, and the record's own `key` and `trace`, in that order.
fn dead_letter_headers(h: &async_nats::HeaderMap) -> Vec<Option<String>> {
    ["Fanhub-Source", "Fanhub-Upstream", "Fanhub-Position", "Fanhub-Reason", "key", "trace"]
        .iter()
        .map(|n| h.get(*n).map(|v| v.as_str().to_owned()))
        .collect()
}

#[tokio::test]
async fn a_poison_record_goes_to_the_upstream_dead_letter_subject_and_is_acknowledged_after_it() {
    let nats = NatsServer::start().await;
    let js = js(&nats.url()).await;
    create_stream(&js, &["events", "dead.fleet"]).await;
    let mut config = test_config();
    config.sources = vec![dead_letter_source(&nats.url())];
    let hub = spawn_hub(config).await;
    let v = until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    assert_eq!(v["items"][0]["upstream_dead_letter"], "dead.fleet");
    let mut sub = hub.connect("sub").await;
    sub.subscribe("events/all").await;
    publish_event(&js, Some(1)).await;
    let bad = publish_event(&js, None).await;
    publish_event(&js, Some(2)).await;
    let got = sub.records(2).await;
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), [1, 2]);
    let v = until(&hub, "all three committed", |v| mapping_view(v, 0)["commits"] == 3).await;
    let m = mapping_view(&v, 0);
    assert_eq!((m["upstream_dead_letters"].as_u64(), m["dropped"]["dead_letter"].as_u64()), (Some(1), Some(1)));
    until_all_acknowledged(&js, "fanhub_fleet-0").await;

    let stream = js.get_stream(STREAM).await.unwrap();
    let d = stream.get_last_raw_message_by_subject("dead.fleet").await.unwrap();
    assert_eq!(&d.payload[..], b"not json");
    assert_eq!(d.sequence, bad + 2, "one dead letter, after the three records");
    let bad = bad.to_string();
    let expected = ["fleet", "events", bad.as_str(), "payload_field", "e", "t"];
    assert_eq!(dead_letter_headers(&d.headers), expected.map(|s| Some(s.to_owned())));
    let error = d.headers.get("Fanhub-Error").unwrap().as_str();
    assert!(error.contains("not JSON"), "{error}");
    hub.shutdown().await;
}

#[tokio::test]
async fn an_upstream_dead_letter_subject_no_stream_captures_is_retried_until_one_does() {
    let nats = NatsServer::start().await;
    let js = js(&nats.url()).await;
    create_stream(&js, &["events"]).await;
    let mut config = test_config();
    config.sources = vec![dead_letter_source(&nats.url())];
    let hub = spawn_hub(config).await;
    until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe("events/all").await;
    publish_event(&js, Some(1)).await;
    let bad = publish_event(&js, None).await;
    publish_event(&js, Some(2)).await;
    assert_eq!(n_of(&sub.next_record().await), 1);
    let v =
        until(&hub, "two failed attempts", |v| mapping_view(v, 0)["upstream_dead_letter_failures"].as_u64() >= Some(2))
            .await;
    let m = mapping_view(&v, 0);
    assert_eq!((m["published"].as_u64(), m["upstream_dead_letters"].as_u64()), (Some(1), Some(0)), "{m:#}");
    assert!(m["commits"].as_u64() <= Some(1), "nothing committed past the poison: {m:#}");
    assert!(unacknowledged(&js, "fanhub_fleet-0").await >= 2, "the poison and the record behind it");

    // A stream captures the subject now: the dead letter lands and the stream goes on.
    let mut info = js.get_stream(STREAM).await.unwrap().cached_info().config.clone();
    info.subjects.push("dead.fleet".into());
    js.update_stream(&info).await.unwrap();
    assert_eq!(n_of(&sub.next_record().await), 2);
    until(&hub, "all three committed", |v| {
        mapping_view(v, 0)["commits"] == 3 && mapping_view(v, 0)["upstream_dead_letters"] == 1
    })
    .await;
    until_all_acknowledged(&js, "fanhub_fleet-0").await;
    let d = js.get_stream(STREAM).await.unwrap().get_last_raw_message_by_subject("dead.fleet").await.unwrap();
    assert_eq!(d.headers.get("Fanhub-Position").unwrap().as_str(), bad.to_string());
    hub.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_upstream_or_a_missing_stream_leaves_the_node_serving_and_readiness_names_it() {
    let mut nats = NatsServer::not_started();
    let mut config = resumable_config();
    config.sources = vec![source(&nats.url(), vec![mapping("orders", "rel/orders")])];
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

    // The server comes up without the stream: still not connected, and the error says why.
    nats.restart().await;
    let v = until(&hub, "the missing stream reported", |v| {
        v["items"][0]["consumers"][0]["error"].as_str().is_some_and(|e| e.contains("not found"))
    })
    .await;
    assert_eq!(v["items"][0]["consumers"][0]["state"], "retrying", "{v:#}");
    assert!(v["items"][0]["consumers"][0]["error"].as_str().unwrap().contains(STREAM), "{v:#}");

    let js = js(&nats.url()).await;
    create_stream(&js, &["orders"]).await;
    until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    for n in 0..10 {
        publish(&js, "orders", "o", n).await;
    }
    let got = sub.records(10).await;
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    let ready = http(hub.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.json()["sources"]["not_connected"], json!([]));
    hub.shutdown().await;
}
