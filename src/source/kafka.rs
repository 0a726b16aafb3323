//! Kafka source: one consumer-group member per fanhub consumer (librdkafka through rdkafka),
//! offsets committed after the hub took a record.
//!
//! * **Subscription**: the shared consumer subscribes to every shared mapping's upstream — a
//!   literal name as a topic, a templated one as a regex subscription
//!   ([`Template::to_regex`](crate::config::Template::to_regex)); an exclusive mapping has a
//!   member of its own in its own group.
//! * **Records**: the topic is the upstream name, `topic/partition` the partition, the offset
//!   the position; the record's key and headers (UTF-8, lossy) are its key and headers, its
//!   value the payload (empty when null).
//! * **Commits**: auto-commit and the offset store are off. Per partition the consumer keeps the
//!   offsets it fetched, in order, and marks each done when its lane hands it back; the
//!   contiguous prefix of done offsets is committed (`last done + 1`) asynchronously, once per
//!   loop turn that finished some. A partition revoked by a rebalance has what is done
//!   committed synchronously first, and its state dropped (its new owner fetches from there).
//!   At stop, after the publishers finished, what is done is committed synchronously and the
//!   member leaves the group (so the others rebalance at once). An asynchronous commit's records
//!   count (`commits`) once the group's committed offset, read with the lag, is at or past it
//!   (the client library reports no asynchronous commit), so a failed one counts when a later
//!   one covers it; synchronous ones count when they return.
//! * **Backpressure**: a lane full under `apply_backpressure` has its assigned partitions paused
//!   (only its own: the other mappings go on) and resumed once it has room.
//! * **Lag**: every [`LAG_EVERY`], per assigned partition, the high watermark less the
//!   committed offset (the low watermark when nothing is committed), summed per lane.
//! * **Health**: at start the brokers must answer a metadata request (until then the consumer
//!   is `retrying` with the error); afterwards librdkafka reconnects by itself, and an
//!   all-brokers-down error marks the consumer `retrying` until records or an answer come again.
//!
//! Cluster mode: every node runs its consumers (no lease): the group protocol gives each
//! partition to one member.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{Consumer, ConsumerState, Health, Lane, Offer, Position, UpstreamRecord};
use crate::config::OffsetReset;

/// How often lag is measured.
const LAG_EVERY: Duration = Duration::from_secs(1);
/// How often paused partitions are checked against the lanes (besides every pause and room).
const TICK: Duration = Duration::from_millis(200);
/// The longest a metadata, watermark or committed-offset request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Prefetched records librdkafka keeps per partition at most, kilobytes over all partitions.
const PREFETCH_KBYTES: &str = "4096";
/// How often the member refreshes topic metadata (new topics of a regex subscription), ms.
const METADATA_REFRESH_MS: &str = "10000";

/// What stops a consumer from starting.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("kafka consumer configuration: {0}")]
    Config(KafkaError),
    #[error("no answer from the brokers {0}: {1}")]
    Unreachable(String, KafkaError),
    #[error("subscribing to {0:?}: {1}")]
    Subscribe(Vec<String>, KafkaError),
}

/// Runs the consumer until it must stop.
pub(super) async fn run(c: &mut Consumer) {
    let backoff = c.backoff();
    let mut attempt = 0u32;
    let consumer = loop {
        if c.stopping() {
            return;
        }
        match open(c).await {
            Ok(consumer) => break consumer,
            Err(e) => {
                tracing::warn!(source = %c.source.config.name, group = %c.group, error = %e, "kafka source consumer cannot start; retrying");
                c.health.set(ConsumerState::Retrying, Some(e.to_string()));
            }
        }
        if c.sleep_or_stop(backoff.delay(attempt, rand::random::<f64>())).await {
            return;
        }
        attempt = attempt.saturating_add(1);
    };
    c.health.set(ConsumerState::Connected, None);
    serve(c, &consumer).await;
    // Commit what the publishers finished, then leave the group (the drop closes the member).
    c.publishers_done().await;
    drain_acks(c, &consumer.context().tracker);
    let commit = consumer.context().tracker.lock().expect("tracker lock").take_commits();
    // Closing waits for the group to answer: on the blocking pool, so a broker that does not
    // answer holds a blocking thread, not the runtime (the stop goes on after the timeout).
    let _ = tokio::time::timeout(
        REQUEST_TIMEOUT * 2,
        tokio::task::spawn_blocking(move || {
            let ctx = consumer.context();
            let mut partitions = ctx.unconfirmed.partitions();
            if let Some((tpl, _)) = &commit {
                partitions.extend(committed_offsets(tpl).into_keys());
            }
            ctx.commit_sync(&*consumer, commit, &partitions);
            consumer.unsubscribe();
            drop(consumer);
        }),
    )
    .await;
}

