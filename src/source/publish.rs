//! A lane's publisher: takes the mapping's records in order and publishes each into the hub —
//! topic from the mapping's templates, payload (or one JSON field of it), metadata with the
//! upstream position — waiting while the hub has no room, retrying while it is unavailable,
//! and sending what cannot be published to the dead letters (the upstream's own, retried until
//! it is written, and the hub topic). Every record is handed back to its consumer to commit
//! only after that.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use serde_json::{Map, Value};

use super::lane::{Lane, UpstreamRecord};
use super::SourceRuntime;
use crate::broker::SourcePosition;
use crate::hub::{PublishError, TopicName};
use crate::protocol::backoff::Backoff;
use crate::protocol::frame::{put_meta_payload, FLAG_JSON, FLAG_META};
use crate::transport::HubContext;

/// Why a record went to the dead letter (the metadata's `reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Poison {
    /// `topic`, `payload_field`, `too_large` or `refused`.
    pub reason: &'static str,
    /// Details.
    pub error: String,
}

/// What a record becomes in the hub.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub topic: TopicName,
    pub body: BytesMut,
    pub flags: u8,
}

/// Builds the hub message of `record` for `lane`: the topic, and the payload field with the
/// metadata block (`{"source","upstream","partition","position","key","headers"}`).
pub(crate) fn prepare(
    source: &str,
    lane: &Lane,
    record: &UpstreamRecord,
    max_bytes: usize,
    buf: &mut BytesMut,
) -> Result<Prepared, Poison> {
    let values = lane.upstream.matches(&record.upstream).unwrap_or_default();
    let mut topic = lane.topic.fill(|n| values.iter().find(|(k, _)| *k == n).map_or("", |(_, v)| *v));
    if lane.config.key_suffix {
        if let Some(k) = record.key.as_deref().filter(|k| !k.is_empty()) {
            topic.push('/');
            topic.push_str(k);
        }
    }
    let topic = TopicName::new(&topic).map_err(|e| Poison { reason: "topic", error: format!("{topic:?}: {e}") })?;
    let (payload, json) = match &lane.config.payload_field {
        None => {
            let json = serde_json::from_slice::<serde::de::IgnoredAny>(&record.payload).is_ok();
            (std::borrow::Cow::Borrowed(&record.payload[..]), json)
        }
        Some(pointer) => {
            let v: Value = serde_json::from_slice(&record.payload)
                .map_err(|e| Poison { reason: "payload_field", error: format!("the record is not JSON: {e}") })?;
            let field = v
                .pointer(pointer)
                .ok_or_else(|| Poison { reason: "payload_field", error: format!("the record has no {pointer}") })?;
            (std::borrow::Cow::Owned(serde_json::to_vec(field).expect("a JSON value serializes")), true)
        }
    };
    if payload.len() > max_bytes {
        return Err(Poison {
            reason: "too_large",
            error: format!("{} bytes; the limit is {max_bytes}", payload.len()),
        });
    }
    let meta = meta(source, record, lane.config.headers, None);
    put_meta_payload(buf, &meta, &payload)
        .map_err(|e| Poison { reason: "too_large", error: format!("metadata: {e}") })?;
    Ok(Prepared { topic, body: std::mem::take(buf), flags: FLAG_META | if json { FLAG_JSON } else { 0 } })
}

/// The metadata JSON of `record`; `poison` adds the dead letter's `reason` and `error`.
pub(crate) fn meta(source: &str, record: &UpstreamRecord, headers: bool, poison: Option<&Poison>) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("source".into(), source.into());
    m.insert("upstream".into(), record.upstream.as_ref().into());
    m.insert("partition".into(), record.partition.as_ref().into());
    m.insert("position".into(), record.position_text.clone().into());
    if let Some(k) = &record.key {
        m.insert("key".into(), k.clone().into());
    }
    if headers && !record.headers.is_empty() {
        let h: Map<String, Value> = record.headers.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
        m.insert("headers".into(), h.into());
    }
    if let Some(p) = poison {
        m.insert("reason".into(), p.reason.into());
        m.insert("error".into(), p.error.clone().into());
    }
    serde_json::to_vec(&m).expect("a JSON map serializes")
}

