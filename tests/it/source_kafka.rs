//! The Kafka source against a real broker (a private `tansu` per test, SQLite storage in a
//! temporary directory): records reach WebSocket subscribers in order with their metadata; a
//! broker restart and a hub restart lose and repeat nothing; a stalled mapping does not hold up
//! the others; poison goes to the dead letter (a hub topic, and a topic of the broker that is
//! committed past only once delivered); an unreachable broker leaves the node serving;
//! two hubs in one group split the partitions and hand them over without loss or duplicate.

use std::path::PathBuf;
use std::time::Duration;

use fanhub::config::{BackpressureMode, ConsumerSettings, MappingConfig, SourceConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use crate::common::*;

/// A private broker on a free loopback port, its data in a temporary directory (kept across
/// [`Tansu::restart`]); killed on drop.
struct Tansu {
    port: u16,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

impl Tansu {
    async fn start() -> Tansu {
        let mut t = Tansu::not_started();
        t.spawn().await;
        t
    }

    /// A free port and an empty data directory; [`Self::spawn`] starts the broker.
    fn not_started() -> Tansu {
        let port = free_port();
        let dir = scratch_dir("kafka", port);
        Tansu { port, dir, child: None }
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("kafka://{}", self.brokers())
    }

    async fn spawn(&mut self) {
        let listener = format!("tcp://{}", self.brokers());
        let child = std::process::Command::new("tansu")
            .current_dir(&self.dir)
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &listener])
            .args(["--storage-engine", "sqlite://tansu.db", "--silent"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tansu (the test command installs it)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "tansu did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the broker cleanly (SIGTERM) and waits until it exited.
    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    fn admin(&self) -> AdminClient<DefaultClientContext> {
        ClientConfig::new().set("bootstrap.servers", self.brokers()).create().unwrap()
    }

    async fn create_topic(&self, name: &str, partitions: i32) {
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let r = self.admin().create_topics(&[topic], &AdminOptions::new()).await.unwrap();
        r[0].as_ref().unwrap();
    }

    fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()
            .unwrap()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Produces `{"n": n}` for every `n` of `ns` to `topic` (partition `n % partitions`, key
/// `k<n>`, header `trace: t`), queued together; their offsets.
async fn produce(p: &FutureProducer, topic: &str, partitions: i32, ns: std::ops::Range<u64>) -> Vec<i64> {
    produce_raw(p, topic, partitions, ns.map(|n| (n, json!({ "n": n }).to_string().into_bytes())).collect()).await
}

async fn produce_raw(p: &FutureProducer, topic: &str, partitions: i32, records: Vec<(u64, Vec<u8>)>) -> Vec<i64> {
    let mut futures = Vec::new();
    for (n, payload) in &records {
        let key = format!("k{n}");
        let headers = OwnedHeaders::new().insert(Header { key: "trace", value: Some("t") });
        let record = FutureRecord::to(topic)
            .partition((*n % partitions as u64) as i32)
            .key(&key)
            .payload(payload)
            .headers(headers);
        futures.push(p.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    let mut offsets = Vec::new();
    for f in futures {
        offsets.push(f.await.unwrap().map_err(|(e, _)| e).unwrap().offset);
    }
    offsets
}

/// The source `fleet` as an operator writes it (defaults filled in by the parser), fetching
/// with a short wait (the broker answers a fetch only when the wait is over).
fn source(url: &str, mappings: Vec<MappingConfig>) -> SourceConfig {
    let consumer =
        "[sources.consumer]\nfetch_max_wait_ms = 30\nsession_timeout_ms = 6000\nheartbeat_interval_ms = 500\n\
                    options = { \"topic.metadata.refresh.interval.ms\" = \"500\" }";
    source_of("kafka", url, consumer, mappings)
}

fn published(v: &Value) -> u64 {
    mapping_view(v, 0)["published"].as_u64().unwrap()
}

#[tokio::test]
async fn kafka_records_reach_websocket_subscribers_in_order_with_their_metadata() {
    let kafka = Tansu::start().await;
    kafka.create_topic("telemetry.car-1", 1).await;
    let producer = kafka.producer();
    let mut offsets = produce(&producer, "telemetry.car-1", 1, 0..20).await;
    let mut config = resumable_config();
    config.sources = vec![source(&kafka.url(), vec![mapping("telemetry.{device}", "rel/telemetry/{device}")])];
    let hub = spawn_hub(config).await;
    until(&hub, "the first 20 published", |v| published(v) == 20).await;

    let mut sub = hub.connect("sub").await;
    sub.subscribe_from("rel/telemetry/car-1", 1).await;
    offsets.extend(produce(&producer, "telemetry.car-1", 1, 20..40).await);
    let got = sub.records(40).await;
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), (1..=40).collect::<Vec<_>>());
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (0..40).collect::<Vec<_>>());
    for (i, (r, offset)) in got.iter().zip(&offsets).enumerate() {
        assert_eq!(
            r.meta.as_ref().unwrap(),
            &json!({"source":"fleet","upstream":"telemetry.car-1","partition":"telemetry.car-1/0",
                    "position": offset.to_string(),"key": format!("k{i}"),"headers":{"trace":"t"}})
        );
    }
    // Lag is measured every second: wait for a measurement after the last commit.
    let v = until(&hub, "every record committed, no lag", |v| {
        mapping_view(v, 0)["commits"] == 40 && mapping_view(v, 0)["lag"] == 0
    })
    .await;
    assert_eq!(mapping_view(&v, 0)["received"], 40, "{v:#}");
    assert_eq!(v["items"][0]["consumers"][0]["state"], "connected");
    assert_eq!(v["items"][0]["consumers"][0]["group"], "fanhub.fleet");
    let health = http(hub.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(health.json()["sources"]["not_connected"], json!([]));
    hub.shutdown().await;
}

#[tokio::test]
async fn a_kafka_broker_restart_mid_stream_loses_nothing_and_repeats_nothing() {
    let mut kafka = Tansu::start().await;
    kafka.create_topic("orders", 1).await;
    let mut config = resumable_config();
    config.sources = vec![source(&kafka.url(), vec![mapping("orders", "rel/orders")])];
    let hub = spawn_hub(config).await;
    until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe("rel/orders").await;
    produce(&kafka.producer(), "orders", 1, 0..100).await;
    let first = sub.records(50).await;
    kafka.restart().await;
    produce(&kafka.producer(), "orders", 1, 100..200).await;
    let mut got = first;
    got.extend(sub.records(150).await);
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>());
    until(&hub, "all committed", |v| published(v) == 200 && mapping_view(v, 0)["commits"] == 200).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sub.buffered_records().is_empty(), "no duplicate after the restart");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_restarted_hub_resumes_after_the_committed_kafka_offsets() {
    let kafka = Tansu::start().await;
    kafka.create_topic("orders", 2).await;
    let producer = kafka.producer();
    let mut config = resumable_config();
    config.sources = vec![source(&kafka.url(), vec![mapping("orders", "rel/orders")])];
    produce(&producer, "orders", 2, 0..30).await;
    let hub = spawn_hub(config.clone()).await;
    until(&hub, "30 published", |v| published(v) == 30).await;
    hub.shutdown().await;
    produce(&producer, "orders", 2, 30..60).await;
    let hub = spawn_hub(config).await;
    until(&hub, "the 30 new ones published", |v| published(v) == 30).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe_from("rel/orders", 1).await;
    let got = sub.records(30).await;
    let mut ns: Vec<u64> = got.iter().map(n_of).collect();
    ns.sort_unstable();
    assert_eq!(ns, (30..60).collect::<Vec<_>>());
    for p in 0..2 {
        let of_p: Vec<u64> = got.iter().map(n_of).filter(|n| n % 2 == p).collect();
        assert!(of_p.is_sorted(), "in order within a partition: {of_p:?}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sub.buffered_records().is_empty(), "nothing published twice");
    hub.shutdown().await;
}

/// Two mappings (topics `slow` and `fast`); `slow/…` has a subscriber that reads nothing on a
/// `reliable` + `apply_backpressure` topic, so the hub cannot take its records.
async fn stalled_mapping(mode: BackpressureMode, exclusive: bool) -> (Value, Vec<Record>) {
    let kafka = Tansu::start().await;
    kafka.create_topic("slow", 1).await;
    kafka.create_topic("fast", 1).await;
    let (hub, stalled, mut fast) = stalled_hub(
        mode,
        exclusive.then(|| ConsumerSettings { fetch_max_wait_ms: Some(30), ..Default::default() }),
        |m| source(&kafka.url(), m),
    )
    .await;
    let producer = kafka.producer();
    let records = (0..300).map(|n| (n, stalled_payload(n))).collect();
    produce_raw(&producer, "slow", 1, records).await;
    until_stuck(&hub).await;
    produce(&producer, "fast", 1, 0..200).await;
    let got = fast.records(200).await;
    let v = until_lag_measured(&hub, mode).await;
    drop(stalled);
    hub.shutdown().await;
    (v, got)
}

#[tokio::test]
async fn a_stalled_kafka_mapping_under_apply_backpressure_pauses_alone_and_the_other_keeps_flowing() {
    let (v, fast) = stalled_mapping(BackpressureMode::ApplyBackpressure, false).await;
    assert_eq!(fast.iter().map(n_of).collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
    let slow = mapping_view(&v, 0);
    assert_eq!(slow["paused"], true, "{slow:#}");
    assert!(slow["pauses"].as_u64().unwrap() >= 1);
    assert_eq!(slow["dropped"], json!({"drop_oldest":0,"drop_newest":0,"duplicate":0,"dead_letter":0}));
    assert!(slow["received"].as_u64().unwrap() < 300, "the paused partition is not fetched: {slow:#}");
    assert!(slow["lag"].as_u64().unwrap() > 0, "{slow:#}");
}

#[tokio::test]
async fn a_stalled_kafka_mapping_under_drop_oldest_drops_and_counts_and_the_other_keeps_flowing() {
    let (v, fast) = stalled_mapping(BackpressureMode::DropOldest, false).await;
    assert_eq!(fast.iter().map(n_of).collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
    let slow = mapping_view(&v, 0);
    assert!(slow["dropped"]["drop_oldest"].as_u64().unwrap() > 0, "{slow:#}");
    assert_eq!(slow["paused"], false);
}

#[tokio::test]
async fn a_stalled_kafka_mapping_with_an_exclusive_consumer_is_isolated() {
    let (v, fast) = stalled_mapping(BackpressureMode::ApplyBackpressure, true).await;
    assert_eq!(fast.iter().map(n_of).collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
    let consumers = &v["items"][0]["consumers"];
    assert_eq!(consumers.as_array().unwrap().len(), 2, "{consumers:#}");
    assert_eq!(consumers[1]["exclusive_mapping"], 0);
    assert_eq!(consumers[1]["group"], "fanhub.fleet.0");
    assert_eq!(mapping_view(&v, 0)["paused"], true);
}

#[tokio::test]
async fn a_poison_kafka_record_goes_to_the_dead_letter_counted_and_the_stream_continues() {
    let kafka = Tansu::start().await;
    kafka.create_topic("events", 1).await;
    let mut config = test_config();
    let mut m = mapping("events", "events/all");
    m.payload_field = Some("/data".into());
    let mut s = source(&kafka.url(), vec![m]);
    s.dead_letter = Some("dead/fleet".into());
    config.sources = vec![s];
    let hub = spawn_hub(config).await;
    until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe("events/all").await;
    let mut dead = hub.connect("dead").await;
    dead.subscribe("dead/fleet").await;
    let records =
        vec![(0, br#"{"data":{"n":1}}"#.to_vec()), (1, b"not json".to_vec()), (2, br#"{"data":{"n":2}}"#.to_vec())];
    let offsets = produce_raw(&kafka.producer(), "events", 1, records).await;
    let got = sub.records(2).await;
    assert_eq!(
        got.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
        [br#"{"n":1}"#.to_vec(), br#"{"n":2}"#.to_vec()]
    );
    let d = dead.next_record().await;
    assert_eq!(d.payload, b"not json");
    let meta = d.meta.unwrap();
    let bad = offsets[1].to_string();
    assert_eq!((meta["reason"].as_str(), meta["position"].as_str()), (Some("payload_field"), Some(bad.as_str())));
    assert!(meta["error"].as_str().unwrap().contains("not JSON"), "{meta}");
    let v = until(&hub, "all three committed, no lag", |v| {
        mapping_view(v, 0)["commits"] == 3 && mapping_view(v, 0)["lag"] == 0
    })
    .await;
    assert_eq!(mapping_view(&v, 0)["dropped"]["dead_letter"], 1);
    hub.shutdown().await;
}

/// The first record of partition 0 of `topic`, read from its start.
async fn first_record(kafka: &Tansu, topic: &str) -> rdkafka::message::OwnedMessage {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.brokers())
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await.unwrap().unwrap();
    m.detach()
}

#[tokio::test]
async fn a_poison_kafka_record_goes_to_the_upstream_dead_letter_topic_and_is_committed_after_it() {
    use rdkafka::message::{Headers, Message};
    let kafka = Tansu::start().await;
    kafka.create_topic("events", 1).await;
    kafka.create_topic("events.dead", 1).await;
    let mut config = test_config();
    let mut s = source(&kafka.url(), vec![data_field_mapping()]);
    s.upstream_dead_letter = Some("events.dead".into());
    config.sources = vec![s];
    let hub = spawn_hub(config).await;
    let v = until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    assert_eq!(v["items"][0]["upstream_dead_letter"], "events.dead");
    let mut sub = hub.connect("sub").await;
    sub.subscribe("events/all").await;
    let records =
        vec![(0, br#"{"data":{"n":1}}"#.to_vec()), (1, b"not json".to_vec()), (2, br#"{"data":{"n":2}}"#.to_vec())];
    let offsets = produce_raw(&kafka.producer(), "events", 1, records).await;
    let got = sub.records(2).await;
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), [1, 2]);
    let v = until(&hub, "all three committed, no lag", |v| {
        mapping_view(v, 0)["commits"] == 3 && mapping_view(v, 0)["lag"] == 0
    })
    .await;
    let m = mapping_view(&v, 0);
    assert_eq!((m["upstream_dead_letters"].as_u64(), m["dropped"]["dead_letter"].as_u64()), (Some(1), Some(1)));

    let d = first_record(&kafka, "events.dead").await;
    assert_eq!((d.payload(), d.key()), (Some(&b"not json"[..]), Some(&b"k1"[..])));
    let headers: std::collections::HashMap<String, String> = d
        .headers()
        .unwrap()
        .iter()
        .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
        .collect();
    let header = |k: &str| headers.get(k).map(String::as_str);
    let bad = offsets[1].to_string();
    assert_eq!(
        ["fanhub-source", "fanhub-upstream", "fanhub-partition", "fanhub-offset", "fanhub-reason", "trace"].map(header),
        [Some("fleet"), Some("events"), Some("0"), Some(bad.as_str()), Some("payload_field"), Some("t")]
    );
    assert!(header("fanhub-error").unwrap().contains("not JSON"), "{headers:?}");
    hub.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_kafka_broker_at_start_leaves_the_node_serving_and_readiness_names_it() {
    let mut kafka = Tansu::not_started();
    let mut config = resumable_config();
    config.sources = vec![source(&kafka.url(), vec![mapping("orders", "rel/orders")])];
    let hub = spawn_hub(config).await;
    let v = until(&hub, "a failed attempt", |v| v["items"][0]["consumers"][0]["failures"].as_u64() > Some(0)).await;
    let c = &v["items"][0]["consumers"][0];
    assert_eq!(c["state"], "retrying");
    assert!(c["error"].as_str().unwrap().contains(&kafka.brokers()), "{c:#}");
    let ready = http(hub.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 200, "the node serves without its upstream");
    assert_eq!(ready.json()["sources"]["not_connected"], json!(["fleet"]));
    let mut sub = hub.connect("sub").await;
    sub.subscribe("rel/orders").await;
    kafka.spawn().await;
    kafka.create_topic("orders", 1).await;
    until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    produce(&kafka.producer(), "orders", 1, 0..10).await;
    let got = sub.records(10).await;
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    hub.shutdown().await;
}

/// What both hubs published, and committed, together.
async fn totals(a: &Hub, b: Option<&Hub>) -> (u64, u64) {
    let mut sum = (0, 0);
    for h in [Some(a), b].into_iter().flatten() {
        let v = sources(h).await;
        sum.0 += published(&v);
        sum.1 += mapping_view(&v, 0)["commits"].as_u64().unwrap();
    }
    sum
}

/// Produces one record per partition of `orders` (2) at a time until both hubs publish one:
/// the group has split the partitions between them. Returns how many were produced.
async fn until_split(producer: &FutureProducer, a: &Hub, b: &Hub) -> u64 {
    let mut produced = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let before = (published(&sources(a).await), published(&sources(b).await));
        produce(producer, "orders", 2, produced..produced + 2).await;
        produced += 2;
        until_totals(a, Some(b), "a probe round", produced).await;
        let after = (published(&sources(a).await), published(&sources(b).await));
        if after.0 == before.0 + 1 && after.1 == before.1 + 1 {
            return produced;
        }
        assert!(tokio::time::Instant::now() < deadline, "the partitions were never split");
    }
}

async fn until_totals(a: &Hub, b: Option<&Hub>, what: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let t = totals(a, b).await;
        if t == (n, n) {
            return;
        }
        assert!(t.0 <= n, "published more than produced ({what}): {t:?} of {n}");
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {t:?} of {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_hubs_in_one_group_split_the_partitions_and_a_clean_stop_hands_them_over_exactly_once() {
    let kafka = Tansu::start().await;
    kafka.create_topic("orders", 2).await;
    let producer = kafka.producer();
    let mut config = test_config();
    config.sources = vec![source(&kafka.url(), vec![mapping("orders", "orders")])];
    let a = spawn_hub(config.clone()).await;
    until(&a, "A connected", |v| v["items"][0]["connected"] == true).await;
    let b = spawn_hub(config).await;
    until(&b, "B connected", |v| v["items"][0]["connected"] == true).await;
    let mut produced = until_split(&producer, &a, &b).await;
    let (a0, b0) = (published(&sources(&a).await), published(&sources(&b).await));
    produce(&producer, "orders", 2, produced..produced + 100).await;
    produced += 100;
    until_totals(&a, Some(&b), "every record once over both hubs", produced).await;
    let (a1, b1) = (published(&sources(&a).await), published(&sources(&b).await));
    assert_eq!((a1 - a0, b1 - b0), (50, 50), "each hub published its partition");
    // B stops cleanly (commits and leaves the group): A takes its partition from there.
    b.shutdown().await;
    produce(&producer, "orders", 2, produced..produced + 100).await;
    produced += 100;
    until_totals(&a, None, "A publishes both partitions", produced - b1).await;
    let v = sources(&a).await;
    assert_eq!(published(&v) + b1, produced, "no loss, no duplicate: {v:#}");
    // One more record: had anything come twice, the totals would pass the count on the way.
    produce(&producer, "orders", 2, produced..produced + 1).await;
    produced += 1;
    until_totals(&a, None, "nothing came twice", produced - b1).await;
    a.shutdown().await;
}

/// A cluster node on `redis` consuming `orders` (2 partitions) into the reliable `rel/orders`.
async fn cluster_node(redis: &RedisServer, kafka: &Tansu, id: &str) -> Hub {
    crate::cluster::source_node(&redis.url(), id, vec![source(&kafka.url(), vec![mapping("orders", "rel/orders")])])
        .await
}

#[tokio::test]
async fn in_cluster_mode_two_nodes_split_the_partitions_and_a_stop_hands_them_over_with_one_offset_each() {
    let kafka = Tansu::start().await;
    kafka.create_topic("orders", 2).await;
    let producer = kafka.producer();
    let redis = RedisServer::start().await;
    let a = cluster_node(&redis, &kafka, "kafka-node-a").await;
    until(&a, "A connected", |v| v["items"][0]["connected"] == true).await;
    let b = cluster_node(&redis, &kafka, "kafka-node-b").await;
    until(&b, "B connected", |v| v["items"][0]["connected"] == true).await;
    let mut sub = a.connect("sub").await;
    sub.subscribe("rel/orders").await;
    let mut produced = until_split(&producer, &a, &b).await;
    produce(&producer, "orders", 2, produced..produced + 100).await;
    produced += 100;
    // B stops cleanly mid-stream (commits and leaves): A takes its partition from there.
    b.shutdown().await;
    produce(&producer, "orders", 2, produced..produced + 100).await;
    produced += 100;
    // Every record once, through both nodes' publishes into one cluster topic: contiguous
    // offsets, each record's number once, in order per partition (keys k<n> → partition n % 2).
    let got = sub.records(produced as usize).await;
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), (1..=produced).collect::<Vec<_>>());
    let mut ns: Vec<u64> = got.iter().map(n_of).collect();
    for p in 0..2 {
        let of_p: Vec<u64> = ns.iter().copied().filter(|n| n % 2 == p).collect();
        assert!(of_p.windows(2).all(|w| w[0] < w[1]), "partition {p} out of order: {of_p:?}");
    }
    ns.sort_unstable();
    assert_eq!(ns, (0..produced).collect::<Vec<_>>(), "each record once");
    // Nothing else was published in between: the next offset is the marker's.
    let mut publisher = a.connect("pub").await;
    publisher.publish_json("rel/orders", json!({ "n": 9999 })).await;
    let next = sub.next_record().await;
    assert_eq!((n_of(&next), next.offset), (9999, produced + 1));
    a.shutdown().await;
}
