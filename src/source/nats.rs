//! NATS JetStream source: durable pull consumers on the configured stream, one per mapping,
//! acknowledged after the hub took a record.
//!
//! * **Stream**: `stream` names it; it must exist (a missing stream is a connection error,
//!   retried like any).
//! * **Durables**: one durable pull consumer per mapping, named after the consumer's group and
//!   the mapping's index ([`durable_name`]), filtered on the mapping's upstream template with
//!   every token holding a placeholder as `*` ([`filter_subject`]). The shared consumer runs
//!   all of its mappings' durables on one connection; an exclusive mapping has a connection of
//!   its own. Ack policy explicit, deliver policy from `offset_reset` (`all` or `new`),
//!   `max_ack_pending` the lane's buffer plus one fetch, [`ACK_WAIT`].
//! * **Messages**: the subject is the upstream name, the header `key` the record's key, every
//!   other header (its first value) a header; the payload is the record's value.
//! * **Positions**: the stream sequence, ordered per stream (the partition).
//! * **Redelivery**: JetStream redelivers a message with its stream sequence, so the lane's
//!   ledger skips one already published. At every (re)connect a durable with deliveries still
//!   unacknowledged (records this node held, or a restarted node's) is created again from its
//!   ack floor: they come again first and in order, as a Redis consumer reads its own pending
//!   entries first, instead of after [`ACK_WAIT`] and behind newer ones.
//! * **Pulls**: each durable's pull requests (`max_poll_records` messages, expiring after
//!   `fetch_max_wait_ms`) answer on one inbox, and messages are taken as they come. A request
//!   is topped up when half of it came and renewed before it expires ([`Pulls`]), so neither
//!   a batch filling up nor the server's expiry notice is waited for.
//! * **Backpressure**: a paused lane's durable is not pulled (the others go on); under
//!   `apply_backpressure` a pull asks for no more than the lane has room for, and what
//!   requests already asked for is taken when it comes.
//! * **Lag**: each durable's `num_pending + num_ack_pending`, every second.
//!
//! A lost connection ends the session: the consumer reconnects with backoff (the client's own
//! reconnection is limited to one try), so every reconnect goes through the same checks.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream::Stream};
use async_nats::StatusCode;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::{Ack, Consumer, ConsumerState, Lane, Offer, Position, SourceRuntime, UpstreamRecord};
use crate::config::{BackpressureMode, ConsumerSettings, OffsetReset};

/// How long JetStream waits for an acknowledgement before it delivers a message again.
pub(super) const ACK_WAIT: Duration = Duration::from_secs(30);
/// The shortest life of a pull request on the server (`fetch_max_wait_ms` below it would only
/// renew requests more often: messages are taken as they come, whatever the expiry).
const MIN_EXPIRES: Duration = Duration::from_millis(10);
/// How often lag is measured.
const LAG_EVERY: Duration = Duration::from_secs(1);
/// The longest a connection attempt or a JetStream request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What ends a session.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("cannot connect: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("stream {0:?} not found: create it (with the mappings' subjects) before the hub consumes it")]
    NoStream(String),
    #[error("stream {0:?}: {1}")]
    Stream(String, String),
    #[error("durable consumer {0:?}: {1}")]
    Durable(String, String),
    #[error("pulling from {0:?}: {1}")]
    Pull(String, String),
    #[error("acknowledging: {0}")]
    Ack(String),
    #[error("connection to the server lost")]
    Disconnected,
}

/// What a record carries back for its acknowledgement: the message's reply subject (acked on
/// the connection of the moment, so a reconnect does not strand it) and its lane.
struct Token {
    reply: async_nats::Subject,
    lane: usize,
}

