//! Binary frame formats of `fanhub.v1` (all integers big-endian).
//!
//! * **Message record** (server → client). Encoded exactly once per published message and shared
//!   by every subscriber as one `Bytes`; a binary WebSocket message carries one or more records
//!   back to back, so a subscriber that is behind receives what is queued in one frame.
//!
//!   ```text
//!   0  u8   kind = 0x01
//!   1  u8   flags (bit 0: payload is JSON text; bit 1: metadata precedes the payload)
//!   2  u16  topic length T
//!   4  u32  payload length L (with the metadata block when bit 1 is set)
//!   8  u64  offset
//!   16 u64  epoch
//!   24 u64  publish time, µs since the UNIX epoch (server clock)
//!   32 T    topic, UTF-8
//!   32+T L  payload
//!   ```
//!
//!   With flag bit 1 ([`FLAG_META`]) the `L` bytes are a metadata block, then the payload:
//!   `u16 M`, `M` bytes of a JSON object (UTF-8: where a message came from — an upstream
//!   source's name, position, key and headers), the payload. The hub sets it only on messages
//!   it publishes itself; a client's publish never carries it.
//!
//! * **Publish** (client → server), one per binary WebSocket message:
//!
//!   ```text
//!   0  u8   kind = 0x02
//!   1  u8   flags (bit 0: payload is JSON text)
//!   2  u16  topic length T
//!   4  u32  request id (0: no acknowledgement wanted)
//!   8  T    topic, UTF-8
//!   8+T     payload: the rest of the message
//!   ```

use bytes::{BufMut, Bytes, BytesMut};

/// Record kind byte of a message record.
pub const KIND_MESSAGE: u8 = 0x01;
/// Kind byte of a client publish frame.
pub const KIND_PUBLISH: u8 = 0x02;
/// Flag bit: the payload is JSON text (it was published with the JSON `publish` op).
pub const FLAG_JSON: u8 = 0x01;
/// Flag bit: a metadata block (`u16` length, JSON object) precedes the payload.
pub const FLAG_META: u8 = 0x02;
/// Longest metadata block's JSON, in bytes.
pub const MAX_META_LEN: usize = u16::MAX as usize;
/// Size of the fixed message-record header.
pub const RECORD_HEADER_LEN: usize = 32;
/// Size of the fixed publish-frame header.
pub const PUBLISH_HEADER_LEN: usize = 8;

/// A malformed binary frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame is shorter than its header or than the lengths it declares.
    #[error("binary frame truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes the header says are needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The first byte is not a known kind.
    #[error("unknown binary frame kind 0x{0:02x} (expected 0x02 publish)")]
    UnknownKind(u8),
    /// The topic is not valid UTF-8.
    #[error("topic is not valid UTF-8")]
    TopicNotUtf8,
    /// The payload does not fit the 32-bit length field.
    #[error("payload of {0} bytes does not fit a record")]
    TooLarge(usize),
    /// The metadata block is longer than the payload field or not UTF-8.
    #[error("record metadata is malformed")]
    BadMeta,
}

/// The fields of a message record, borrowed from a received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Flags byte (see [`FLAG_JSON`]).
    pub flags: u8,
    /// The topic's offset of this message.
    pub offset: u64,
    /// The topic's epoch when the message was published.
    pub epoch: u64,
    /// Publish time, µs since the UNIX epoch.
    pub timestamp_us: u64,
    /// Topic name.
    pub topic: &'a str,
    /// The metadata JSON object, when the record has one ([`FLAG_META`]).
    pub meta: Option<&'a str>,
    /// Payload bytes (after the metadata block).
    pub payload: &'a [u8],
}

/// Header fields of a message record, for [`encode_record`].
#[derive(Debug, Clone, Copy)]
pub struct RecordHeader<'a> {
    /// Flags byte.
    pub flags: u8,
    /// Offset.
    pub offset: u64,
    /// Epoch.
    pub epoch: u64,
    /// Publish time, µs since the UNIX epoch.
    pub timestamp_us: u64,
    /// Topic name (at most `u16::MAX` bytes; topic validation keeps it far shorter).
    pub topic: &'a str,
}

