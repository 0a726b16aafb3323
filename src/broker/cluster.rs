//! Cluster mode: one node of many sharing one topic space through Redis.
//!
//! Owns the node's [`RedisBroker`] and everything that awaits it, so the manager stays
//! sans-IO:
//! * **Publish**: offsets are assigned by Redis (one Lua script: offset, history, channel
//!   publish). The publishing node delivers to its own subscribers when the record comes back
//!   on the channel, like every other node, so all nodes deliver the same offsets in the same
//!   order.
//! * **Fan-in**: a node joins a topic's channel (one shared RESP3 connection for all topics)
//!   when the topic gets its first local subscriber, syncs the topic's mirror to the Redis head,
//!   and leaves the channel in the maintenance pass after the last local subscriber is gone.
//! * **Subscribe from an offset** older than the mirror holds: the records come from the Redis
//!   history and are staged as backfill for the subscribe (see `hub::manager::remote`).
//! * **Gaps** (records lost on the channel while the connection was down): filled from the
//!   Redis history, either when a later record reveals them or when the maintenance pass sees
//!   the Redis head past the mirror's (or records of a new epoch: Redis lost the topic).
//! * **Faults**: Redis unreachable at start is retried with backoff; while it is down the node
//!   is not ready, `reliable` publishes answer `unavailable`, best-effort ones are delivered to
//!   this node's subscribers under a node-local epoch, and subscribes that need Redis history
//!   answer `unavailable`. Nothing is buffered without bound.
//! * **Node registry**: a heartbeat entry per node (id, URL, connections, load) with a TTL;
//!   the live nodes feed `GET /v1/admin/cluster` and the reconnect advice clients get.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, watch};

use super::redis::{BrokerError, PolicyChange, Push, RedisBroker, RedisHistory, RemoteMessage};
use super::{BrokerCounters, NodeInfo};
use crate::clock::Clock;
use crate::config::RedisConfig;
use crate::hub::manager::RemoteOutcome;
use crate::hub::{
    ConnId, Connection, ConnectionManager, DeliveryPolicy, PublishError, PublishReport, SetPolicyError, SubscribeError,
    SubscribeItem, TopicName,
};
use crate::protocol::control::ServerMsg;

/// Most publishes sent to Redis in one pipeline.
pub const MAX_BATCH: usize = 256;
/// Publishes queued per node before publishers wait.
pub const PUBLISH_QUEUE: usize = 4096;

/// A publish waiting for Redis.
#[derive(Debug)]
pub struct PublishJob {
    /// Topic.
    pub topic: TopicName,
    /// Payload.
    pub payload: bytes::Bytes,
    /// Record flags.
    pub flags: u8,
    /// Where the outcome goes.
    pub reply: PublishReply,
    /// An upstream source's position: published only past its ledger's.
    pub position: Option<super::SourcePosition>,
}

/// Where a publish's outcome goes.
#[derive(Debug)]
pub enum PublishReply {
    /// A client connection: `published` when it gave a request id, an `error` always.
    Connection {
        /// The publisher.
        conn: Arc<dyn Connection>,
        /// Its request id.
        id: Option<u64>,
        /// Which of the connection's publishes it is.
        seq: u64,
    },
    /// A waiting caller.
    Waiting(tokio::sync::oneshot::Sender<Result<PublishReport, PublishError>>),
}