/// Runs the consumer until the source stops.
pub(super) async fn run(c: &mut Consumer) {
    let backoff = c.backoff();
    let mut attempt = 0u32;
    let mut last = None;
    loop {
        if c.stopping() {
            break;
        }
        let error = match Session::open(c).await {
            Ok(s) => {
                attempt = 0;
                c.health.set(ConsumerState::Connected, None);
                match s.serve(c).await {
                    Ok(()) => {
                        last = Some(s);
                        break;
                    }
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        tracing::warn!(source = %c.source.config.name, group = %c.group, error = %error, "nats source consumer lost; retrying");
        c.health.set(ConsumerState::Retrying, Some(error.to_string()));
        if c.sleep_or_stop(backoff.delay(attempt, rand::random::<f64>())).await {
            break;
        }
        attempt = attempt.saturating_add(1);
    }
    // Commit what the publishers finished; whatever stays unacknowledged comes again.
    final_acks(c, last).await;
}

/// One mapping's durable.
struct Durable {
    lane: Arc<Lane>,
    name: String,
}

struct Session {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: Stream,
    /// The stream's name: every record's partition.
    partition: Arc<str>,
    durables: Vec<Durable>,
    /// Notified when the connection drops.
    lost: Arc<Notify>,
}

impl Session {
    async fn connect(c: &Consumer) -> Result<(async_nats::Client, jetstream::Context, Arc<Notify>), Error> {
        let lost = Arc::new(Notify::new());
        let on_event = lost.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("fanhub {} {}", c.node_name, c.group))
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .ping_interval(Duration::from_secs(10))
            .max_reconnects(Some(1))
            .event_callback(move |event| {
                let lost = on_event.clone();
                async move {
                    if matches!(event, async_nats::Event::Disconnected | async_nats::Event::Closed) {
                        lost.notify_one();
                    }
                }
            })
            .connect(c.source.config.url.as_str())
            .await?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(REQUEST_TIMEOUT);
        Ok((client, js, lost))
    }

    async fn open(c: &Consumer) -> Result<Self, Error> {
        let (client, js, lost) = Self::connect(c).await?;
        let name = c.source.config.stream.clone().unwrap_or_default();
        let stream = match js.get_stream(&name).await {
            Ok(s) => s,
            Err(e) => {
                return Err(match e.kind() {
                    jetstream::context::GetStreamErrorKind::JetStream(j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                    {
                        Error::NoStream(name)
                    }
                    _ => Error::Stream(name, e.to_string()),
                })
            }
        };
        let mut durables = Vec::with_capacity(c.lanes.len());
        for lane in &c.lanes {
            let name = durable_name(&c.group, lane.index);
            open_durable(c, &stream, &name, lane).await?;
            durables.push(Durable { lane: lane.clone(), name });
        }
        Ok(Self { client, js, stream, partition: Arc::from(name.as_str()), durables, lost })
    }

    /// Pulls, routes and acknowledges until the source stops (Ok) or NATS fails (Err).
    async fn serve(&self, c: &mut Consumer) -> Result<(), Error> {
        let mut stop = c.stop.clone();
        if *stop.borrow() {
            return Ok(());
        }
        let expires = c.fetch_wait().max(MIN_EXPIRES);
        let (source, settings, acks) = (&*c.source, &c.settings, &mut c.acks);
        let pulls =
            futures_util::future::try_join_all(self.durables.iter().map(|d| self.pull(source, settings, d, expires)));
        tokio::select! {
            _ = stop.wait_for(|s| *s) => Ok(()),
            () = self.lost.notified() => Err(Error::Disconnected),
            r = pulls => r.map(|_| ()),
            r = self.commit_and_measure(acks) => r,
        }
    }

    /// Pulls one durable while its lane has room, until an error: every pull request of the
    /// durable answers on one inbox, so messages are taken as they come, whichever request
    /// brought them, and a request given up on loses nothing ([`Pulls`] decides when to ask).
    async fn pull(
        &self,
        source: &SourceRuntime,
        settings: &ConsumerSettings,
        d: &Durable,
        expires: Duration,
    ) -> Result<(), Error> {
        let pull_err = |e: &dyn std::fmt::Display| Error::Pull(d.name.clone(), e.to_string());
        let inbox = self.client.new_inbox();
        let mut inbox_sub = self.client.subscribe(inbox.clone()).await.map_err(|e| pull_err(&e))?;
        let api = format!("{JS_API}.CONSUMER.MSG.NEXT.{}.{}", self.partition, d.name);
        let mut pulls = Pulls::new(settings.batch(), expires);
        loop {
            let due = pulls.due(Instant::now());
            let wake = tokio::time::Instant::from_std(pulls.wake_at().unwrap_or_else(Instant::now));
            tokio::select! {
                biased;
                // A full lane (apply_backpressure): this mapping's durable asks for nothing more
                // until it has room; the others go on.
                () = d.lane.room(), if due => {
                    let n = pull_size(&d.lane, settings);
                    let request = serde_json::json!({ "batch": n, "expires": expires.as_nanos() as u64 });
                    self.client
                        .publish_with_reply(api.clone(), inbox.clone(), request.to_string().into())
                        .await
                        .map_err(|e| pull_err(&e))?;
                    pulls.sent(Instant::now(), n);
                }
                m = inbox_sub.next() => {
                    let m = m.ok_or(Error::Disconnected)?;
                    match m.status.unwrap_or(StatusCode::OK) {
                        StatusCode::OK => {
                            pulls.message();
                            // Taken paused or not: what a pull brought is on its way.
                            self.take(source, d, jetstream::Message { message: m, context: self.js.clone() });
                        }
                        StatusCode::IDLE_HEARTBEAT => {}
                        // A request expired (408) or found nothing (404): what it did not bring.
                        StatusCode::TIMEOUT | StatusCode::NOT_FOUND => pulls.ended(pending_messages(&m)),
                        status => {
                            let why = m.description.as_deref().unwrap_or_default();
                            if pull_refusal_is_final(why) {
                                return Err(pull_err(&format_args!("{status} {why}")));
                            }
                            tracing::debug!(source = %source.config.name, durable = %d.name, %status, why, "pull refused; asking again later");
                            pulls.refused(Instant::now());
                        }
                    }
                }
                () = tokio::time::sleep_until(wake), if !due => {}
            }
        }
    }

    /// Routes one message: to its lane, or acknowledged at once when an earlier mapping of the
    /// source takes its subject (or none matches it).
    fn take(&self, source: &SourceRuntime, d: &Durable, m: jetstream::Message) {
        let Some(record) = to_record(&self.partition, d.lane.index, m) else {
            tracing::warn!(source = %source.config.name, durable = %d.name, "a message without JetStream metadata; skipped");
            return;
        };
        let first = source.lanes.iter().find(|l| l.upstream.matches(&record.upstream).is_some());
        if first.map(|l| l.index) != Some(d.lane.index) {
            d.lane.done(record, false);
            return;
        }
        if let Offer::Dropped(r) = d.lane.offer(record) {
            d.lane.done(r, false);
        }
    }

    /// Acknowledges finished records as they come, and measures lag every [`LAG_EVERY`].
    async fn commit_and_measure(&self, acks: &mut tokio::sync::mpsc::UnboundedReceiver<Ack>) -> Result<(), Error> {
        let mut measured = Instant::now() - LAG_EVERY;
        loop {
            if measured.elapsed() >= LAG_EVERY {
                self.measure().await?;
                measured = Instant::now();
            }
            let wait = LAG_EVERY.saturating_sub(measured.elapsed());
            let first = match tokio::time::timeout(wait, acks.recv()).await {
                Ok(Some(a)) => a,
                // Every sender gone: only at shutdown, which the caller sees first.
                Ok(None) => std::future::pending().await,
                Err(_) => continue,
            };
            self.ack(first).await?;
            while let Ok(a) = acks.try_recv() {
                self.ack(a).await?;
            }
        }
    }

    /// Acknowledges one record (a double acknowledgement is harmless).
    async fn ack(&self, a: Ack) -> Result<(), Error> {
        let Some(token) = a.token.and_then(|t| t.downcast::<Token>().ok()) else { return Ok(()) };
        let acker = jetstream::message::Acker::new(self.js.clone(), Some(token.reply));
        acker.ack().await.map_err(|e| Error::Ack(e.to_string()))?;
        if let Some(d) = self.durables.iter().find(|d| d.lane.index == token.lane) {
            d.lane.stats.commits.fetch_add(1, Relaxed);
        }
        Ok(())
    }

    /// Lag per lane: its durable's messages not yet delivered plus those not yet acknowledged.
    async fn measure(&self) -> Result<(), Error> {
        for d in &self.durables {
            let info =
                self.stream.consumer_info(&d.name).await.map_err(|e| Error::Durable(d.name.clone(), e.to_string()))?;
            d.lane.stats.lag.store(info.num_pending + info.num_ack_pending as u64, Relaxed);
        }
        Ok(())
    }
}

/// Opens `name`, the durable of `lane`: created when missing; created again from its ack floor
/// when it has deliveries not acknowledged (they come again first, in order); created again
/// from the start when its filter is not the mapping's any more.
async fn open_durable(c: &Consumer, stream: &Stream, name: &str, lane: &Lane) -> Result<(), Error> {
    let err = |e: &dyn std::fmt::Display| Error::Durable(name.to_owned(), e.to_string());
    let filter = filter_subject(lane);
    let deliver = match c.settings.offset_reset.or(c.source.config.consumer.offset_reset).unwrap_or_default() {
        OffsetReset::Earliest => consumer::DeliverPolicy::All,
        OffsetReset::Latest => consumer::DeliverPolicy::New,
    };
    let config = |deliver_policy| consumer::pull::Config {
        durable_name: Some(name.to_owned()),
        description: Some(format!("fanhub source {} mapping {}", c.source.config.name, lane.index)),
        deliver_policy,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        filter_subject: filter.clone(),
        max_ack_pending: max_ack_pending(lane, &c.settings),
        ..Default::default()
    };
    let existing = match stream.consumer_info(name).await {
        Ok(info) => Some(info),
        Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => None,
        Err(e) => return Err(err(&e)),
    };
    let deliver = match existing {
        None => deliver,
        Some(info) if info.config.filter_subject != filter => {
            tracing::warn!(source = %c.source.config.name, durable = name, was = %info.config.filter_subject, now = %filter,
                "the mapping's subjects changed; its durable starts again");
            stream.delete_consumer(name).await.map_err(|e| err(&e))?;
            deliver
        }
        Some(info) if info.num_ack_pending > 0 => {
            let start = info.ack_floor.stream_sequence + 1;
            tracing::info!(source = %c.source.config.name, durable = name, unacknowledged = info.num_ack_pending, start,
                "delivering again from the ack floor");
            stream.delete_consumer(name).await.map_err(|e| err(&e))?;
            consumer::DeliverPolicy::ByStartSequence { start_sequence: start }
        }
        Some(info) => {
            // Keep where it is; update what may change (ack wait, max ack pending).
            if let Err(e) = stream.create_consumer::<consumer::pull::Config>(config(info.config.deliver_policy)).await {
                tracing::warn!(source = %c.source.config.name, durable = name, error = %e,
                    "the durable's settings cannot be updated; using it as it is");
            }
            return Ok(());
        }
    };
    stream.create_consumer::<consumer::pull::Config>(config(deliver)).await.map(|_| ()).map_err(|e| err(&e))
}

/// How many messages one pull asks for: a fetch, and under `apply_backpressure` no more than
/// the lane has room for (at least one), so a paused lane stays near its bound.
fn pull_size(lane: &Lane, settings: &ConsumerSettings) -> usize {
    let batch = settings.batch();
    if lane.config.backpressure_mode != BackpressureMode::ApplyBackpressure {
        return batch;
    }
    let room = (lane.config.max_buffered_messages as usize).saturating_sub(lane.buffered());
    batch.min(room.max(1))
}

/// The JetStream API prefix (the default domain) pull requests go to.
const JS_API: &str = "$JS.API";

/// The pull requests of one durable, without IO (time passed in): how many messages the live
/// requests may still bring, and when to ask again.
///
/// * A request is renewed at three quarters of its expiry rather than on the server's 408,
///   which a server does not send for a request that brought part of its batch: waiting for
///   it (or for the client library's own fallback, seconds later) stalled the durable.
/// * It is topped up once half of the batch came, so a busy durable never waits for a round
///   trip between batches.
/// * A refused request (409: too many waiting, a leader change…) is asked again after a
///   quarter of the expiry, not at once.
///
/// What a given-up request still brings arrives on the same inbox, so the count may be low:
/// then the server gets one request more than needed, bounded by `max_ack_pending`.
struct Pulls {
    batch: usize,
    expires: Duration,
    /// Messages the live requests may still bring.
    outstanding: usize,
    /// When the newest request is renewed; None before the first.
    renew_at: Option<Instant>,
    /// No request before this (after a refusal).
    hold_until: Option<Instant>,
}

impl Pulls {
    fn new(batch: usize, expires: Duration) -> Self {
        Self { batch, expires, outstanding: 0, renew_at: None, hold_until: None }
    }

    /// Whether a request is due at `now`.
    fn due(&self, now: Instant) -> bool {
        if self.hold_until.is_some_and(|t| now < t) {
            return false;
        }
        self.outstanding <= self.batch / 2 || self.renew_at.is_none_or(|t| now >= t)
    }

    /// When a request falls due without a message arriving.
    fn wake_at(&self) -> Option<Instant> {
        // A refusal left nothing outstanding: due when the hold ends.
        self.hold_until.or(self.renew_at)
    }

    /// A request for `n` messages went out at `now`: it replaces a request due for renewal and
    /// adds to one being topped up.
    fn sent(&mut self, now: Instant, n: usize) {
        let renewing = self.renew_at.is_none_or(|t| now >= t);
        self.outstanding = if renewing { n } else { self.outstanding.saturating_add(n) };
        self.renew_at = Some(now + self.expires * 3 / 4);
        self.hold_until = None;
    }

    /// A message came.
    fn message(&mut self) {
        self.outstanding = self.outstanding.saturating_sub(1);
    }

    /// A request ended (expired or nothing to deliver) with `unfilled` messages it will not
    /// bring (all of them when the server does not say).
    fn ended(&mut self, unfilled: Option<usize>) {
        self.outstanding = unfilled.map_or(0, |u| self.outstanding.saturating_sub(u));
    }

    /// A request was refused at `now`: ask again a quarter of the expiry later.
    fn refused(&mut self, now: Instant) {
        self.outstanding = 0;
        self.hold_until = Some(now + self.expires / 4);
    }
}

/// The messages an ended request did not bring (`Nats-Pending-Messages`).
fn pending_messages(m: &async_nats::Message) -> Option<usize> {
    m.headers.as_ref()?.get("Nats-Pending-Messages")?.as_str().parse().ok()
}

/// Whether a refused pull ends the session (the durable is gone or does not take pull
/// requests such as ours: reconnecting creates it again or reports it) rather than being
/// asked again.
fn pull_refusal_is_final(why: &str) -> bool {
    ["Consumer Deleted", "push based", "Bad Request", "MaxRequest"].iter().any(|w| why.contains(w))
}

/// Unacknowledged deliveries a durable may have out: the lane's buffer plus one fetch, so a
/// stalled lane fills (and pauses) before JetStream stops delivering.
fn max_ack_pending(lane: &Lane, settings: &ConsumerSettings) -> i64 {
    let n = lane.config.max_buffered_messages.saturating_add(settings.batch() as u64);
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The durable name of mapping `index` of the consumer `group`: the group and the index, every
/// character NATS does not allow in a name (`.`, `*`, `>`, whitespace, path separators…)
/// replaced by `_`.
pub(super) fn durable_name(group: &str, index: usize) -> String {
    let clean: String =
        group.chars().map(|ch| if ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' { ch } else { '_' }).collect();
    format!("{clean}-{index}")
}

/// The mapping's subject filter: its upstream template with every token holding a placeholder
/// as `*` (`telemetry.{device}` → `telemetry.*`, `dev-{id}.raw` → `*.raw`); the template
/// decides on the rest.
pub(super) fn filter_subject(lane: &Lane) -> String {
    let wild = lane.upstream.with_wildcards("*");
    wild.split('.').map(|t| if t.contains('*') { "*" } else { t }).collect::<Vec<_>>().join(".")
}

/// A JetStream message as a record of `partition` (the stream); None without JetStream
/// metadata (its reply subject).
fn to_record(partition: &Arc<str>, lane: usize, m: jetstream::Message) -> Option<UpstreamRecord> {
    let seq = m.info().ok()?.stream_sequence;
    let m = m.message;
    let reply = m.reply?;
    let mut key = None;
    let mut headers = Vec::new();
    if let Some(h) = &m.headers {
        for (name, values) in h.iter() {
            let Some(value) = values.first() else { continue };
            if AsRef::<str>::as_ref(name) == "key" {
                key = Some(value.as_str().to_owned());
            } else {
                headers.push((name.to_string(), value.as_str().to_owned()));
            }
        }
    }
    headers.sort();
    Some(UpstreamRecord {
        upstream: Arc::from(m.subject.as_str()),
        partition: partition.clone(),
        position: Position::at(seq),
        position_text: seq.to_string(),
        key,
        headers,
        payload: Bytes::clone(&m.payload),
        token: Some(Box::new(Token { reply, lane })),
    })
}

/// Acknowledges what the publishers finished before the stop, on the last session's connection
/// or a fresh one.
async fn final_acks(c: &mut Consumer, session: Option<Session>) {
    c.publishers_done().await;
    let mut acks: Vec<Ack> = Vec::new();
    while let Ok(a) = c.acks.try_recv() {
        acks.push(a);
    }
    if acks.is_empty() {
        return;
    }
    let (client, js) = match session {
        Some(s) => (s.client, s.js),
        None => match tokio::time::timeout(Duration::from_secs(2), Session::connect(c)).await {
            Ok(Ok((client, js, _))) => (client, js),
            _ => return,
        },
    };
    let mut done = Vec::new();
    for a in acks {
        let Some(token) = a.token.and_then(|t| t.downcast::<Token>().ok()) else { continue };
        let acker = jetstream::message::Acker::new(js.clone(), Some(token.reply));
        if tokio::time::timeout(Duration::from_secs(2), acker.ack()).await.is_ok_and(|r| r.is_ok()) {
            done.push(token.lane);
        }
    }
    if tokio::time::timeout(Duration::from_secs(2), client.flush()).await.is_ok_and(|r| r.is_ok()) {
        for lane in done {
            if let Some(l) = c.lanes.iter().find(|l| l.index == lane) {
                l.stats.commits.fetch_add(1, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MappingConfig;

    fn lane(upstream: &str, mode: BackpressureMode, max: u64) -> Lane {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let config = MappingConfig {
            upstream: upstream.into(),
            topic: "t".into(),
            payload_field: None,
            key_suffix: false,
            headers: true,
            max_buffered_messages: max,
            backpressure_mode: mode,
            exclusive: None,
        };
        Lane::new(3, config, tx)
    }

    #[test]
    fn durable_names_keep_only_what_nats_allows() {
        assert_eq!(durable_name("fanhub.fleet", 0), "fanhub_fleet-0");
        assert_eq!(durable_name("fanhub.fleet.2", 2), "fanhub_fleet_2-2");
        assert_eq!(durable_name("a*b>c/d\\e f", 1), "a_b_c_d_e_f-1");
    }

    #[test]
    fn filters_turn_every_token_with_a_placeholder_into_a_wildcard() {
        let filter = |t: &str| filter_subject(&lane(t, BackpressureMode::ApplyBackpressure, 10));
        assert_eq!(filter("telemetry.{device}"), "telemetry.*");
        assert_eq!(filter("telemetry.{device}.{stream}"), "telemetry.*.*");
        assert_eq!(filter("dev-{id}.raw"), "*.raw");
        assert_eq!(filter("orders"), "orders");
    }

    #[test]
    fn pulls_ask_for_no_more_than_a_backpressured_lane_has_room_for() {
        let settings = ConsumerSettings { max_poll_records: Some(100), ..Default::default() };
        let l = lane("x", BackpressureMode::ApplyBackpressure, 8);
        assert_eq!(pull_size(&l, &settings), 8);
        let l = lane("x", BackpressureMode::ApplyBackpressure, 1000);
        assert_eq!(pull_size(&l, &settings), 100);
        let l = lane("x", BackpressureMode::DropOldest, 8);
        assert_eq!(pull_size(&l, &settings), 100, "drop modes take a whole fetch and drop");
        assert_eq!(max_ack_pending(&l, &settings), 108);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pulls_top_up_at_half_a_batch_and_renew_before_expiry() {
        let t0 = Instant::now();
        let mut p = Pulls::new(100, ms(400));
        assert!(p.due(t0), "the first request is due at once");
        assert_eq!(p.wake_at(), None);
        p.sent(t0, 100);
        assert!(!p.due(t0));
        assert_eq!(p.wake_at(), Some(t0 + ms(300)), "renewed at three quarters of the expiry");
        for _ in 0..49 {
            p.message();
        }
        assert!(!p.due(t0), "51 of 100 still to come");
        p.message();
        assert!(p.due(t0), "half came: top up");
        p.sent(t0 + ms(10), 50);
        assert_eq!(p.outstanding, 100, "a top-up adds to what the live request still brings");
        assert_eq!(p.wake_at(), Some(t0 + ms(310)));
    }

    #[test]
    fn a_request_that_expires_unannounced_after_part_of_its_batch_is_renewed_by_the_clock() {
        // The server expires a request that brought 3 of 100 without a 408: 97 never come.
        let t0 = Instant::now();
        let mut p = Pulls::new(100, ms(400));
        p.sent(t0, 100);
        for _ in 0..3 {
            p.message();
        }
        assert!(!p.due(t0 + ms(299)));
        assert!(p.due(t0 + ms(300)), "due before the server's expiry, without its notice");
        p.sent(t0 + ms(300), 100);
        assert_eq!(p.outstanding, 100, "a renewal replaces the old request's count");
    }

    #[test]
    fn an_expiry_notice_counts_what_the_request_did_not_bring() {
        let t0 = Instant::now();
        let mut p = Pulls::new(100, ms(400));
        p.sent(t0, 100);
        p.sent(t0 + ms(300), 100);
        p.ended(Some(40));
        assert_eq!(p.outstanding, 60, "the older request's 40 will not come");
        assert!(!p.due(t0 + ms(300)));
        p.ended(None);
        assert!(p.due(t0 + ms(300)), "a notice without a count ends every request");
    }

    #[test]
    fn a_refused_request_is_asked_again_a_quarter_of_the_expiry_later() {
        let t0 = Instant::now();
        let mut p = Pulls::new(100, ms(400));
        p.sent(t0, 100);
        p.refused(t0 + ms(5));
        assert!(!p.due(t0 + ms(104)));
        assert_eq!(p.wake_at(), Some(t0 + ms(105)));
        assert!(p.due(t0 + ms(105)));
        p.sent(t0 + ms(105), 100);
        assert_eq!(p.wake_at(), Some(t0 + ms(405)));
        assert!(pull_refusal_is_final("Consumer Deleted"));
        assert!(pull_refusal_is_final("Exceeded MaxRequestBatch of 10"));
        assert!(!pull_refusal_is_final("Exceeded MaxWaiting"));
        assert!(!pull_refusal_is_final("Leadership Change"));
    }
}