/// Runs `lane`'s publisher until `stop`: the record in hand is finished first.
pub(crate) async fn run(ctx: Arc<HubContext>, source: Arc<SourceRuntime>, lane: Arc<Lane>) {
    let mut stop = source.stop.clone();
    let max_bytes = match source.config.max_record_bytes {
        0 => ctx.config.limits.max_message_size,
        n => n as usize,
    };
    let mut buf = BytesMut::new();
    loop {
        let record = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            r = lane.take() => r,
        };
        if lane.is_duplicate(&record) {
            lane.stats.duplicates.fetch_add(1, Relaxed);
            lane.done(record, false);
            continue;
        }
        let outcome = match prepare(&source.config.name, &lane, &record, max_bytes, &mut buf) {
            Err(p) => Err(p),
            Ok(msg) => {
                // Cluster mode: the ledger in Redis refuses a position another node published.
                // Per mapping: mappings may share a partition (an outbox table) and publish
                // its positions at their own pace.
                let position = ctx.broker.is_clustered().then(|| SourcePosition {
                    ledger: source.config.name.clone(),
                    partition: format!("{}/{}", lane.index, record.partition),
                    major: record.position.major,
                    minor: record.position.minor,
                });
                publish(&ctx, &source, &msg, position).await
            }
        };
        match outcome {
            Ok(true) => {
                lane.stats.published.fetch_add(1, Relaxed);
                lane.done(record, true);
            }
            Ok(false) => {
                lane.stats.duplicates.fetch_add(1, Relaxed);
                lane.done(record, true);
            }
            // Stopping with the record in hand: it stays uncommitted and comes again after a
            // restart (handing it back would commit it unpublished).
            Err(poison) if poison.reason == "stopped" => return,
            Err(poison) => {
                // The upstream's dead letter first: the record is committed only once it is
                // there, and a stop before that leaves it uncommitted (it comes again after a
                // restart, and only then goes to the hub's dead letter, once).
                if !upstream_dead_letter(&source, &lane, &record, &poison).await {
                    return;
                }
                dead_letter(&ctx, &source, &lane, &record, &poison).await;
                // Dealt with, in order like a published record: the ledger moves past it, so
                // the upstream delivering it again does not make a second dead letter.
                lane.done(record, true);
            }
        }
    }
}

/// Publishes one prepared message: waits while a `reliable` subscriber under
/// `apply_backpressure` is full (the mapping stalls, its lane fills, its upstream pauses) and
/// retries with backoff while the hub is unavailable (cluster mode without Redis). Errors that
/// retrying cannot mend make the record a dead letter.
///
/// Answers whether it was published (false: the cluster's ledger already had its position).
async fn publish(
    ctx: &HubContext,
    source: &SourceRuntime,
    msg: &Prepared,
    position: Option<SourcePosition>,
) -> Result<bool, Poison> {
    let backoff = source.backoff();
    let mut attempt = 0;
    loop {
        match crate::transport::publish::publish_from(ctx, &msg.topic, &msg.body, msg.flags, position.clone()).await {
            Ok(report) => return Ok(report.offset != 0),
            Err(PublishError::BackpressureTimeout(_)) => {
                // The subscriber is still full: keep the record and wait again (unless stopping).
                if source.stopping() {
                    return Err(Poison { reason: "stopped", error: String::new() });
                }
            }
            Err(e @ PublishError::Request(crate::hub::RequestError::Unavailable(_))) => {
                if attempt == 0 {
                    tracing::warn!(source = %source.config.name, topic = %msg.topic, error = %e, "the hub cannot take source records; retrying");
                }
                if source.sleep_or_stop(backoff.delay(attempt, rand::random::<f64>())).await {
                    // Stopping: the record stays uncommitted and comes again after a restart.
                    return Err(Poison { reason: "stopped", error: String::new() });
                }
                attempt += 1;
            }
            Err(e) => return Err(Poison { reason: "refused", error: e.to_string() }),
        }
    }
}

/// Sends `record` to the source's dead-letter topic (its original payload, the reason in the
/// metadata), or drops it when there is none; counted either way.
async fn dead_letter(ctx: &HubContext, source: &SourceRuntime, lane: &Lane, record: &UpstreamRecord, poison: &Poison) {
    lane.stats.dead_letters.fetch_add(1, Relaxed);
    tracing::warn!(source = %source.config.name, upstream = %record.upstream, position = %record.position_text,
        reason = poison.reason, error = %poison.error, "source record sent to the dead letter");
    let Some(topic) = source.dead_letter.as_ref() else { return };
    let meta = meta(&source.config.name, record, lane.config.headers, Some(poison));
    let mut body = BytesMut::new();
    let max = ctx.config.limits.max_message_size.saturating_sub(meta.len() + 2);
    let payload = &record.payload[..record.payload.len().min(max)];
    if put_meta_payload(&mut body, &meta, payload).is_err() {
        return;
    }
    if let Err(e) = crate::transport::publish::publish(ctx, topic, &body, FLAG_META).await {
        tracing::warn!(source = %source.config.name, topic = %topic, error = %e, "the dead letter was refused too; record dropped");
    }
}