/// What the publisher task takes, in order.
#[derive(Debug)]
enum Job {
    /// A publish.
    Publish(PublishJob),
    /// A barrier: answered once every publish queued before it has been answered.
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl PublishReply {
    fn send(self, topic: &TopicName, result: Result<PublishReport, PublishError>) {
        match self {
            Self::Waiting(tx) => {
                let _ = tx.send(result);
            }
            Self::Connection { conn, id, seq } => {
                let msg = match result {
                    Ok(r) => match id {
                        Some(_) => {
                            ServerMsg::Published { id, topic: topic.to_string(), offset: r.offset, epoch: r.epoch }
                        }
                        None => return,
                    },
                    Err(e) => e.to_msg(id, topic, seq),
                };
                let _ = conn.send_control(&msg);
            }
        }
    }
}

/// This node's membership of a Redis cluster.
#[derive(Debug)]
pub struct Cluster {
    manager: Arc<ConnectionManager>,
    clock: Clock,
    config: RedisConfig,
    node_id: String,
    public_url: String,
    broker: OnceLock<RedisBroker>,
    ready: AtomicBool,
    /// Topic channels this node has joined. A tokio mutex: joining awaits Redis, and the set
    /// must not change under a join (control path only, never the publish path).
    channels: tokio::sync::Mutex<HashSet<TopicName>>,
    /// Subscribes between `prepare` and attach, per topic: the maintenance pass must not leave
    /// the channel under them.
    in_flight: DashMap<TopicName, usize>,
    nodes: RwLock<Vec<NodeInfo>>,
    /// Topics whose mirror was behind the Redis head at the last pass: the Redis epoch then and
    /// the mirror's next offset.
    stalled: Mutex<HashMap<TopicName, (Option<u64>, u64)>>,
    /// Traffic counters.
    pub counters: BrokerCounters,
    jobs_tx: mpsc::Sender<Job>,
    jobs_rx: Mutex<Option<mpsc::Receiver<Job>>>,
}

/// Held from [`Cluster::prepare`] until the subscribe has attached: keeps the topics' channels
/// joined and drops unused backfill.
#[derive(Debug)]
pub struct Prepared {
    cluster: Arc<Cluster>,
    id: ConnId,
    topics: Vec<TopicName>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        self.cluster.manager.clear_backfill(self.id);
        for t in &self.topics {
            if let Some(mut n) = self.cluster.in_flight.get_mut(t) {
                *n = n.saturating_sub(1);
            }
            self.cluster.in_flight.remove_if(t, |_, n| *n == 0);
        }
    }
}

impl Cluster {
    /// A node for `config` (not connected yet: [`Self::start`]).
    pub fn new(
        manager: Arc<ConnectionManager>,
        config: RedisConfig,
        node_id: String,
        public_url: String,
        clock: Clock,
    ) -> Arc<Self> {
        let (jobs_tx, jobs_rx) = mpsc::channel(PUBLISH_QUEUE);
        Arc::new(Self {
            clock,
            jobs_tx,
            jobs_rx: Mutex::new(Some(jobs_rx)),
            manager,
            config,
            node_id,
            public_url,
            broker: OnceLock::new(),
            ready: AtomicBool::new(false),
            channels: tokio::sync::Mutex::new(HashSet::new()),
            in_flight: DashMap::new(),
            nodes: RwLock::new(Vec::new()),
            stalled: Mutex::new(HashMap::new()),
            counters: BrokerCounters::default(),
        })
    }

