//! `fanhub.v1` over WebRTC data channels: the channel labels and the chunk format.
//!
//! A record larger than the server's chunk size (`webrtc.chunk_size`, announced by
//! `GET /v1/rtc/config`) travels as several data-channel messages, each a chunk: a 10-byte
//! header, then its part of the record (all integers big-endian):
//!
//! ```text
//! 0  u8   magic = 0xCF (a record starts with its kind byte 0x01, never with this)
//! 1  u8   reserved, 0
//! 2  u16  chunk index, from 0
//! 4  u16  chunk count
//! 6  u32  frame id (per connection, wrapping)
//! 10      this chunk's bytes of the record
//! ```
//!
//! A receiver concatenates the chunks of a frame in index order. On the lossy channel a
//! frame whose chunks do not all arrive is dropped whole ([`Reassembler`] bounds how many
//! incomplete frames it keeps).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

/// Label of the reliable, ordered channel (control messages and `reliable` topics' records).
pub const CONTROL_LABEL: &str = "fanhub";
/// Label of the optional lossy channel (unordered, no retransmits: best-effort and
/// rate-limited records).
pub const LOSSY_LABEL: &str = "fanhub-lossy";
/// First byte of a chunk message.
pub const CHUNK_MAGIC: u8 = 0xCF;
/// Length of a chunk header.
pub const CHUNK_HEADER_LEN: usize = 10;

/// A malformed chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Shorter than a chunk header.
    #[error("chunk of {0} bytes is shorter than its header")]
    Short(usize),
    /// Index not below the count, or a count of 0.
    #[error("chunk {index} of {count} is out of range")]
    OutOfRange {
        /// Index.
        index: u16,
        /// Count.
        count: u16,
    },
    /// A frame's chunks disagree on the count.
    #[error("frame {frame}: chunk count {count} after {before}")]
    CountChanged {
        /// Frame id.
        frame: u32,
        /// Count this chunk says.
        count: u16,
        /// Count an earlier chunk said.
        before: u16,
    },
}

/// The header of one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Position in the frame, from 0.
    pub index: u16,
    /// Chunks in the frame.
    pub count: u16,
    /// The frame's id.
    pub frame: u32,
}

impl ChunkHeader {
    /// Appends the header to `out`.
    pub fn put(&self, out: &mut Vec<u8>) {
        out.push(CHUNK_MAGIC);
        out.push(0);
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.frame.to_be_bytes());
    }

    /// Splits a data-channel message into its chunk header and body; `Ok(None)` when it is not
    /// a chunk (a whole message of records).
    ///
    /// # Errors
    /// [`ChunkError`] for a chunk too short or out of range.
    pub fn parse(msg: &[u8]) -> Result<Option<(ChunkHeader, &[u8])>, ChunkError> {
        if msg.first() != Some(&CHUNK_MAGIC) {
            return Ok(None);
        }
        if msg.len() < CHUNK_HEADER_LEN {
            return Err(ChunkError::Short(msg.len()));
        }
        let h = ChunkHeader {
            index: u16::from_be_bytes([msg[2], msg[3]]),
            count: u16::from_be_bytes([msg[4], msg[5]]),
            frame: u32::from_be_bytes([msg[6], msg[7], msg[8], msg[9]]),
        };
        if h.index >= h.count {
            return Err(ChunkError::OutOfRange { index: h.index, count: h.count });
        }
        Ok(Some((h, &msg[CHUNK_HEADER_LEN..])))
    }
}

/// Sends `record` as data-channel messages of at most `chunk_size` bytes: whole when it fits,
/// else as chunks of frame `frame`, each built in `scratch` (reused by the caller, so chunking
/// allocates nothing once it has grown). Stops at the first message `send` refuses (returns
/// false) and returns whether every message went.
pub fn send_chunked(
    record: &[u8],
    chunk_size: usize,
    frame: u32,
    scratch: &mut Vec<u8>,
    mut send: impl FnMut(&[u8]) -> bool,
) -> bool {
    if record.len() <= chunk_size {
        return send(record);
    }
    let body = chunk_size - CHUNK_HEADER_LEN;
    let count = u16::try_from(record.len().div_ceil(body)).unwrap_or(u16::MAX);
    for (i, part) in record.chunks(body).enumerate() {
        scratch.clear();
        ChunkHeader { index: i as u16, count, frame }.put(scratch);
        scratch.extend_from_slice(part);
        if !send(scratch) {
            return false;
        }
    }
    true
}

#[derive(Debug)]
struct Partial {
    parts: Vec<Option<Vec<u8>>>,
    have: usize,
}

/// Puts chunked frames back together, for one channel. Holds at most `max_partial` incomplete
/// frames: a frame that lost a chunk on the lossy channel never completes, and the oldest such
/// is forgotten (and counted in [`Reassembler::incomplete`]) when a new frame needs room.
#[derive(Debug)]
pub struct Reassembler {
    partial: HashMap<u32, Partial>,
    order: VecDeque<u32>,
    max_partial: usize,
    incomplete: u64,
}

impl Reassembler {
    /// A reassembler keeping at most `max_partial` incomplete frames.
    pub fn new(max_partial: usize) -> Self {
        Self { partial: HashMap::new(), order: VecDeque::new(), max_partial: max_partial.max(1), incomplete: 0 }
    }

