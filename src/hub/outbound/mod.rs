//! The per-connection bounded outbound queue, where delivery policies take effect.
//!
//! Producers (the router, control replies) push without blocking; the transport's writer task
//! drains what is queued in one batch per wake-up. Lanes drain in priority order: control
//! (pong, errors, bye), then `reliable` records, then best-effort records, then coalesced
//! `rate_limited` records whose rate allows. Data is bounded per subscription (the topic's
//! policy) and per connection ([`QueueLimits`]); the control lane has its own bound so a client
//! that floods requests without reading replies is closed instead of growing memory.
//!
//! One short mutex guards the lanes; it is never held across an `.await` or any IO. Nothing here
//! knows how a writer is woken: every push reports whether the queue went from empty to
//! non-empty, and the [`Connection`](super::Connection) that owns the queue wakes its own
//! transport. Waiting (for room, for the control lane to drain, for the close) is offered as
//! plain futures over `std::task::Waker`s, tied to no runtime.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::policy::{DeliveryPolicy, DropStrategy, Lane};
use super::stats::{Counters, DropReason};
use super::subscription::Subscription;
use crate::protocol::CloseReason;

/// Hard per-connection bounds over all topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueLimits {
    /// Most data messages queued.
    pub max_messages: usize,
    /// Most data bytes queued.
    pub max_bytes: usize,
    /// Most control messages queued.
    pub max_control: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self { max_messages: 8192, max_bytes: 16 * 1024 * 1024, max_control: 1024 }
    }
}

/// A message record offered to a connection under a policy.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The encoded record, shared by all subscribers.
    pub record: &'a Bytes,
    /// Its offset.
    pub offset: u64,
    /// The receiving subscription.
    pub sub: &'a Arc<Subscription>,
    /// The topic's current policy.
    pub policy: &'a DeliveryPolicy,
    /// When it is offered (`rate_limited` counts permits on it).
    pub now: Instant,
}

/// What happened to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Queued.
    Queued,
    /// Queued; an older message of the same subscription was evicted (`drop_oldest`).
    QueuedEvicting,
    /// Not queued: the queue was full (`drop_newest`).
    Dropped,
    /// Held as the newest over-rate message (`rate_limited`); it replaced an older one if any.
    Coalesced,
    /// Not queued: a `reliable` bound was hit. The caller disconnects or pushes back.
    Full,
    /// Not queued: the connection is closing.
    Closed,
}

/// How a connection ends, as the writer needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// Reason.
    pub reason: CloseReason,
    /// Human-readable detail for the close frame.
    pub message: String,
    /// False when the peer already sent its close frame (ours was its echo).
    pub send_close_frame: bool,
}

impl CloseInfo {
    /// A close for `reason` that sends a close frame carrying `message`.
    pub fn new(reason: CloseReason, message: &str) -> Self {
        Self { reason, message: message.to_owned(), send_close_frame: true }
    }
}

/// What [`OutboundQueue::drain`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drain {
    /// The batch has something to write.
    Ready,
    /// Nothing to write now; wait for a wake-up, or until `retry_at` (coalesced records
    /// waiting for their rate).
    Idle {
        /// When a coalesced record becomes sendable.
        retry_at: Option<Instant>,
    },
    /// Closing and everything that will be written has been: send the close frame, finish.
    Finished(CloseInfo),
}

/// One drained batch. Reused across wake-ups so steady state allocates nothing.
#[derive(Debug, Default)]
pub struct Batch {
    /// Control messages (JSON text, or raw frames from the transport), in order.
    pub control: Vec<Control>,
    /// Data records, in delivery order.
    pub records: Vec<Bytes>,
    /// Sum of `records` lengths.
    pub record_bytes: usize,
    /// How many of `records`, from the front, came from the `reliable` lane (transports with a
    /// lossy path, WebRTC, keep those on the reliable one).
    pub reliable_records: usize,
}

impl Batch {
    /// Empties the batch, keeping its capacity.
    pub fn clear(&mut self) {
        self.control.clear();
        self.records.clear();
        self.record_bytes = 0;
        self.reliable_records = 0;
    }

    /// True when nothing is in it.
    pub fn is_empty(&self) -> bool {
        self.control.is_empty() && self.records.is_empty()
    }
}

/// A control-lane item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// A JSON control message.
    Json(Bytes),
    /// Bytes the transport framed itself (e.g. a WebSocket pong or close echo).
    Raw(Bytes),
}