    /// Whether Redis answered the last check.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Relaxed) && self.broker.get().is_some()
    }

    /// The Redis URL without credentials, for logs and the admin API.
    pub fn redis_endpoint(&self) -> String {
        match self.config.url.split_once('@') {
            Some((_, host)) => format!("redis://…@{host}"),
            None => self.config.url.clone(),
        }
    }

    /// The live nodes at the last heartbeat (this one included).
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.nodes.read().clone()
    }

    /// The other live nodes' WebSocket URLs (reconnect advice).
    pub fn peer_urls(&self) -> Vec<String> {
        self.nodes.read().iter().filter(|n| n.node_id != self.node_id).map(|n| n.ws_url.clone()).collect()
    }

    /// Connects (retrying with backoff until it succeeds or shutdown), then keeps the node's
    /// registry entry, channels and mirrors in order every `heartbeat_ms`.
    pub fn start(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        if let Some(rx) = self.jobs_rx.lock().take() {
            // Not stopped by the shutdown signal: sessions closing for it await the answers to
            // the publishes they queued (`flush`). It ends with the node.
            tokio::spawn(run_publisher(Arc::downgrade(self), rx));
        }
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            let weak = Arc::downgrade(&this);
            loop {
                let on_push = {
                    let weak = weak.clone();
                    move |p: Push| on_push(&weak, p)
                };
                match RedisBroker::connect(&this.config.url, &this.config.prefix, on_push).await {
                    Ok(b) => {
                        this.load_policies(&b).await;
                        let _ = this.broker.set(b);
                        this.ready.store(true, Relaxed);
                        tracing::info!(redis = %this.redis_endpoint(), node_id = %this.node_id, "cluster broker connected");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(redis = %this.redis_endpoint(), error = %e, retry_in_ms = backoff.as_millis() as u64,
                            "cluster broker unreachable; not ready");
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            _ = shutdown.wait_for(|v| *v) => return,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            let mut tick = tokio::time::interval(Duration::from_millis(this.config.heartbeat_ms));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_published = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.wait_for(|v| *v) => break,
                }
                let published = this.counters.published.load(Relaxed);
                let rate = (published - last_published) * 1000 / this.config.heartbeat_ms.max(1);
                last_published = published;
                this.maintain(rate).await;
            }
            if let Some(b) = this.broker.get() {
                let _ = tokio::time::timeout(Duration::from_secs(1), b.deregister(&this.node_id)).await;
            }
        })
    }

    /// One maintenance pass: health, heartbeat, node list, channels, stalled mirrors.
    async fn maintain(self: &Arc<Self>, publish_rate: u64) {
        let Some(b) = self.broker.get() else { return };
        let up = b.ping().await;
        if up != self.ready.swap(up, Relaxed) {
            if up {
                tracing::info!(redis = %self.redis_endpoint(), "cluster broker reachable again; ready");
            } else {
                tracing::warn!(redis = %self.redis_endpoint(), "cluster broker unreachable; not ready");
            }
        }
        if !up {
            return;
        }
        let me = NodeInfo {
            node_id: self.node_id.clone(),
            ws_url: self.public_url.clone(),
            connections: self.manager.connection_stats().active_connections,
            publish_rate,
            heartbeat_ms: self.clock.now().unix_ms(),
        };
        let ttl = Duration::from_millis(self.config.heartbeat_ms * 3);
        if let Err(e) = b.heartbeat(&me, ttl).await {
            tracing::debug!(error = %e, "heartbeat failed");
        }
        match b.nodes().await {
            Ok(nodes) => *self.nodes.write() = nodes,
            Err(e) => tracing::debug!(error = %e, "reading the node registry failed"),
        }
        self.load_policies(b).await;
        if let Err(e) = self.reconcile(b).await {
            tracing::debug!(error = %e, "channel maintenance failed; retrying next pass");
        }
    }

    /// Makes this node's run-time policies those stored in Redis (at connect, and every pass:
    /// a change announced while the subscriber connection was down is not lost, and a policy
    /// reset meanwhile is reset here too).
    async fn load_policies(&self, b: &RedisBroker) {
        match b.policies().await {
            Ok(all) => {
                let stored: HashSet<TopicName> = all.iter().map(|c| c.topic.clone()).collect();
                for topic in self.manager.policy_overrides() {
                    if !stored.contains(&topic) {
                        self.apply_policy(PolicyChange { topic, policy: None });
                    }
                }
                for change in all {
                    self.apply_policy(change);
                }
            }
            Err(e) => tracing::debug!(error = %e, "reading the shared policies failed; retrying next pass"),
        }
    }

    fn apply_policy(&self, change: PolicyChange) {
        let Some(policy) = change.policy else {
            self.manager.reset_delivery_policy(&change.topic);
            return tracing::info!(topic = %change.topic, "delivery policy reset (cluster)");
        };
        if self.manager.delivery_policy(&change.topic) == policy {
            return;
        }
        match self.manager.set_delivery_policy(&change.topic, policy) {
            Ok(()) => tracing::info!(topic = %change.topic, "delivery policy changed (cluster)"),
            Err(e) => tracing::warn!(topic = %change.topic, error = %e, "a shared policy does not apply on this node"),
        }
    }

    /// Stores `policy` for `topic` in Redis (`None`: removes the stored one) and announces it,
    /// so every node applies it (nodes that join later read it at connect), then applies it
    /// here.
    ///
    /// # Errors
    /// [`SetPolicyError::Unavailable`] when Redis is unreachable: nothing changed anywhere.
    pub async fn share_policy(&self, topic: &TopicName, policy: Option<&DeliveryPolicy>) -> Result<(), SetPolicyError> {
        let unavailable = |detail: String| {
            SetPolicyError::Unavailable(format!("the cluster broker is unreachable ({detail}): nothing changed; retry"))
        };
        let b = self.broker.get().filter(|_| self.is_ready()).ok_or_else(|| unavailable("not connected".into()))?;
        let change = PolicyChange { topic: topic.clone(), policy: policy.cloned() };
        b.set_policy(&change).await.map_err(|e| unavailable(e.to_string()))?;
        match policy {
            Some(p) => self.manager.set_delivery_policy(topic, p.clone()),
            None => {
                self.manager.reset_delivery_policy(topic);
                Ok(())
            }
        }
    }

    /// Joins channels of topics that have local subscribers but no channel (subscribed while
    /// Redis was down), leaves channels nobody here listens to, and fills stalled mirrors.
    async fn reconcile(self: &Arc<Self>, b: &RedisBroker) -> Result<(), BrokerError> {
        let topics: HashMap<TopicName, _> = self.manager.remote_topics().into_iter().collect();
        let mut channels = self.channels.lock().await;
        for (t, pos) in &topics {
            if pos.subscribers > 0 && !channels.contains(t) {
                b.subscribe(t).await?;
                channels.insert(t.clone());
            }
            if pos.subscribers > 0 && !pos.synced {
                let (head, epoch) = b.head(t, self.config.history_ttl_secs).await?;
                self.manager.sync_remote(t, epoch, head, self.clock.now());
            }
        }
        let joined: Vec<TopicName> = channels.iter().cloned().collect();
        for t in &joined {
            let idle = topics.get(t).is_none_or(|p| p.subscribers == 0) && !self.in_flight.contains_key(t);
            if idle && self.manager.desync_remote_if_idle(t) {
                b.unsubscribe(t).await?;
                channels.remove(t);
            }
        }
        let synced: Vec<(TopicName, u64, u64)> = channels
            .iter()
            .filter_map(|t| topics.get(t).filter(|p| p.synced).map(|p| (t.clone(), p.epoch, p.next_offset)))
            .collect();
        drop(channels);
        let names: Vec<TopicName> = synced.iter().map(|(t, _, _)| t.clone()).collect();
        let heads = b.heads(&names).await?;
        let mut stalled = self.stalled.lock();
        let mut fills = Vec::new();
        for ((t, epoch, next), (head, redis_epoch)) in synced.into_iter().zip(heads) {
            let behind = match redis_epoch {
                Some(e) if e == epoch => head > next,
                // Redis lost the topic (a restart without persistence) and has records of a new
                // epoch: all of them are new here, and no later record may come to reveal them.
                Some(_) => head > 1,
                None => false,
            };
            if !behind {
                stalled.remove(&t);
                continue;
            }
            // Behind twice in a row at the same place: not just records in flight.
            let mark = (redis_epoch, next);
            if stalled.get(&t) == Some(&mark) {
                stalled.remove(&t);
                match redis_epoch {
                    Some(e) if e != epoch => {
                        if self.manager.fill_new_epoch(&t, e) {
                            fills.push((t, 1, e));
                        }
                    }
                    _ => {
                        if let Some(from) = self.manager.fill_if_behind(&t, epoch, head) {
                            fills.push((t, from, epoch));
                        }
                    }
                }
            } else {
                stalled.insert(t, mark);
            }
        }
        drop(stalled);
        for (t, from, epoch) in fills {
            tokio::spawn(self.clone().fill(t, from, epoch));
        }
        Ok(())
    }

    /// Fetches `topic`'s Redis history from `from` and completes the mirror's gap fill,
    /// retrying while Redis is down (the held records are bounded meanwhile).
    async fn fill(self: Arc<Self>, topic: TopicName, from: u64, epoch: u64) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let still_needed = self.manager.remote_position(&topic).is_some_and(|p| p.synced && p.filling);
            if !still_needed {
                return;
            }
            if let Some(b) = self.broker.get() {
                match b.history(&topic, from).await {
                    Ok(msgs) => {
                        self.counters.history_fetched.fetch_add(msgs.len() as u64, Relaxed);
                        let records: Vec<_> = msgs.iter().map(RemoteMessage::record).collect();
                        self.manager.fill_remote(&topic, epoch, &records, self.clock.now());
                        return;
                    }
                    Err(e) => tracing::debug!(topic = %topic, error = %e, "gap fill failed; retrying"),
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Queues a publish (order kept per node, so per connection); its outcome goes to
    /// `job.reply`. Waits while the queue is full (bounded).
    ///
    /// # Errors
    /// [`PublishError`] `unavailable` when the node is shutting down.
    pub async fn enqueue(&self, job: PublishJob) -> Result<(), PublishError> {
        self.jobs_tx.send(Job::Publish(job)).await.map_err(|_| PublishError::unavailable("the node is shutting down"))
    }

    /// Returns once every publish queued before the call has been answered.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.jobs_tx.send(Job::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Publishes through Redis and waits for the outcome (the HTTP publish API). While Redis is
    /// unreachable, a `reliable` topic answers `unavailable` and anything else is delivered to
    /// this node's subscribers only.
    ///
    /// # Errors
    /// [`PublishError`] `unavailable`, or the topic may not be used.
    pub async fn publish(
        &self,
        topic: &TopicName,
        payload: &[u8],
        flags: u8,
        position: Option<super::SourcePosition>,
    ) -> Result<PublishReport, PublishError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = PublishJob {
            topic: topic.clone(),
            payload: bytes::Bytes::copy_from_slice(payload),
            flags,
            reply: PublishReply::Waiting(tx),
            position,
        };
        self.enqueue(job).await?;
        rx.await.map_err(|_| PublishError::unavailable("the node is shutting down"))?
    }

    async fn publish_batch(&self, jobs: &[PublishJob]) -> Vec<Result<PublishReport, PublishError>> {
        let mut results: Vec<Option<Result<PublishReport, PublishError>>> = jobs
            .iter()
            .map(|j| self.manager.topics().get_or_create(&j.topic).err().map(|e| Err(PublishError::from(e))))
            .collect();
        let todo: Vec<usize> = (0..jobs.len()).filter(|&i| results[i].is_none()).collect();
        if let Some(b) = self.broker.get().filter(|_| self.is_ready()) {
            let ts = self.clock.now().unix_us.max(0) as u64;
            let items: Vec<_> = todo
                .iter()
                .map(|&i| {
                    let j = &jobs[i];
                    let history = RedisHistory {
                        max_messages: self.manager.topics().history_for(&j.topic).max_messages as u64,
                        ttl_secs: self.config.history_ttl_secs,
                    };
                    (&j.topic, j.flags, ts, &j.payload[..], history, j.position.as_ref())
                })
                .collect();
            match b.publish_many(&items).await {
                Ok(assigned) => {
                    self.counters.published.fetch_add(assigned.len() as u64, Relaxed);
                    for (&i, a) in todo.iter().zip(assigned) {
                        results[i] = Some(Ok(PublishReport { offset: a.offset, epoch: a.epoch, ..Default::default() }));
                    }
                }
                Err(e) => {
                    if self.ready.swap(false, Relaxed) {
                        tracing::warn!(redis = %self.redis_endpoint(), error = %e, "cluster broker failed a publish; not ready");
                    }
                }
            }
        }
        // Redis unreachable: reliable topics refuse, the others are delivered here only.
        for &i in &todo {
            if results[i].is_some() {
                continue;
            }
            let j = &jobs[i];
            let reliable = matches!(self.manager.delivery_policy(&j.topic), DeliveryPolicy::Reliable { .. });
            results[i] = Some(if reliable {
                self.counters.refused.fetch_add(1, Relaxed);
                Err(PublishError::unavailable(format!(
                    "the cluster broker is unreachable and {} is reliable: nothing was published; retry",
                    j.topic
                )))
            } else {
                self.counters.detached.fetch_add(1, Relaxed);
                self.manager.route_detached(&j.topic, &j.payload, j.flags, self.clock.now())
            });
        }
        results.into_iter().map(|r| r.expect("every job has a result")).collect()
    }

    /// Takes or renews the lease `name` for this node: `Ok` while it holds it, `Err(Some(holder))`
    /// when another node does, `Err(None)` when Redis is unreachable.
    pub async fn lease(&self, name: &str, ttl: Duration) -> Result<(), Option<String>> {
        let Some(b) = self.broker.get().filter(|_| self.is_ready()) else { return Err(None) };
        match b.lease(name, &self.node_id, ttl).await {
            Ok(holder) if holder == self.node_id => Ok(()),
            Ok(holder) => Err(Some(holder)),
            Err(e) => {
                tracing::debug!(lease = name, error = %e, "lease not renewed");
                Err(None)
            }
        }
    }

    /// Gives up the lease `name` if this node holds it.
    pub async fn release(&self, name: &str) {
        if let Some(b) = self.broker.get() {
            if let Err(e) = b.release(name, &self.node_id).await {
                tracing::debug!(lease = name, error = %e, "lease not released; it expires");
            }
        }
    }

    /// Readies topics for a subscribe of connection `id`: joins their channels, syncs their
    /// mirrors, and stages Redis history for offsets older than the mirrors hold. Keep the
    /// returned guard until the subscribe has attached.
    ///
    /// # Errors
    /// [`SubscribeError`] `unavailable` when Redis is needed and unreachable.
    pub async fn prepare(self: &Arc<Self>, id: ConnId, items: &[SubscribeItem]) -> Result<Prepared, SubscribeError> {
        for (t, _, _) in items {
            *self.in_flight.entry(t.clone()).or_insert(0) += 1;
        }
        let guard = Prepared { cluster: self.clone(), id, topics: items.iter().map(|(t, _, _)| t.clone()).collect() };
        let unavailable = |e: &dyn std::fmt::Display| {
            SubscribeError::unavailable(format!("the cluster broker is unreachable ({e}); retry"))
        };
        let Some(b) = self.broker.get().filter(|_| self.is_ready()) else {
            // Live subscribes go ahead (the maintenance pass joins the channel once Redis is
            // back); an offset this node cannot serve from its own mirror needs Redis.
            for (t, offset, epoch) in items {
                if let Some(o) = offset {
                    let covered = self.manager.remote_position(t).is_some_and(|p| {
                        p.synced
                            && epoch.is_none_or(|e| e == p.epoch)
                            && *o >= p.first_retained.unwrap_or(p.next_offset)
                    });
                    if !covered {
                        return Err(unavailable(&"not connected"));
                    }
                }
            }
            return Ok(guard);
        };
        for (t, offset, epoch) in items {
            if self.manager.ensure_topic(t).is_err() {
                continue; // The subscribe itself reports it.
            }
            self.join(b, t).await.map_err(|e| unavailable(&e))?;
            let Some(o) = offset else { continue };
            let Some(pos) = self.manager.remote_position(t) else { continue };
            let low = pos.first_retained.unwrap_or(pos.next_offset);
            if *o < low && epoch.is_none_or(|e| e == pos.epoch) {
                let msgs = b.history(t, (*o).max(1)).await.map_err(|e| unavailable(&e))?;
                self.counters.history_fetched.fetch_add(msgs.len() as u64, Relaxed);
                let records: Vec<_> = msgs.iter().filter(|m| m.epoch == pos.epoch).map(RemoteMessage::record).collect();
                self.manager.stage_backfill(id, t, &records, self.clock.now());
            }
        }
        Ok(guard)
    }

    /// Joins `topic`'s channel if this node has not, and syncs its mirror if it is not.
    async fn join(&self, b: &RedisBroker, topic: &TopicName) -> Result<(), BrokerError> {
        {
            let mut channels = self.channels.lock().await;
            if !channels.contains(topic) {
                b.subscribe(topic).await?;
                channels.insert(topic.clone());
            }
        }
        if !self.manager.remote_position(topic).is_some_and(|p| p.synced) {
            // Read after the channel is joined: every record from `head` on arrives on it.
            let (head, epoch) = b.head(topic, self.config.history_ttl_secs).await?;
            self.manager.sync_remote(topic, epoch, head, self.clock.now());
        }
        Ok(())
    }
}