/// Appends a record header for a payload of `payload_len` bytes, then the topic, to `buf`; the
/// caller appends the payload. Lets a publisher build the record in one buffer.
///
/// # Errors
/// [`FrameError::TooLarge`] when the payload or topic does not fit its length field.
pub fn put_record_header(buf: &mut BytesMut, h: &RecordHeader<'_>, payload_len: usize) -> Result<(), FrameError> {
    let len = u32::try_from(payload_len).map_err(|_| FrameError::TooLarge(payload_len))?;
    let topic_len = u16::try_from(h.topic.len()).map_err(|_| FrameError::TooLarge(h.topic.len()))?;
    buf.put_u8(KIND_MESSAGE);
    buf.put_u8(h.flags);
    buf.put_u16(topic_len);
    buf.put_u32(len);
    buf.put_u64(h.offset);
    buf.put_u64(h.epoch);
    buf.put_u64(h.timestamp_us);
    buf.put_slice(h.topic.as_bytes());
    Ok(())
}

/// Encodes one message record: one allocation, one copy of the payload, for all subscribers.
///
/// # Errors
/// [`FrameError::TooLarge`] when the payload exceeds `u32::MAX` bytes.
pub fn encode_record(h: &RecordHeader<'_>, payload: &[u8]) -> Result<Bytes, FrameError> {
    let mut buf = BytesMut::with_capacity(RECORD_HEADER_LEN + h.topic.len() + payload.len());
    put_record_header(&mut buf, h, payload.len())?;
    buf.put_slice(payload);
    Ok(buf.freeze())
}

/// Writes `offset` and `epoch` into an encoded record's header (a publisher encodes the record
/// before it holds the topic's lock, then fills in its position under the lock).
///
/// # Panics
/// When `record` is shorter than a record header (it was not made by [`put_record_header`]).
pub fn set_record_position(record: &mut [u8], offset: u64, epoch: u64) {
    record[8..16].copy_from_slice(&offset.to_be_bytes());
    record[16..24].copy_from_slice(&epoch.to_be_bytes());
}

/// The epoch in an encoded record's header; `None` when it is too short to be one.
pub fn record_epoch(record: &[u8]) -> Option<u64> {
    record.get(16..24).map(|b| be_u64(b, 0))
}

/// The publish time (µs since the UNIX epoch) in an encoded record's header; `None` when it is
/// too short to be one.
pub fn record_timestamp_us(record: &[u8]) -> Option<u64> {
    record.get(24..32).map(|b| be_u64(b, 0))
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Iterates over the records of one binary data message.
pub fn decode_records(mut buf: &[u8]) -> impl Iterator<Item = Result<RecordRef<'_>, FrameError>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let r = decode_one_record(buf);
        match r {
            Ok((rec, used)) => {
                buf = &buf[used..];
                Some(Ok(rec))
            }
            Err(e) => {
                buf = &[];
                Some(Err(e))
            }
        }
    })
}

fn decode_one_record(b: &[u8]) -> Result<(RecordRef<'_>, usize), FrameError> {
    if b.len() < RECORD_HEADER_LEN {
        return Err(FrameError::Truncated { need: RECORD_HEADER_LEN, have: b.len() });
    }
    if b[0] != KIND_MESSAGE {
        return Err(FrameError::UnknownKind(b[0]));
    }
    let topic_len = be_u16(b, 2) as usize;
    let payload_len = be_u32(b, 4) as usize;
    let need = RECORD_HEADER_LEN + topic_len + payload_len;
    if b.len() < need {
        return Err(FrameError::Truncated { need, have: b.len() });
    }
    let topic = std::str::from_utf8(&b[RECORD_HEADER_LEN..RECORD_HEADER_LEN + topic_len])
        .map_err(|_| FrameError::TopicNotUtf8)?;
    let (meta, payload) = split_meta(b[1], &b[RECORD_HEADER_LEN + topic_len..need])?;
    Ok((
        RecordRef {
            flags: b[1],
            offset: be_u64(b, 8),
            epoch: be_u64(b, 16),
            timestamp_us: be_u64(b, 24),
            topic,
            meta,
            payload,
        },
        need,
    ))
}

