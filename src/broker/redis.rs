//! The Redis side of cluster mode: atomic offset assignment with bounded history, per-topic
//! channels multiplexed on one RESP3 connection, and the node registry.
//!
//! Keys, under a configurable prefix `P` (default `fanhub`), with `{T}` the topic name:
//! * `P:t:{T}:seq` — last offset assigned (INCR), `P:t:{T}:epoch` — the topic's epoch,
//!   `P:t:{T}:hist` — a sorted set of encoded messages scored by offset, trimmed to the newest
//!   `max_messages`; all three expire `ttl_secs` after the topic's last publish. If the epoch key
//!   is gone (Redis restarted without persistence, or the topic expired) the next publish starts
//!   a new epoch at offset 1 — clients see the epoch change and know history was lost.
//! * `P:c:{T}` — the pub/sub channel every publish goes to.
//! * `P:node:{id}` — a node's registry entry (JSON), expiring unless heartbeated.
//! * `P:policies` — a hash of the delivery policies set at run time (topic → policy JSON), and
//!   the channel of the same name on which each change is announced as
//!   `{"topic":…,"policy":…}` (`null`: reset to the configured one); every node applies both.
//!
//! A message on the channel and in history is `offset:epoch:` in ASCII followed by the
//! [`RemoteMessage`] body (`u64` publish time µs, `u8` flags, payload), so one Lua script assigns
//! the offset, appends to history and publishes, atomically: every node sees the same offsets,
//! in order, and history never disagrees with the live stream.
//!
//! Redis pub/sub is at-most-once: a node that loses its connection misses what was published
//! meanwhile. History closes that gap for `reliable` topics (a node or client resumes from its
//! last offset with [`RedisBroker::history`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, PushInfo, PushKind, Script, Value};

use super::SourcePosition;

use super::NodeInfo;
use crate::hub::TopicName;

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Redis is unreachable or answered an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stored or published message does not parse.
    #[error("malformed broker message: {0}")]
    Malformed(&'static str),
}

/// A message as it travels through Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMessage {
    /// Topic it was published on.
    pub topic: TopicName,
    /// Offset assigned by Redis.
    pub offset: u64,
    /// The topic's epoch.
    pub epoch: u64,
    /// Publish time, µs since the UNIX epoch (publishing node's clock).
    pub timestamp_us: u64,
    /// Record flags (bit 0: JSON).
    pub flags: u8,
    /// Payload.
    pub payload: Bytes,
}

impl RemoteMessage {
    /// The record part, as the manager routes it.
    pub fn record(&self) -> crate::hub::manager::RemoteRecord {
        crate::hub::manager::RemoteRecord {
            offset: self.offset,
            epoch: self.epoch,
            timestamp_us: self.timestamp_us,
            flags: self.flags,
            payload: self.payload.clone(),
        }
    }
}

/// What arrives on the subscriber connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Push {
    /// A record from a topic channel.
    Message(RemoteMessage),
    /// A delivery policy set at run time on some node.
    Policy(PolicyChange),
}

/// A delivery policy set at run time, as shared through Redis.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyChange {
    /// The topic.
    pub topic: TopicName,
    /// Its new policy; `None`: back to the configured one.
    pub policy: Option<crate::hub::DeliveryPolicy>,
}

/// One message of [`RedisBroker::publish_many`]: topic, flags, publish time (µs since the UNIX
/// epoch), payload, history bounds, and an upstream source's position.
pub type PublishItem<'a> = (&'a TopicName, u8, u64, &'a [u8], RedisHistory, Option<&'a SourcePosition>);

/// Offset and epoch a publish got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assigned {
    /// Offset.
    pub offset: u64,
    /// Epoch.
    pub epoch: u64,
}

/// History bounds in Redis for one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisHistory {
    /// Most messages kept.
    pub max_messages: u64,
    /// Keys expire this long after the last publish, seconds.
    pub ttl_secs: u64,
}

/// Offset assignment, history append and publish, atomically.
/// KEYS: seq, epoch, hist, channel[, source ledger]. ARGV: body, new epoch, max messages, ttl
/// secs[, partition, position major, position minor]. With a ledger (a record from an upstream
/// source), a position at or before the partition's last published one is not published:
/// `{0, 0}` answers it.
const PUBLISH_LUA: &str = r"
if KEYS[5] then
  local last = redis.call('HGET', KEYS[5], ARGV[5])
  if last then
    local sep = string.find(last, ':', 1, true)
    local major, minor = tonumber(string.sub(last, 1, sep - 1)), tonumber(string.sub(last, sep + 1))
    local pmajor, pminor = tonumber(ARGV[6]), tonumber(ARGV[7])
    if pmajor < major or (pmajor == major and pminor <= minor) then return {0, 0} end
  end
  redis.call('HSET', KEYS[5], ARGV[5], ARGV[6] .. ':' .. ARGV[7])
