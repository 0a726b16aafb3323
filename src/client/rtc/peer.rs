//! A sans-IO fanhub WebRTC peer: a str0m `Rtc` with the two fanhub channels and chunk
//! reassembly. The caller owns the UDP socket and the clock: it feeds datagrams and time in
//! ([`RtcPeer::receive`], [`RtcPeer::advance`]) and acts on what [`RtcPeer::poll`] returns. The
//! client's transport drives one per connection; load generators drive thousands.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use crate::protocol::rtc::{ChunkError, Reassembler, CONTROL_LABEL, LOSSY_LABEL};

/// Incomplete chunked frames kept at once (older ones are dropped whole).
const MAX_PARTIAL: usize = 64;

/// A WebRTC failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtcError {
    /// The local address cannot be a candidate, or no offer could be made.
    #[error("cannot make an offer: {0}")]
    Offer(String),
    /// The hub's answer is not SDP, or the stack refuses it.
    #[error("bad SDP answer: {0}")]
    Answer(String),
    /// The stack failed on input.
    #[error("WebRTC: {0}")]
    Stack(String),
}

/// What the peer wants done, or has to say.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerOutput {
    /// Send `bytes` to `to` over the UDP socket.
    Transmit {
        /// The destination.
        to: SocketAddr,
        /// The datagram.
        bytes: Vec<u8>,
    },
    /// Nothing more to do before this instant: call [`RtcPeer::advance`] then (or
    /// [`RtcPeer::receive`] when a datagram comes first).
    Wait(Instant),
    /// The control channel is open: control messages can be sent.
    Open,
    /// A control message (JSON text) from the hub.
    Control(Vec<u8>),
    /// One binary message's whole records (§5.1), reassembled when chunked; `lossy`: it came
    /// on the lossy channel.
    Records {
        /// Which channel.
        lossy: bool,
        /// The records.
        bytes: Vec<u8>,
    },
    /// A malformed chunk: nothing was kept of it.
    Corrupt(ChunkError),
    /// The connection is over (ICE consent lost, the control channel closed, a stack failure);
    /// the peer yields nothing more.
    Closed(String),
}

/// A peer that has made its offer and waits for the hub's answer.
#[derive(Debug)]
pub struct Offer {
    rtc: Rtc,
    pending: SdpPendingOffer,
    control: ChannelId,
    lossy: ChannelId,
}

