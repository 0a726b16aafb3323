//! The client's WebRTC transport (cargo feature `client-webrtc`): a sans-IO peer
//! ([`peer::RtcPeer`]) and the task that drives one over a UDP socket for a [`super::Client`]
//! whose `transport` is [`super::Transport::WebRtc`].

mod link;
pub mod peer;

pub(super) use link::{connect, RtcConnectError, RtcLink};
pub use peer::{Offer, PeerOutput, RtcError, RtcPeer};