/// Splits a record's payload field into its metadata (with [`FLAG_META`] in `flags`) and the
/// payload.
///
/// # Errors
/// [`FrameError::BadMeta`] when the block is cut short or not UTF-8.
pub fn split_meta(flags: u8, field: &[u8]) -> Result<(Option<&str>, &[u8]), FrameError> {
    if flags & FLAG_META == 0 {
        return Ok((None, field));
    }
    if field.len() < 2 {
        return Err(FrameError::BadMeta);
    }
    let len = be_u16(field, 0) as usize;
    let rest = &field[2..];
    if rest.len() < len {
        return Err(FrameError::BadMeta);
    }
    let meta = std::str::from_utf8(&rest[..len]).map_err(|_| FrameError::BadMeta)?;
    Ok((Some(meta), &rest[len..]))
}

/// Builds the payload field of a record with metadata ([`FLAG_META`]): `u16` length, the JSON
/// object `meta`, then `payload`, in `buf` (cleared first).
///
/// # Errors
/// [`FrameError::TooLarge`] when `meta` is longer than [`MAX_META_LEN`].
pub fn put_meta_payload(buf: &mut BytesMut, meta: &[u8], payload: &[u8]) -> Result<(), FrameError> {
    let len = u16::try_from(meta.len()).map_err(|_| FrameError::TooLarge(meta.len()))?;
    buf.clear();
    buf.reserve(2 + meta.len() + payload.len());
    buf.put_u16(len);
    buf.put_slice(meta);
    buf.put_slice(payload);
    Ok(())
}

/// A decoded client publish frame. `payload` shares the received buffer (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishFrame {
    /// Flags byte.
    pub flags: u8,
    /// Request id; 0 means no acknowledgement is wanted.
    pub request_id: u32,
    /// Topic name as sent (validated later by the hub).
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
}

/// Decodes a client publish frame.
///
/// # Errors
/// [`FrameError`] when the frame is truncated, of an unknown kind, or its topic is not UTF-8.
pub fn decode_publish(frame: &Bytes) -> Result<PublishFrame, FrameError> {
    let b = frame.as_ref();
    if b.is_empty() {
        return Err(FrameError::Truncated { need: PUBLISH_HEADER_LEN, have: 0 });
    }
    if b[0] != KIND_PUBLISH {
        return Err(FrameError::UnknownKind(b[0]));
    }
    if b.len() < PUBLISH_HEADER_LEN {
        return Err(FrameError::Truncated { need: PUBLISH_HEADER_LEN, have: b.len() });
    }
    let topic_len = be_u16(b, 2) as usize;
    let need = PUBLISH_HEADER_LEN + topic_len;
    if b.len() < need {
        return Err(FrameError::Truncated { need, have: b.len() });
    }
    let topic = std::str::from_utf8(&b[PUBLISH_HEADER_LEN..need]).map_err(|_| FrameError::TopicNotUtf8)?.to_owned();
    Ok(PublishFrame { flags: b[1], request_id: be_u32(b, 4), topic, payload: frame.slice(need..) })
}