/// Runs queued publishes: everything queued at once (up to [`MAX_BATCH`]) goes to Redis as one
/// pipeline — one round trip, and the records come back to every node in a burst, so subscriber
/// writers batch them. Flush barriers are answered after the publishes queued before them.
/// Ends when the node's [`Cluster`] is gone.
async fn run_publisher(cluster: Weak<Cluster>, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut barriers = Vec::new();
    loop {
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let Some(c) = cluster.upgrade() else { return };
        for job in batch.drain(..) {
            match job {
                Job::Publish(j) => jobs.push(j),
                Job::Flush(tx) => barriers.push(tx),
            }
        }
        let results = c.publish_batch(&jobs).await;
        for (job, result) in jobs.drain(..).zip(results) {
            job.reply.send(&job.topic, result);
        }
        for tx in barriers.drain(..) {
            let _ = tx.send(());
        }
    }
}

/// A record from a topic channel (on the Redis connection's task: routes, never blocks).
fn on_push(cluster: &Weak<Cluster>, p: Push) {
    let Some(c) = cluster.upgrade() else { return };
    let m = match p {
        Push::Message(m) => m,
        Push::Policy(change) => return c.apply_policy(change),
    };
    c.counters.messages_in.fetch_add(1, Relaxed);
    c.counters.bytes_in.fetch_add(m.payload.len() as u64, Relaxed);
    if let RemoteOutcome::Fill { from, epoch } = c.manager.route_remote(&m.topic, &m.record(), c.clock.now()) {
        tokio::spawn(c.clone().fill(m.topic, from, epoch));
    }
}
