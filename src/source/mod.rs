//! Upstream sources: the hub consumes Kafka, NATS JetStream, Redis Streams and a PostgreSQL
//! outbox into topics (`[[sources]]`).
//!
//! A source has one or more **consumers**: the shared one, serving every mapping that does not
//! ask for its own, and one per `exclusive` mapping (its own connection and group). A consumer
//! fetches records, routes each to the first mapping whose upstream template matches, and
//! offers it to that mapping's [`Lane`] (a bounded buffer under the mapping's backpressure
//! mode). Each lane has a publisher task ([`publish`]) that publishes its records into the hub
//! in order and hands every finished record back to the consumer, which only then commits its
//! upstream position: at-least-once into the hub. A lane's ledger of the last position it
//! published per partition skips records that come again (an upstream that redelivers after it
//! restarted): exactly once to subscribers while the node runs.
//!
//! Consumers retry with full-jitter backoff; their state (and last error) is what
//! `GET /v1/admin/sources`, `/readyz` and the `fanhub_source_*` metrics show.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{ConsumerSettings, SourceConfig, SourceKind};
use crate::hub::TopicName;
use crate::protocol::backoff::Backoff;
use crate::transport::HubContext;

mod dead_letter;
#[cfg(feature = "kafka")]
mod kafka;
pub mod lane;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "postgres")]
mod postgres;
pub(crate) mod publish;
#[cfg(feature = "redis")]
mod redis_streams;

pub use lane::{Ack, Lane, Offer, Position, UpstreamRecord};

/// A consumer's connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerState {
    /// Connecting for the first time.
    Connecting,
    /// Connected and fetching.
    Connected,
    /// Lost or never reached; waiting to try again.
    Retrying,
    /// Cluster mode: another node consumes (it holds this consumer's lease); this one takes
    /// over when that lease expires.
    Standby,
    /// Stopped (shutdown).
    Stopped,
}

/// A consumer's health, as the admin API shows it.
#[derive(Debug)]
pub struct Health {
    state: Mutex<(ConsumerState, Option<String>, Instant)>,
    /// Connection attempts that failed.
    pub failures: AtomicU64,
}

impl Health {
    fn new() -> Self {
        Self { state: Mutex::new((ConsumerState::Connecting, None, Instant::now())), failures: AtomicU64::new(0) }
    }

    /// Records a state change (and the error that caused it).
    pub fn set(&self, state: ConsumerState, error: Option<String>) {
        let mut s = self.state.lock().expect("health lock");
        if state == ConsumerState::Retrying {
            self.failures.fetch_add(1, Relaxed);
        }
        if s.0 != state {
            s.2 = Instant::now();
        }
        s.0 = state;
        if error.is_some() || state == ConsumerState::Connected {
            s.1 = error;
        }
    }

    /// The state, its last error, and how long it has been in it.
    pub fn get(&self) -> (ConsumerState, Option<String>, Duration) {
        let s = self.state.lock().expect("health lock");
        (s.0, s.1.clone(), s.2.elapsed())
    }
}

/// One consumer: the shared one of a source or an exclusive one of a mapping; what a kind's
/// `run` is given.
pub struct Consumer {
    /// The source.
    pub source: Arc<SourceRuntime>,
    /// Its settings (the source's `consumer`, or the mapping's `exclusive`).
    pub settings: ConsumerSettings,
    /// Its group.
    pub group: String,
    /// The lanes it fetches for, in mapping order.
    pub lanes: Vec<Arc<Lane>>,
    /// Finished records to commit.
    pub acks: mpsc::UnboundedReceiver<Ack>,
    /// Its health.
    pub health: Arc<Health>,
    /// The name this node consumes under (its configured node id, else `fanhub`).
    pub node_name: String,
    /// Flips to true when this consumer must stop: the source stops, or (cluster mode) this
    /// node lost the consumer's lease.
    pub stop: watch::Receiver<bool>,
    /// Cluster mode: this node consumes only while it holds the consumer's lease (of this
    /// length), and is then the group's only consumer. A blocking fetch must not wait longer
    /// than a third of it.
    pub lease: Option<Duration>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("source", &self.source.config.name)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// The first of this consumer's lanes whose upstream template matches `name`.
    pub fn route(&self, name: &str) -> Option<&Arc<Lane>> {
        self.lanes.iter().find(|l| l.upstream.matches(name).is_some())
    }