/// A member of the consumer's group, shared with the tasks measuring lag and closing it.
type Member = Arc<StreamConsumer<Context>>;

/// Creates the member, checks that the brokers answer, and subscribes.
async fn open(c: &Consumer) -> Result<Member, Error> {
    let brokers = brokers(&c.source.config.url);
    let context = Context {
        tracker: Arc::new(Mutex::new(Tracker::default())),
        health: c.health.clone(),
        lanes: c.lanes.clone(),
        brokers: brokers.clone(),
        rebalanced: AtomicBool::new(false),
        down: AtomicBool::new(false),
        unconfirmed: Unconfirmed::default(),
    };
    let consumer: StreamConsumer<Context> =
        client_config(c, &brokers).create_with_context(context).map_err(Error::Config)?;
    let consumer = Arc::new(consumer);
    let probe = consumer.clone();
    let answer = tokio::task::spawn_blocking(move || probe.fetch_metadata(None, REQUEST_TIMEOUT).map(|_| ()))
        .await
        .unwrap_or(Err(KafkaError::Canceled));
    answer.map_err(|e| Error::Unreachable(brokers.clone(), e))?;
    let topics = topics(c);
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).map_err(|e| Error::Subscribe(topics.clone(), e))?;
    Ok(consumer)
}

/// `kafka://a:1,b:2` → `a:1,b:2`.
pub(super) fn brokers(url: &str) -> String {
    url.strip_prefix("kafka://").unwrap_or(url).trim_end_matches('/').to_owned()
}

/// The librdkafka properties of this consumer.
fn client_config(c: &Consumer, brokers: &str) -> ClientConfig {
    let s = &c.settings;
    let shared = &c.source.config.consumer;
    let mut cfg = ClientConfig::new();
    // Defaults the options may change: a regex subscription finds new topics within seconds.
    cfg.set("topic.metadata.refresh.interval.ms", METADATA_REFRESH_MS);
    // Then the raw options; what fanhub sets below must hold (auto-commit stays off).
    for (k, v) in shared.options.iter().chain(&s.options) {
        cfg.set(k, v);
    }
    cfg.set("bootstrap.servers", brokers)
        .set("group.id", &c.group)
        .set("client.id", &c.node_name)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set(
            "auto.offset.reset",
            match s.offset_reset.or(shared.offset_reset).unwrap_or_default() {
                OffsetReset::Earliest => "earliest",
                OffsetReset::Latest => "latest",
            },
        )
        .set("fetch.wait.max.ms", c.fetch_wait().as_millis().max(1).to_string())
        .set("queued.min.messages", s.batch().to_string())
        .set("queued.max.messages.kbytes", PREFETCH_KBYTES);
    let numbers = [
        ("session.timeout.ms", s.session_timeout_ms.or(shared.session_timeout_ms)),
        ("heartbeat.interval.ms", s.heartbeat_interval_ms.or(shared.heartbeat_interval_ms)),
        ("max.poll.interval.ms", s.max_poll_interval_ms.or(shared.max_poll_interval_ms)),
        ("fetch.min.bytes", s.fetch_min_bytes.or(shared.fetch_min_bytes)),
    ];
    for (k, v) in numbers {
        if let Some(v) = v {
            cfg.set(k, v.to_string());
        }
    }
    cfg
}

/// What the member subscribes to: literal upstream names, `^regex`es for templated ones.
fn topics(c: &Consumer) -> Vec<String> {
    let mut topics: Vec<String> = Vec::new();
    for lane in &c.lanes {
        let t = if lane.upstream.is_literal() { lane.config.upstream.clone() } else { lane.upstream.to_regex() };
        if !topics.contains(&t) {
            topics.push(t);
        }
    }
    topics
}