end
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[2]
  redis.call('SET', KEYS[2], epoch)
  redis.call('DEL', KEYS[1], KEYS[3])
end
local offset = redis.call('INCR', KEYS[1])
local msg = offset .. ':' .. epoch .. ':' .. ARGV[1]
redis.call('ZADD', KEYS[3], offset, msg)
local max = tonumber(ARGV[3])
local n = redis.call('ZCARD', KEYS[3])
if n > max then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, n - max - 1) end
local ttl = tonumber(ARGV[4])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('PUBLISH', KEYS[4], msg)
return {offset, epoch}
";

/// Take or renew a lease. KEYS: lease. ARGV: node, ttl ms. Answers the holder.
const LEASE_LUA: &str = r"
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return ARGV[1]
end
return holder
";

/// Give up a lease if held. KEYS: lease. ARGV: node.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// A topic's head, creating its epoch if it has none, atomically: every node that joins the
/// topic before its first publish is told the same epoch.
/// KEYS: seq, epoch, hist. ARGV: new epoch, ttl secs.
const HEAD_LUA: &str = r"
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch, 'EX', tonumber(ARGV[2]))
  redis.call('DEL', KEYS[1], KEYS[3])
end
local seq = redis.call('GET', KEYS[1])
if not seq then seq = '0' end
return {seq, epoch}
";

/// A new epoch: non-zero, below 2^53 so JavaScript clients hold it exactly.
fn new_epoch() -> u64 {
    (rand::random::<u64>() >> 11).max(1)
}

