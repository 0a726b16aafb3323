//! What a link carries either way, whatever the transport: JSON control text, or binary
//! (records from the hub, publish frames to it).

use bytes::Bytes;

/// A message either way: JSON control text, or binary (records from the hub, publish frames
/// to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Text(String),
    Binary(Bytes),
}