/// Fetches, routes, pauses and commits until the consumer must stop.
async fn serve(c: &mut Consumer, consumer: &Member) {
    let mut stop = c.stop.clone();
    let lanes = c.lanes.clone();
    let ctx = consumer.context();
    let mut paused: HashSet<(String, i32)> = HashSet::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lag_at = tokio::time::Instant::now();
    let mut lag: Option<tokio::task::JoinHandle<Measured>> = None;
    loop {
        let room = async {
            let full: Vec<_> = lanes.iter().filter(|l| l.is_paused()).map(|l| Box::pin(l.room())).collect();
            if full.is_empty() {
                std::future::pending::<()>().await;
            } else {
                futures_util::future::select_all(full).await;
            }
        };
        let measured = async {
            match lag.as_mut() {
                Some(h) => h.await.unwrap_or(Err(KafkaError::Canceled)),
                None => std::future::pending().await,
            }
        };
        let mut resync = false;
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            m = consumer.recv() => match m {
                Ok(m) => {
                    if ctx.down.swap(false, Relaxed) {
                        c.health.set(ConsumerState::Connected, None);
                    }
                    if let Some(lane) = c.route(m.topic()).cloned() {
                        let record = to_record(&m);
                        ctx.tracker.lock().expect("tracker lock").fetched(&record, &lane);
                        match lane.offer(record) {
                            Offer::Queued { pause } => resync = pause,
                            Offer::Dropped(r) => lane.done(r, false),
                        }
                    } else {
                        // Subscribed to, yet no mapping routes it (the first match took
                        // another topic): nothing to publish.
                        tracing::debug!(source = %c.source.config.name, topic = m.topic(), "kafka record no mapping takes");
                    }
                }
                Err(e) => on_error(c, ctx, &e),
            },
            Some(a) = c.acks.recv() => {
                let mut t = ctx.tracker.lock().expect("tracker lock");
                t.finished(&a.partition, a.position);
                while let Ok(a) = c.acks.try_recv() {
                    t.finished(&a.partition, a.position);
                }
                let commit = t.take_commits();
                drop(t);
                if let Some(commit) = commit {
                    ctx.commit_async(consumer, commit, &c.source.config.name);
                }
            }
            () = room => resync = true,
            r = measured => {
                lag = None;
                match r {
                    Ok(partitions) => {
                        if ctx.down.swap(false, Relaxed) {
                            c.health.set(ConsumerState::Connected, None);
                        }
                        let mut per_lane: HashMap<usize, u64> = HashMap::new();
                        for p in partitions {
                            ctx.unconfirmed.confirm(&p.topic, p.partition, p.committed, false);
                            if let Some(l) = c.route(&p.topic) {
                                *per_lane.entry(l.index).or_default() += p.lag.max(0) as u64;
                            }
                        }
                        for l in &lanes {
                            l.stats.lag.store(per_lane.get(&l.index).copied().unwrap_or(0), Relaxed);
                        }
                    }
                    Err(e) => tracing::debug!(source = %c.source.config.name, error = %e, "kafka lag not measured"),
                }
            }
            _ = tick.tick() => {
                resync = true;
                if lag.is_none() && lag_at.elapsed() >= LAG_EVERY {
                    lag_at = tokio::time::Instant::now();
                    let member = consumer.clone();
                    lag = Some(tokio::task::spawn_blocking(move || measure(&member)));
                }
            }
        }
        if ctx.rebalanced.swap(false, Relaxed) {
            // A new assignment starts unpaused.
            paused.clear();
            resync = true;
        }
        if resync {
            sync_pauses(c, consumer, &mut paused);
        }
    }
}

/// Pauses the assigned partitions of full lanes and resumes those of lanes with room again.
fn sync_pauses(c: &Consumer, consumer: &Member, paused: &mut HashSet<(String, i32)>) {
    let Ok(assignment) = consumer.assignment() else { return };
    let mut pause = TopicPartitionList::new();
    let mut resume = TopicPartitionList::new();
    let mut assigned = HashSet::new();
    for e in assignment.elements() {
        let key = (e.topic().to_owned(), e.partition());
        let full = c.route(e.topic()).is_some_and(|l| l.is_paused());
        match (full, paused.contains(&key)) {
            (true, false) => {
                pause.add_partition(e.topic(), e.partition());
                paused.insert(key.clone());
            }
            (false, true) => {
                resume.add_partition(e.topic(), e.partition());
                paused.remove(&key);
            }
            _ => {}
        }
        assigned.insert(key);
    }
    paused.retain(|k| assigned.contains(k));
    if pause.count() > 0 {
        if let Err(e) = consumer.pause(&pause) {
            tracing::warn!(source = %c.source.config.name, error = %e, "kafka pause failed");
        }
    }
    if resume.count() > 0 {
        if let Err(e) = consumer.resume(&resume) {
            tracing::warn!(source = %c.source.config.name, error = %e, "kafka resume failed");
        }
    }
}

