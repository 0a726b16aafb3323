//! The raw TCP transport's framing (`docs/protocol.md` §10d): after the client's one-byte
//! version, every message is a datagram — a 4-byte big-endian length `L`, then `L` bytes: a
//! type byte and `L − 1` bytes of payload. Control datagrams carry the same JSON as WebSocket
//! text messages, data datagrams the same encoded records as WebSocket binary messages, so one
//! encoded record serves every transport.
//!
//! [`Decoder`] is sans-IO: it takes bytes as they arrive and yields whole datagrams, or the
//! first framing error (after which the stream is unusable: the caller closes it).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The protocol version a client sends as its first byte.
pub const VERSION: u8 = 0x01;

/// Bytes before a datagram's payload: the length (4) and the type (1).
pub const HEADER_LEN: usize = 5;

/// A datagram's type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Either way: the sender ends the connection; payload JSON `{"reason","message"}`.
    Bye = 0x02,
    /// Server → client: create a new session and connect elsewhere; payload JSON `{"urls":[…]}`.
    Reconnect = 0x03,
    /// Client → server, once, right after the version: the session token (UTF-8), optionally
    /// followed by a 0x00 byte and the client id (UTF-8) — see [`token_payload`].
    Token = 0x04,
    /// Either way: a JSON control message (the ops and replies of §4).
    Control = 0x05,
    /// Server → client: one or more data records (§5.1).
    Data = 0x06,
    /// Client → server: a publish frame (§5.2).
    Publish = 0x07,
    /// Either way: a keep-alive; the other side answers [`Kind::Pong`]. No payload.
    Ping = 0x08,
    /// The answer to a [`Kind::Ping`]. No payload.
    Pong = 0x09,
}

impl Kind {
    /// The type for a type byte, if it is one.
    pub const fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0x02 => Self::Bye,
            0x03 => Self::Reconnect,
            0x04 => Self::Token,
            0x05 => Self::Control,
            0x06 => Self::Data,
            0x07 => Self::Publish,
            0x08 => Self::Ping,
            0x09 => Self::Pong,
            _ => return None,
        })
    }
}

/// One datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Its type.
    pub kind: Kind,
    /// Its payload (a slice of the received bytes, not a copy).
    pub payload: Bytes,
}

/// Why a stream of datagrams is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A length of 0: a datagram has at least its type byte.
    #[error("a datagram of length 0 (it needs at least its type byte)")]
    Empty,
    /// A length over the limit (checked before anything of it is buffered).
    #[error("a datagram of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// The declared length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A type byte that is no [`Kind`].
    #[error("unknown datagram type 0x{0:02x}")]
    UnknownType(u8),
}

/// The header of a datagram of `kind` with `payload_len` bytes of payload.
///
/// # Panics
/// If `payload_len + 1` does not fit in 32 bits (callers bound payloads far below that).
pub fn header(kind: Kind, payload_len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(payload_len + 1).expect("a datagram payload under 4 GiB");
    let l = len.to_be_bytes();
    [l[0], l[1], l[2], l[3], kind as u8]
}

/// A whole datagram in one buffer (control messages, byes; data records are sent as a header
/// followed by the shared encoded records, without this copy).
pub fn encode(kind: Kind, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER_LEN + payload.len());
    b.put_slice(&header(kind, payload.len()));
    b.put_slice(payload);
    b.freeze()
}

/// Splits a byte stream into datagrams of at most `max` bytes (type byte included).
#[derive(Debug)]
pub struct Decoder {
    max: usize,
}

impl Decoder {
    /// A decoder refusing datagrams over `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { max }
    }

    /// The next whole datagram at the front of `buf` (removed from it), `Ok(None)` when more
    /// bytes are needed, or the framing error. A declared length over the limit fails at once,
    /// before its bytes arrive.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Datagram>, FrameError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.max {
            return Err(FrameError::TooLarge { len: len as u64, max: self.max });
        }
        if buf.len() > 4 {
            // Refuse an unknown type as soon as its byte is in, not after its whole length.
            let t = buf[4];
            if Kind::from_byte(t).is_none() {
                return Err(FrameError::UnknownType(t));
            }
        }
        if buf.len() < 4 + len {
            buf.reserve(4 + len - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        let mut d = buf.split_to(len).freeze();
        let kind = Kind::from_byte(d[0]).ok_or(FrameError::UnknownType(d[0]))?;
        d.advance(1);
        Ok(Some(Datagram { kind, payload: d }))
    }
}