impl Offer {
    /// An offer with the `fanhub` (reliable) and `fanhub-lossy` channels, for a UDP socket
    /// bound at `local` (its one host candidate). Returns the SDP offer to post.
    ///
    /// # Errors
    /// [`RtcError::Offer`].
    pub fn new(local: SocketAddr, now: Instant) -> Result<(Offer, String), RtcError> {
        let mut rtc = Rtc::builder().build(now);
        let candidate = Candidate::host(local, "udp").map_err(|e| RtcError::Offer(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let mut api = rtc.sdp_api();
        let control = api.add_channel(CONTROL_LABEL.into());
        let lossy = api.add_channel_with_config(ChannelConfig {
            label: LOSSY_LABEL.into(),
            ordered: false,
            reliability: Reliability::MaxRetransmits { retransmits: 0 },
            ..Default::default()
        });
        let (offer, pending) = api.apply().ok_or_else(|| RtcError::Offer("no change to offer".into()))?;
        Ok((Offer { rtc, pending, control, lossy }, offer.to_sdp_string()))
    }

    /// Takes the hub's SDP answer.
    ///
    /// # Errors
    /// [`RtcError::Answer`].
    pub fn accept(mut self, answer: &str) -> Result<RtcPeer, RtcError> {
        let answer = SdpAnswer::from_sdp_string(answer).map_err(|e| RtcError::Answer(e.to_string()))?;
        self.rtc.sdp_api().accept_answer(self.pending, answer).map_err(|e| RtcError::Answer(e.to_string()))?;
        Ok(RtcPeer {
            rtc: self.rtc,
            control: self.control,
            lossy: self.lossy,
            open: false,
            closed: false,
            closing: false,
            partial: Reassembler::new(MAX_PARTIAL),
        })
    }
}

/// A connected (or connecting) peer: see the module documentation.
#[derive(Debug)]
pub struct RtcPeer {
    rtc: Rtc,
    control: ChannelId,
    lossy: ChannelId,
    open: bool,
    closed: bool,
    /// [`RtcPeer::close`] started: the close still goes out, nothing comes in.
    closing: bool,
    partial: Reassembler,
}

impl RtcPeer {
    /// The next thing to do; call until it returns [`PeerOutput::Wait`] or
    /// [`PeerOutput::Closed`].
    pub fn poll(&mut self) -> PeerOutput {
        loop {
            if self.closed {
                return PeerOutput::Closed("closed".into());
            }
            if !self.rtc.is_alive() {
                return self.close_with("the connection closed");
            }
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => return self.close_with(&format!("WebRTC: {e}")),
            };
            match out {
                Output::Timeout(t) => return PeerOutput::Wait(t),
                // Moved out of str0m's buffer, not copied.
                Output::Transmit(t) => return PeerOutput::Transmit { to: t.destination, bytes: t.contents.into() },
                Output::Event(_) if self.closing => {}
                Output::Event(e) => {
                    if let Some(o) = self.event(e) {
                        return o;
                    }
                }
            }
        }
    }

    fn close_with(&mut self, why: &str) -> PeerOutput {
        self.closed = true;
        self.rtc.disconnect();
        PeerOutput::Closed(why.to_owned())
    }

    fn event(&mut self, e: Event) -> Option<PeerOutput> {
        match e {
            Event::ChannelOpen(id, _) if id == self.control => {
                self.open = true;
                Some(PeerOutput::Open)
            }
            Event::ChannelData(d) if d.id == self.control || d.id == self.lossy => {
                let lossy = d.id == self.lossy;
                if !d.binary {
                    return Some(PeerOutput::Control(d.data));
                }
                match self.partial.push(&d.data) {
                    Ok(None) => None,
                    // A whole message: handed on without a copy.
                    Ok(Some(std::borrow::Cow::Borrowed(_))) => Some(PeerOutput::Records { lossy, bytes: d.data }),
                    Ok(Some(std::borrow::Cow::Owned(bytes))) => Some(PeerOutput::Records { lossy, bytes }),
                    Err(e) => Some(PeerOutput::Corrupt(e)),
                }
            }
            Event::ChannelClose(id) if id == self.control => Some(self.close_with("the fanhub channel closed")),
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                Some(self.close_with("ICE disconnected (consent lost)"))
            }
            _ => None,
        }
    }

