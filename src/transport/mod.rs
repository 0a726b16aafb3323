//! Transports: how connections reach the hub. Each implements [`crate::hub::Connection`]
//! (how its writer is woken) and owns its socket; every one runs the same `fanhub.v1`
//! [`Session`](crate::session::Session) through the one [`driver`], supplying only its framing.
//!
//! [`ws`] is the WebSocket transport, `webrtc` the WebRTC data channels (cargo feature
//! `webrtc`), reached by the rest of the server through [`signaling`], [`sse`] server-sent
//! events (records only, subscriptions from the query), [`tcp`] raw TCP (or TLS) streams of
//! length-prefixed datagrams; [`publish`] is the
//! server-side publish (HTTP API) with its backpressure wait.

pub mod driver;
pub mod publish;
pub mod signaling;
pub mod sse;
pub mod tcp;
#[cfg(feature = "webrtc")]
pub mod webrtc;
pub mod ws;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{header, HeaderMap};
use tokio::sync::watch;

use crate::auth::SessionManager;
use crate::clock::Clock;
use crate::config::Config;
use crate::hub::ConnectionManager;

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
pub fn bearer_header(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The credential of a request: the bearer header, else a `token=` query parameter (for
/// clients that cannot set headers: browsers' `WebSocket` and `EventSource`).
pub fn request_token<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    bearer_header(headers).or_else(|| query?.split('&').find_map(|kv| kv.strip_prefix("token=")))
}

/// The HTTP connection a request came on, for a handler that streams its response: it can
/// learn when the connection has closed and end it (the server puts one in every request's
/// extensions). A streamed response whose peer stopped reading cannot be ended from the body,
/// because the server no longer polls it.
#[derive(Debug, Clone)]
pub struct HttpConnHandle {
    abort: Arc<tokio::sync::Notify>,
    open: watch::Receiver<()>,
}

impl HttpConnHandle {
    /// A handle, and the guard the connection's task holds until the connection is gone.
    pub fn new() -> (Self, watch::Sender<()>) {
        let (tx, open) = watch::channel(());
        (Self { abort: Arc::default(), open }, tx)
    }

    /// Ends the connection: the server drops its socket.
    pub fn abort(&self) {
        self.abort.notify_one();
    }

    /// Resolves once [`Self::abort`] was called.
    pub async fn aborted(&self) {
        self.abort.notified().await;
    }

    /// Resolves once the connection is gone.
    pub async fn closed(&self) {
        let mut open = self.open.clone();
        while open.changed().await.is_ok() {}
    }
}

/// What every transport needs from the server.
#[derive(Debug)]
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
    /// WebRTC signaling (set when the server starts WebRTC: `webrtc.enabled`).
    pub rtc: std::sync::OnceLock<Arc<dyn signaling::Signaling>>,
    /// Where time comes from (the system clock, or a test's manual one).
    pub clock: Clock,
    /// TLS on the public listener (`server.tls`), with its reloadable certificate.
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<crate::tls::Tls>>,
}

/// Counts a live transport connection for as long as it is held.
#[derive(Debug)]
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
        for u in self.broker.peer_urls() {
            if !urls.contains(&u) && u != self.public_url {
                urls.push(u);
            }
        }
        urls
    }
}

/// TLS for a listener, when it speaks TLS.
#[cfg(feature = "tls")]
pub type ListenerTls = Option<Arc<crate::tls::Tls>>;
/// TLS for a listener: never, in a build without TLS.
#[cfg(not(feature = "tls"))]
pub type ListenerTls = Option<std::convert::Infallible>;

/// How long a TLS client may take from accept to a finished handshake.
#[cfg(feature = "tls")]
pub const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