/// The payload of a Token datagram: `token`, and when given a 0x00 byte and `client_id` (the
/// `client_id` of a WebSocket `connect`). A token never holds a 0x00 byte (a JWT is ASCII
/// letters, digits, `-`, `_` and `.`), so the first one ends it.
pub fn token_payload(token: &str, client_id: Option<&str>) -> Vec<u8> {
    let mut p = token.as_bytes().to_vec();
    if let Some(id) = client_id {
        p.push(0);
        p.extend_from_slice(id.as_bytes());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(dec: &Decoder, buf: &mut BytesMut) -> Result<Vec<Datagram>, FrameError> {
        let mut out = Vec::new();
        while let Some(d) = dec.decode(buf)? {
            out.push(d);
        }
        Ok(out)
    }

    #[test]
    fn datagrams_round_trip_whatever_the_split_of_the_stream() {
        let sent = [
            (Kind::Token, b"eyJ.token".to_vec()),
            (Kind::Control, br#"{"op":"subscribe","id":1,"topic":"a"}"#.to_vec()),
            (Kind::Ping, Vec::new()),
            (Kind::Publish, vec![7u8; 300]),
            (Kind::Bye, br#"{"reason":"normal"}"#.to_vec()),
        ];
        let stream: Vec<u8> = sent.iter().flat_map(|(k, p)| encode(*k, p).to_vec()).collect();
        let dec = Decoder::new(1024);
        // Every way of cutting the stream in two, and one byte at a time.
        for cut in 0..=stream.len() {
            let mut buf = BytesMut::from(&stream[..cut]);
            let mut got = all(&dec, &mut buf).unwrap();
            buf.extend_from_slice(&stream[cut..]);
            got.extend(all(&dec, &mut buf).unwrap());
            let got: Vec<_> = got.into_iter().map(|d| (d.kind, d.payload.to_vec())).collect();
            assert_eq!(got, sent, "cut at {cut}");
            assert!(buf.is_empty());
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in &stream {
            buf.extend_from_slice(&[*b]);
            got.extend(all(&dec, &mut buf).unwrap());
        }
        assert_eq!(got.len(), sent.len());
    }

    #[test]
    fn framing_errors_are_found_as_early_as_possible() {
        let dec = Decoder::new(1024);
        // A 4 GiB declared length fails on its four bytes alone.
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert_eq!(dec.decode(&mut buf), Err(FrameError::TooLarge { len: u64::from(u32::MAX), max: 1024 }));
        let mut buf = BytesMut::from(&[0, 0, 4, 1][..]);
        assert_eq!(dec.decode(&mut buf), Err(FrameError::TooLarge { len: 1025, max: 1024 }));
        assert_eq!(dec.decode(&mut BytesMut::from(&[0, 0, 0, 0][..])), Err(FrameError::Empty));
        // An unknown type fails on its byte, before the rest of its length arrives.
        assert_eq!(dec.decode(&mut BytesMut::from(&[0, 0, 0, 100, 0x7f][..])), Err(FrameError::UnknownType(0x7f)));
        // Garbage (an HTTP request, say) reads as an absurd length or an unknown type.
        assert!(dec.decode(&mut BytesMut::from(&b"GET / HTTP/1.1\r\n"[..])).is_err());
        // Truncated: not an error, just not yet a datagram.
        let whole = encode(Kind::Control, b"{}");
        let mut buf = BytesMut::from(&whole[..whole.len() - 1]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(dec.decode(&mut BytesMut::from(&[0, 0][..])), Ok(None));
    }

    #[test]
    fn random_bytes_never_panic_and_never_yield_more_than_they_hold() {
        // A small deterministic generator: the same inputs every run.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let dec = Decoder::new(64);
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8 % 12).collect();
            let mut buf = BytesMut::from(&bytes[..]);
            let mut taken = 0;
            while let Ok(Some(d)) = dec.decode(&mut buf) {
                taken += HEADER_LEN + d.payload.len();
            }
            assert!(taken <= len);
        }
    }

    #[test]
    fn header_and_type_bytes() {
        assert_eq!(header(Kind::Data, 10), [0, 0, 0, 11, 0x06]);
        for b in 0..=u8::MAX {
            if let Some(k) = Kind::from_byte(b) {
                assert_eq!(k as u8, b);
            }
        }
        assert_eq!(Kind::from_byte(VERSION), None, "the version byte is not a datagram type");
    }

    #[test]
    fn a_token_payload_carries_the_client_id_after_a_zero_byte() {
        assert_eq!(token_payload("t.k", None), b"t.k");
        assert_eq!(token_payload("t.k", Some("tab-7")), b"t.k\0tab-7");
    }
}
