//! A WebRTC driver task: owns one UDP socket and the `Rtc`s of the peers placed on it; feeds
//! each datagram to the peer it belongs to, runs timers, carries out commands (new peer,
//! `Ready`, trickled candidate, close), and ends peers whose ICE failed or whose session
//! closed. Per peer, [`session_task`] runs the `fanhub.v1` session over the control channel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::net::{Protocol as NetProtocol, Receive};
use str0m::Input;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::peer::{Peer, Scratch};
use super::udp::{Inbox, Sender};
use super::{Command, RtcConnection, SessionEntry};
use crate::hub::{CloseInfo, ConnId, Connection};
use crate::protocol::CloseReason;
use crate::session::{Input as SessionInput, Session};
use crate::transport::driver::{self, Recv, Transport};
use crate::transport::HubContext;

/// Hands a datagram to the peer it belongs to; returns that peer.
fn route_datagram(
    peers: &mut HashMap<ConnId, Peer>,
    by_source: &mut HashMap<SocketAddr, ConnId>,
    data: &[u8],
    source: SocketAddr,
    local: SocketAddr,
) -> Option<ConnId> {
    let contents = data.try_into().ok()?;
    let input =
        Input::Receive(Instant::now(), Receive { proto: NetProtocol::Udp, source, destination: local, contents });
    let known = by_source.get(&source).copied().filter(|id| peers.get(id).is_some_and(|p| p.rtc.accepts(&input)));
    let id = match known {
        Some(id) => id,
        None => {
            let id = peers.iter().find(|(_, p)| p.rtc.accepts(&input)).map(|(id, _)| *id)?;
            by_source.insert(source, id);
            id
        }
    };
    let p = peers.get_mut(&id)?;
    if let Err(e) = p.rtc.handle_input(input) {
        tracing::debug!(conn = id.0, error = %e, "webrtc peer failed");
        p.rtc.disconnect();
    }
    Some(id)
}

/// Runs `fanhub.v1` for one peer: control-channel messages in, through the session driver;
/// replies go through the outbound queue, which the peer's driver drains into the channels.
pub(super) async fn session_task(
    ctx: Arc<HubContext>,
    conn: Arc<RtcConnection>,
    token: String,
    rx: mpsc::Receiver<(bool, Bytes)>,
) {
    let _live = crate::transport::LiveGuard::new(ctx.clone());
    // No keep-alive of the session's own: ICE consent (binding requests every few seconds)
    // is WebRTC's liveness check, and its expiry ends the peer in the driver.
    let params = driver::session_params(&ctx, conn, false, Some(token));
    let session = Session::new(params, ctx.clock.now());
    let gone = CloseInfo { reason: CloseReason::Normal, message: "peer gone".into(), send_close_frame: false };
    driver::run(&ctx, session, &mut ChannelInbound(rx), gone).await;
}

/// The peer's `fanhub` channel messages, as the driver hands them over.
struct ChannelInbound(mpsc::Receiver<(bool, Bytes)>);

impl Transport for ChannelInbound {
    async fn recv(&mut self) -> Recv {
        match self.0.recv().await {
            Some((true, data)) => Recv::Frame(SessionInput::Binary(data)),
            Some((false, data)) => Recv::Frame(SessionInput::Text(data)),
            None => Recv::Gone,
        }
    }
}