    /// A datagram from `source` arrived on the socket bound at `local`.
    ///
    /// # Errors
    /// [`RtcError::Stack`] (the peer is then closed).
    pub fn receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        local: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), RtcError> {
        let Ok(contents) = datagram.try_into() else { return Ok(()) }; // not STUN/DTLS: ignored
        let input = Input::Receive(now, Receive { proto: Protocol::Udp, source, destination: local, contents });
        self.rtc.handle_input(input).map_err(|e| {
            self.closed = true;
            RtcError::Stack(e.to_string())
        })
    }

    /// Time has come to `now`.
    ///
    /// # Errors
    /// [`RtcError::Stack`] (the peer is then closed).
    pub fn advance(&mut self, now: Instant) -> Result<(), RtcError> {
        self.rtc.handle_input(Input::Timeout(now)).map_err(|e| {
            self.closed = true;
            RtcError::Stack(e.to_string())
        })
    }

    /// Whether the control channel is open.
    pub fn is_open(&self) -> bool {
        self.open && !self.closed && !self.closing
    }

    /// Sends a control message (JSON text) on the control channel; false when it is not open.
    pub fn send_text(&mut self, text: &str) -> bool {
        self.write(false, text.as_bytes())
    }

    /// Sends a binary message (a publish frame) on the control channel; false when it is not
    /// open.
    pub fn send_binary(&mut self, bytes: &[u8]) -> bool {
        self.write(true, bytes)
    }

    fn write(&mut self, binary: bool, bytes: &[u8]) -> bool {
        if !self.is_open() {
            return false;
        }
        self.rtc.channel(self.control).is_some_and(|mut ch| ch.write(binary, bytes).unwrap_or(false))
    }

    /// Whether the peer can still send or receive (not closed, or still closing).
    pub fn is_alive(&self) -> bool {
        !self.closed && self.rtc.is_alive()
    }

    /// Whether [`RtcPeer::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Bytes queued on the control channel, not yet sent.
    pub fn buffered(&mut self) -> usize {
        self.rtc.channel(self.control).map_or(0, |mut ch| ch.buffered_amount())
    }

    /// Chunked frames given up incomplete so far (lossy-channel losses).
    pub fn incomplete_frames(&self) -> u64 {
        self.partial.incomplete()
    }

    /// Chunked frames waiting for chunks now.
    pub fn pending_frames(&self) -> usize {
        self.partial.pending()
    }

    /// Starts a graceful close (SCTP shutdown, DTLS close_notify): keep calling
    /// [`RtcPeer::poll`] and sending what it gives until it returns [`PeerOutput::Closed`].
    pub fn close(&mut self) {
        if !self.closing && !self.closed {
            self.closing = true;
            if self.rtc.close().is_err() {
                self.abort();
            }
        }
    }

    /// Ends the connection at once, sending nothing (the hub finds out when ICE consent
    /// expires).
    pub fn abort(&mut self) {
        self.closed = true;
        self.rtc.disconnect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    #[test]
    fn an_offer_has_both_channels_and_one_host_candidate() {
        let (_, sdp) = Offer::new(local(), Instant::now()).unwrap();
        assert!(sdp.contains("m=application"), "{sdp}");
        assert_eq!(sdp.matches("a=candidate:").count(), 1, "{sdp}");
        assert!(sdp.contains("127.0.0.1 40000 typ host"), "{sdp}");
    }

    #[test]
    fn an_answer_that_is_not_sdp_is_refused_with_a_clear_error() {
        let (offer, _) = Offer::new(local(), Instant::now()).unwrap();
        let e = offer.accept("not sdp").unwrap_err();
        assert!(matches!(e, RtcError::Answer(_)), "{e:?}");
    }

    #[test]
    fn nothing_is_sent_before_the_channel_opens_and_nothing_after_a_close() {
        // A real answer, from a plain str0m peer (no network: nothing ever opens).
        let now = Instant::now();
        let (offer, sdp) = Offer::new(local(), now).unwrap();
        let mut answerer = Rtc::builder().build(now);
        answerer.add_local_candidate(Candidate::host("127.0.0.1:40001".parse().unwrap(), "udp").unwrap());
        let answer = answerer.sdp_api().accept_offer(str0m::change::SdpOffer::from_sdp_string(&sdp).unwrap()).unwrap();
        let mut peer = offer.accept(&answer.to_sdp_string()).unwrap();
        assert!(!peer.is_open());
        assert!(!peer.send_text("{}"), "the control channel is not open yet");
        assert!(matches!(peer.poll(), PeerOutput::Transmit { .. } | PeerOutput::Wait(_)));
        peer.close();
        assert!(peer.is_closing() && !peer.send_binary(b"x"));
        // The close drains (its datagrams, if any), then the peer is over.
        let mut closed = false;
        for _ in 0..100 {
            match peer.poll() {
                PeerOutput::Closed(_) => {
                    closed = true;
                    break;
                }
                PeerOutput::Wait(_) => peer.advance(Instant::now() + std::time::Duration::from_secs(1)).unwrap(),
                _ => {}
            }
        }
        assert!(closed, "a closed peer ends");
        peer.abort();
        assert!(!peer.is_alive());
    }
}
