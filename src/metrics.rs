//! Prometheus metrics: metric names in one place, the per-server recorder, and the scrape.
//!
//! Each [`Metrics`] owns its own `PrometheusRecorder` (no global recorder), so several servers
//! in one process (tests, an embedding application) never mix their series.
//!
//! Two kinds of series:
//! * **Counted on the hot path as plain atomics** ([`crate::hub::Counters`], the per-label
//!   [`crate::hub::TopicCounters`]) and copied into the recorder when scraped. A publish costs a
//!   few relaxed atomic adds, never a registry lookup.
//! * **Histograms recorded live** by the transports: publish-to-write latency (read from the
//!   record's publish timestamp when its batch is written) and outbound queue depth, both sampled
//!   once every [`SAMPLE_EVERY_BATCHES`] batches per connection so a saturated node records at
//!   most a fraction of its write rate. Samples are folded into buckets by
//!   [`Metrics::run_upkeep`] every second, which bounds their memory.
//!
//! Labels are bounded by configuration, never by traffic: topics are labelled by the declaration
//! that matched them, undeclared topics fold into `_other`, and no series is ever labelled with a
//! connection id or user (one series per connection would grow the scrape and the server's
//! memory with every client, and a series would outlive its connection).

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::hub::{ConnectionManager, Counters};