/// One node's connection to Redis: commands on one multiplexed connection, every topic channel
/// on one RESP3 subscriber connection that reconnects and resubscribes by itself.
pub struct RedisBroker {
    commands: ConnectionManager,
    subscriber: ConnectionManager,
    prefix: Arc<str>,
    publish: Script,
    head: Script,
    keepalive: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// How often the subscriber connection is pinged. The connection manager only reconnects when a
/// command fails, and a subscriber connection sends none: without this, channels lost to a Redis
/// restart would stay lost. The ping also bounds how long a dead connection goes unnoticed.
const SUBSCRIBER_PING: Duration = Duration::from_millis(500);

impl RedisBroker {
    /// Connects to `url` (`redis://host:port/db`). Messages arriving on subscribed channels are
    /// handed to `on_message` on the connection's task: it must not block.
    ///
    /// # Errors
    /// When Redis cannot be reached.
    pub async fn connect(
        url: &str,
        prefix: &str,
        on_push: impl Fn(Push) + Send + Sync + 'static,
    ) -> Result<Self, BrokerError> {
        let retry = || {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)))
                .set_max_delay(Duration::from_secs(2))
        };
        let client = redis::Client::open(url)?;
        let commands = client.get_connection_manager_with_config(retry()).await?;
        let channel_prefix = format!("{prefix}:c:");
        let policies = policies_key(prefix);
        let push = move |info: PushInfo| -> Result<(), std::convert::Infallible> {
            if info.kind == PushKind::Message {
                match parse_push(&channel_prefix, &policies, &info.data) {
                    Ok(m) => on_push(m),
                    Err(e) => tracing::warn!(error = %e, "dropping a malformed broker message"),
                }
            }
            Ok(())
        };
        let sub_url = if url.contains('?') { format!("{url}&protocol=resp3") } else { format!("{url}?protocol=resp3") };
        let subscriber = redis::Client::open(sub_url)?
            .get_connection_manager_with_config(retry().set_push_sender(push).set_automatic_resubscription())
            .await?;
        // Policy changes, for as long as the node runs (resubscribed after a reconnect).
        subscriber.clone().subscribe(policies_key(prefix)).await?;
        let mut ping = subscriber.clone();
        let keepalive = tokio::spawn(async move {
            loop {
                tokio::time::sleep(SUBSCRIBER_PING).await;
                if let Err(e) = redis::cmd("PING").query_async::<Value>(&mut ping).await {
                    tracing::debug!(error = %e, "redis subscriber connection down; reconnecting");
                }
            }
        });
        Ok(Self {
            commands,
            subscriber,
            prefix: prefix.into(),
            publish: Script::new(PUBLISH_LUA),
            head: Script::new(HEAD_LUA),
            keepalive,
        })
    }

    fn key(&self, topic: &TopicName, part: &str) -> String {
        format!("{}:t:{}:{part}", self.prefix, topic.as_str())
    }

    fn channel(&self, topic: &TopicName) -> String {
        format!("{}:c:{}", self.prefix, topic.as_str())
    }

    /// Assigns the next offset, appends to history and publishes to every node, atomically.
    ///
    /// # Errors
    /// When Redis is unreachable or fails.
    pub async fn publish(
        &self,
        topic: &TopicName,
        flags: u8,
        timestamp_us: u64,
        payload: &[u8],
        history: RedisHistory,
    ) -> Result<Assigned, BrokerError> {
        let assigned = self.publish_many(&[(topic, flags, timestamp_us, payload, history, None)]).await?;
        assigned.into_iter().next().ok_or(BrokerError::Malformed("no answer to a publish"))
    }

    /// [`Self::publish`] of several messages in one round trip (one pipeline of script calls,
    /// executed by Redis in order). One result per message; an error fails the whole batch
    /// (Redis unreachable), and then some may have been published. A message with a
    /// [`SourcePosition`] is published only past its partition's last position (the source
    /// ledger, updated in the same script); one that is not answers offset 0.
    ///
    /// # Errors
    /// When Redis is unreachable or fails.
    pub async fn publish_many(&self, items: &[PublishItem<'_>]) -> Result<Vec<Assigned>, BrokerError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for &(topic, flags, timestamp_us, payload, history, position) in items {
            let mut body = BytesMut::with_capacity(9 + payload.len());
            body.put_u64(timestamp_us);
            body.put_u8(flags);
            body.put_slice(payload);
            let new_epoch = new_epoch();
            let cmd = pipe
                .cmd("EVALSHA")
                .arg(self.publish.get_hash())
                .arg(if position.is_some() { 5 } else { 4 })
                .arg(self.key(topic, "seq"))
                .arg(self.key(topic, "epoch"))
                .arg(self.key(topic, "hist"))
                .arg(self.channel(topic));
            if let Some(p) = position {
                cmd.arg(format!("{}:src:{}", self.prefix, p.ledger));
            }
            cmd.arg(&body[..]).arg(new_epoch).arg(history.max_messages.max(1)).arg(history.ttl_secs.max(1));
            if let Some(p) = position {
                cmd.arg(p.partition.as_str()).arg(p.major).arg(p.minor);
            }
        }
        let mut con = self.commands.clone();
        let raw: Vec<(u64, u64)> = match pipe.query_async(&mut con).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // Redis restarted (its script cache is empty). Every call failed with NOSCRIPT,
                // so none ran: load the script and run the batch again.
                self.publish.prepare_invoke().load_async(&mut con).await?;
                pipe.query_async(&mut con).await?
            }
            other => other?,
        };
        Ok(raw.into_iter().map(|(offset, epoch)| Assigned { offset, epoch }).collect())
    }

    /// Takes or renews the lease `name` for `node` for `ttl`, atomically: answers the node holding
    /// it now (`node` when it got or kept it).
    ///
    /// # Errors
    /// When Redis is unreachable or fails.
    pub async fn lease(&self, name: &str, node: &str, ttl: Duration) -> Result<String, BrokerError> {
        let mut con = self.commands.clone();
        let holder: String = Script::new(LEASE_LUA)
            .key(format!("{}:lease:{name}", self.prefix))
            .arg(node)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut con)
            .await?;
        Ok(holder)
    }

    /// Gives up the lease `name` if `node` holds it.
    ///
    /// # Errors
    /// When Redis is unreachable or fails.
    pub async fn release(&self, name: &str, node: &str) -> Result<(), BrokerError> {
        let mut con = self.commands.clone();
        let _: i64 = Script::new(RELEASE_LUA)
            .key(format!("{}:lease:{name}", self.prefix))
            .arg(node)
            .invoke_async(&mut con)
            .await?;
        Ok(())
    }

    /// Messages of `topic` from offset `from` on, oldest first (empty when history starts
    /// later or the topic is unknown; compare the first offset and the epoch).
    ///
    /// # Errors
    /// When Redis is unreachable or a stored message is malformed.
    pub async fn history(&self, topic: &TopicName, from: u64) -> Result<Vec<RemoteMessage>, BrokerError> {
        let mut con = self.commands.clone();
        let raw: Vec<Vec<u8>> = con.zrangebyscore(self.key(topic, "hist"), from, "+inf").await?;
        raw.into_iter().map(|m| parse_message(topic.clone(), Bytes::from(m))).collect()
    }

    /// The offset the next publish on `topic` will get, and its epoch — created now (expiring
    /// like the topic's other keys) if the topic has none, so it is the same on every node from
    /// the first subscribe on.
    ///
    /// # Errors
    /// When Redis is unreachable.
    pub async fn head(&self, topic: &TopicName, ttl_secs: u64) -> Result<(u64, u64), BrokerError> {
        let mut con = self.commands.clone();
        let mut call = self.head.prepare_invoke();
        call.key(self.key(topic, "seq")).key(self.key(topic, "epoch")).key(self.key(topic, "hist"));
        call.arg(new_epoch()).arg(ttl_secs.max(1));
        let (seq, epoch): (u64, u64) = call.invoke_async(&mut con).await?;
        Ok((seq + 1, epoch))
    }

    /// [`Self::head`] of many topics in one round trip.
    ///
    /// # Errors
    /// When Redis is unreachable.
    pub async fn heads(&self, topics: &[TopicName]) -> Result<Vec<(u64, Option<u64>)>, BrokerError> {
        if topics.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for t in topics {
            pipe.get(self.key(t, "seq")).get(self.key(t, "epoch"));
        }
        let mut con = self.commands.clone();
        let raw: Vec<Option<u64>> = pipe.query_async(&mut con).await?;
        Ok(raw.chunks(2).map(|c| (c[0].unwrap_or(0) + 1, c[1])).collect())
    }

    /// Starts receiving `topic`'s messages (call on the node's first local subscriber).
    ///
    /// # Errors
    /// When Redis is unreachable.
    pub async fn subscribe(&self, topic: &TopicName) -> Result<(), BrokerError> {
        self.subscriber.clone().subscribe(self.channel(topic)).await?;
        Ok(())
    }

    /// Stops receiving `topic`'s messages (call after the node's last local subscriber left).
    ///
    /// # Errors
    /// When Redis is unreachable.
    pub async fn unsubscribe(&self, topic: &TopicName) -> Result<(), BrokerError> {
        self.subscriber.clone().unsubscribe(self.channel(topic)).await?;
        Ok(())
    }

    /// Stores a run-time delivery policy and announces it to every node, atomically.
    ///
    /// # Errors
    /// When Redis is unreachable.
    pub async fn set_policy(&self, change: &PolicyChange) -> Result<(), BrokerError> {
        let json = serde_json::to_string(change).expect("a policy serializes");
        let key = policies_key(&self.prefix);
        let mut pipe = redis::pipe();
        pipe.atomic();
        match &change.policy {
            Some(p) => pipe.hset(&key, change.topic.as_str(), serde_json::to_string(p).expect("a policy serializes")),
            None => pipe.hdel(&key, change.topic.as_str()),
        };
        let mut con = self.commands.clone();
        let _: () = pipe.ignore().publish(&key, json).ignore().query_async(&mut con).await?;
        Ok(())
    }

    /// Every delivery policy set at run time (entries that no longer parse are skipped, with a
    /// warning).
    ///
    /// # Errors
    /// When Redis is unreachable.
    pub async fn policies(&self) -> Result<Vec<PolicyChange>, BrokerError> {
        let mut con = self.commands.clone();
        let raw: Vec<(String, String)> = con.hgetall(policies_key(&self.prefix)).await?;
        Ok(raw
            .into_iter()
            .filter_map(|(topic, policy)| {
                let parsed = TopicName::new(&topic)
                    .ok()
                    .zip(serde_json::from_str(&policy).ok())
                    .map(|(topic, policy)| PolicyChange { topic, policy: Some(policy) });
                if parsed.is_none() {
                    tracing::warn!(%topic, "skipping a stored policy that does not parse");
                }
                parsed
            })
            .collect())
    }

    /// Writes this node's registry entry, expiring after `ttl`.
    ///
    /// # Errors
    /// When Redis is unreachable.
    pub async fn heartbeat(&self, node: &NodeInfo, ttl: Duration) -> Result<(), BrokerError> {
        let json = serde_json::to_string(node).expect("NodeInfo serializes");
        let mut con = self.commands.clone();
        let key = format!("{}:node:{}", self.prefix, node.node_id);
        let _: () = con.set_ex(key, json, ttl.as_secs().max(1)).await?;
        Ok(())
    }

    /// Removes this node's registry entry (clean shutdown).
    ///
    /// # Errors
    /// When Redis is unreachable.
    pub async fn deregister(&self, node_id: &str) -> Result<(), BrokerError> {
        let mut con = self.commands.clone();
        let _: () = con.del(format!("{}:node:{node_id}", self.prefix)).await?;
        Ok(())
    }

    /// The live nodes (entries whose heartbeat has not expired), by id.
    ///
    /// # Errors
    /// When Redis is unreachable.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, BrokerError> {
        let mut con = self.commands.clone();
        let pattern = format!("{}:node:*", self.prefix);
        let mut keys: Vec<String> = Vec::new();
        {
            let mut iter: redis::AsyncIter<String> = con.scan_match(&pattern).await?;
            while let Some(k) = futures_util::StreamExt::next(&mut iter).await {
                keys.push(k?);
            }
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> = con.mget(&keys).await?;
        let mut nodes: Vec<NodeInfo> =
            values.into_iter().flatten().filter_map(|v| serde_json::from_str(&v).ok()).collect();
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(nodes)
    }

    /// Whether Redis answers right now.
    pub async fn ping(&self) -> bool {
        let mut con = self.commands.clone();
        redis::cmd("PING").query_async::<String>(&mut con).await.is_ok()
    }
}