/// Encodes a client publish frame (used by clients, tests and the load generator).
pub fn encode_publish(topic: &str, request_id: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(PUBLISH_HEADER_LEN + topic.len() + payload.len());
    buf.push(KIND_PUBLISH);
    buf.push(flags);
    buf.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    buf.extend_from_slice(&request_id.to_be_bytes());
    buf.extend_from_slice(topic.as_bytes());
    buf.extend_from_slice(payload);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(offset: u64) -> RecordHeader<'static> {
        RecordHeader { flags: FLAG_JSON, offset, epoch: 7, timestamp_us: 99, topic: "a/b" }
    }

    #[test]
    fn records_round_trip_back_to_back() {
        let mut batch = Vec::new();
        batch.extend_from_slice(&encode_record(&header(1), b"one").unwrap());
        batch.extend_from_slice(&encode_record(&header(2), b"").unwrap());
        let recs: Vec<_> = decode_records(&batch).collect::<Result<_, _>>().unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].offset, 1);
        assert_eq!(recs[0].payload, b"one");
        assert_eq!(recs[0].topic, "a/b");
        assert_eq!(recs[0].epoch, 7);
        assert_eq!(recs[0].timestamp_us, 99);
        assert_eq!(recs[1].offset, 2);
        assert!(recs[1].payload.is_empty());
    }

    #[test]
    fn a_record_position_is_written_into_its_header() {
        let mut rec = BytesMut::new();
        put_record_header(&mut rec, &header(0), 3).unwrap();
        rec.put_slice(b"abc");
        set_record_position(&mut rec, 41, 9);
        let r = decode_records(&rec).next().unwrap().unwrap();
        assert_eq!((r.offset, r.epoch, r.payload), (41, 9, &b"abc"[..]));
        assert_eq!((record_epoch(&rec), record_timestamp_us(&rec)), (Some(9), Some(99)));
        assert_eq!(record_epoch(&rec[..20]), None);
    }

    #[test]
    fn truncated_record_is_an_error_not_a_panic() {
        let rec = encode_record(&header(1), b"payload").unwrap();
        for cut in 0..rec.len() {
            let r: Result<Vec<_>, _> = decode_records(&rec[..cut]).collect();
            assert!(cut == 0 || r.is_err(), "cut at {cut} decoded");
        }
    }

    #[test]
    fn metadata_precedes_the_payload_and_is_split_off_when_flagged() {
        let mut field = BytesMut::new();
        put_meta_payload(&mut field, br#"{"source":"s"}"#, b"body").unwrap();
        let h = RecordHeader { flags: FLAG_META | FLAG_JSON, ..header(3) };
        let rec = encode_record(&h, &field).unwrap();
        let r = decode_records(&rec).next().unwrap().unwrap();
        assert_eq!((r.meta, r.payload), (Some(r#"{"source":"s"}"#), &b"body"[..]));
        // Without the flag the same bytes are all payload.
        let plain = encode_record(&header(4), &field).unwrap();
        let r = decode_records(&plain).next().unwrap().unwrap();
        assert_eq!((r.meta, r.payload.len()), (None, field.len()));
        // A block longer than the field, or not UTF-8, is an error.
        assert_eq!(split_meta(FLAG_META, b"\x00\x05abc"), Err(FrameError::BadMeta));
        assert_eq!(split_meta(FLAG_META, b"\x00"), Err(FrameError::BadMeta));
        assert_eq!(split_meta(FLAG_META, b"\x00\x01\xff"), Err(FrameError::BadMeta));
        assert_eq!(split_meta(FLAG_META, b"\x00\x00x"), Ok((Some(""), &b"x"[..])));
        assert!(put_meta_payload(&mut field, &vec![b' '; MAX_META_LEN + 1], b"").is_err());
    }

    #[test]
    fn publish_round_trip_shares_the_payload() {
        let frame = Bytes::from(encode_publish("x/y", 42, 0, b"data"));
        let p = decode_publish(&frame).unwrap();
        assert_eq!(p.topic, "x/y");
        assert_eq!(p.request_id, 42);
        assert_eq!(&p.payload[..], b"data");
        assert_eq!(p.payload.as_ptr(), frame[frame.len() - 4..].as_ptr());
    }

    #[test]
    fn publish_garbage_is_rejected() {
        assert!(matches!(decode_publish(&Bytes::from_static(b"")), Err(FrameError::Truncated { .. })));
        assert_eq!(decode_publish(&Bytes::from_static(b"\xffabc")), Err(FrameError::UnknownKind(0xff)));
        assert!(matches!(
            decode_publish(&Bytes::from_static(b"\x02\x00\x00\x10\x00\x00\x00\x00ab")),
            Err(FrameError::Truncated { .. })
        ));
        assert_eq!(
            decode_publish(&Bytes::from_static(b"\x02\x00\x00\x01\x00\x00\x00\x00\xff")),
            Err(FrameError::TopicNotUtf8)
        );
    }
}