    /// Frames forgotten incomplete so far.
    pub fn incomplete(&self) -> u64 {
        self.incomplete
    }

    /// Frames waiting for chunks now.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Takes one data-channel message: a whole message is returned as it is; a chunk is kept
    /// until its frame is complete, which is then returned.
    ///
    /// # Errors
    /// [`ChunkError`] for a malformed chunk (nothing is kept of it).
    pub fn push<'a>(&mut self, msg: &'a [u8]) -> Result<Option<Cow<'a, [u8]>>, ChunkError> {
        let Some((h, body)) = ChunkHeader::parse(msg)? else {
            return Ok(Some(Cow::Borrowed(msg)));
        };
        if !self.partial.contains_key(&h.frame) {
            while self.partial.len() >= self.max_partial {
                let Some(old) = self.order.pop_front() else { break };
                if self.partial.remove(&old).is_some() {
                    self.incomplete += 1;
                }
            }
            self.partial.insert(h.frame, Partial { parts: vec![None; usize::from(h.count)], have: 0 });
            self.order.push_back(h.frame);
        }
        let p = self.partial.get_mut(&h.frame).expect("just inserted");
        if p.parts.len() != usize::from(h.count) {
            return Err(ChunkError::CountChanged { frame: h.frame, count: h.count, before: p.parts.len() as u16 });
        }
        let slot = &mut p.parts[usize::from(h.index)];
        if slot.is_none() {
            *slot = Some(body.to_vec());
            p.have += 1;
        }
        if p.have < p.parts.len() {
            return Ok(None);
        }
        let p = self.partial.remove(&h.frame).expect("present");
        self.order.retain(|f| *f != h.frame);
        // Concatenated slice by slice: a byte-wise collect was a sixth of a receiver's CPU.
        let total = p.parts.iter().flatten().map(Vec::len).sum();
        let whole = p.parts.iter().flatten().fold(Vec::with_capacity(total), |mut w, part| {
            w.extend_from_slice(part);
            w
        });
        Ok(Some(Cow::Owned(whole)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks_of(record: &[u8], size: usize, frame: u32) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        assert!(send_chunked(record, size, frame, &mut scratch, |m| {
            out.push(m.to_vec());
            true
        }));
        out
    }

    #[test]
    fn a_record_goes_whole_when_it_fits_and_as_chunks_when_not() {
        let small = vec![1u8; 100];
        assert_eq!(chunks_of(&small, 100, 1), [small]);
        let big: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let chunks = chunks_of(&big, 110, 7);
        assert_eq!(chunks.len(), 10, "1000 bytes in bodies of 100");
        assert!(chunks.iter().all(|c| c.len() <= 110));
        let (h, _) = ChunkHeader::parse(&chunks[9]).unwrap().unwrap();
        assert_eq!(h, ChunkHeader { index: 9, count: 10, frame: 7 });
        let mut r = Reassembler::new(4);
        let mut got = None;
        // Out of order, with a duplicate: the frame completes once, exactly.
        for i in [3usize, 0, 9, 3, 1, 2, 4, 5, 6, 7, 8] {
            if let Some(w) = r.push(&chunks[i]).unwrap() {
                assert!(got.is_none());
                got = Some(w.into_owned());
            }
        }
        assert_eq!(got.unwrap(), big);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn a_refused_message_stops_the_chunks() {
        let mut sent = 0;
        assert!(!send_chunked(&[0u8; 500], 60, 1, &mut Vec::new(), |_| {
            sent += 1;
            sent < 3
        }));
        assert_eq!(sent, 3);
    }

    #[test]
    fn frames_that_never_complete_are_forgotten_oldest_first_and_counted() {
        let mut r = Reassembler::new(2);
        for frame in 1..=3 {
            let c = chunks_of(&[9u8; 300], 110, frame);
            assert!(r.push(&c[0]).unwrap().is_none());
        }
        assert_eq!((r.pending(), r.incomplete()), (2, 1));
        let whole = chunks_of(&[5u8; 300], 110, 3);
        assert!(r.push(&whole[1]).unwrap().is_none());
        assert_eq!(r.push(&whole[2]).unwrap().unwrap().len(), 300, "frame 3 completes with its own first chunk");
    }

    #[test]
    fn malformed_chunks_are_errors_not_panics() {
        assert_eq!(ChunkHeader::parse(&[CHUNK_MAGIC, 0, 0]), Err(ChunkError::Short(3)));
        let mut c = Vec::new();
        ChunkHeader { index: 2, count: 2, frame: 1 }.put(&mut c);
        assert!(matches!(ChunkHeader::parse(&c), Err(ChunkError::OutOfRange { .. })));
        let mut r = Reassembler::new(2);
        let mut a = Vec::new();
        ChunkHeader { index: 0, count: 3, frame: 1 }.put(&mut a);
        let mut b = Vec::new();
        ChunkHeader { index: 1, count: 4, frame: 1 }.put(&mut b);
        r.push(&a).unwrap();
        assert!(matches!(r.push(&b), Err(ChunkError::CountChanged { .. })));
        assert_eq!(r.push(b"\x01not a chunk").unwrap().unwrap().as_ref(), b"\x01not a chunk");
    }
}
