//! Mass disconnect under publishing: 10,000 subscribers of one topic unregister (one thread,
//! as a reconnect storm or a node drain would) while another thread publishes to that topic as
//! fast as it can. Reports the publisher's latency per publish while the disconnect runs (p50,
//! p99, max) and how long the disconnect took, against the same publisher with nobody leaving.
//!
//! Unregistering a connection must cost O(its subscriptions) and hold the topic's lock only for
//! that: if it scanned the topic's subscriber list, each of the 10,000 removals would hold the
//! lock the publisher needs for a walk of up to 10,000 entries.
//!
//! Run: `cargo bench --bench detach`

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use fanhub::hub::testing::TestConnection;
use fanhub::hub::{
    Connection, ConnectionManager, DeliveryPolicy, DropStrategy, HubConfig, Now, SubscribeOptions, TopicName,
};

const SUBSCRIBERS: usize = 10_000;
const ROUNDS: usize = 3;

fn now() -> Now {
    Now { mono: Instant::now(), unix_us: 0 }
}

fn setup() -> (Arc<ConnectionManager>, TopicName, Vec<Arc<TestConnection>>) {
    let mut cfg = HubConfig::default();
    cfg.limits.max_connections_per_user = 1_000_000;
    cfg.limits.max_connections_per_ip = 1_000_000;
    cfg.topics.default_history.max_messages = 0;
    let m = Arc::new(ConnectionManager::new(cfg).unwrap());
    let topic = TopicName::new("bench/detach").unwrap();
    // Queues stay small (16 records, drop oldest): the publisher pays the fan-out, not memory.
    let policy =
        DeliveryPolicy::BestEffort { queue_messages: 16, queue_bytes: 1 << 20, overflow: DropStrategy::DropOldest };
    m.set_delivery_policy(&topic, policy).unwrap();
    let subs: Vec<_> = (0..SUBSCRIBERS)
        .map(|i| {
            let c = TestConnection::register(&m, &format!("s{i}"), (i % 60000) as u16);
            m.subscribe(c.id(), &topic, SubscribeOptions::default(), now()).unwrap();
            c
        })
        .collect();
    (m, topic, subs)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(label: &str, mut lat: Vec<Duration>, extra: &str) {
    lat.sort_unstable();
    println!(
        "{label}: {} publishes, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs{extra}",
        lat.len(),
        percentile(&lat, 0.50).as_secs_f64() * 1e6,
        percentile(&lat, 0.99).as_secs_f64() * 1e6,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e6,
    );
}

/// Publishes until `stop`, returning each publish's latency.
fn publisher(m: Arc<ConnectionManager>, topic: TopicName, stop: Arc<AtomicBool>, go: Arc<Barrier>) -> Vec<Duration> {
    let payload = [0x5au8; 128];
    let mut lat = Vec::with_capacity(1 << 16);
    go.wait();
    while !stop.load(Relaxed) {
        let t = Instant::now();
        m.route_data(&topic, &payload, 0, now()).unwrap();
        lat.push(t.elapsed());
    }
    lat
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench` lists benches; this one has no criterion group.
    }
    for round in 1..=ROUNDS {
        // Baseline: the same publisher while the 10,000 stay for as long as a disconnect took.
        let (m, topic, subs) = setup();
        let stop = Arc::new(AtomicBool::new(false));
        let go = Arc::new(Barrier::new(2));
        let p = {
            let (m, topic, stop, go) = (m.clone(), topic.clone(), stop.clone(), go.clone());
            std::thread::spawn(move || publisher(m, topic, stop, go))
        };
        go.wait();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Relaxed);
        report(&format!("round {round}, nobody leaves (300 ms)"), p.join().unwrap(), "");
        drop(subs);

        let (m, topic, subs) = setup();
        let stop = Arc::new(AtomicBool::new(false));
        let go = Arc::new(Barrier::new(2));
        let p = {
            let (m, topic, stop, go) = (m.clone(), topic.clone(), stop.clone(), go.clone());
            std::thread::spawn(move || publisher(m, topic, stop, go))
        };
        go.wait();
        let t = Instant::now();
        // In a scattered order (7919 is prime to 10,000), as clients leave in a storm.
        for i in 0..SUBSCRIBERS {
            m.unregister_client(subs[i * 7919 % SUBSCRIBERS].id());
        }
        let took = t.elapsed();
        stop.store(true, Relaxed);
        assert_eq!(m.connection_stats().subscriptions, 0);
        report(
            &format!("round {round}, {SUBSCRIBERS} subscribers disconnect"),
            p.join().unwrap(),
            &format!("; the disconnect took {:.1} ms", took.as_secs_f64() * 1e3),
        );
    }
}
