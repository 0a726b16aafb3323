//! Publishing: checks on the publisher, one encoding of the record, then the topic's own work
//! (assign the offset, append to history, offer to every subscriber) under its lock; and the
//! live policy of a topic.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use parking_lot::MutexGuard;

use super::errors::{Action, PublishError, RequestError, SetPolicyError};
use super::ConnectionManager;
use crate::hub::connection::Connection;
use crate::hub::identity::ConnId;
use crate::hub::name::TopicName;
use crate::hub::policy::DeliveryPolicy;
use crate::hub::rate::RateLimit;
use crate::hub::time::Now;
use crate::hub::topic::{PublishReport, Topic, TopicInfo, TopicState};
use crate::protocol::frame::{put_record_header, RecordHeader, RECORD_HEADER_LEN};
use crate::protocol::CloseReason;

impl ConnectionManager {
    /// Publishes `payload` on `topic` from a trusted server-side source (no claims checked):
    /// assigns the next offset, appends to history and offers the once-encoded record to every
    /// subscriber under the topic's policy.
    ///
    /// # Errors
    /// [`PublishError`]; `Backpressure` asks the caller to wait and retry.
    pub fn route_data(
        &self,
        topic: &TopicName,
        payload: &[u8],
        flags: u8,
        now: Now,
    ) -> Result<PublishReport, PublishError> {
        self.publish_inner(topic, payload, flags, now)
    }

    /// Publishes on behalf of connection `id`: checks its claims, the topic's declared
    /// publishers, the message size and the connection's publish rate (the last two count as
    /// violations), then routes like [`Self::route_data`].
    ///
    /// # Errors
    /// [`PublishError`].
    pub fn publish_as(
        &self,
        id: ConnId,
        topic: &TopicName,
        payload: &[u8],
        flags: u8,
        now: Now,
    ) -> Result<PublishReport, PublishError> {
        self.authorize_publish(id, topic, payload.len(), now)?;
        self.publish_inner(topic, payload, flags, now)
    }

    /// The checks of [`Self::publish_as`] without the publish (cluster mode publishes through
    /// the broker): the connection's claims, the topic's declared publishers, the message size
    /// and the publish rate at `now` (the last two count as violations).
    ///
    /// # Errors
    /// [`PublishError`].
    pub fn authorize_publish(&self, id: ConnId, topic: &TopicName, len: usize, now: Now) -> Result<(), PublishError> {
        let client = self.client(id).ok_or(RequestError::UnknownConnection(id))?;
        let identity = client.conn.identity();
        let denied = || PublishError::from(RequestError::PermissionDenied(Action::Publish, topic.clone()));
        if !identity.can_publish(topic) {
            return Err(denied());
        }
        if let Some(allowed) = self.registry.declaration(topic).and_then(|d| d.publishers.as_ref()) {
            if !allowed.iter().any(|a| *a == identity.subject || a == "*") {
                return Err(denied());
            }
        }
        if len > self.limits.max_message_size {
            self.record_violation(id, now);
            return Err(PublishError::TooLarge { size: len, max: self.limits.max_message_size });
        }
        let limiter = client
            .publish_limiter
            .get_or_init(|| RateLimit::new(self.limits.publish_rate_per_second, self.limits.publish_burst, now.mono));
        if let Err(retry_after) = limiter.check(now.mono) {
            self.record_violation(id, now);
            return Err(PublishError::RateLimited { per_second: self.limits.publish_rate_per_second, retry_after });
        }
        Ok(())
    }

    /// Refuses a publish of `payload_len` bytes on a `reliable` topic whose record no
    /// subscriber's queue can ever hold (it would disconnect every subscriber, or, under
    /// `apply_backpressure`, wait for room that never comes).
    ///
    /// # Errors
    /// [`PublishError::ExceedsQueue`].
    pub fn check_fits(&self, topic: &TopicName, payload_len: usize) -> Result<(), PublishError> {
        let record_len = RECORD_HEADER_LEN + topic.as_str().len() + payload_len;
        self.exceeds_queue(topic, &self.registry.policy_for(topic), record_len)
    }

    fn exceeds_queue(&self, topic: &TopicName, policy: &DeliveryPolicy, record_len: usize) -> Result<(), PublishError> {
        if !matches!(policy, DeliveryPolicy::Reliable { .. }) {
            return Ok(());
        }
        let max = policy.queue_bound().1.min(self.limits.queue.max_bytes);
        if record_len > max {
            return Err(PublishError::ExceedsQueue { topic: topic.clone(), size: record_len, max });
        }
        Ok(())
    }