#[derive(Debug, Clone)]
struct Entry {
    record: Bytes,
    sub: Arc<Subscription>,
    /// Live entries count against the bounds; replayed ones are already paid for by history.
    counted: bool,
}

#[derive(Debug, Default)]
struct Lanes {
    control: VecDeque<Control>,
    reliable: VecDeque<Entry>,
    best_effort: VecDeque<Entry>,
    coalesced: Vec<Entry>,
    msgs: usize,
    bytes: usize,
    close: Option<CloseInfo>,
    finished: bool,
    /// Bumped by every drain that took something: a waiter for room compares it.
    drained: u64,
    /// Waiting for a drain (publishers under backpressure, the reader's control high water).
    space_waiters: Waiters,
    /// Waiting for the close to begin.
    close_waiters: Waiters,
    /// Ids of registered wakers (a future removes its own when dropped).
    next_waiter: u64,
}

/// Registered wakers, each under the id of the future that registered it.
type Waiters = Vec<(u64, Waker)>;

/// Registers (or refreshes) the waker of the future holding `slot`.
fn register(waiters: &mut Waiters, next: &mut u64, slot: &mut Option<u64>, waker: &Waker) {
    if let Some(id) = *slot {
        if let Some(entry) = waiters.iter_mut().find(|(i, _)| *i == id) {
            if !entry.1.will_wake(waker) {
                entry.1 = waker.clone();
            }
            return;
        }
    }
    *next += 1;
    *slot = Some(*next);
    waiters.push((*next, waker.clone()));
}

/// Removes the waker a dropped future registered, if it is still there.
fn deregister(waiters: &mut Waiters, slot: Option<u64>) {
    if let Some(id) = slot {
        if let Some(pos) = waiters.iter().position(|(i, _)| *i == id) {
            waiters.swap_remove(pos);
        }
    }
}

fn wake_all(waiters: Waiters) {
    for (_, w) in waiters {
        w.wake();
    }
}

impl Lanes {
    fn uncount(&mut self, e: &Entry) {
        if e.counted {
            self.msgs -= 1;
            self.bytes -= e.record.len();
            e.sub.queued_msgs.fetch_sub(1, Relaxed);
            e.sub.queued_bytes.fetch_sub(e.record.len(), Relaxed);
        }
    }

    fn count(&mut self, e: &Entry) {
        if e.counted {
            self.msgs += 1;
            self.bytes += e.record.len();
            e.sub.queued_msgs.fetch_add(1, Relaxed);
            e.sub.queued_bytes.fetch_add(e.record.len(), Relaxed);
        }
    }

    fn fits(&self, limits: &QueueLimits, sub: &Subscription, policy: &DeliveryPolicy, len: usize) -> bool {
        let (max_m, max_b) = policy.queue_bound();
        sub.queued_msgs.load(Relaxed) < max_m
            && sub.queued_bytes.load(Relaxed) + len <= max_b
            && self.msgs < limits.max_messages
            && self.bytes + len <= limits.max_bytes
    }

    /// Evicts the oldest best-effort entry of `sub`, or failing that (the connection-wide bound
    /// is what is full) the oldest best-effort entry of any subscription.
    fn evict_oldest(&mut self, sub: &Arc<Subscription>) -> Option<Entry> {
        let pos = self
            .best_effort
            .iter()
            .position(|e| e.counted && Arc::ptr_eq(&e.sub, sub))
            .or_else(|| self.best_effort.iter().position(|e| e.counted))?;
        let e = self.best_effort.remove(pos)?;
        self.uncount(&e);
        Some(e)
    }

    fn take_coalesced(&mut self, sub: &Arc<Subscription>) -> Option<Entry> {
        let pos = self.coalesced.iter().position(|e| Arc::ptr_eq(&e.sub, sub))?;
        let e = self.coalesced.swap_remove(pos);
        self.uncount(&e);
        Some(e)
    }

    fn is_idle(&self) -> bool {
        self.reliable.is_empty() && self.best_effort.is_empty() && self.control.is_empty()
    }

    fn clear_data(&mut self) -> usize {
        let mut n = 0;
        for lane in [std::mem::take(&mut self.reliable), std::mem::take(&mut self.best_effort)] {
            for e in lane {
                self.uncount(&e);
                n += 1;
            }
        }
        for e in std::mem::take(&mut self.coalesced) {
            self.uncount(&e);
            n += 1;
        }
        n
    }
}

