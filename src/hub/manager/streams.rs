//! Connection-detail streams: a connection that declares a data source and session on
//! `connect` gets the topic `data_source/session_key` (its main stream) and one topic per
//! stream under it, each from its own offset, opened and changed all or nothing.

use super::errors::{RequestError, SubscribeError};
use std::sync::Arc;

use super::{Client, ConnectionManager, SubscribeItem, SubscribeOptions};
use crate::hub::identity::ConnId;
use crate::hub::name::TopicName;
use crate::hub::time::Now;
use crate::protocol::control::{ConnectionDetails, SubscriptionInfo};

impl ConnectionManager {
    /// The topics (with offsets and epochs) [`Self::open_streams`] would subscribe for
    /// `details`.
    ///
    /// # Errors
    /// As `open_streams` for bad details.
    pub fn stream_topics(details: &ConnectionDetails) -> Result<Vec<SubscribeItem>, SubscribeError> {
        let main = main_stream(details)?;
        let starts = Starts { offsets: &details.stream_offsets, epochs: &details.stream_epochs };
        let mut plan = stream_plan(&main, &details.streams, starts)?;
        if !details.exclude_main_stream {
            plan.insert(0, (main, None, None));
        }
        Ok(plan)
    }

    /// The topics (with offsets and epochs) [`Self::add_streams`] would subscribe.
    ///
    /// # Errors
    /// As `add_streams`.
    pub fn added_stream_topics(
        &self,
        id: ConnId,
        streams: &[String],
        starts: Starts<'_>,
    ) -> Result<Vec<SubscribeItem>, SubscribeError> {
        stream_plan(&self.main_stream_of(id)?.1, streams, starts)
    }

    /// Connection `id` and its main stream (`data_source/session_key`).
    fn main_stream_of(&self, id: ConnId) -> Result<(Arc<Client>, TopicName), SubscribeError> {
        let client = self.client(id).ok_or(RequestError::UnknownConnection(id))?;
        let main = {
            let d = client.details.lock();
            if d.data_source.is_empty() {
                return Err(SubscribeError::NoDataSource);
            }
            main_stream(&d)?
        };
        Ok((client, main))
    }

    /// Opens a connection's declared streams on connect: `data_source/session_key/stream` from each stream's
    /// offset, plus the main stream `data_source/session_key` unless excluded. All or nothing:
    /// on error, what this call subscribed is undone.
    ///
    /// # Errors
    /// [`SubscribeError`] (mismatched lengths and bad names are `invalid_argument`).
    pub fn open_streams(
        &self,
        id: ConnId,
        details: &ConnectionDetails,
        now: Now,
    ) -> Result<Vec<SubscriptionInfo>, SubscribeError> {
        let client = self.client(id).ok_or(RequestError::UnknownConnection(id))?;
        let plan = Self::stream_topics(details)?;
        let infos = self.subscribe_all(id, &plan, now)?;
        *client.details.lock() = details.clone();
        Ok(infos)
    }

    /// Adds streams to the connection's data source and session (`add_streams`).
    ///
    /// # Errors
    /// [`SubscribeError`]; all or nothing.
    pub fn add_streams(
        &self,
        id: ConnId,
        streams: &[String],
        starts: Starts<'_>,
        now: Now,
    ) -> Result<Vec<SubscriptionInfo>, SubscribeError> {
        let (client, main) = self.main_stream_of(id)?;
        let plan = stream_plan(&main, streams, starts)?;
        let infos = self.subscribe_all(id, &plan, now)?;
        let mut d = client.details.lock();
        let had_offsets = !d.stream_offsets.is_empty() || !starts.offsets.is_empty();
        let had_epochs = !d.stream_epochs.is_empty() || !starts.epochs.is_empty();
        for (i, s) in streams.iter().enumerate() {
            let n = d.streams.len();
            if had_offsets {
                d.stream_offsets.resize(n, 0);
                d.stream_offsets.push(starts.offsets.get(i).copied().unwrap_or(0));
            }
            if had_epochs {
                d.stream_epochs.resize(n, 0);
                d.stream_epochs.push(starts.epochs.get(i).copied().unwrap_or(0));
            }
            d.streams.push(s.clone());
        }
        Ok(infos)
    }