    /// How long a blocking fetch may wait: the configured wait, at most a third of the lease.
    pub fn fetch_wait(&self) -> Duration {
        let wait = Duration::from_millis(self.settings.wait_ms());
        self.lease.map_or(wait, |ttl| wait.min(ttl / 3))
    }

    /// Full-jitter backoff for reconnecting.
    pub fn backoff(&self) -> Backoff {
        self.source.backoff()
    }

    /// True once this consumer must stop.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps `d`; true when the consumer must stop first.
    pub async fn sleep_or_stop(&self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = stop.wait_for(|s| *s) => true,
            () = tokio::time::sleep(d) => false,
        }
    }

    /// Resolves when the source stopped and its publishers are done (at once otherwise: a
    /// consumer that lost its lease commits what it has without waiting).
    pub async fn publishers_done(&self) {
        if !self.source.stopping() {
            return;
        }
        let mut drained = self.source.drained.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), drained.wait_for(|d| *d)).await;
    }
}

/// One configured source at run time.
pub struct SourceRuntime {
    /// Its configuration.
    pub config: SourceConfig,
    /// The dead-letter topic, parsed.
    pub dead_letter: Option<TopicName>,
    /// Where dead letters also go in the upstream itself, and the connection to write there.
    pub(crate) upstream_dead_letter: Option<dead_letter::UpstreamDeadLetter>,
    /// One lane per mapping, in order.
    pub lanes: Vec<Arc<Lane>>,
    /// Consumers: the shared one first (when a mapping uses it), then the exclusive ones.
    pub consumers: Vec<(String, Option<usize>, Arc<Health>)>,
    /// Flips to true at shutdown.
    pub stop: watch::Receiver<bool>,
    /// Flips to true once every publisher has stopped: what they finished can be committed.
    pub drained: watch::Receiver<bool>,
}

impl std::fmt::Debug for SourceRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceRuntime").field("name", &self.config.name).finish_non_exhaustive()
    }
}

impl SourceRuntime {
    /// Reconnect backoff from the source's settings.
    pub fn backoff(&self) -> Backoff {
        publish::backoff(self.config.retry_initial_ms, self.config.retry_max_ms)
    }

    /// Sleeps `d`; true when the source stops first.
    pub async fn sleep_or_stop(&self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = stop.wait_for(|s| *s) => true,
            () = tokio::time::sleep(d) => false,
        }
    }

    /// True once shutdown began.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// Every configured source of this node.
pub struct Sources {
    list: Vec<Arc<SourceRuntime>>,
    pending: Mutex<Vec<Consumer>>,
    stop: watch::Sender<bool>,
    drained: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    publishers: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").field("sources", &self.list.len()).finish_non_exhaustive()
    }
}