/// The bounded, prioritized outbound queue of one connection.
#[derive(Debug)]
pub struct OutboundQueue {
    lanes: Mutex<Lanes>,
    limits: QueueLimits,
    counters: Arc<Counters>,
}

/// What a push did, and whether the owner must wake its writer (the queue went from empty to
/// non-empty, or closing began).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the connection must wake its writer when `wake` is set"]
pub(crate) struct Pushed<T> {
    pub(crate) outcome: T,
    pub(crate) wake: bool,
}

impl OutboundQueue {
    pub(crate) fn new(limits: QueueLimits, counters: Arc<Counters>) -> Self {
        Self { lanes: Mutex::new(Lanes::default()), limits, counters }
    }

    /// Offers a live record under its topic's policy.
    pub(crate) fn push(&self, d: Delivery<'_>) -> Pushed<SendOutcome> {
        let len = d.record.len();
        let entry = || Entry { record: d.record.clone(), sub: d.sub.clone(), counted: true };
        let mut l = self.lanes.lock();
        if l.close.is_some() {
            return Pushed { outcome: SendOutcome::Closed, wake: false };
        }
        // The writer re-drains after every write, so it only needs a wake-up when the lanes it
        // drains go from empty to non-empty (or something is coalesced while it sleeps).
        let was_idle = l.is_idle();
        let outcome = match *d.policy {
            DeliveryPolicy::Reliable { .. } => {
                if !l.fits(&self.limits, d.sub, d.policy, len) {
                    return Pushed { outcome: SendOutcome::Full, wake: false };
                }
                let e = entry();
                l.count(&e);
                l.reliable.push_back(e);
                SendOutcome::Queued
            }
            DeliveryPolicy::BestEffort { overflow, .. } => self.push_best_effort(&mut l, d, overflow, entry),
            DeliveryPolicy::RateLimited { per_second, burst, .. } => {
                // A held over-rate record is older than this one: newest wins.
                if l.take_coalesced(d.sub).is_some() {
                    self.dropped(d.sub, DropReason::Coalesced);
                }
                match d.sub.take_permit(per_second, burst, d.now) {
                    Ok(()) => self.push_best_effort(&mut l, d, DropStrategy::DropOldest, entry),
                    Err(_) => {
                        let e = entry();
                        l.count(&e);
                        l.coalesced.push(e);
                        SendOutcome::Coalesced
                    }
                }
            }
        };
        if matches!(outcome, SendOutcome::Queued | SendOutcome::QueuedEvicting | SendOutcome::Coalesced) {
            d.sub.note_delivered(d.offset);
        }
        Pushed { outcome, wake: was_idle && outcome != SendOutcome::Dropped }
    }

    fn push_best_effort(
        &self,
        l: &mut Lanes,
        d: Delivery<'_>,
        overflow: DropStrategy,
        entry: impl FnOnce() -> Entry,
    ) -> SendOutcome {
        let len = d.record.len();
        let mut outcome = SendOutcome::Queued;
        while !l.fits(&self.limits, d.sub, d.policy, len) {
            if overflow == DropStrategy::DropNewest {
                self.dropped(d.sub, DropReason::QueueFull);
                return SendOutcome::Dropped;
            }
            match l.evict_oldest(d.sub) {
                Some(evicted) => {
                    self.dropped(&evicted.sub, DropReason::QueueFull);
                    outcome = SendOutcome::QueuedEvicting;
                }
                None => {
                    // Only reliable or coalesced entries fill the connection: drop this one.
                    self.dropped(d.sub, DropReason::QueueFull);
                    return SendOutcome::Dropped;
                }
            }
        }
        let e = entry();
        l.count(&e);
        l.best_effort.push_back(e);
        outcome
    }

    fn dropped(&self, sub: &Subscription, reason: DropReason) {
        sub.note_dropped();
        self.counters.record_drop(reason);
    }

    /// Queues a replayed record (from history). Replays ignore the queue bounds: history
    /// already holds the bytes, and a resuming subscriber must get all of them.
    pub(crate) fn push_replay(&self, record: Bytes, offset: u64, sub: &Arc<Subscription>, lane: Lane) -> bool {
        let mut l = self.lanes.lock();
        if l.close.is_some() {
            return false;
        }
        let was_idle = l.is_idle();
        let e = Entry { record, sub: sub.clone(), counted: false };
        match lane {
            Lane::Reliable => l.reliable.push_back(e),
            Lane::BestEffort => l.best_effort.push_back(e),
        }
        sub.note_delivered(offset);
        was_idle
    }