fn policies_key(prefix: &str) -> String {
    format!("{prefix}:policies")
}

fn parse_push(channel_prefix: &str, policies: &str, data: &[Value]) -> Result<Push, BrokerError> {
    let [Value::BulkString(channel), Value::BulkString(msg)] = data else {
        return Err(BrokerError::Malformed("push message is not [channel, message]"));
    };
    let channel = std::str::from_utf8(channel).map_err(|_| BrokerError::Malformed("channel is not UTF-8"))?;
    if channel == policies {
        #[derive(serde::Deserialize)]
        struct Wire {
            topic: String,
            policy: Option<crate::hub::DeliveryPolicy>,
        }
        let bad = || BrokerError::Malformed("a policy change does not parse");
        let w: Wire = serde_json::from_slice(msg).map_err(|_| bad())?;
        let topic = TopicName::new(&w.topic).map_err(|_| bad())?;
        return Ok(Push::Policy(PolicyChange { topic, policy: w.policy }));
    }
    let topic = channel.strip_prefix(channel_prefix).ok_or(BrokerError::Malformed("foreign channel"))?;
    let topic = TopicName::new(topic).map_err(|_| BrokerError::Malformed("channel names an invalid topic"))?;
    parse_message(topic, Bytes::copy_from_slice(msg)).map(Push::Message)
}

