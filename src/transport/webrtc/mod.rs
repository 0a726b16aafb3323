//! WebRTC data-channel transport (str0m, sans-IO): every peer is a [`Connection`] like a
//! WebSocket client, registered in the same `ConnectionManager`, under the same policies, and
//! runs the same session through the one session driver.
//!
//! **Drivers** (`driver`; `webrtc.drivers`, default one per core) each own one UDP socket
//! (`udp`: GSO sends, recvmmsg/GRO receives; ICE-lite; driver *i* binds `webrtc.udp_listen`'s
//! port + *i*, or any free port for port 0; advertised as `webrtc.public_ip` behind a 1:1 NAT)
//! and the `Rtc`s of the peers (`peer`) placed on it. A new peer goes to the driver holding
//! the fewest and gets that driver's address as its only host candidate, so all its datagrams
//! arrive on that driver's socket: drivers share nothing and run on separate cores. (Rejected:
//! one port with `SO_REUSEPORT` — the kernel picks the socket by the remote address hash,
//! which the server does not know when it places the peer, so datagrams would have to be
//! forwarded between drivers.) `signaling` creates peers from SDP offers.
//!
//! Per peer, a **session task** runs the `fanhub.v1` session (through `transport::driver`) on
//! the control channel's messages. When the peer's outbound queue gets something,
//! [`Connection::wake`] schedules the peer on its driver with one `Ready` command in flight.
//!
//! Channels (opened by the peer): `fanhub` (reliable, ordered) carries the JSON control
//! messages and `reliable` topics' records; `fanhub-lossy` (unordered, `maxRetransmits: 0`),
//! when the peer opens it, carries the other records. A record larger than `webrtc.chunk_size`
//! is split into chunks (`protocol::rtc`); on the lossy channel an incomplete frame is dropped
//! whole by the client.
//!
//! Slow peers: the driver takes records from a peer's outbound queue only while the peer's
//! SCTP send buffer has room for the largest possible record, so a record is always written
//! whole, and a peer that does not keep up is handled by the outbound queue's policy (drop
//! whole frames, coalesce, or disconnect a reliable subscriber) — never by blocking others.

mod driver;
mod peer;
mod signaling;
mod udp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use str0m::Candidate;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use self::peer::Peer;
use super::HubContext;
use crate::hub::{ConnCore, ConnId, Connection};

/// Most bytes the lossy channel may have waiting in the SCTP send buffer: a best-effort frame
/// beyond it is dropped whole at once (counted as `queue_full`) instead of waiting seconds
/// behind frames the peer has not taken (a frame larger than this still goes on an empty
/// channel).
pub const LOSSY_BUDGET: usize = 256 * 1024;

/// A peer's connection as the hub sees it.
#[derive(Debug)]
pub struct RtcConnection {
    core: ConnCore,
    /// The command channel of the driver holding this peer.
    driver: mpsc::UnboundedSender<Command>,
    /// A `Ready` command is queued for this peer and not handled yet.
    scheduled: AtomicBool,
}

impl Connection for RtcConnection {
    fn core(&self) -> &ConnCore {
        &self.core
    }

    /// Schedules the peer on its driver, which drains the queue into the data channels while
    /// SCTP has room (one `Ready` in flight per peer).
    fn wake(&self) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            let _ = self.driver.send(Command::Ready(self.core.id()));
        }
    }
}

/// What a driver is asked to do.
#[derive(Debug)]
enum Command {
    Add(Box<Peer>),
    /// The peer's outbound queue has something (or closed).
    Ready(ConnId),
    /// A trickled remote candidate.
    Candidate(ConnId, Candidate),
    /// End the session (`DELETE /v1/rtc/sessions/{id}`).
    Close(ConnId),
}

/// One driver: its command channel, socket and load.
#[derive(Debug)]
struct Shard {
    tx: mpsc::UnboundedSender<Command>,
    /// The address put in the host candidate of the peers placed here.
    advertised: SocketAddr,
    /// The socket's address.
    local: SocketAddr,
    /// Peers this driver holds (a new peer goes to the least loaded driver).
    peers: Arc<AtomicUsize>,
}

/// A live session: the token subject that created it and the driver holding it.
#[derive(Debug)]
struct SessionEntry {
    subject: String,
    shard: usize,
}

/// The handle the signaling uses.
#[derive(Debug, Clone)]
pub struct RtcHandle {
    shards: Arc<[Shard]>,
    sessions: Arc<dashmap::DashMap<ConnId, SessionEntry>>,
}

impl RtcHandle {
    /// Live WebRTC sessions (peers the drivers hold).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The drivers' UDP sockets, one per driver.
    pub fn sockets(&self) -> Vec<SocketAddr> {
        self.shards.iter().map(|s| s.local).collect()
    }

    fn least_loaded(&self) -> usize {
        (0..self.shards.len()).min_by_key(|&i| self.shards[i].peers.load(Ordering::Relaxed)).unwrap_or(0)
    }
}

/// How many drivers `webrtc.drivers` asks for (0 = one per core).
pub fn driver_count(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

/// Binds one UDP socket per driver (large receive buffers) and starts the drivers.
///
/// # Errors
/// When a socket cannot be bound (port taken, or port + drivers beyond 65535).
pub fn start(ctx: &Arc<HubContext>, cfg: &crate::config::WebRtcConfig) -> std::io::Result<RtcHandle> {
    let n = driver_count(cfg.drivers);
    let sessions = Arc::new(dashmap::DashMap::new());
    let mut shards = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let socket = bind(cfg.udp_listen, i)?;
        let local = socket.local_addr()?;
        let advertised = SocketAddr::new(cfg.public_ip.unwrap_or(local.ip()), local.port());
        let (tx, rx) = mpsc::unbounded_channel();
        let peers = Arc::new(AtomicUsize::new(0));
        tasks.push((socket, rx, tx.clone(), peers.clone()));
        shards.push(Shard { tx, advertised, local, peers });
    }
    let handle = RtcHandle { shards: shards.into(), sessions: sessions.clone() };
    for (socket, rx, tx, peers) in tasks {
        tokio::spawn(driver::drive(ctx.clone(), socket, rx, tx, sessions.clone(), peers));
    }
    let advertised = handle.shards[0].advertised.ip();
    tracing::info!(sockets = ?handle.sockets(), %advertised, "webrtc listening");
    Ok(handle)
}

/// Driver `i`'s socket: `listen`'s port + `i` (any free port when it is 0).
fn bind(listen: SocketAddr, i: usize) -> std::io::Result<UdpSocket> {
    let mut addr = listen;
    if listen.port() != 0 {
        let port = u16::try_from(usize::from(listen.port()) + i).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "webrtc.udp_listen port + drivers exceeds 65535")
        })?;
        addr.set_port(port);
    }
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None)?;
    // At the default ~208 KB the socket dropped packets while 200 peers joined; 8 MiB: none.
    let _ = socket.set_recv_buffer_size(8 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into()).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot listen on UDP {addr} (WebRTC driver {i}; drivers use consecutive ports from \
                 `webrtc.udp_listen`, FANHUB_WEBRTC__UDP_LISTEN): {e}"
            ),
        )
    })?;
    UdpSocket::from_std(socket.into())
}