/// Writes `record` to the source's upstream dead letter, when it has one, retrying with the
/// source's backoff until it is written: true then (or when there is none), false when the
/// source stops first (the record must then stay uncommitted).
async fn upstream_dead_letter(source: &SourceRuntime, lane: &Lane, record: &UpstreamRecord, poison: &Poison) -> bool {
    let Some(writer) = source.upstream_dead_letter.as_ref() else { return true };
    let backoff = source.backoff();
    let mut stop = source.stop.clone();
    let mut attempt = 0u32;
    loop {
        // A write cut short by the stop may still land: the record then comes again after a
        // restart and is written twice (at least once, as everything a source does).
        let written = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return false,
            r = writer.write(record, poison) => r,
        };
        match written {
            Ok(()) => {
                lane.stats.upstream_dead_letters.fetch_add(1, Relaxed);
                if attempt > 0 {
                    tracing::info!(source = %source.config.name, name = writer.name(), attempts = attempt + 1,
                        "upstream dead letter written");
                }
                return true;
            }
            Err(e) => {
                lane.stats.upstream_dead_letter_failures.fetch_add(1, Relaxed);
                // Every failure, not only the first: the lane is stalled behind this record.
                tracing::warn!(source = %source.config.name, name = writer.name(), upstream = %record.upstream,
                    position = %record.position_text, attempt, error = %e,
                    "cannot write the upstream dead letter; the record stays uncommitted, retrying");
                if source.sleep_or_stop(backoff.delay(attempt, rand::random::<f64>())).await {
                    return false;
                }
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// Full-jitter backoff between `initial` and `max`.
pub(crate) fn backoff(initial_ms: u64, max_ms: u64) -> Backoff {
    Backoff { initial: Duration::from_millis(initial_ms), max: Duration::from_millis(max_ms), multiplier: 2.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackpressureMode, MappingConfig};
    use crate::protocol::frame::split_meta;
    use bytes::Bytes;

    fn lane(topic: &str, field: Option<&str>, key_suffix: bool) -> Lane {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        Lane::new(
            0,
            MappingConfig {
                upstream: "telemetry.{device}".into(),
                topic: topic.into(),
                payload_field: field.map(Into::into),
                key_suffix,
                headers: true,
                max_buffered_messages: 10,
                backpressure_mode: BackpressureMode::ApplyBackpressure,
                exclusive: None,
            },
            tx,
        )
    }

    fn record(upstream: &str, payload: &'static [u8], key: Option<&str>) -> UpstreamRecord {
        UpstreamRecord {
            upstream: upstream.into(),
            partition: upstream.into(),
            position: super::super::lane::Position { major: 1_700_000_000_000, minor: 2 },
            position_text: "1700000000000-2".into(),
            key: key.map(Into::into),
            headers: vec![("trace".into(), "abc".into())],
            payload: Bytes::from_static(payload),
            token: None,
        }
    }

    #[test]
    fn a_record_becomes_a_message_on_the_filled_topic_with_its_position_in_the_metadata() {
        let mut buf = BytesMut::new();
        let l = lane("telemetry/{device}", None, true);
        let p = prepare("fleet", &l, &record("telemetry.car-1", br#"{"v":1}"#, Some("k9")), 1024, &mut buf).unwrap();
        assert_eq!(p.topic.as_str(), "telemetry/car-1/k9");
        assert_eq!(p.flags, FLAG_META | FLAG_JSON);
        let (meta, payload) = split_meta(p.flags, &p.body).unwrap();
        assert_eq!(payload, br#"{"v":1}"#);
        let meta: Value = serde_json::from_str(meta.unwrap()).unwrap();
        assert_eq!(
            meta,
            serde_json::json!({"source":"fleet","upstream":"telemetry.car-1","partition":"telemetry.car-1",
                "position":"1700000000000-2","key":"k9","headers":{"trace":"abc"}})
        );
        let p = prepare("fleet", &l, &record("telemetry.car-1", b"\x00\x01", None), 1024, &mut buf).unwrap();
        assert_eq!((p.topic.as_str(), p.flags), ("telemetry/car-1", FLAG_META), "binary, no key");
    }

    #[test]
    fn a_json_field_is_extracted_and_records_that_cannot_be_published_are_poison() {
        let mut buf = BytesMut::new();
        let l = lane("t/{device}", Some("/data"), false);
        let p = prepare("s", &l, &record("telemetry.a", br#"{"data":{"x":[1,2]},"other":0}"#, None), 1024, &mut buf)
            .unwrap();
        assert_eq!(split_meta(p.flags, &p.body).unwrap().1, br#"{"x":[1,2]}"#);
        let e = prepare("s", &l, &record("telemetry.a", b"not json", None), 1024, &mut buf).unwrap_err();
        assert_eq!(e.reason, "payload_field");
        let e = prepare("s", &l, &record("telemetry.a", br#"{"nope":1}"#, None), 1024, &mut buf).unwrap_err();
        assert_eq!(e.reason, "payload_field");
        let l = lane("t/{device}", None, false);
        let e = prepare("s", &l, &record("telemetry.a", b"0123456789", None), 4, &mut buf).unwrap_err();
        assert_eq!(e.reason, "too_large");
        let l = lane("t/{device}", None, true);
        let e = prepare("s", &l, &record("telemetry.a", b"x", Some("bad key")), 64, &mut buf).unwrap_err();
        assert_eq!(e.reason, "topic");
    }
}