impl Sources {
    /// Builds the sources of `configs` (validated), not yet started.
    pub fn new(configs: &[SourceConfig]) -> Self {
        let (stop_tx, stop) = watch::channel(false);
        let (drained_tx, drained) = watch::channel(false);
        let mut list = Vec::new();
        let mut pending = Vec::new();
        for config in configs {
            // One ack channel per consumer; each lane sends to its consumer's.
            let shared_used = config.mappings.iter().any(|m| m.exclusive.is_none());
            let (shared_tx, shared_rx) = mpsc::unbounded_channel();
            let mut exclusive = Vec::new();
            let lanes: Vec<Arc<Lane>> = config
                .mappings
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let tx = if m.exclusive.is_some() {
                        let (tx, rx) = mpsc::unbounded_channel();
                        exclusive.push((i, rx));
                        tx
                    } else {
                        shared_tx.clone()
                    };
                    Arc::new(Lane::new(i, m.clone(), tx))
                })
                .collect();
            let mut consumers = Vec::new();
            let mut parts = Vec::new();
            if shared_used {
                let h = Arc::new(Health::new());
                consumers.push((config.group(None), None, h.clone()));
                let lanes = lanes.iter().filter(|l| l.config.exclusive.is_none()).cloned().collect();
                parts.push((config.consumer.clone(), config.group(None), lanes, shared_rx, h));
            }
            for (i, rx) in exclusive {
                let h = Arc::new(Health::new());
                consumers.push((config.group(Some(i)), Some(i), h.clone()));
                let settings = config.mappings[i].exclusive.clone().unwrap_or_default();
                parts.push((settings, config.group(Some(i)), vec![lanes[i].clone()], rx, h));
            }
            let runtime = Arc::new(SourceRuntime {
                config: config.clone(),
                dead_letter: config.dead_letter.as_deref().and_then(|t| TopicName::new(t).ok()),
                upstream_dead_letter: dead_letter::UpstreamDeadLetter::new(config),
                lanes,
                consumers,
                stop: stop.clone(),
                drained: drained.clone(),
            });
            for (settings, group, lanes, acks, health) in parts {
                let node_name = String::new();
                let stop = stop.clone();
                let c = Consumer {
                    source: runtime.clone(),
                    settings,
                    group,
                    lanes,
                    acks,
                    health,
                    node_name,
                    stop,
                    lease: None,
                };
                pending.push(c);
            }
            list.push(runtime);
        }
        Self {
            list,
            pending: Mutex::new(pending),
            stop: stop_tx,
            drained: drained_tx,
            tasks: Mutex::new(Vec::new()),
            publishers: Mutex::new(Vec::new()),
        }
    }

    /// True when no source is configured.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Starts every consumer and publisher (once).
    pub fn start(&self, ctx: &Arc<HubContext>) {
        let consumers: Vec<Consumer> = std::mem::take(&mut *self.pending.lock().expect("sources lock"));
        let mut publishers = self.publishers.lock().expect("sources lock");
        for s in &self.list {
            for lane in &s.lanes {
                publishers.push(tokio::spawn(publish::run(ctx.clone(), s.clone(), lane.clone())));
            }
        }
        let mut tasks = self.tasks.lock().expect("sources lock");
        let node_name = if ctx.config.node_id.is_empty() { "fanhub".to_owned() } else { ctx.node_id.clone() };
        for mut c in consumers {
            c.node_name.clone_from(&node_name);
            tracing::info!(source = %c.source.config.name, kind = c.source.config.kind.as_str(), group = %c.group,
                mappings = c.lanes.len(), "source consumer starting");
            tasks.push(tokio::spawn(run_consumer(ctx.clone(), c)));
        }
    }

    /// Stops every source: publishers finish the record in hand, consumers commit what was
    /// published and close, within `grace`.
    pub async fn stop(&self, grace: Duration) {
        let _ = self.stop.send(true);
        let publishers: Vec<_> = std::mem::take(&mut *self.publishers.lock().expect("sources lock"));
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().expect("sources lock"));
        let all = async {
            for p in publishers {
                let _ = p.await;
            }
            let _ = self.drained.send(true);
            for t in tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("sources did not stop within {grace:?}");
        }
        for s in &self.list {
            for (_, _, h) in &s.consumers {
                h.set(ConsumerState::Stopped, None);
            }
        }
    }

    /// Names of sources with a consumer neither connected nor on standby (readiness lists them).
    pub fn not_connected(&self) -> Vec<String> {
        self.list
            .iter()
            .filter(|s| s.consumers.iter().any(|(_, _, h)| !h.get().0.is_up()))
            .map(|s| s.config.name.clone())
            .collect()
    }

    /// Every source's state, per consumer and mapping.
    pub fn view(&self) -> Vec<SourceView> {
        self.list.iter().map(|s| SourceView::of(s)).collect()
    }
}

impl ConsumerState {
    /// Connected, or on standby behind the node that is.
    pub fn is_up(self) -> bool {
        matches!(self, Self::Connected | Self::Standby)
    }
}