/// Connections by protocol (registered) — gauge.
pub const CONNECTIONS: &str = "fanhub_connections";
/// Connections by state (including not yet authenticated) — gauge.
pub const CONNECTIONS_BY_STATE: &str = "fanhub_connections_by_state";
/// Connections accepted (registered) — counter; its rate is the connect rate.
pub const CONNECTIONS_ACCEPTED: &str = "fanhub_connections_accepted_total";
/// Connections refused by a limit — counter.
pub const CONNECTIONS_REJECTED: &str = "fanhub_connections_rejected_total";
/// Transport connections handed a session, authenticated or not — counter.
pub const SESSIONS_OPENED: &str = "fanhub_sessions_opened_total";
/// Sessions that ended without authenticating — counter.
pub const SESSIONS_UNAUTHENTICATED: &str = "fanhub_sessions_unauthenticated_total";
/// Transport handshakes refused before any session — counter.
pub const HANDSHAKES_REFUSED: &str = "fanhub_handshakes_refused_total";
/// Messages published into the hub, by topic label ("packets read") — counter.
pub const PACKETS_READ: &str = "fanhub_packets_read_total";
/// Deliveries to subscriber queues, by topic label ("packets delivered") — counter.
pub const PACKETS_DELIVERED: &str = "fanhub_packets_delivered_total";
/// Messages published on `reliable` topics ("essential packets read") — counter.
pub const ESSENTIAL_READ: &str = "fanhub_essential_packets_read_total";
/// Deliveries on `reliable` topics ("essential packets delivered") — counter.
pub const ESSENTIAL_DELIVERED: &str = "fanhub_essential_packets_delivered_total";
/// Whether the broker answers (1) or not (0); always 1 in memory mode — gauge.
pub const BROKER_UP: &str = "fanhub_broker_up";
/// Records received from the broker on topic channels — counter.
pub const BROKER_MESSAGES: &str = "fanhub_broker_messages_received_total";
/// Payload bytes received from the broker — counter.
pub const BROKER_BYTES: &str = "fanhub_broker_bytes_received_total";
/// Publishes that went through the broker — counter.
pub const BROKER_PUBLISHED: &str = "fanhub_broker_published_total";
/// Reliable publishes refused as `unavailable` while the broker was down — counter.
pub const BROKER_REFUSED: &str = "fanhub_broker_publishes_refused_total";
/// Broker records never delivered on this node (gone from history too) — counter.
pub const BROKER_LOST: &str = "fanhub_broker_records_lost_total";
/// A source consumer connected (1) or not (0), by `source`, `group` — gauge.
pub const SOURCE_UP: &str = "fanhub_source_up";
/// Records fetched from upstream, by `source`, `mapping` — counter.
pub const SOURCE_RECORDS: &str = "fanhub_source_records_total";
/// Record payload bytes fetched, by `source`, `mapping` — counter.
pub const SOURCE_BYTES: &str = "fanhub_source_bytes_total";
/// Records published into the hub, by `source`, `mapping` — counter.
pub const SOURCE_PUBLISHED: &str = "fanhub_source_published_total";
/// Records not published, by `source`, `mapping`, `reason` (`drop_oldest`, `drop_newest`,
/// `duplicate`, `dead_letter`) — counter.
pub const SOURCE_DROPPED: &str = "fanhub_source_dropped_total";
/// Dead letters written to the upstream's own dead letter (`upstream_dead_letter`), by
/// `source`, `mapping` — counter.
pub const SOURCE_UPSTREAM_DEAD_LETTERS: &str = "fanhub_source_upstream_dead_letters_total";
/// Failed attempts at the upstream's own dead letter (each retried while the record waits
/// uncommitted), by `source`, `mapping` — counter.
pub const SOURCE_UPSTREAM_DEAD_LETTER_FAILURES: &str = "fanhub_source_upstream_dead_letter_failures_total";
/// Upstream positions committed, by `source`, `mapping` — counter.
pub const SOURCE_COMMITS: &str = "fanhub_source_commits_total";
/// Records behind the upstream head, by `source`, `mapping` — gauge.
pub const SOURCE_LAG: &str = "fanhub_source_lag";
/// Records buffered between upstream and hub, by `source`, `mapping` — gauge.
pub const SOURCE_BUFFERED: &str = "fanhub_source_buffered";
/// Failed connection attempts, by `source`, `group` — counter.
pub const SOURCE_FAILURES: &str = "fanhub_source_connect_failures_total";
/// Live cluster nodes seen in the registry — gauge.
pub const CLUSTER_NODES: &str = "fanhub_cluster_nodes";
/// Messages the router received (every publish, local or from the broker) — counter.
pub const ROUTER_MESSAGES: &str = "fanhub_router_messages_received_total";
/// Record bytes the router received — counter.
pub const ROUTER_BYTES: &str = "fanhub_router_bytes_received_total";
/// Messages written to sockets — counter.
pub const MESSAGES_SENT: &str = "fanhub_messages_sent_total";
/// Bytes written to sockets — counter.
pub const BYTES_SENT: &str = "fanhub_bytes_sent_total";
/// Messages dropped for a subscriber, by reason — counter.
pub const DROPPED: &str = "fanhub_dropped_messages_total";
/// Subscribers disconnected as slow consumers — counter.
pub const SLOW_CONSUMER_DISCONNECTS: &str = "fanhub_slow_consumer_disconnects_total";
/// Failed authentications, by reason — counter.
pub const AUTH_FAILURES: &str = "fanhub_auth_failures_total";
/// Limit violations — counter.
pub const VIOLATIONS: &str = "fanhub_violations_total";
/// Live topics — gauge.
pub const TOPICS: &str = "fanhub_topics";
/// Subscriptions — gauge.
pub const SUBSCRIPTIONS: &str = "fanhub_subscriptions";
/// Seconds since start — gauge.
pub const UPTIME: &str = "fanhub_uptime_seconds";
/// Version and node id (value 1) — gauge.
pub const BUILD_INFO: &str = "fanhub_build_info";
/// Publish-to-write latency — histogram, seconds.
pub const PUBLISH_TO_WRITE: &str = "fanhub_publish_to_write_seconds";
/// Records queued for a connection when its writer wakes — histogram.
pub const QUEUE_DEPTH: &str = "fanhub_outbound_queue_depth";

/// Histograms record one batch in this many per connection (the first batch always).
pub const SAMPLE_EVERY_BATCHES: u64 = 8;

const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
const DEPTH_BUCKETS: &[f64] =
    &[0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0, 16384.0];

