//! The one session driver: runs a [`Session`] over any transport. A transport supplies only
//! its framing and socket — how the next inbound frame is read ([`Transport::recv`]) and how a
//! keep-alive is sent — and its writer; everything else (feeding frames, ticks at the
//! session's deadlines, shutdown, carrying out commands, the close) is here, the same for
//! WebSocket and WebRTC and any transport after them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::HubContext;
use crate::hub::{CloseInfo, Connection};
use crate::protocol::CloseReason;
use crate::session::{Command, Input, Output, Reply, Session, SessionParams, SignalError, Waiting};

/// What a transport read.
#[derive(Debug)]
pub enum Recv {
    /// A frame for the session.
    Frame(Input),
    /// The peer closed the connection cleanly (a close frame, already answered).
    Closed,
    /// The connection is gone (reset, end of stream, the transport dropped the peer).
    Gone,
}

/// What a transport provides to the driver.
pub trait Transport: Send {
    /// The next inbound event. Must be cancel-safe: the driver may drop it for another event
    /// and call again.
    fn recv(&mut self) -> impl Future<Output = Recv> + Send;

    /// Sends the transport's keep-alive (asked only of transports whose session has one).
    fn keepalive(&mut self) {}
}

/// How a session's connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The session closed it (or the server is shutting down).
    Session {
        /// Why.
        reason: CloseReason,
        /// Detail.
        message: String,
    },
    /// Something else began closing it (kicked, slow consumer, replaced, drained).
    Elsewhere,
    /// The peer closed cleanly.
    PeerClosed,
    /// The peer is gone.
    Gone,
}

/// The parameters of a session for `conn`, accepted with `token`, from the server's context.
pub fn session_params(
    ctx: &HubContext,
    conn: Arc<dyn Connection>,
    keepalive: bool,
    accept_token: Option<String>,
) -> SessionParams {
    SessionParams {
        conn,
        hub: ctx.manager.clone(),
        auth: ctx.sessions.clone(),
        config: ctx.config.session.clone(),
        expiry_warning_secs: ctx.config.auth.expiry_warning_secs,
        node_id: ctx.node_id.clone(),
        brokered: ctx.broker.is_clustered(),
        keepalive,
        accept_token,
    }
}

type CommandFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Runs `session` over `transport` until the connection ends; then starts the close the ending
/// calls for (a `bye` with reconnect advice when the reason advises one; `gone` when the peer
/// vanished) and unregisters the connection. The transport's writer finishes the close.
pub async fn run(ctx: &Arc<HubContext>, mut session: Session, transport: &mut impl Transport, gone: CloseInfo) -> End {
    let conn = session.conn().clone();
    ctx.manager.counters().record_session_opened();
    let end = drive(ctx, &mut session, transport).await;
    if !session.is_registered() {
        ctx.manager.counters().record_session_unauthenticated();
    }
    match &end {
        End::Session { reason: CloseReason::Normal, message } => {
            conn.close_with(CloseInfo::new(CloseReason::Normal, message), None);
        }
        End::Session { reason, message } => conn.close(*reason, message, &ctx.reconnect_urls()),
        End::PeerClosed => {
            conn.close_with(
                CloseInfo { reason: CloseReason::Normal, message: String::new(), send_close_frame: false },
                None,
            );
        }
        End::Gone => conn.close_with(gone, None),
        End::Elsewhere => {}
    }
    ctx.manager.unregister_client(conn.id());
    end
}

