//! Redis Streams source: `XREADGROUP` over every stream the consumer's mappings name, `XACK`
//! after the hub took a record.
//!
//! * **Streams**: a literal upstream name is one stream key (created with its group if absent);
//!   a templated one is found with `SCAN … TYPE stream` at (re)connect and every
//!   [`DISCOVER_EVERY`].
//! * **Entries**: the field `payload` is the record's value, `key` its key, every other field
//!   a header; an entry without `payload` is published as a JSON object of all its fields.
//! * **Positions**: the entry id (`ms-seq`), ordered per stream key (the partition).
//! * **Groups**: the consumer's group (`XGROUP CREATE … 0|$`, by `offset_reset`), consumer
//!   name the node id (`fanhub` when none is configured, so one node finds its own pending
//!   entries after a restart). At every (re)connect the consumer first reads its own pending
//!   entries (fetched before but never acknowledged; paging through them, so an entry still in
//!   a lane is not offered again), then new ones; the lanes' ledgers skip
//!   those already published. Entries another consumer left pending longer than
//!   [`CLAIM_IDLE`] are claimed (`XAUTOCLAIM`). In cluster mode one node at a time consumes (it
//!   holds the consumer's lease); when it takes over it claims every pending entry at once.
//! * **Backpressure**: a paused lane's streams are left out of `XREADGROUP`; when every lane
//!   is paused the consumer waits for room.
//! * **Lag**: `XINFO GROUPS`: entries not yet delivered to the group (`lag`) plus those
//!   delivered but not acknowledged (`pending`), summed per lane, every second.
//!
//! Two connections: one blocks in `XREADGROUP`, the other acknowledges, scans and measures.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamInfoGroupsReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Value};

use super::{Ack, Consumer, ConsumerState, Lane, Offer, Position, UpstreamRecord};
use crate::config::OffsetReset;

/// How often templated mappings look for new streams.
pub(super) const DISCOVER_EVERY: Duration = Duration::from_secs(5);
/// How long another consumer's entry stays pending before this one claims it.
pub(super) const CLAIM_IDLE: Duration = Duration::from_secs(30);
/// Longest wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for an answer (beyond a blocking read's own wait).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often lag is measured.
const LAG_EVERY: Duration = Duration::from_secs(1);

