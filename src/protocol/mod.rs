//! Wire protocol `fanhub.v1`: the types and codecs every transport speaks.
//!
//! This module owns the shape of what crosses the wire and nothing else: JSON control messages
//! ([`control`]), the binary data-record and publish formats ([`frame`]), the WebRTC channel labels
//! and chunk format ([`rtc`]), the raw TCP datagram framing ([`tcp`]) the stable error and close codes ([`codes`]), and the reconnect timing a client follows ([`backoff`]). It depends only on serde and bytes, performs no IO and knows nothing
//! about sockets, so clients, benches and every transport can share it. `docs/protocol.md` is the
//! normative description; a change here is a change there.

pub mod backoff;
pub mod codes;
pub mod control;
pub mod frame;
pub mod rtc;
pub mod tcp;

pub use codes::{CloseReason, ErrorCode};

/// The WebSocket subprotocol (and protocol version) this server speaks.
pub const SUBPROTOCOL: &str = "fanhub.v1";

/// Subprotocols a client may offer; the server picks the first it supports.
pub const SUPPORTED_SUBPROTOCOLS: &[&str] = &[SUBPROTOCOL];