async fn drive(ctx: &Arc<HubContext>, session: &mut Session, transport: &mut impl Transport) -> End {
    let conn = session.conn().clone();
    let closed = conn.core().outbound.closed();
    tokio::pin!(closed);
    let mut shutdown = ctx.shutdown.clone();
    let mut timer = ctx.clock.timer();
    let mut command: Option<CommandFuture> = None;
    let mut shutdown_seen = false;
    loop {
        while let Some(out) = session.poll_output() {
            match out {
                Output::KeepAlive => transport.keepalive(),
                Output::Close { reason, message } => return End::Session { reason, message },
                Output::Command(c) => command = Some(execute(ctx, &conn, c)),
            }
        }
        timer.set(session.poll_timeout());
        let waiting = session.waiting();
        if waiting != Waiting::Reply {
            // The session gave up on it (a backpressure deadline passed, shutdown): drop it.
            command = None;
        }
        if waiting == Waiting::Drain {
            // Shutting down: hand in what has already arrived, without waiting for more.
            match received(transport).await {
                Some(Recv::Frame(input)) => session.handle_input(input, ctx.clock.now()),
                Some(Recv::Closed) => return End::PeerClosed,
                Some(Recv::Gone) => return End::Gone,
                None => session.handle_drained(ctx.clock.now()),
            }
            continue;
        }
        tokio::select! {
            biased;
            () = &mut closed => return End::Elsewhere,
            _ = shutdown.wait_for(|v| *v), if !shutdown_seen => {
                shutdown_seen = true;
                session.handle_shutdown(ctx.clock.now());
            }
            reply = async { command.as_mut().expect("guarded").await }, if command.is_some() => {
                command = None;
                session.handle_reply(reply, ctx.clock.now());
            }
            () = conn.core().outbound.control_below(backlog(waiting)), if matches!(waiting, Waiting::Backlog(_)) => {
                session.handle_tick(ctx.clock.now());
            }
            r = transport.recv(), if waiting == Waiting::Input => match r {
                Recv::Frame(input) => session.handle_input(input, ctx.clock.now()),
                Recv::Closed => return End::PeerClosed,
                Recv::Gone => return End::Gone,
            },
            () = timer.fired() => session.handle_tick(ctx.clock.now()),
        }
    }
}

/// The next event the transport already has, if any. A socket's readiness is learned by the
/// runtime's reactor, so a miss is retried once after a yield (which runs the reactor first);
/// `unconstrained`, because with tokio's cooperative budget spent a socket holding frames
/// reports Pending. The session bounds how many frames are drained.
async fn received(transport: &mut impl Transport) -> Option<Recv> {
    for attempt in 0..2 {
        tokio::select! {
            biased;
            r = tokio::task::unconstrained(transport.recv()) => return Some(r),
            () = std::future::ready(()) => {}
        }
        if attempt == 0 {
            tokio::task::yield_now().await;
        }
    }
    None
}

fn backlog(w: Waiting) -> usize {
    match w {
        Waiting::Backlog(n) => n,
        _ => usize::MAX,
    }
}

/// Carries out a session's command; the future yields its reply.
fn execute(ctx: &Arc<HubContext>, conn: &Arc<dyn Connection>, command: Command) -> CommandFuture {
    match command {
        Command::WaitForSpace(full) => Box::pin(async move {
            full.core().outbound.space_freed().await;
            Reply::SpaceFreed
        }),
        Command::Prepare { conn, items } => {
            let broker = ctx.broker.clone();
            Box::pin(async move { Reply::Prepared(broker.prepare(conn, &items).await) })
        }
        Command::Publish { conn, id, topic, payload, flags, seq } => {
            let broker = ctx.broker.clone();
            Box::pin(async move { Reply::Enqueued(broker.enqueue(conn, id, seq, topic, payload, flags).await) })
        }
        Command::Flush => {
            let broker = ctx.broker.clone();
            Box::pin(async move {
                broker.flush().await;
                Reply::Flushed
            })
        }
        Command::RtcOffer { sdp, token } => {
            let r = ctx
                .signaling()
                .and_then(|s| s.offer(ctx, token, conn.remote_addr(), &sdp))
                .map(|(answer, id)| (answer, id.0))
                .map_err(|e| SignalError { code: e.code, message: e.message });
            Box::pin(std::future::ready(Reply::RtcAnswer(r)))
        }
        Command::RtcCandidate { session, candidate, subject } => {
            let r = ctx
                .signaling()
                .and_then(|s| s.add_candidate(&subject, session, &candidate))
                .map_err(|e| SignalError { code: e.code, message: e.message });
            Box::pin(std::future::ready(Reply::RtcCandidateAdded(r)))
        }
    }
}