    fn publish_inner(
        &self,
        name: &TopicName,
        payload: &[u8],
        flags: u8,
        now: Now,
    ) -> Result<PublishReport, PublishError> {
        // Encode before taking the topic lock; offset and epoch are written in under it.
        let header =
            RecordHeader { flags, offset: 0, epoch: 0, timestamp_us: now.unix_us.max(0) as u64, topic: name.as_str() };
        let too_large = || PublishError::TooLarge { size: payload.len(), max: self.limits.max_message_size };
        let mut record = BytesMut::with_capacity(RECORD_HEADER_LEN + name.as_str().len() + payload.len());
        put_record_header(&mut record, &header, payload.len()).map_err(|_| too_large())?;
        record.put_slice(payload);
        loop {
            let t = self.registry.get_or_create(name)?;
            let mut st = t.state.lock();
            if st.dead {
                continue; // Swept meanwhile: the next lookup creates it again.
            }
            self.exceeds_queue(&t.name, &st.policy, record.len())?;
            if let Some((waiting_for, timeout)) = st.blocking_subscriber(record.len()) {
                return Err(PublishError::Backpressure { topic: t.name.clone(), waiting_for, timeout });
            }
            let offset = st.assign(&mut record);
            let record = std::mem::take(&mut record).freeze();
            return Ok(self.fan_out(&t, st, offset, record, now));
        }
    }

    /// Appends `record` (at `offset`, already the topic's last) to history and offers it to
    /// every subscriber under the topic's lock, which it releases before closing slow
    /// consumers.
    pub(super) fn fan_out(
        &self,
        t: &Topic,
        mut st: MutexGuard<'_, TopicState>,
        offset: u64,
        record: bytes::Bytes,
        now: Now,
    ) -> PublishReport {
        let mut slow: Vec<Arc<dyn Connection>> = Vec::new();
        let len = record.len();
        let mut report = st.append_and_offer(offset, record, now, &mut slow);
        let reliable = matches!(st.policy, DeliveryPolicy::Reliable { .. });
        drop(st);
        report.disconnected = slow.len();
        t.counters.record(len, report.delivered, reliable);
        self.account_publish(len, &report, reliable);
        for conn in slow {
            self.counters.slow_consumer_disconnects.fetch_add(1, Relaxed);
            conn.close(
                CloseReason::SlowConsumer,
                "fell behind a reliable topic's queue bound; reconnect and resume from your last offset",
                &[],
            );
        }
        report
    }

    fn account_publish(&self, record_len: usize, report: &PublishReport, reliable: bool) {
        let c = &self.counters;
        c.messages_in.fetch_add(1, Relaxed);
        c.bytes_in.fetch_add(record_len as u64, Relaxed);
        c.deliveries.fetch_add(report.delivered as u64, Relaxed);
        if reliable {
            c.reliable_in.fetch_add(1, Relaxed);
            c.reliable_deliveries.fetch_add(report.delivered as u64, Relaxed);
        }
    }

    /// Replaces a topic's delivery policy on this node; it applies from the next message, and a
    /// topic created later (or again, after the sweeper removed it) starts with it. (Cluster
    /// mode shares it through the broker: `Broker::share_policy`.)
    ///
    /// # Errors
    /// [`SetPolicyError`] naming the invalid field, or the topic may not be used.
    pub fn set_delivery_policy(&self, topic: &TopicName, policy: DeliveryPolicy) -> Result<(), SetPolicyError> {
        policy.validate()?;
        self.registry.set_override(topic, policy)?;
        Ok(())
    }

    /// Drops `topic`'s run-time policy on this node: back to its declaration's (or the
    /// default). Returns the policy now in force.
    pub fn reset_delivery_policy(&self, topic: &TopicName) -> DeliveryPolicy {
        self.registry.clear_override(topic)
    }

    /// Topics with a run-time policy on this node.
    pub fn policy_overrides(&self) -> Vec<TopicName> {
        self.registry.overridden()
    }

    /// Whether [`Self::set_delivery_policy`] would accept `policy` for `topic`.
    ///
    /// # Errors
    /// As [`Self::set_delivery_policy`].
    pub fn check_delivery_policy(&self, topic: &TopicName, policy: &DeliveryPolicy) -> Result<(), SetPolicyError> {
        policy.validate()?;
        self.registry.check_declared(topic)?;
        Ok(())
    }

    /// A topic's delivery policy (the one it would get, if it does not exist yet).
    pub fn delivery_policy(&self, topic: &TopicName) -> DeliveryPolicy {
        self.registry.policy_for(topic)
    }

    /// Facts about one topic.
    pub fn topic_info(&self, topic: &TopicName) -> Option<TopicInfo> {
        self.registry.get(topic).map(|t| t.info())
    }
}