    /// Whether a `reliable` record of `len` bytes would fit for `sub` now.
    pub fn has_room(&self, sub: &Subscription, policy: &DeliveryPolicy, len: usize) -> bool {
        let l = self.lanes.lock();
        l.close.is_some() || l.fits(&self.limits, sub, policy, len)
    }

    /// Resolves when the writer has drained something since this call (or at once when nothing
    /// is queued or the connection is closing): what a publisher under backpressure waits for
    /// before it retries.
    pub fn space_freed(&self) -> Wait<'_> {
        let drained = self.lanes.lock().drained;
        Wait { queue: self, until: Until::SpaceFreed(drained), slot: None }
    }

    /// Resolves when fewer than `n` control messages are queued (or closing began). A transport
    /// awaits it before reading the next request, so a client that pipelines requests faster
    /// than their replies can be written is slowed down instead of growing the queue.
    pub fn control_below(&self, n: usize) -> Wait<'_> {
        Wait { queue: self, until: Until::ControlBelow(n), slot: None }
    }

    /// Resolves once closing has begun (at once if it already has).
    pub fn closed(&self) -> Wait<'_> {
        Wait { queue: self, until: Until::Closed, slot: None }
    }

    /// Queues a control message. Returns `None` when closing or the control lane is full.
    pub(crate) fn push_control(&self, json: Bytes) -> Option<bool> {
        self.push_control_item(Control::Json(json), false)
    }

    /// Queues transport-framed bytes (pong, close echo) on the control lane, even while
    /// closing: they are part of the closing handshake.
    pub(crate) fn push_raw(&self, raw: Bytes) -> Option<bool> {
        self.push_control_item(Control::Raw(raw), true)
    }

    /// `Some(wake)` when queued.
    fn push_control_item(&self, item: Control, even_if_closing: bool) -> Option<bool> {
        let mut l = self.lanes.lock();
        if (l.close.is_some() && !even_if_closing) || l.finished || l.control.len() >= self.limits.max_control {
            return None;
        }
        let was_idle = l.is_idle();
        l.control.push_back(item);
        Some(was_idle)
    }

    /// Starts closing with `info`; `bye` (if any) is queued after pending control messages.
    /// Data is discarded unless the reason drains. Returns false if already closing (the first
    /// close wins). The owner must wake its writer when this returns true.
    pub(crate) fn begin_close(&self, info: CloseInfo, bye: Option<Bytes>) -> bool {
        let mut l = self.lanes.lock();
        if l.close.is_some() {
            return false;
        }
        if !info.reason.drains_queue() {
            let n = l.clear_data();
            for _ in 0..n {
                self.counters.record_drop(DropReason::Closed);
            }
        }
        if let Some(bye) = bye {
            l.control.push_back(Control::Json(bye));
        }
        l.close = Some(info);
        let space = std::mem::take(&mut l.space_waiters);
        let close = std::mem::take(&mut l.close_waiters);
        drop(l);
        wake_all(space);
        wake_all(close);
        true
    }

    /// The close in progress, if any.
    pub fn closing(&self) -> Option<CloseInfo> {
        self.lanes.lock().close.clone()
    }

    /// Removes every queued record of `sub` (after unsubscribe).
    pub(crate) fn purge(&self, sub: &Arc<Subscription>) {
        self.purge_where(|e| Arc::ptr_eq(&e.sub, sub));
    }

    /// Removes every queued record (the connection is being unregistered).
    pub(crate) fn purge_all(&self) {
        self.purge_where(|_| true);
    }

    fn purge_where(&self, doomed: impl Fn(&Entry) -> bool) {
        let mut guard = self.lanes.lock();
        let l = &mut *guard;
        let mut removed = Vec::new();
        for lane in [&mut l.reliable, &mut l.best_effort] {
            lane.retain(|e| {
                let gone = doomed(e);
                if gone {
                    removed.push(e.clone());
                }
                !gone
            });
        }
        l.coalesced.retain(|e| {
            let gone = doomed(e);
            if gone {
                removed.push(e.clone());
            }
            !gone
        });
        for e in &removed {
            l.uncount(e);
        }
    }

    /// Queued control messages.
    pub fn control_len(&self) -> usize {
        self.lanes.lock().control.len()
    }

    /// Queued data messages (live, not yet drained).
    pub fn depth(&self) -> usize {
        self.lanes.lock().msgs
    }

    /// Moves what is queued into `batch` (control first, then records by lane priority), up to
    /// `max_records` records or about `max_bytes` bytes of records. `now` releases coalesced
    /// `rate_limited` records whose rate allows.
    pub fn drain(&self, batch: &mut Batch, max_records: usize, max_bytes: usize, now: Instant) -> Drain {
        let mut l = self.lanes.lock();
        batch.control.extend(l.control.drain(..));
        let mut retry_at: Option<Instant> = None;
        let take = |l: &mut Lanes, lane: Lane, batch: &mut Batch| loop {
            if batch.records.len() >= max_records || (batch.record_bytes >= max_bytes && !batch.records.is_empty()) {
                break;
            }
            let q = match lane {
                Lane::Reliable => &mut l.reliable,
                Lane::BestEffort => &mut l.best_effort,
            };
            let Some(e) = q.pop_front() else { break };
            l.uncount(&e);
            batch.record_bytes += e.record.len();
            batch.records.push(e.record);
        };
        let before = batch.records.len();
        take(&mut l, Lane::Reliable, batch);
        batch.reliable_records += batch.records.len() - before;
        take(&mut l, Lane::BestEffort, batch);
        if !l.coalesced.is_empty() && batch.records.len() < max_records {
            let mut i = 0;
            while i < l.coalesced.len() {
                // Coalesced entries keep the rate their limiter was built with; re-checking
                // with the same numbers never rebuilds it.
                let (per_second, burst) = l.coalesced[i].sub.limiter_rate().unwrap_or((1, 1));
                match l.coalesced[i].sub.take_permit(per_second, burst, now) {
                    Ok(()) => {
                        let e = l.coalesced.swap_remove(i);
                        l.uncount(&e);
                        batch.record_bytes += e.record.len();
                        batch.records.push(e.record);
                    }
                    Err(wait) => {
                        let at = now + wait;
                        retry_at = Some(retry_at.map_or(at, |r| r.min(at)));
                        i += 1;
                    }
                }
            }
        }
        let mut freed = Vec::new();
        if !batch.is_empty() {
            l.drained = l.drained.wrapping_add(1);
            freed = std::mem::take(&mut l.space_waiters);
        }
        let result = if !batch.is_empty() {
            Drain::Ready
        } else if let Some(close) = l.close.clone().filter(|_| l.coalesced.is_empty() || !close_drains(&l)) {
            l.finished = true;
            Drain::Finished(close)
        } else {
            Drain::Idle { retry_at }
        };
        drop(l);
        wake_all(freed);
        result
    }
}