    /// Removes streams (`remove_streams`). Returns the topics unsubscribed.
    ///
    /// # Errors
    /// [`SubscribeError`] for a stream that is not open; nothing is removed then.
    pub fn remove_streams(&self, id: ConnId, streams: &[String]) -> Result<Vec<TopicName>, SubscribeError> {
        let (client, main) = self.main_stream_of(id)?;
        let topics = stream_plan(&main, streams, Starts::LIVE)?.into_iter().map(|(t, _, _)| t).collect::<Vec<_>>();
        let open = self.topics_of(id);
        if let Some(missing) = topics.iter().find(|t| !open.contains(t)) {
            return Err(SubscribeError::NotSubscribed(missing.clone()));
        }
        for t in &topics {
            self.unsubscribe(id, t)?;
        }
        let mut d = client.details.lock();
        while let Some(pos) = d.streams.iter().position(|s| streams.contains(s)) {
            d.streams.remove(pos);
            if pos < d.stream_offsets.len() {
                d.stream_offsets.remove(pos);
            }
            if pos < d.stream_epochs.len() {
                d.stream_epochs.remove(pos);
            }
        }
        Ok(topics)
    }

    fn subscribe_all(
        &self,
        id: ConnId,
        plan: &[SubscribeItem],
        now: Now,
    ) -> Result<Vec<SubscriptionInfo>, SubscribeError> {
        let mut infos = Vec::with_capacity(plan.len());
        for (topic, offset, epoch) in plan {
            match self.subscribe(id, topic, SubscribeOptions { offset: *offset, epoch: *epoch }, now) {
                Ok(info) => infos.push(info),
                Err(e) => {
                    for done in &infos {
                        if let Ok(t) = TopicName::new(&done.topic) {
                            let _ = self.unsubscribe(id, &t);
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(infos)
    }
}

fn main_stream(d: &ConnectionDetails) -> Result<TopicName, SubscribeError> {
    for (field, v) in [("data_source", &d.data_source), ("session_key", &d.session_key)] {
        if v.is_empty() || v.contains('/') {
            return Err(SubscribeError::InvalidDetails(format!("`{field}` must be one non-empty topic segment")));
        }
    }
    Ok(TopicName::new(&format!("{}/{}", d.data_source, d.session_key))?)
}

/// Where each stream starts: offsets and their epochs, one per stream (or none).
#[derive(Debug, Clone, Copy)]
pub struct Starts<'a> {
    /// Start offsets (empty: all live).
    pub offsets: &'a [u64],
    /// The epoch of each offset (empty, or 0: the topic's current one).
    pub epochs: &'a [u64],
}

impl Starts<'_> {
    /// Every stream live.
    pub const LIVE: Starts<'static> = Starts { offsets: &[], epochs: &[] };
}

fn stream_plan(main: &TopicName, streams: &[String], starts: Starts<'_>) -> Result<Vec<SubscribeItem>, SubscribeError> {
    let Starts { offsets, epochs } = starts;
    if !offsets.is_empty() && offsets.len() != streams.len() {
        return Err(SubscribeError::OffsetsMismatch { streams: streams.len(), offsets: offsets.len() });
    }
    if !epochs.is_empty() && epochs.len() != streams.len() {
        return Err(SubscribeError::InvalidDetails(format!(
            "`stream_epochs` has {} entries for {} streams",
            epochs.len(),
            streams.len()
        )));
    }
    streams
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let epoch = epochs.get(i).copied().filter(|&e| e != 0);
            Ok((TopicName::new(&format!("{main}/{s}"))?, offsets.get(i).copied(), epoch))
        })
        .collect()
}
