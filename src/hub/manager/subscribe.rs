//! Subscribing and unsubscribing: the connection's subscription map and the topic's subscriber
//! list change together, and a subscribe from an offset replays under the topic's lock.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::errors::{Action, RequestError, SubscribeError};
use super::{Client, ClientSub, ConnectionManager, SubscribeOptions};
use crate::hub::connection::Connection;
use crate::hub::history::HistEntry;
use crate::hub::identity::ConnId;
use crate::hub::name::TopicName;
use crate::hub::subscription::Subscription;
use crate::hub::time::Now;
use crate::hub::topic::{StartAt, Subscriber, Topic};
use crate::protocol::control::SubscriptionInfo;

impl ConnectionManager {
    /// Subscribes connection `id` to `topic`, replaying from `opts.offset` when given. The
    /// replay and the live stream meet without gap or duplicate because both happen under the
    /// topic's lock.
    ///
    /// # Errors
    /// [`SubscribeError`]; the connection stays usable.
    pub fn subscribe(
        &self,
        id: ConnId,
        topic: &TopicName,
        opts: SubscribeOptions,
        now: Now,
    ) -> Result<SubscriptionInfo, SubscribeError> {
        let client = self.client(id).ok_or(RequestError::UnknownConnection(id))?;
        if !client.conn.identity().can_subscribe(topic) {
            return Err(RequestError::PermissionDenied(Action::Subscribe, topic.clone()).into());
        }
        let mut guard = client.subs.lock();
        let subs = guard.as_mut().ok_or(RequestError::UnknownConnection(id))?;
        if subs.contains_key(topic) {
            return Err(SubscribeError::AlreadySubscribed(topic.clone()));
        }
        if subs.len() >= self.limits.max_subscriptions_per_connection {
            drop(guard);
            self.record_violation(id, now);
            return Err(SubscribeError::TooManySubscriptions(self.limits.max_subscriptions_per_connection));
        }
        let (info, entry) = loop {
            let t = self.registry.get_or_create(topic)?;
            if let Some(r) = self.attach(t, &client, opts, now)? {
                break r;
            }
        };
        subs.insert(topic.clone(), entry);
        self.subscriptions.fetch_add(1, Relaxed);
        Ok(info)
    }

    /// Adds the subscriber to the topic under its lock; `None` if the topic was swept meanwhile.
    fn attach(
        &self,
        t: Arc<Topic>,
        client: &Client,
        opts: SubscribeOptions,
        now: Now,
    ) -> Result<Option<(SubscriptionInfo, ClientSub)>, SubscribeError> {
        let mut st = t.state.lock();
        if st.dead {
            return Ok(None);
        }
        if let Some(max) = t.max_subscribers {
            if st.subscribers().len() >= max {
                return Err(SubscribeError::TopicFull { topic: t.name.clone(), max });
            }
        }
        let start = st.start_at(opts.offset, opts.epoch, now).map_err(|head| SubscribeError::OffsetBeyondHead {
            topic: t.name.clone(),
            offset: opts.offset.unwrap_or(0),
            head,
        })?;
        // Cluster mode: records older than the mirror's history, fetched from the broker.
        let staged = self.backfill.remove(&(client.conn.id(), t.name.clone())).map(|(_, v)| v).unwrap_or_default();
        let mut backfill: Vec<&HistEntry> = Vec::new();
        let mut start = start;
        if let Some(o) = opts.offset {
            if !start.recovered && !staged.is_empty() && opts.epoch.is_none_or(|e| e == st.epoch) {
                let low = st.history.first_offset().unwrap_or(st.next_offset);
                let want = o.max(1);
                let usable: Vec<&HistEntry> = staged.iter().filter(|e| e.offset >= want && e.offset < low).collect();
                let contiguous = usable.first().is_some_and(|e| e.offset == want)
                    && usable.windows(2).all(|w| w[0].offset + 1 == w[1].offset)
                    && usable.last().is_some_and(|e| e.offset + 1 == low);
                if contiguous {
                    start = StartAt { offset: want, recovered: true };
                    backfill = usable;
                }
            }
        }
        let sub = Arc::new(Subscription::new(client.conn.id(), t.name.clone()));
        // With backfill, `start` is older than the history, which then replays whole.
        let replayed = st.attach(Subscriber { conn: client.conn.clone(), sub: sub.clone() }, &backfill, start.offset);
        let info = st.subscription_info(&t.name, start, replayed);
        drop(st);
        Ok(Some((info, ClientSub { topic: t, sub })))
    }

    /// Unsubscribes; queued messages of the topic are discarded.
    ///
    /// # Errors
    /// [`SubscribeError::NotSubscribed`], or the connection is unknown.
    pub fn unsubscribe(&self, id: ConnId, topic: &TopicName) -> Result<(), SubscribeError> {
        let client = self.client(id).ok_or(RequestError::UnknownConnection(id))?;
        let mut guard = client.subs.lock();
        let subs = guard.as_mut().ok_or(RequestError::UnknownConnection(id))?;
        let entry = subs.remove(topic).ok_or_else(|| SubscribeError::NotSubscribed(topic.clone()))?;
        if entry.topic.state.lock().detach(&entry.sub) {
            self.subscriptions.fetch_sub(1, Relaxed);
        }
        drop(guard);
        client.conn.core().outbound.purge(&entry.sub);
        Ok(())
    }

    /// The connections subscribed to `topic`.
    pub fn clients_for_topic(&self, topic: &TopicName) -> Vec<Arc<dyn Connection>> {
        self.registry
            .get(topic)
            .map(|t| t.state.lock().subscribers().iter().map(|s| s.conn.clone()).collect())
            .unwrap_or_default()
    }

    /// Topics a connection is subscribed to.
    pub fn topics_of(&self, id: ConnId) -> Vec<TopicName> {
        self.client(id).and_then(|c| c.subs.lock().as_ref().map(|m| m.keys().cloned().collect())).unwrap_or_default()
    }
}