/// Parses `offset:epoch:` + body.
fn parse_message(topic: TopicName, msg: Bytes) -> Result<RemoteMessage, BrokerError> {
    let mut fields = [0u64; 2];
    let mut at = 0;
    for f in &mut fields {
        let len = msg[at..].iter().position(|&b| b == b':').ok_or(BrokerError::Malformed("missing ':'"))?;
        let text = std::str::from_utf8(&msg[at..at + len]).map_err(|_| BrokerError::Malformed("offset not ASCII"))?;
        *f = text.parse().map_err(|_| BrokerError::Malformed("offset or epoch is not a number"))?;
        at += len + 1;
    }
    if msg.len() < at + 9 {
        return Err(BrokerError::Malformed("body shorter than its header"));
    }
    let timestamp_us = u64::from_be_bytes(msg[at..at + 8].try_into().expect("8 bytes"));
    Ok(RemoteMessage {
        topic,
        offset: fields[0],
        epoch: fields[1],
        timestamp_us,
        flags: msg[at + 8],
        payload: msg.slice(at + 9..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_the_wire_format() {
        let mut m = b"42:7:".to_vec();
        m.extend_from_slice(&123u64.to_be_bytes());
        m.push(1);
        m.extend_from_slice(b"{\"a\":1}");
        let t = TopicName::new("a/b").unwrap();
        let r = parse_message(t.clone(), Bytes::from(m)).unwrap();
        assert_eq!((r.offset, r.epoch, r.timestamp_us, r.flags), (42, 7, 123, 1));
        assert_eq!(&r.payload[..], b"{\"a\":1}");
        for bad in [&b"x:1:"[..], b"1:2", b"1:2:short", b""] {
            assert!(parse_message(t.clone(), Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
    }
}