/// Per assigned partition, its topic and the records behind the head (high watermark less the
/// committed offset, or less the low watermark when nothing is committed). Blocking.
fn measure(consumer: &StreamConsumer<Context>) -> Measured {
    let assignment = consumer.assignment()?;
    if assignment.count() == 0 {
        return Ok(Vec::new());
    }
    let committed = consumer.committed_offsets(assignment, REQUEST_TIMEOUT)?;
    let mut out = Vec::new();
    for e in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(e.topic(), e.partition(), REQUEST_TIMEOUT)?;
        let from = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        let committed = matches!(e.offset(), Offset::Offset(_)).then_some(from);
        out.push(PartitionLag {
            topic: e.topic().to_owned(),
            partition: e.partition(),
            committed,
            lag: (high - from).max(0),
        });
    }
    Ok(out)
}

/// A consumer error: all brokers down marks the consumer retrying; the rest are logged.
fn on_error(c: &Consumer, ctx: &Context, e: &KafkaError) {
    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
        ctx.set_down(&e.to_string());
    } else {
        tracing::debug!(source = %c.source.config.name, error = %e, "kafka consumer error");
    }
}

/// Marks what the lanes handed back as done (the stop path: commit what is finished).
fn drain_acks(c: &mut Consumer, tracker: &Mutex<Tracker>) {
    let mut t = tracker.lock().expect("tracker lock");
    while let Ok(a) = c.acks.try_recv() {
        t.finished(&a.partition, a.position);
    }
}

/// The offsets a list commits, per topic and partition.
fn committed_offsets(tpl: &TopicPartitionList) -> HashMap<(String, i32), i64> {
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
            _ => None,
        })
        .collect()
}

fn count_commits(counts: &[(Arc<Lane>, u64)]) {
    for (lane, n) in counts {
        lane.stats.commits.fetch_add(*n, Relaxed);
    }
}

/// A fetched message as a record.
fn to_record(m: &BorrowedMessage<'_>) -> UpstreamRecord {
    let topic: Arc<str> = Arc::from(m.topic());
    let offset = m.offset().max(0);
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (h.key.to_owned(), h.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default();
    UpstreamRecord {
        partition: Arc::from(format!("{topic}/{}", m.partition())),
        upstream: topic,
        position: Position::at(offset as u64),
        position_text: offset.to_string(),
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        headers,
        payload: m.payload().map(Bytes::copy_from_slice).unwrap_or_default(),
        token: None,
    }
}

/// Offsets to commit, and how many records that commits per lane.
type Commit = (TopicPartitionList, Vec<(Arc<Lane>, u64)>);

/// A lag measurement: per assigned partition, its committed offset and the records behind the
/// head.
type Measured = Result<Vec<PartitionLag>, KafkaError>;

/// Asynchronous commits not yet confirmed: per topic and partition, per committed offset, its
/// lane and how many records it commits.
#[derive(Default)]
struct Unconfirmed(Mutex<HashMap<(String, i32), BTreeMap<i64, LaneCount>>>);

/// A lane and how many of its records a commit commits.
type LaneCount = (Arc<Lane>, u64);

impl Unconfirmed {
    /// An asynchronous commit of `tpl` went out, committing `counts` records per lane.
    fn add(&self, tpl: &TopicPartitionList, counts: Vec<LaneCount>) {
        let mut unconfirmed = self.0.lock().expect("unconfirmed lock");
        for (e, (lane, n)) in tpl.elements().iter().zip(counts) {
            if let Offset::Offset(o) = e.offset() {
                unconfirmed.entry((e.topic().to_owned(), e.partition())).or_default().insert(o, (lane, n));
            }
        }
    }

    /// The partitions with commits not yet confirmed.
    fn partitions(&self) -> HashSet<(String, i32)> {
        self.0.lock().expect("unconfirmed lock").keys().cloned().collect()
    }

    /// Adds to `tpl`, for each of `partitions` it has no offset for, the latest unconfirmed
    /// commit's offset.
    fn cover(&self, tpl: &mut TopicPartitionList, partitions: &HashSet<(String, i32)>) {
        let unconfirmed = self.0.lock().expect("unconfirmed lock");
        for (topic, partition) in partitions {
            if tpl.find_partition(topic, *partition).is_some() {
                continue;
            }
            if let Some((&o, _)) = unconfirmed.get(&(topic.clone(), *partition)).and_then(|c| c.last_key_value()) {
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(o));
            }
        }
    }

    /// The group's committed offset of `topic`/`partition` is `committed`: the commits at or
    /// before it count. With `forget`, the partition's other commits are dropped uncounted (it
    /// is no longer assigned).
    fn confirm(&self, topic: &str, partition: i32, committed: Option<i64>, forget: bool) {
        let mut unconfirmed = self.0.lock().expect("unconfirmed lock");
        let key = (topic.to_owned(), partition);
        let Some(commits) = unconfirmed.get_mut(&key) else { return };
        if let Some(committed) = committed {
            let later = commits.split_off(&(committed + 1));
            for (lane, n) in std::mem::replace(commits, later).into_values() {
                lane.stats.commits.fetch_add(n, Relaxed);
            }
        }
        if forget || commits.is_empty() {
            unconfirmed.remove(&key);
        }
    }
}