/// Runs a consumer: of its kind, and in cluster mode only while this node holds its lease
/// (kinds whose upstream assigns consumers itself — Kafka's group protocol, the outbox's
/// advisory lock — run on every node).
async fn run_consumer(ctx: Arc<HubContext>, mut c: Consumer) {
    let leased = ctx.broker.is_clustered() && !matches!(c.source.config.kind, SourceKind::Kafka | SourceKind::Postgres);
    if !leased {
        run_kind(&mut c).await;
        return;
    }
    let name = format!("source:{}:{}", c.source.config.name, c.group);
    let ttl = Duration::from_millis(3 * ctx.config.broker.redis.heartbeat_ms);
    c.lease = Some(ttl);
    let mut source_stop = c.source.stop.clone();
    loop {
        if c.source.stopping() {
            break;
        }
        let asked = tokio::time::Instant::now();
        match tokio::time::timeout(ttl / 3, ctx.broker.lease(&name, ttl)).await.unwrap_or(Err(None)) {
            Ok(()) => {
                tracing::info!(lease = %name, "this node consumes");
                let (stop_tx, stop) = watch::channel(false);
                c.stop = stop;
                let renew = async {
                    // The lease expires in Redis at the latest `ttl` after the request that
                    // took or renewed it. Renew every third of it; unless renewed, stop
                    // consuming two thirds in: the consumer's reads (each blocking at most a
                    // third) are then over before another node can take the lease.
                    let mut renewed = asked;
                    loop {
                        let wake = (renewed + ttl / 3).max(tokio::time::Instant::now() + ttl / 12);
                        tokio::select! {
                            _ = source_stop.wait_for(|s| *s) => return,
                            () = tokio::time::sleep_until(wake) => {}
                        }
                        let sent = tokio::time::Instant::now();
                        match tokio::time::timeout(ttl / 6, ctx.broker.lease(&name, ttl)).await {
                            Ok(Ok(())) => renewed = sent,
                            Ok(Err(Some(holder))) => {
                                tracing::warn!(lease = %name, %holder, "lease taken over; this node stops consuming");
                                return;
                            }
                            Ok(Err(None)) | Err(_) => {}
                        }
                        if tokio::time::Instant::now() >= renewed + ttl * 2 / 3 {
                            tracing::warn!(lease = %name, "lease not renewed in time; this node stops consuming");
                            return;
                        }
                    }
                };
                let consume = run_kind(&mut c);
                tokio::pin!(consume);
                tokio::select! {
                    () = &mut consume => {}
                    () = renew => {
                        let _ = stop_tx.send(true);
                        consume.await;
                    }
                }
            }
            Err(Some(holder)) => c.health.set(ConsumerState::Standby, Some(format!("node {holder} consumes"))),
            Err(None) => c.health.set(ConsumerState::Retrying, Some("the cluster broker is unreachable".into())),
        }
        if c.source.sleep_or_stop(ttl / 3).await {
            break;
        }
    }
    ctx.broker.release(&name).await;
}

/// Runs a consumer of its kind until it must stop.
async fn run_kind(c: &mut Consumer) {
    match c.source.config.kind {
        #[cfg(feature = "kafka")]
        SourceKind::Kafka => kafka::run(c).await,
        #[cfg(feature = "nats")]
        SourceKind::Nats => nats::run(c).await,
        #[cfg(feature = "redis")]
        SourceKind::Redis => redis_streams::run(c).await,
        #[cfg(feature = "postgres")]
        SourceKind::Postgres => postgres::run(c).await,
        // Unreachable when every kind is built.
        #[allow(unreachable_patterns)]
        kind => {
            // Validation refuses kinds this build has not got; keep the state honest anyway.
            c.health.set(ConsumerState::Retrying, Some(format!("this build has no {} sources", kind.as_str())));
        }
    }
}

/// `GET /v1/admin/sources` item.
#[derive(Debug, Serialize)]
pub struct SourceView {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: &'static str,
    /// URL, password removed.
    pub url: String,
    /// Every consumer connected.
    pub connected: bool,
    /// Dead-letter topic.
    pub dead_letter: Option<String>,
    /// Dead-letter stream, subject or topic in the upstream.
    pub upstream_dead_letter: Option<String>,
    /// Consumers.
    pub consumers: Vec<ConsumerView>,
    /// Mappings.
    pub mappings: Vec<MappingView>,
}

/// A consumer's state.
#[derive(Debug, Serialize)]
pub struct ConsumerView {
    /// Group.
    pub group: String,
    /// The mapping it belongs to, when exclusive.
    pub exclusive_mapping: Option<usize>,
    /// State.
    pub state: ConsumerState,
    /// Seconds in that state.
    pub state_secs: f64,
    /// Last error.
    pub error: Option<String>,
    /// Failed attempts since start.
    pub failures: u64,
}