/// Runs the consumer until the source stops.
pub(super) async fn run(c: &mut Consumer) {
    let backoff = c.backoff();
    let mut attempt = 0u32;
    loop {
        if c.stopping() {
            break;
        }
        let error = match Session::open(c).await {
            Ok(mut s) => {
                attempt = 0;
                c.health.set(ConsumerState::Connected, None);
                match s.serve(c).await {
                    Ok(()) => break,
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        tracing::warn!(source = %c.source.config.name, group = %c.group, error = %error, "redis source consumer lost; retrying");
        c.health.set(ConsumerState::Retrying, Some(error.to_string()));
        if c.sleep_or_stop(backoff.delay(attempt, rand::random::<f64>())).await {
            break;
        }
        attempt = attempt.saturating_add(1);
    }
    // Commit what the publishers finished; whatever stays unacknowledged comes again.
    final_acks(c).await;
}

struct Session {
    read: MultiplexedConnection,
    cmd: MultiplexedConnection,
    /// Stream key → the lane it feeds.
    streams: BTreeMap<String, Arc<Lane>>,
    /// Keys whose own pending entries are still being read, before new ones (`>`), each with
    /// the id to read after (`0` at first, then the last one read: an entry still in a lane,
    /// not yet acknowledged, is not read again and offered twice).
    pending: HashMap<String, String>,
    consumer: String,
    discovered: Instant,
    measured: Instant,
    claimed: Instant,
}

impl Session {
    async fn open(c: &Consumer) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(c.source.config.url.as_str())?;
        // The reading connection waits in `XREADGROUP … BLOCK` up to the fetch wait: its
        // answer may take that long, and more on a loaded machine, before Redis counts as gone.
        let config = |answer: Duration| {
            redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(answer))
        };
        let wait = c.fetch_wait();
        let read = client.get_multiplexed_async_connection_with_config(&config(wait + ANSWER_TIMEOUT)).await?;
        let cmd = client.get_multiplexed_async_connection_with_config(&config(ANSWER_TIMEOUT)).await?;
        let mut s = Self {
            read,
            cmd,
            streams: BTreeMap::new(),
            pending: HashMap::new(),
            consumer: c.node_name.clone(),
            discovered: Instant::now(),
            measured: Instant::now() - LAG_EVERY,
            claimed: Instant::now(),
        };
        s.discover(c).await?;
        if c.lease.is_some() {
            // The lease holder is the group's only consumer: what another node fetched and
            // never acknowledged (it lost the lease) is this node's to publish, first.
            for key in s.streams.keys().cloned().collect::<Vec<_>>() {
                s.take_over(c, &key).await?;
            }
        }
        s.pending = s.streams.keys().map(|k| (k.clone(), "0".to_owned())).collect();
        Ok(s)
    }

    /// Makes every pending entry of `key` this consumer's (`XAUTOCLAIM … 0 … JUSTID`), so the
    /// pending read from id 0 returns them.
    async fn take_over(&mut self, c: &Consumer, key: &str) -> Result<(), redis::RedisError> {
        let mut cursor = "0-0".to_owned();
        loop {
            let (next, ids, _deleted): (String, Vec<String>, Value) = redis::cmd("XAUTOCLAIM")
                .arg(key)
                .arg(&c.group)
                .arg(&self.consumer)
                .arg(0)
                .arg(&cursor)
                .arg("COUNT")
                .arg(1000)
                .arg("JUSTID")
                .query_async(&mut self.cmd)
                .await?;
            if !ids.is_empty() {
                tracing::info!(source = %c.source.config.name, stream = key, entries = ids.len(), "took over entries another node left unacknowledged");
            }
            if next == "0-0" {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Finds the streams of every lane and makes sure each has the group.
    async fn discover(&mut self, c: &Consumer) -> Result<(), redis::RedisError> {
        for lane in &c.lanes {
            let keys: Vec<String> = if lane.upstream.is_literal() {
                vec![lane.config.upstream.clone()]
            } else {
                let mut iter: redis::AsyncIter<String> = redis::cmd("SCAN")
                    .cursor_arg(0)
                    .arg("MATCH")
                    .arg(lane.upstream.with_wildcards("*"))
                    .arg("COUNT")
                    .arg(1000)
                    .arg("TYPE")
                    .arg("stream")
                    .clone()
                    .iter_async(&mut self.cmd)
                    .await?;
                let mut keys = Vec::new();
                while let Some(k) = iter.next_item().await {
                    keys.push(k?);
                }
                keys
            };
            for key in keys {
                // The first mapping that matches a stream takes it.
                if self.streams.contains_key(&key) || c.route(&key).map(|l| l.index) != Some(lane.index) {
                    continue;
                }
                self.ensure_group(c, &key, lane.upstream.is_literal()).await?;
                self.pending.insert(key.clone(), "0".to_owned());
                self.streams.insert(key, lane.clone());
            }
        }
        self.discovered = Instant::now();
        Ok(())
    }

    async fn ensure_group(&mut self, c: &Consumer, key: &str, create_stream: bool) -> Result<(), redis::RedisError> {
        let start = match c.settings.offset_reset.or(c.source.config.consumer.offset_reset).unwrap_or_default() {
            OffsetReset::Earliest => "0",
            OffsetReset::Latest => "$",
        };
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE").arg(key).arg(&c.group).arg(start);
        if create_stream {
            cmd.arg("MKSTREAM");
        }
        match cmd.query_async::<()>(&mut self.cmd).await {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Fetches, routes and acknowledges until the source stops (Ok) or Redis fails (Err).
    async fn serve(&mut self, c: &mut Consumer) -> Result<(), redis::RedisError> {
        let mut stop = c.stop.clone();
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            self.commit(c).await?;
            if self.discovered.elapsed() >= DISCOVER_EVERY && c.lanes.iter().any(|l| !l.upstream.is_literal()) {
                self.discover(c).await?;
            }
            if self.measured.elapsed() >= LAG_EVERY {
                self.measure(c).await?;
            }
            if self.claimed.elapsed() >= CLAIM_IDLE {
                self.claim(c).await?;
            }
            let keys: Vec<String> =
                self.streams.iter().filter(|(_, l)| !l.is_paused()).map(|(k, _)| k.clone()).collect();
            if keys.is_empty() {
                // Every lane is full (or no stream exists yet): wait for room, an ack or a tick.
                let rooms = futures_util::future::select_all(c.lanes.iter().map(|l| Box::pin(l.room())));
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                    _ = rooms => {}
                    () = tokio::time::sleep(c.fetch_wait()) => {}
                }
                continue;
            }
            // Own pending entries first (after the last one read), then new ones (>).
            let ids: Vec<String> =
                keys.iter().map(|k| self.pending.get(k).map_or(">", String::as_str).to_owned()).collect();
            let opts = StreamReadOptions::default()
                .group(&c.group, &self.consumer)
                .count(c.settings.batch())
                .block(c.fetch_wait().as_millis() as usize);
            let read = self.read.xread_options::<_, _, Option<StreamReadReply>>(&keys, &ids, &opts);
            let reply = tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(()),
                r = read => r,
            };
            let reply = match reply {
                Err(e) if e.code() == Some("NOGROUP") => {
                    // The stream or its group is gone (Redis restarted without its data):
                    // create them again and read from where the group now starts.
                    tracing::warn!(source = %c.source.config.name, "redis source stream or group missing; creating it again");
                    self.streams.clear();
                    self.discover(c).await?;
                    continue;
                }
                other => other?,
            };
            let mut got: HashMap<String, usize> = HashMap::new();
            for sk in reply.map(|r| r.keys).unwrap_or_default() {
                got.insert(sk.key.clone(), sk.ids.len());
                if let (Some(after), Some(last)) = (self.pending.get_mut(&sk.key), sk.ids.last()) {
                    after.clone_from(&last.id);
                }
                let Some(lane) = self.streams.get(&sk.key).cloned() else { continue };
                let upstream: Arc<str> = Arc::from(sk.key.as_str());
                for entry in sk.ids {
                    let record = to_record(&upstream, entry);
                    if let Offer::Dropped(r) = lane.offer(record) {
                        lane.done(r, false);
                    }
                }
            }
            // A key whose pending read returned nothing has no pending entries left.
            self.pending.retain(|k, _| !(keys.contains(k) && got.get(k).copied().unwrap_or(0) == 0));
        }
    }

    /// Acknowledges every finished record (one pipeline).
    async fn commit(&mut self, c: &mut Consumer) -> Result<(), redis::RedisError> {
        let mut by_key: BTreeMap<Arc<str>, Vec<String>> = BTreeMap::new();
        while let Ok(a) = c.acks.try_recv() {
            by_key.entry(a.partition.clone()).or_default().push(a.position_text);
        }
        if by_key.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let mut counts = Vec::new();
        for (key, ids) in &by_key {
            pipe.xack(key.as_ref(), &c.group, ids).ignore();
            counts.push((key.clone(), ids.len() as u64));
        }
        pipe.query_async::<()>(&mut self.cmd).await?;
        for (key, n) in counts {
            if let Some(lane) = self.streams.get(key.as_ref()) {
                lane.stats.commits.fetch_add(n, Relaxed);
            }
        }
        Ok(())
    }

    /// Lag per lane: entries of its streams not yet delivered to the group.
    async fn measure(&mut self, c: &Consumer) -> Result<(), redis::RedisError> {
        let mut lag: HashMap<usize, u64> = HashMap::new();
        for (key, lane) in &self.streams {
            let info: StreamInfoGroupsReply = match self.cmd.xinfo_groups(key).await {
                Ok(i) => i,
                Err(e) if e.code() == Some("ERR") => continue,
                Err(e) => return Err(e),
            };
            // Not yet delivered to the group, plus delivered but not yet acknowledged.
            let n = info.groups.iter().find(|g| g.name == c.group).map_or(0, |g| g.lag.unwrap_or(0) + g.pending);
            *lag.entry(lane.index).or_default() += n as u64;
        }
        for lane in &c.lanes {
            lane.stats.lag.store(lag.get(&lane.index).copied().unwrap_or(0), Relaxed);
        }
        self.measured = Instant::now();
        Ok(())
    }

    /// Claims entries other consumers of the group left pending for [`CLAIM_IDLE`] (a node that
    /// died with records in hand) and routes them like fetched ones.
    async fn claim(&mut self, c: &Consumer) -> Result<(), redis::RedisError> {
        for (key, lane) in self.streams.clone() {
            if lane.is_paused() {
                continue;
            }
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&key)
                .arg(&c.group)
                .arg(&self.consumer)
                .arg(CLAIM_IDLE.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(c.settings.batch())
                .query_async(&mut self.cmd)
                .await?;
            let claimed: redis::streams::StreamAutoClaimReply = redis::FromRedisValue::from_redis_value(reply)?;
            let upstream: Arc<str> = Arc::from(key.as_str());
            for entry in claimed.claimed {
                if let Offer::Dropped(r) = lane.offer(to_record(&upstream, entry)) {
                    lane.done(r, false);
                }
            }
        }
        self.claimed = Instant::now();
        Ok(())
    }
}

/// Acknowledges what the publishers finished before the stop, on a fresh connection.
async fn final_acks(c: &mut Consumer) {
    c.publishers_done().await;
    let mut acks: Vec<Ack> = Vec::new();
    while let Ok(a) = c.acks.try_recv() {
        acks.push(a);
    }
    if acks.is_empty() {
        return;
    }
    let Ok(client) = redis::Client::open(c.source.config.url.as_str()) else { return };
    let Ok(Ok(mut con)) = tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection()).await else {
        return;
    };
    let mut pipe = redis::pipe();
    for a in &acks {
        pipe.xack(a.partition.as_ref(), &c.group, &[&a.position_text]).ignore();
    }
    if tokio::time::timeout(Duration::from_secs(2), pipe.query_async::<()>(&mut con)).await.is_ok() {
        for a in &acks {
            if let Some(l) = c.route(&a.upstream) {
                l.stats.commits.fetch_add(1, Relaxed);
            }
        }
    }
}

/// An entry as a record: `payload` the value, `key` the key, the other fields headers; no
/// `payload`: every field as one JSON object.
fn to_record(upstream: &Arc<str>, entry: StreamId) -> UpstreamRecord {
    let position = parse_id(&entry.id);
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::SimpleString(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        }
    };
    let mut fields: Vec<(String, Value)> = entry.map.into_iter().collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    let payload = fields.iter().find(|(k, _)| k == "payload").map(|(_, v)| match v {
        Value::BulkString(b) => Bytes::from(b.clone()),
        other => Bytes::from(text(other).unwrap_or_default()),
    });
    let key = fields.iter().find(|(k, _)| k == "key").and_then(|(_, v)| text(v));
    let (payload, headers) = match payload {
        Some(p) => {
            let headers = fields
                .iter()
                .filter(|(k, _)| k != "payload" && k != "key")
                .filter_map(|(k, v)| Some((k.clone(), text(v)?)));
            (p, headers.collect())
        }
        None => {
            let obj: serde_json::Map<String, serde_json::Value> =
                fields.iter().filter_map(|(k, v)| Some((k.clone(), text(v)?.into()))).collect();
            (Bytes::from(serde_json::to_vec(&obj).expect("a JSON map serializes")), Vec::new())
        }
    };
    UpstreamRecord {
        upstream: upstream.clone(),
        partition: upstream.clone(),
        position,
        position_text: entry.id,
        key,
        headers,
        payload,
        token: None,
    }
}

/// `ms-seq` as a position.
fn parse_id(id: &str) -> Position {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Position { major: ms.parse().unwrap_or(0), minor: seq.parse().unwrap_or(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_order_as_positions() {
        assert!(parse_id("1700000000000-2") < parse_id("1700000000000-10"));
        assert!(parse_id("1700000000000-99") < parse_id("1700000000001-0"));
        assert_eq!(parse_id("5"), Position { major: 5, minor: 0 });
    }

    #[test]
    fn an_entry_without_payload_becomes_a_json_object_of_its_fields() {
        let up: Arc<str> = "s".into();
        let mut map = HashMap::new();
        map.insert("temp".to_string(), Value::BulkString(b"21".to_vec()));
        map.insert("unit".to_string(), Value::BulkString(b"C".to_vec()));
        let r = to_record(&up, StreamId { id: "1-1".into(), map, ..Default::default() });
        assert_eq!(&r.payload[..], br#"{"temp":"21","unit":"C"}"#);
        let mut map = HashMap::new();
        map.insert("payload".to_string(), Value::BulkString(vec![0, 1, 2]));
        map.insert("key".to_string(), Value::BulkString(b"dev-1".to_vec()));
        map.insert("trace".to_string(), Value::BulkString(b"t1".to_vec()));
        let r = to_record(&up, StreamId { id: "2-0".into(), map, ..Default::default() });
        assert_eq!((&r.payload[..], r.key.as_deref()), (&[0u8, 1, 2][..], Some("dev-1")));
        assert_eq!(r.headers, [("trace".to_string(), "t1".to_string())]);
    }
}