pub(super) async fn drive(
    ctx: Arc<HubContext>,
    socket: UdpSocket,
    mut rx: mpsc::UnboundedReceiver<Command>,
    _keep: mpsc::UnboundedSender<Command>,
    sessions: Arc<dashmap::DashMap<ConnId, SessionEntry>>,
    load: Arc<AtomicUsize>,
) {
    let mut peers: HashMap<ConnId, Peer> = HashMap::new();
    // One quinn-udp state for both directions: it turns on UDP GRO, so receiving must go
    // through it too (a GRO buffer holds several datagrams; a plain recv would truncate it).
    let udp = quinn_udp::UdpSocketState::new((&socket).into()).ok();
    let mut out = Sender::new(&socket, udp.as_ref());
    let mut inbox = Inbox::new(udp.as_ref());
    let local = socket.local_addr().expect("bound");
    let mut scratch = Scratch::new(ctx.config.webrtc.chunk_size, ctx.manager.limits().max_message_size + 64 * 1024);
    let mut shutdown = ctx.shutdown.clone();
    let mut stopping: Option<Instant> = None;
    let mut dirty: Vec<ConnId> = Vec::new();
    // Where each peer's datagrams come from, learned from the first one its `Rtc` accepted.
    let mut by_source: HashMap<SocketAddr, ConnId> = HashMap::new();
    loop {
        let now = Instant::now();
        // On shutdown, keep serving until the peers' sessions have said bye (bounded).
        if *shutdown.borrow_and_update() && stopping.is_none() {
            stopping = Some(now + Duration::from_millis(ctx.config.server.shutdown_grace_ms + 500));
        }
        if stopping.is_some_and(|t| now >= t || peers.is_empty()) {
            for p in peers.values_mut() {
                p.rtc.disconnect();
                ctx.manager.unregister_client(p.conn.id());
                sessions.remove(&p.conn.id());
            }
            load.store(0, Ordering::Relaxed);
            return;
        }
        // Only peers that got input, a command or a due timer are polled: O(touched), not
        // O(peers), per wake-up.
        for (id, p) in peers.iter_mut() {
            let mut touched = false;
            if p.retry_at.is_some_and(|t| t <= now) {
                p.retry_at = None;
                p.flush(&mut scratch);
                touched = true;
            }
            if p.timeout <= now {
                if p.rtc.handle_input(Input::Timeout(now)).is_err() {
                    p.rtc.disconnect();
                }
                touched = true;
            }
            if touched {
                dirty.push(*id);
            }
        }
        dirty.sort_unstable();
        dirty.dedup();
        for id in dirty.drain(..) {
            if let Some(p) = peers.get_mut(&id) {
                p.timeout = p.poll(&mut out, &mut scratch);
            }
        }
        peers.retain(|_, p| {
            let alive = p.rtc.is_alive() && !p.finished;
            if !alive {
                p.conn.close_with(CloseInfo::new(CloseReason::Normal, "peer gone"), None);
                ctx.manager.unregister_client(p.conn.id());
                sessions.remove(&p.conn.id());
                load.fetch_sub(1, Ordering::Relaxed);
                by_source.retain(|_, id| *id != p.conn.id());
            }
            alive
        });
        let next = peers
            .values()
            .flat_map(|p| [Some(p.timeout), p.retry_at])
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_millis(100))
            .max(now);
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(next));
        tokio::select! {
            _ = socket.readable() => {
                // Take what is queued, bounded (8 batches) so timers and commands get their turn.
                for _ in 0..8 {
                    let Ok(n) = inbox.recv(&socket, udp.as_ref()) else { break };
                    for i in 0..n {
                        let (source, data, stride) = inbox.message(i);
                        for datagram in data.chunks(stride) {
                            // str0m wants its output drained after every input: poll right away.
                            if let Some(id) = route_datagram(&mut peers, &mut by_source, datagram, source, local) {
                                if let Some(p) = peers.get_mut(&id) {
                                    p.timeout = p.poll(&mut out, &mut scratch);
                                }
                            }
                        }
                    }
                }
            }
            cmd = rx.recv() => match cmd {
                Some(Command::Add(p)) => {
                    dirty.push(p.conn.id());
                    peers.insert(p.conn.id(), *p);
                }
                Some(Command::Candidate(id, c)) => {
                    if let Some(p) = peers.get_mut(&id) {
                        p.rtc.add_remote_candidate(c);
                        dirty.push(id);
                    }
                }
                Some(Command::Close(id)) => {
                    if let Some(p) = peers.get_mut(&id) {
                        p.conn.close(CloseReason::Normal, "session ended by the peer", &[]);
                        p.rtc.disconnect();
                        dirty.push(id);
                    }
                }
                Some(Command::Ready(id)) => {
                    if let Some(p) = peers.get_mut(&id) {
                        p.conn.scheduled.store(false, Ordering::Release);
                        p.flush(&mut scratch);
                        dirty.push(id);
                    }
                }
                None => return,
            },
            () = sleep => {}
            _ = shutdown.changed(), if stopping.is_none() => {}
        }
    }
}