fn close_drains(l: &Lanes) -> bool {
    l.close.as_ref().is_some_and(|c| c.reason.drains_queue())
}

/// What a [`Wait`] waits for.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// A drain after the one counted here (or nothing queued, or closing).
    SpaceFreed(u64),
    /// Fewer than this many control messages (or closing).
    ControlBelow(usize),
    /// The close to begin.
    Closed,
}

/// A wait on the queue ([`OutboundQueue::space_freed`], [`OutboundQueue::control_below`],
/// [`OutboundQueue::closed`]): checked and registered under the lanes' lock, so no wake-up
/// is lost; dropped, it takes its waker away.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Wait<'a> {
    queue: &'a OutboundQueue,
    until: Until,
    slot: Option<u64>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut guard = this.queue.lanes.lock();
        let l = &mut *guard;
        let closing = l.close.is_some();
        let ready = match this.until {
            Until::SpaceFreed(drained) => closing || l.msgs == 0 || l.drained != drained,
            Until::ControlBelow(n) => closing || l.control.len() < n,
            Until::Closed => closing,
        };
        if ready {
            return Poll::Ready(());
        }
        let waiters = if matches!(this.until, Until::Closed) { &mut l.close_waiters } else { &mut l.space_waiters };
        register(waiters, &mut l.next_waiter, &mut this.slot, cx.waker());
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if self.slot.is_some() {
            let mut l = self.queue.lanes.lock();
            let waiters = if matches!(self.until, Until::Closed) { &mut l.close_waiters } else { &mut l.space_waiters };
            deregister(waiters, self.slot);
        }
    }
}

#[cfg(test)]
mod tests;
