//! Mass disconnect under publishing: 10,000 subscribers of one topic unregister (from 4 threads,
//! as connection tasks would in a reconnect storm or a node drain, in a scattered order) while
//! another thread publishes to that topic as fast as it can. Reports the publisher's latency per
//! publish while the disconnect runs (p50, p99, max) and how long the disconnect took; the same
//! publisher for 300 ms with nobody leaving; and the disconnect alone, with no publisher (the
//! unregistering's own cost).
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
use fanhub::hub::{Connection, ConnectionManager, DeliveryPolicy, DropStrategy, TopicName};

#[path = "support/hub.rs"]
mod support;
use support::{hub_with_subscribers, now};

const SUBSCRIBERS: usize = 10_000;
const ROUNDS: usize = 5;
const LEAVERS: usize = 4;

fn setup() -> (Arc<ConnectionManager>, TopicName, Vec<Arc<TestConnection>>) {
    // Queues stay small (16 records, drop oldest): the publisher pays the fan-out, not memory.
    let policy =
        DeliveryPolicy::BestEffort { queue_messages: 16, queue_bytes: 1 << 20, overflow: DropStrategy::DropOldest };
    hub_with_subscribers(SUBSCRIBERS, "bench/detach", policy, 0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(label: &str, mut lat: Vec<Duration>, extra: &str) {
    lat.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{label}: {} publishes, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs{extra}",
        lat.len(),
        us(percentile(&lat, 0.50)),
        us(percentile(&lat, 0.99)),
        us(lat.last().copied().unwrap_or_default()),
    );
}

/// Publishes from another thread while `during` runs on this one; returns each publish's
/// latency and what `during` returned.
fn publishing_while<T>(
    m: &Arc<ConnectionManager>,
    topic: &TopicName,
    during: impl FnOnce() -> T,
) -> (Vec<Duration>, T) {
    let stop = Arc::new(AtomicBool::new(false));
    let go = Arc::new(Barrier::new(2));
    let publisher = {
        let (m, topic, stop, go) = (m.clone(), topic.clone(), stop.clone(), go.clone());
        std::thread::spawn(move || {
            let payload = [0x5au8; 128];
            let mut lat = Vec::with_capacity(1 << 16);
            go.wait();
            while !stop.load(Relaxed) {
                let t = Instant::now();
                m.route_data(&topic, &payload, 0, now()).unwrap();
                lat.push(t.elapsed());
            }
            lat
        })
    };
    go.wait();
    let out = during();
    stop.store(true, Relaxed);
    (publisher.join().unwrap(), out)
}

/// Unregisters every subscriber from `LEAVERS` threads, each taking every `LEAVERS`-th of a
/// scattered order (7919 is prime to 10,000); returns how long it took.
fn disconnect_all(m: &Arc<ConnectionManager>, subs: &[Arc<TestConnection>]) -> Duration {
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..LEAVERS {
            s.spawn(move || {
                for i in (k..SUBSCRIBERS).step_by(LEAVERS) {
                    m.unregister_client(subs[i * 7919 % SUBSCRIBERS].id());
                }
            });
        }
    });
    t.elapsed()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench` lists benches; this one has no criterion group.
    }
    for round in 1..=ROUNDS {
        let (m, topic, _subs) = setup();
        let (lat, ()) = publishing_while(&m, &topic, || std::thread::sleep(Duration::from_millis(300)));
        report(&format!("round {round}, nobody leaves (300 ms)"), lat, "");

        let (m, topic, subs) = setup();
        let (lat, took) = publishing_while(&m, &topic, || disconnect_all(&m, &subs));
        assert_eq!(m.connection_stats().subscriptions, 0);
        let extra = format!("; the disconnect took {:.1} ms", took.as_secs_f64() * 1e3);
        report(&format!("round {round}, {SUBSCRIBERS} subscribers disconnect"), lat, &extra);

        let (m, _topic, subs) = setup();
        let took = disconnect_all(&m, &subs);
        println!("round {round}, the disconnect alone: {:.1} ms", took.as_secs_f64() * 1e3);
    }
}