/// One assigned partition in a lag measurement.
struct PartitionLag {
    topic: String,
    partition: i32,
    /// The group's committed offset, if any.
    committed: Option<i64>,
    /// Records between it (or the low watermark) and the head.
    lag: i64,
}

/// One partition's fetched offsets not yet committed.
struct Partition {
    topic: String,
    partition: i32,
    lane: Arc<Lane>,
    /// Offsets fetched and not yet part of the done prefix; true once done.
    inflight: BTreeMap<u64, bool>,
    /// The next offset to commit (the done prefix's last + 1), once one is done.
    next: Option<u64>,
    /// Records done since the last commit.
    done: u64,
}

/// Per partition (`topic/partition`), what was fetched and what is done.
#[derive(Default)]
struct Tracker {
    partitions: HashMap<Arc<str>, Partition>,
}

impl Tracker {
    /// A record fetched for `lane`.
    fn fetched(&mut self, r: &UpstreamRecord, lane: &Arc<Lane>) {
        let p = self.partitions.entry(r.partition.clone()).or_insert_with(|| {
            let (topic, partition) = r.partition.rsplit_once('/').unwrap_or((&r.partition, "0"));
            Partition {
                topic: topic.to_owned(),
                partition: partition.parse().unwrap_or(0),
                lane: lane.clone(),
                inflight: BTreeMap::new(),
                next: None,
                done: 0,
            }
        });
        p.inflight.entry(r.position.major).or_insert(false);
    }

    /// A record done with (published, dropped, a duplicate, a dead letter): the done prefix
    /// grows. Records of partitions no longer assigned are ignored.
    fn finished(&mut self, partition: &str, position: Position) {
        let Some(p) = self.partitions.get_mut(partition) else { return };
        if let Some(done) = p.inflight.get_mut(&position.major) {
            *done = true;
        }
        while let Some(e) = p.inflight.first_entry() {
            if !*e.get() {
                break;
            }
            p.next = Some(e.key() + 1);
            p.done += 1;
            e.remove();
        }
    }

    /// The offsets to commit (every partition whose done prefix grew), and how many records
    /// that commits per lane.
    fn take_commits(&mut self) -> Option<Commit> {
        let mut tpl = TopicPartitionList::new();
        let mut counts = Vec::new();
        for p in self.partitions.values_mut() {
            if let (Some(next), true) = (p.next, p.done > 0) {
                if tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(next as i64)).is_ok() {
                    counts.push((p.lane.clone(), p.done));
                    p.done = 0;
                }
            }
        }
        (tpl.count() > 0).then_some((tpl, counts))
    }

    /// Drops the revoked partitions, returning what to commit for them first.
    fn revoke(&mut self, revoked: &TopicPartitionList) -> Option<Commit> {
        let mut tpl = TopicPartitionList::new();
        let mut counts = Vec::new();
        for e in revoked.elements() {
            let key = format!("{}/{}", e.topic(), e.partition());
            let Some(p) = self.partitions.remove(key.as_str()) else { continue };
            if let (Some(next), true) = (p.next, p.done > 0) {
                if tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(next as i64)).is_ok() {
                    counts.push((p.lane.clone(), p.done));
                }
            }
        }
        (tpl.count() > 0).then_some((tpl, counts))
    }
}