static META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// One server's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Publish-to-write latency, seconds (transports record it).
    pub publish_to_write: Histogram,
    /// Outbound queue depth at writer wake-up (transports record it).
    pub queue_depth: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh recorder with every metric described.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(PUBLISH_TO_WRITE.into()), LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(QUEUE_DEPTH.into()), DEPTH_BUCKETS))
            .expect("bucket lists are non-empty constants")
            .build_recorder();
        let handle = recorder.handle();
        let describe = |name: &'static str, unit: Option<Unit>, help: &'static str, kind: u8| match kind {
            0 => recorder.describe_counter(name.into(), unit, help.into()),
            1 => recorder.describe_gauge(name.into(), unit, help.into()),
            _ => recorder.describe_histogram(name.into(), unit, help.into()),
        };
        for (name, unit, help, kind) in [
            (CONNECTIONS, None, "Registered connections by protocol.", 1),
            (CONNECTIONS_BY_STATE, None, "Connections by state, including ones not yet authenticated.", 1),
            (CONNECTIONS_ACCEPTED, None, "Connections accepted (authenticated and registered).", 0),
            (CONNECTIONS_REJECTED, None, "Connections refused by a connection limit.", 0),
            (SESSIONS_OPENED, None, "Transport connections handed a session, authenticated or not.", 0),
            (SESSIONS_UNAUTHENTICATED, None, "Sessions that ended without authenticating (see auth_failures).", 0),
            (HANDSHAKES_REFUSED, None, "Transport handshakes refused before any session.", 0),
            (PACKETS_READ, None, "Messages published into the hub, by topic declaration (_other: undeclared).", 0),
            (PACKETS_DELIVERED, None, "Messages handed to subscriber queues, by topic declaration.", 0),
            (ESSENTIAL_READ, None, "Messages published on reliable topics, by topic declaration.", 0),
            (ESSENTIAL_DELIVERED, None, "Deliveries on reliable topics, by topic declaration.", 0),
            (ROUTER_MESSAGES, None, "Messages received by the router (local publishes and broker).", 0),
            (ROUTER_BYTES, Some(Unit::Bytes), "Record bytes received by the router.", 0),
            (BROKER_UP, None, "1 when the broker answers (always in memory mode).", 1),
            (BROKER_MESSAGES, None, "Records received from the broker on topic channels.", 0),
            (BROKER_BYTES, Some(Unit::Bytes), "Payload bytes received from the broker.", 0),
            (BROKER_PUBLISHED, None, "Publishes that went through the broker.", 0),
            (BROKER_REFUSED, None, "Reliable publishes refused while the broker was unreachable.", 0),
            (BROKER_LOST, None, "Broker records never delivered here (missed and gone from history).", 0),
            (CLUSTER_NODES, None, "Live cluster nodes in the registry (1 in memory mode).", 1),
            (MESSAGES_SENT, None, "Messages written to client sockets.", 0),
            (BYTES_SENT, Some(Unit::Bytes), "Bytes written to client sockets, framing included.", 0),
            (DROPPED, None, "Messages dropped for a subscriber, by reason.", 0),
            (SLOW_CONSUMER_DISCONNECTS, None, "Subscribers disconnected as slow consumers.", 0),
            (AUTH_FAILURES, None, "Failed authentications, by reason.", 0),
            (VIOLATIONS, None, "Limit violations recorded against connections.", 0),
            (TOPICS, None, "Live topics.", 1),
            (SUBSCRIPTIONS, None, "Subscriptions.", 1),
            (UPTIME, Some(Unit::Seconds), "Seconds since the server started.", 1),
            (BUILD_INFO, None, "Always 1; labels carry the version and node id.", 1),
            (PUBLISH_TO_WRITE, Some(Unit::Seconds), "Publish to socket write, sampled per batch (oldest record).", 2),
            (QUEUE_DEPTH, None, "Records queued for a connection when its writer wakes, sampled.", 2),
        ] {
            describe(name, unit, help, kind);
        }
        let publish_to_write = recorder.register_histogram(&Key::from_name(PUBLISH_TO_WRITE), &META);
        let queue_depth = recorder.register_histogram(&Key::from_name(QUEUE_DEPTH), &META);
        Self { recorder, handle, publish_to_write, queue_depth }
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder.register_counter(&key(name, labels), &META)
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &META)
    }

    /// Sets a counter kept elsewhere (the sources' counters, copied at scrape time); labels come
    /// from configuration only.
    pub fn set_counter(&self, name: &'static str, labels: &[(&'static str, &str)], value: u64) {
        self.counter(name, labels).absolute(value);
    }

    /// Sets a gauge kept elsewhere, as [`Self::set_counter`].
    pub fn set_gauge(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        self.gauge(name, labels).set(value);
    }

    /// Folds recorded histogram samples into their buckets (call about once a second).
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Copies the hub's counters into the recorder and renders the Prometheus text format.
    pub fn render(
        &self,
        manager: &ConnectionManager,
        broker: &crate::broker::Broker,
        node_id: &str,
        uptime_secs: f64,
    ) -> String {
        let stats = manager.connection_stats();
        for (protocol, n) in &stats.connections_by_protocol {
            self.gauge(CONNECTIONS, &[("protocol", protocol)]).set(*n as f64);
        }
        for (state, n) in &stats.connections_by_state {
            self.gauge(CONNECTIONS_BY_STATE, &[("state", state)]).set(*n as f64);
        }
        let c: &Counters = manager.counters();
        use std::sync::atomic::Ordering::Relaxed;
        for (name, v) in [
            (CONNECTIONS_ACCEPTED, stats.connections_accepted),
            (CONNECTIONS_REJECTED, stats.connections_rejected),
            (SESSIONS_OPENED, stats.sessions_opened),
            (SESSIONS_UNAUTHENTICATED, stats.sessions_unauthenticated),
            (HANDSHAKES_REFUSED, stats.handshakes_refused),
            (ROUTER_MESSAGES, stats.messages_in),
            (ROUTER_BYTES, stats.bytes_in),
            (MESSAGES_SENT, c.messages_out.load(Relaxed)),
            (BYTES_SENT, c.bytes_out.load(Relaxed)),
            (SLOW_CONSUMER_DISCONNECTS, stats.slow_consumer_disconnects),
            (VIOLATIONS, stats.violations),
            (BROKER_LOST, stats.broker_lost),
        ] {
            self.counter(name, &[]).absolute(v);
        }
        for (reason, n) in &stats.dropped {
            self.counter(DROPPED, &[("reason", reason)]).absolute(*n);
        }
        for (reason, n) in &stats.auth_failures {
            self.counter(AUTH_FAILURES, &[("reason", reason)]).absolute(*n);
        }
        for (label, t) in manager.topics().label_counters() {
            let l = [("topic", label)];
            self.counter(PACKETS_READ, &l).absolute(t.published.load(Relaxed));
            self.counter(PACKETS_DELIVERED, &l).absolute(t.delivered.load(Relaxed));
            self.counter(ESSENTIAL_READ, &l).absolute(t.reliable_published.load(Relaxed));
            self.counter(ESSENTIAL_DELIVERED, &l).absolute(t.reliable_delivered.load(Relaxed));
        }
        self.gauge(BROKER_UP, &[]).set(if broker.is_ready() { 1.0 } else { 0.0 });
        self.gauge(CLUSTER_NODES, &[]).set(broker.nodes().len().max(1) as f64);
        if let Some(k) = broker.counters() {
            for (name, v) in [
                (BROKER_MESSAGES, &k.messages_in),
                (BROKER_BYTES, &k.bytes_in),
                (BROKER_PUBLISHED, &k.published),
                (BROKER_REFUSED, &k.refused),
            ] {
                self.counter(name, &[]).absolute(v.load(Relaxed));
            }
        }
        self.gauge(TOPICS, &[]).set(stats.topics as f64);
        self.gauge(SUBSCRIPTIONS, &[]).set(stats.subscriptions as f64);
        self.gauge(UPTIME, &[]).set(uptime_secs);
        self.gauge(BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION")), ("node_id", node_id)]).set(1.0);
        self.handle.render()
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    Key::from_parts(name, labels.iter().map(|(k, v)| Label::new(*k, v.to_string())).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{HubConfig, Now, TopicName};

    #[test]
    fn render_has_every_family_and_bounded_topic_labels() {
        let mut config = HubConfig::default();
        config.topics.declare.push(crate::hub::TopicDecl {
            pattern: "video/*".into(),
            policy: None,
            history: None,
            max_subscribers: None,
            publishers: None,
            description: None,
        });
        let m = ConnectionManager::new(config).unwrap();
        let now = Now { mono: std::time::Instant::now(), unix_us: 1 };
        for t in ["video/a", "video/b", "misc/1", "misc/2"] {
            m.route_data(&TopicName::new(t).unwrap(), b"x", 0, now).unwrap();
        }
        let metrics = Metrics::new();
        metrics.publish_to_write.record(0.002);
        metrics.run_upkeep();
        let text = metrics.render(&m, &crate::broker::Broker::Memory, "n1", 3.0);
        assert!(text.contains("fanhub_packets_read_total{topic=\"video/*\"} 2"), "{text}");
        assert!(text.contains("fanhub_packets_read_total{topic=\"_other\"} 2"), "{text}");
        assert!(!text.contains("misc/1"), "undeclared topics must not become labels: {text}");
        assert!(text.contains("fanhub_router_messages_received_total 4"), "{text}");
        assert!(text.contains("fanhub_publish_to_write_seconds_bucket{le=\"0.0025\"} 1"), "{text}");
        assert!(text.contains("fanhub_build_info{version=\""), "{text}");
        assert!(text.contains("# HELP fanhub_dropped_messages_total"), "{text}");
    }
}
