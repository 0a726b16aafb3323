//! Transports: how connections reach the hub. Each implements [`crate::hub::Connection`] and
//! owns its socket, with one writer task per connection draining the hub's bounded queue.
//!
//! [`session`] is the transport-neutral part (the `fanhub.v1` control ops, authentication,
//! keep-alive bookkeeping), so WebRTC and TCP reuse it; [`ws`] is the WebSocket transport.

pub mod session;
pub mod webrtc;
pub mod ws;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::auth::SessionManager;
use crate::config::Config;
use crate::hub::{ConnectionManager, Now};

/// What every transport needs from the server.
pub struct HubContext {
    /// Connections, topics, routing.
    pub manager: Arc<ConnectionManager>,
    /// Tokens.
    pub sessions: Arc<SessionManager>,
    /// Configuration.
    pub config: Arc<Config>,
    /// This node's id.
    pub node_id: String,
    /// The WebSocket URL clients are given.
    pub public_url: String,
    /// Flips to true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// True while draining for maintenance or shutdown: new connections are refused.
    pub draining: AtomicBool,
    /// Transport connections alive (authenticated or not); shutdown waits for zero.
    pub live: AtomicUsize,
    /// Prometheus metrics (transports record latency and queue-depth samples).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// In-memory, or this node's Redis cluster membership.
    pub broker: crate::broker::Broker,
    /// The WebRTC driver (started with the server when `webrtc.enabled`).
    pub rtc: std::sync::OnceLock<webrtc::RtcHandle>,
}

/// Counts a live transport connection for as long as it is held.
pub struct LiveGuard(Arc<HubContext>);

impl LiveGuard {
    /// Counts one more live connection.
    pub fn new(ctx: Arc<HubContext>) -> Self {
        ctx.live.fetch_add(1, Ordering::Relaxed);
        Self(ctx)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HubContext {
    /// URLs to offer as reconnect advice: the configured ones, then (cluster mode) the other
    /// live nodes'.
    pub fn reconnect_urls(&self) -> Vec<String> {
        let mut urls = self.config.server.reconnect_urls.clone();
        if let Some(c) = self.broker.cluster() {
            for u in c.peer_urls() {
                if !urls.contains(&u) && u != self.public_url {
                    urls.push(u);
                }
            }
        }
        urls
    }
}

/// The current time, read once per event at the transport edge and passed into the hub.
pub fn now() -> Now {
    Now { mono: Instant::now(), unix_us: unix_us() }
}

/// Wall-clock µs since the UNIX epoch.
pub fn unix_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Wall-clock ms since the UNIX epoch.
pub fn unix_ms() -> u64 {
    (unix_us() / 1000).max(0) as u64
}