/// The member's callbacks: rebalances and client errors.
struct Context {
    tracker: Arc<Mutex<Tracker>>,
    health: Arc<Health>,
    lanes: Vec<Arc<Lane>>,
    brokers: String,
    /// Set after every rebalance: the loop pauses the new assignment's full lanes again.
    rebalanced: AtomicBool,
    /// Set while the brokers are unreachable.
    down: AtomicBool,
    /// Asynchronous commits not yet seen in the group's committed offsets.
    unconfirmed: Unconfirmed,
}

impl Context {
    /// Commits asynchronously; the records count once the committed offsets show it
    /// ([`Unconfirmed::confirm`]).
    fn commit_async(&self, consumer: &StreamConsumer<Context>, (tpl, counts): Commit, source: &str) {
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(source, error = %e, "kafka commit failed; retried with the next one");
            return;
        }
        self.unconfirmed.add(&tpl, counts);
    }

    /// Commits synchronously `commit` (what is done) and, for each of `partitions` it has no
    /// offset for, the latest asynchronous commit not yet confirmed (committed again: the
    /// answer confirms it). Then `partitions` are forgotten by [`Unconfirmed`]: their records
    /// counted if the commit went through, dropped uncounted if not. For a stop or a revoke.
    fn commit_sync<C: rdkafka::consumer::Consumer<Context>>(
        &self,
        consumer: &C,
        commit: Option<Commit>,
        partitions: &HashSet<(String, i32)>,
    ) {
        let (mut tpl, counts) = commit.unwrap_or_else(|| (TopicPartitionList::new(), Vec::new()));
        self.unconfirmed.cover(&mut tpl, partitions);
        let mut committed = HashMap::new();
        if tpl.count() > 0 {
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => {
                    count_commits(&counts);
                    committed = committed_offsets(&tpl);
                }
                Err(e) => tracing::warn!(error = %e, "kafka commit failed"),
            }
        }
        for p in partitions {
            self.unconfirmed.confirm(&p.0, p.1, committed.get(p).copied(), true);
        }
    }

    fn set_down(&self, error: &str) {
        self.down.store(true, Relaxed);
        self.health.set(ConsumerState::Retrying, Some(format!("brokers {} unreachable: {error}", self.brokers)));
    }
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.set_down(reason);
        } else {
            tracing::debug!(error = %error, reason, "librdkafka");
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else { return };
        // Commit what is done of the revoked partitions (their new owner starts there), then
        // forget them: records of theirs still in the lanes may be published, the rest come
        // again to the new owner.
        let commit = self.tracker.lock().expect("tracker lock").revoke(revoked);
        let partitions: HashSet<_> = revoked.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
        self.commit_sync(consumer, commit, &partitions);
        for e in revoked.elements() {
            let key = format!("{}/{}", e.topic(), e.partition());
            for lane in &self.lanes {
                lane.forget(&key);
            }
        }
        tracing::info!(partitions = revoked.count(), "kafka partitions revoked");
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            tracing::info!(partitions = assigned.count(), "kafka partitions assigned");
        }
        self.rebalanced.store(true, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackpressureMode, MappingConfig};

    fn lane() -> Arc<Lane> {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let config = MappingConfig {
            upstream: "orders".into(),
            topic: "orders".into(),
            payload_field: None,
            key_suffix: false,
            headers: true,
            max_buffered_messages: 10,
            backpressure_mode: BackpressureMode::ApplyBackpressure,
            exclusive: None,
        };
        Arc::new(Lane::new(0, config, tx))
    }

    fn record(partition: &str, offset: u64) -> UpstreamRecord {
        UpstreamRecord {
            upstream: "orders".into(),
            partition: partition.into(),
            position: Position::at(offset),
            position_text: offset.to_string(),
            key: None,
            headers: vec![],
            payload: Bytes::new(),
            token: None,
        }
    }

    fn committed(t: &mut Tracker) -> Vec<(String, i32, i64, u64)> {
        let Some((tpl, counts)) = t.take_commits() else { return vec![] };
        let mut out: Vec<_> = tpl
            .elements()
            .iter()
            .zip(counts)
            .map(|(e, (_, n))| (e.topic().to_owned(), e.partition(), e.offset().to_raw().unwrap_or(-1), n))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn only_the_contiguous_prefix_of_done_offsets_is_committed_per_partition() {
        let l = lane();
        let mut t = Tracker::default();
        for o in [3, 4, 7, 8] {
            t.fetched(&record("orders/0", o), &l);
        }
        t.fetched(&record("orders/1", 10), &l);
        t.finished("orders/0", Position::at(4));
        assert_eq!(committed(&mut t), vec![], "3 is not done: nothing to commit");
        t.finished("orders/0", Position::at(3));
        t.finished("orders/0", Position::at(8));
        t.finished("orders/1", Position::at(10));
        assert_eq!(committed(&mut t), vec![("orders".into(), 0, 5, 2), ("orders".into(), 1, 11, 1)]);
        assert_eq!(committed(&mut t), vec![], "nothing new");
        t.finished("orders/0", Position::at(7));
        assert_eq!(committed(&mut t), vec![("orders".into(), 0, 9, 2)], "a gap in the offsets is fine");
        t.finished("other/0", Position::at(1));
        assert_eq!(committed(&mut t), vec![], "an unknown partition is ignored");
    }

    #[test]
    fn a_revoked_partition_commits_what_is_done_and_is_forgotten() {
        let l = lane();
        let mut t = Tracker::default();
        for o in 0..3 {
            t.fetched(&record("orders/0", o), &l);
            t.fetched(&record("orders/1", o), &l);
        }
        t.finished("orders/0", Position::at(0));
        let mut revoked = TopicPartitionList::new();
        revoked.add_partition("orders", 0);
        let (tpl, counts) = t.revoke(&revoked).unwrap();
        assert_eq!(tpl.elements()[0].offset(), Offset::Offset(1));
        assert_eq!(counts[0].1, 1);
        t.finished("orders/0", Position::at(1));
        t.finished("orders/1", Position::at(0));
        assert_eq!(committed(&mut t), vec![("orders".into(), 1, 1, 1)]);
    }

    #[test]
    fn the_url_gives_the_bootstrap_servers() {
        assert_eq!(brokers("kafka://a:9092,b:9093"), "a:9092,b:9093");
        assert_eq!(brokers("kafka://a:9092/"), "a:9092");
    }

    #[test]
    fn asynchronous_commits_count_once_the_committed_offset_covers_them() {
        let (a, b) = (lane(), lane());
        let u = Unconfirmed::default();
        let list = |offsets: &[(&str, i32, i64)]| {
            let mut tpl = TopicPartitionList::new();
            for (t, p, o) in offsets {
                tpl.add_partition_offset(t, *p, Offset::Offset(*o)).unwrap();
            }
            tpl
        };
        u.add(&list(&[("orders", 0, 5), ("orders", 1, 3)]), vec![(a.clone(), 5), (b.clone(), 3)]);
        u.add(&list(&[("orders", 0, 9)]), vec![(a.clone(), 4)]);
        u.confirm("orders", 0, None, false);
        assert_eq!(a.stats.commits.load(Relaxed), 0, "nothing committed yet");
        u.confirm("orders", 0, Some(5), false);
        assert_eq!(a.stats.commits.load(Relaxed), 5, "the first commit only");
        // The commit of 9 failed; a later one (12) covers its records.
        u.add(&list(&[("orders", 0, 12)]), vec![(a.clone(), 3)]);
        u.confirm("orders", 0, Some(12), false);
        assert_eq!(a.stats.commits.load(Relaxed), 12);
        // Partition 1 revoked before its commit showed: dropped uncounted.
        u.confirm("orders", 1, None, true);
        u.confirm("orders", 1, Some(3), false);
        assert_eq!(b.stats.commits.load(Relaxed), 0);
        assert!(u.0.lock().unwrap().is_empty());
    }
}