/// A mapping's state and counters.
#[derive(Debug, Serialize)]
pub struct MappingView {
    /// Upstream template.
    pub upstream: String,
    /// Topic template.
    pub topic: String,
    /// Backpressure mode.
    pub backpressure_mode: &'static str,
    /// Has its own consumer.
    pub exclusive: bool,
    /// Records buffered.
    pub buffered: usize,
    /// Buffer bound.
    pub max_buffered: u64,
    /// Upstream paused (buffer full, `apply_backpressure`).
    pub paused: bool,
    /// Records behind the upstream head.
    pub lag: u64,
    /// Records fetched.
    pub received: u64,
    /// Payload bytes fetched.
    pub bytes: u64,
    /// Records published.
    pub published: u64,
    /// Drops by reason (`drop_oldest`, `drop_newest`, `duplicate`, `dead_letter`).
    pub dropped: std::collections::BTreeMap<&'static str, u64>,
    /// Dead letters written to the upstream's dead letter (`upstream_dead_letter`).
    pub upstream_dead_letters: u64,
    /// Failed attempts at the upstream's dead letter (the lane waits behind the record while
    /// they are retried).
    pub upstream_dead_letter_failures: u64,
    /// Positions committed upstream.
    pub commits: u64,
    /// Times the buffer filled and paused the upstream.
    pub pauses: u64,
}

impl SourceView {
    fn of(s: &SourceRuntime) -> Self {
        let consumers: Vec<ConsumerView> = s
            .consumers
            .iter()
            .map(|(group, m, h)| {
                let (state, error, since) = h.get();
                ConsumerView {
                    group: group.clone(),
                    exclusive_mapping: *m,
                    state,
                    state_secs: since.as_secs_f64(),
                    error,
                    failures: h.failures.load(Relaxed),
                }
            })
            .collect();
        Self {
            name: s.config.name.clone(),
            kind: s.config.kind.as_str(),
            url: redact(&s.config.url),
            connected: consumers.iter().all(|c| c.state.is_up()),
            dead_letter: s.config.dead_letter.clone(),
            upstream_dead_letter: s.config.upstream_dead_letter.clone(),
            consumers,
            mappings: s
                .lanes
                .iter()
                .map(|l| {
                    let st = &l.stats;
                    MappingView {
                        upstream: l.config.upstream.clone(),
                        topic: l.config.topic.clone(),
                        backpressure_mode: l.config.backpressure_mode.as_str(),
                        exclusive: l.config.exclusive.is_some(),
                        buffered: l.buffered(),
                        max_buffered: l.config.max_buffered_messages,
                        paused: l.is_paused(),
                        lag: st.lag.load(Relaxed),
                        received: st.received.load(Relaxed),
                        bytes: st.bytes.load(Relaxed),
                        published: st.published.load(Relaxed),
                        dropped: [
                            ("drop_oldest", st.dropped_oldest.load(Relaxed)),
                            ("drop_newest", st.dropped_newest.load(Relaxed)),
                            ("duplicate", st.duplicates.load(Relaxed)),
                            ("dead_letter", st.dead_letters.load(Relaxed)),
                        ]
                        .into_iter()
                        .collect(),
                        upstream_dead_letters: st.upstream_dead_letters.load(Relaxed),
                        upstream_dead_letter_failures: st.upstream_dead_letter_failures.load(Relaxed),
                        commits: st.commits.load(Relaxed),
                        pauses: st.pauses.load(Relaxed),
                    }
                })
                .collect(),
        }
    }
}

/// `url` with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let rest = &url[scheme_end..];
    let host_start = rest.find('@');
    match host_start {
        Some(at) if rest[..at].contains(':') => {
            let user = &rest[..rest[..at].find(':').expect("checked")];
            format!("{}{user}:***{}", &url[..scheme_end], &rest[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(super::redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(super::redact("redis://h:6379"), "redis://h:6379");
        assert_eq!(super::redact("kafka://a:1,b:2"), "kafka://a:1,b:2");
    }
}
