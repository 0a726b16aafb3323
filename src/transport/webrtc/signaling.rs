//! Signaling, the WebRTC side: an SDP offer becomes a peer (an ICE-lite `Rtc` answering with
//! one host candidate, handed to the least loaded driver, and a session task); trickled
//! candidates and the end of a session go to the peer's driver as commands. Only the subject
//! that created a session may touch it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use str0m::change::SdpOffer;
use str0m::{Candidate, Rtc};
use tokio::sync::mpsc;

use super::peer::Peer;
use super::{Command, RtcConnection, RtcHandle, SessionEntry};
use crate::hub::{ConnId, Connection, Protocol};
use crate::protocol::ErrorCode;
use crate::transport::signaling::{Signaling, SignalingError};
use crate::transport::HubContext;

fn sig(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> SignalingError {
    SignalingError::new(status, code, message)
}

impl Signaling for RtcHandle {
    fn offer(
        &self,
        ctx: &Arc<HubContext>,
        token: String,
        remote: SocketAddr,
        sdp: &str,
    ) -> Result<(String, ConnId), SignalingError> {
        accept(self, ctx, token, remote, sdp)
    }

    fn add_candidate(&self, subject: &str, id: u64, candidate: &str) -> Result<(), SignalingError> {
        let tx = self.owned_session(subject, id)?;
        let line = candidate.trim().trim_start_matches("a=");
        let c = Candidate::from_sdp_string(line).map_err(|e| {
            sig(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, format!("malformed candidate: {e}"))
        })?;
        let _ = tx.send(Command::Candidate(ConnId(id), c));
        Ok(())
    }

    fn close_session(&self, subject: &str, id: u64) -> Result<(), SignalingError> {
        let tx = self.owned_session(subject, id)?;
        let _ = tx.send(Command::Close(ConnId(id)));
        Ok(())
    }
}

impl RtcHandle {
    /// The command channel of the driver holding session `id`, if `subject` owns it.
    fn owned_session(&self, subject: &str, id: u64) -> Result<mpsc::UnboundedSender<Command>, SignalingError> {
        let owner = self.sessions.get(&ConnId(id)).map(|e| (e.subject.clone(), e.shard));
        match owner {
            None => Err(sig(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("no WebRTC session {id}"))),
            Some((o, _)) if o != subject => Err(sig(
                StatusCode::FORBIDDEN,
                ErrorCode::PermissionDenied,
                format!("session {id} belongs to another subject"),
            )),
            Some((_, shard)) => Ok(self.shards[shard].tx.clone()),
        }
    }
}

/// A peer for an SDP offer: checks the token and the offer, answers it with one host candidate
/// (the least loaded driver's address), and hands the peer to that driver.
fn accept(
    handle: &RtcHandle,
    ctx: &Arc<HubContext>,
    token: String,
    remote: SocketAddr,
    sdp: &str,
) -> Result<(String, ConnId), SignalingError> {
    if ctx.draining.load(Ordering::Relaxed) {
        return Err(sig(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "this node is draining"));
    }
    let identity = ctx.sessions.verify(&token, ctx.clock.now().unix_secs()).map_err(|e| {
        ctx.manager.counters().record_auth_failure(e.reason);
        sig(StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated, e.to_string())
    })?;
    if !sdp.lines().any(|l| l.starts_with("m=application")) {
        return Err(sig(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidArgument,
            "the offer has no data channel (no m=application section)",
        ));
    }
    let offer = SdpOffer::from_sdp_string(sdp)
        .map_err(|e| sig(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, format!("malformed SDP offer: {e}")))?;
    let max = ctx.manager.limits().max_message_size + 64 * 1024;
    let mut rtc = Rtc::builder().set_ice_lite(true).set_sctp_max_buffered_amount(2 * max).build(Instant::now());
    let shard_index = handle.least_loaded();
    let shard = &handle.shards[shard_index];
    let candidate = Candidate::host(shard.advertised, "udp")
        .map_err(|e| sig(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, format!("candidate: {e}")))?;
    rtc.add_local_candidate(candidate);
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| sig(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, format!("offer refused: {e}")))?;
    let conn = Arc::new(RtcConnection {
        core: ctx.manager.new_core(Protocol::WebRtc, remote, ctx.clock.now().unix_ms()),
        driver: shard.tx.clone(),
        scheduled: AtomicBool::new(false),
    });
    let id = conn.id();
    let (to_session, from_driver) = mpsc::channel(256);
    handle.sessions.insert(id, SessionEntry { subject: identity.subject, shard: shard_index });
    shard.peers.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(super::driver::session_task(ctx.clone(), conn.clone(), token, from_driver));
    let peer = Peer::new(rtc, conn, to_session, ctx.manager.counters().clone());
    if shard.tx.send(Command::Add(Box::new(peer))).is_err() {
        handle.sessions.remove(&id);
        shard.peers.fetch_sub(1, Ordering::Relaxed);
        return Err(sig(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "WebRTC is shutting down"));
    }
    Ok((answer.to_sdp_string(), id))
}
