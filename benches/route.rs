//! Criterion bench of `ConnectionManager::route_data`: one publish fanned out to 1, 100 and
//! 10,000 in-process subscribers (256-byte payload, best-effort, queues drained between rounds
//! so the fan-out path is measured, not the drop path). Reports time per delivery
//! (throughput = subscribers) and, separately, allocations per publish and per delivery with a
//! counting global allocator.
//!
//! Run: `cargo bench --bench route`
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fanhub::hub::testing::TestConnection;
use fanhub::hub::{ConnectionManager, DeliveryPolicy, DropStrategy, TopicName};

#[path = "support/hub.rs"]
mod support;
use support::{hub_with_subscribers, now};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only counts allocations.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const DRAIN_EVERY: u64 = 64;

fn setup(subscribers: usize) -> (Arc<ConnectionManager>, TopicName, Vec<Arc<TestConnection>>) {
    let policy =
        DeliveryPolicy::BestEffort { queue_messages: 4096, queue_bytes: 1 << 30, overflow: DropStrategy::DropOldest };
    hub_with_subscribers(subscribers, "bench/topic", policy, 1000)
}

fn drain(subs: &[Arc<TestConnection>]) {
    for s in subs {
        s.drain();
    }
}

fn route(c: &mut Criterion) {
    let payload = vec![0xabu8; 256];
    let mut group = c.benchmark_group("route_data");
    group.sample_size(20).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    for &s in &[1usize, 100, 10_000] {
        let (m, topic, subs) = setup(s);
        group.throughput(Throughput::Elements(s as u64));
        group.bench_function(format!("{s}_subscribers"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let t = Instant::now();
                    m.route_data(&topic, &payload, 0, now()).unwrap();
                    total += t.elapsed();
                    if i % DRAIN_EVERY == DRAIN_EVERY - 1 {
                        drain(&subs);
                    }
                }
                drain(&subs);
                total
            });
        });
        // Allocations, counted only inside route_data (draining allocates in the test double).
        let rounds = 2 * DRAIN_EVERY;
        let mut allocs = 0;
        for i in 0..rounds {
            let before = ALLOCS.load(Relaxed);
            m.route_data(&topic, &payload, 0, now()).unwrap();
            allocs += ALLOCS.load(Relaxed) - before;
            if i % DRAIN_EVERY == DRAIN_EVERY - 1 {
                drain(&subs);
            }
        }
        println!(
            "route_data/{s}_subscribers: {:.2} allocations per publish, {:.4} per delivery",
            allocs as f64 / rounds as f64,
            allocs as f64 / (rounds as f64 * s as f64)
        );
    }
    group.finish();
}

criterion_group!(benches, route);
criterion_main!(benches);
