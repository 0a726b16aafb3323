//! The server: HTTP routers, listeners, background tasks and graceful shutdown.
//!
//! The public listener serves `/ws`, `/v1/sse`, health, session creation, backend publish, WebRTC
//! signaling, the demo pages and its own OpenAPI document (built from the same handler list as
//! the router); the admin listener serves the admin API. They are separate routers on separate
//! sockets, so nothing admin is reachable from the public port by accident. Both answer every
//! error as `{"code","message"}` (`crate::http::json_errors`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{unix_now, MintRequest, SessionManager};
use crate::clock::Clock;
use crate::config::Config;
use crate::http::{self, ApiError, AppState, ErrorBody};
use crate::hub::ConnectionManager;
use crate::protocol::{ErrorCode, SUBPROTOCOL};
#[cfg(feature = "tls")]
use crate::transport::TLS_HANDSHAKE_TIMEOUT;
use crate::transport::{sse, ws, HubContext, ListenerTls};
use crate::web;

/// The sockets the server serves on (bind them yourself, e.g. on port 0 in tests).
#[derive(Debug)]
pub struct Listeners {
    /// Public listener.
    pub public: TcpListener,
    /// Admin listener.
    pub admin: TcpListener,
    /// The raw TCP transport's listener (`tcp.listen`; `None`: the transport is off).
    pub tcp: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses in `config`.
    ///
    /// # Errors
    /// When an address cannot be bound.
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        Ok(Self {
            public: listen(config.server.listen)?,
            admin: listen(config.server.admin_listen)?,
            tcp: config.tcp.listen.map(listen).transpose()?,
        })
    }

    /// Binds the public and admin listeners on 127.0.0.1 with ephemeral ports (no TCP
    /// transport listener: set [`Self::tcp`] to serve one).
    ///
    /// # Errors
    /// When binding fails.
    pub async fn ephemeral() -> std::io::Result<Self> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Ok(Self { public: listen(any)?, admin: listen(any)?, tcp: None })
    }
}

/// Binds a listening socket with `SO_REUSEADDR` and a 4096-deep accept backlog.
///
/// `TcpListener::bind` uses a backlog of 128: a burst of connects (a reconnect storm after a node restart, or
/// the load generator opening 10,000 sockets) overflows it and the kernel drops SYNs, which the clients only retry
/// after a second. The kernel still caps the backlog at `net.core.somaxconn`.
///
/// # Errors
/// When the address cannot be bound.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Configuration problem found when building the hub.
    #[error("{0}")]
    Config(String),
    /// Socket error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A configured server, ready to run.
#[derive(Debug)]
pub struct Server {
    ctx: Arc<HubContext>,
    /// TLS on the TCP transport's listener (`tcp.tls`).
    tcp_tls: ListenerTls,
    shutdown_tx: watch::Sender<bool>,
    started: Instant,
    sources: Arc<crate::source::Sources>,
}

impl Server {
    /// Builds the hub for `config`, serving on `listeners`, on the system clock.
    ///
    /// # Errors
    /// [`ServerError::Config`] when keys or topic declarations are unusable.
    pub fn new(config: Config, listeners: &Listeners) -> Result<Self, ServerError> {
        Self::with_clock(config, listeners, Clock::System)
    }

    /// Like [`Self::new`], with time from `clock` (tests pass a manual one and advance it).
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn with_clock(config: Config, listeners: &Listeners, clock: Clock) -> Result<Self, ServerError> {
        let mut hub = config.hub();
        // The hub draws no randomness of its own: topic epochs come from this seed.
        hub.epoch_seed = rand::random();
        let manager = Arc::new(ConnectionManager::new(hub).map_err(ServerError::Config)?);
        let sessions = Arc::new(SessionManager::new(&config.auth).map_err(ServerError::Config)?);
        let public_url = config.public_url(listeners.public.local_addr()?);
        #[cfg(feature = "tls")]
        let tls = match config.server.tls.enabled() {
            true => Some(Arc::new(
                crate::tls::Tls::new(&config.server.tls)
                    .map_err(|e| ServerError::Config(format!("server.tls.{}: {e}", e.key())))?,
            )),
            false => None,
        };
        #[cfg(not(feature = "tls"))]
        if config.server.tls.enabled() {
            return Err(ServerError::Config(
                "server.tls: this build has no TLS support (build with the cargo feature `tls`)".into(),
            ));
        }
        #[cfg(feature = "tls")]
        let tcp_tls = match config.tcp.tls.enabled() {
            true => Some(Arc::new(
                crate::tls::Tls::new(&config.tcp.tls)
                    .map_err(|e| ServerError::Config(format!("tcp.tls.{}: {e}", e.key())))?,
            )),
            false => None,
        };
        #[cfg(not(feature = "tls"))]
        let tcp_tls: ListenerTls = match config.tcp.tls.enabled() {
            true => {
                return Err(ServerError::Config(
                    "tcp.tls: this build has no TLS support (build with the cargo feature `tls`)".into(),
                ))
            }
            false => None,
        };
        let node_id = if config.node_id.is_empty() {
            format!("node-{:08x}", rand::random::<u32>())
        } else {
            config.node_id.clone()
        };
        let (shutdown_tx, shutdown) = watch::channel(false);
        let broker = broker(&config, &manager, &node_id, &public_url, &clock);
        let ctx = Arc::new(HubContext {
            manager,
            sessions,
            config: Arc::new(config),
            node_id,
            public_url,
            shutdown,
            draining: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            broker,
            rtc: std::sync::OnceLock::new(),
            clock,
            #[cfg(feature = "tls")]
            tls,
        });
        let sources = Arc::new(crate::source::Sources::new(&ctx.config.sources));
        Ok(Self { ctx, tcp_tls, shutdown_tx, started: Instant::now(), sources })
    }

    /// The connection manager.
    pub fn manager(&self) -> Arc<ConnectionManager> {
        self.ctx.manager.clone()
    }

    /// The session manager.
    pub fn sessions(&self) -> Arc<SessionManager> {
        self.ctx.sessions.clone()
    }

    /// The upstream sources (`[[sources]]`).
    pub fn sources(&self) -> Arc<crate::source::Sources> {
        self.sources.clone()
    }

    /// Shared context (for embedding and tests).
    pub fn context(&self) -> Arc<HubContext> {
        self.ctx.clone()
    }

    /// TLS on the public listener, when `server.tls` turns it on: [`crate::tls::Tls::reload`]
    /// replaces the certificate for new handshakes (the binary calls it on SIGHUP).
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<Arc<crate::tls::Tls>> {
        self.ctx.tls.clone()
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully: stops accepting, tells
    /// every client (bye `shutdown` with reconnect advice), drains queues up to
    /// `server.shutdown_grace_ms`, and returns.
    ///
    /// # Errors
    /// When a listener fails.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let ctx = self.ctx.clone();
        if ctx.config.webrtc.enabled {
            #[cfg(feature = "webrtc")]
            {
                let handle = crate::transport::webrtc::start(&ctx, &ctx.config.webrtc)?;
                let _ = ctx.rtc.set(Arc::new(handle));
            }
            #[cfg(not(feature = "webrtc"))]
            tracing::info!("WebRTC is not built in (cargo feature `webrtc`); signaling answers not_found");
        }
        let app = AppState { ctx: ctx.clone(), started: self.started, sources: self.sources.clone() };
        let admin = crate::admin::AdminState::new(app.clone());
        #[cfg(feature = "tls")]
        let public_tls = ctx.tls.clone();
        #[cfg(not(feature = "tls"))]
        let public_tls = None;
        #[cfg(feature = "tls")]
        let tls_watch: Vec<_> = [ctx.tls.clone(), self.tcp_tls.clone()]
            .into_iter()
            .flatten()
            .map(|t| tokio::spawn(t.watch(ctx.shutdown.clone())))
            .collect();
        let public_task =
            tokio::spawn(serve_http(listeners.public, public_router(app.clone()), public_tls, ctx.shutdown.clone()));
        let admin_task = tokio::spawn(serve_http(
            listeners.admin,
            crate::admin::admin_router(admin.clone()),
            None,
            ctx.shutdown.clone(),
        ));
        let tcp_task = listeners.tcp.map(|l| tokio::spawn(crate::transport::tcp::serve(l, ctx.clone(), self.tcp_tls)));
        let sweeper = tokio::spawn(sweep_topics(ctx.clone()));
        let sampler = tokio::spawn(crate::admin::sampler(admin));
        let demo =
            ctx.config.demo_enabled().then(|| tokio::spawn(crate::demo::run(ctx.clone(), ctx.config.demo.clone())));
        #[cfg(feature = "redis")]
        let cluster = ctx.broker.cluster().map(|c| c.start(ctx.shutdown.clone()));
        #[cfg(not(feature = "redis"))]
        let cluster: Option<tokio::task::JoinHandle<()>> = None;
        self.sources.start(&ctx);
        tracing::info!(node_id = %ctx.node_id, url = %ctx.public_url, "fanhub serving");

        shutdown.await;
        tracing::info!(connections = ctx.live.load(Ordering::Relaxed), "shutting down");
        // Sources first: nothing new comes in, and what was published is committed upstream.
        self.sources.stop(Duration::from_millis(ctx.config.server.shutdown_grace_ms.max(1000))).await;
        ctx.draining.store(true, Ordering::Relaxed);
        let _ = self.shutdown_tx.send(true);
        let grace = Duration::from_millis(ctx.config.server.shutdown_grace_ms + ctx.config.session.close_timeout_ms);
        let deadline = Instant::now() + grace;
        while ctx.live.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sweeper.abort();
        sampler.abort();
        #[cfg(feature = "tls")]
        for t in tls_watch {
            t.abort();
        }
        if let Some(demo) = demo {
            demo.abort();
        }
        if let Some(task) = cluster {
            // Deregisters the node, so peers stop advising it at once.
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        for task in [Some(public_task), Some(admin_task), tcp_task].into_iter().flatten() {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
        tracing::info!(left = ctx.live.load(Ordering::Relaxed), "shut down");
        Ok(())
    }
}

/// The broker `config` asks for: Redis when `broker.redis.url` is set, else in memory.
fn broker(
    config: &Config,
    manager: &Arc<ConnectionManager>,
    node_id: &str,
    public_url: &str,
    clock: &Clock,
) -> crate::broker::Broker {
    if config.broker.redis.url.is_empty() {
        return crate::broker::Broker::Memory;
    }
    #[cfg(feature = "redis")]
    {
        crate::broker::Broker::Redis(crate::broker::Cluster::new(
            manager.clone(),
            config.broker.redis.clone(),
            node_id.to_owned(),
            public_url.to_owned(),
            clock.clone(),
        ))
    }
    #[cfg(not(feature = "redis"))]
    {
        // Config::validate refuses a Redis URL in a build without Redis.
        let _ = (manager, node_id, public_url, clock);
        crate::broker::Broker::Memory
    }
}

/// Builds and runs a server for `config` on `listeners` until `shutdown` resolves.
///
/// # Errors
/// [`ServerError`].
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Server::new(config, &listeners)?.run(listeners, shutdown).await
}

/// Serves HTTP/1.1 on `listener` until shutdown: one task per connection, upgrades enabled,
/// over TLS when `tls` is set (the handshake runs in the connection's task, so a slow client
/// never holds up the accept loop).
///
/// Not `axum::serve`: that wraps each socket in hyper-util's private `Rewind` type, and the
/// WebSocket transport needs the upgraded connection's own stream (`TcpStream`, or rustls'
/// `TlsStream` over it) to split it and write frames with vectored writes.
async fn serve_http(listener: TcpListener, router: Router, tls: ListenerTls, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: keep serving the connections we have, retry shortly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = async { let _ = shutdown.wait_for(|v| *v).await; } => return,
        };
        let router = router.clone();
        let stop = shutdown.clone();
        match &tls {
            None => {
                tokio::spawn(serve_connection(tcp, remote, router, stop));
            }
            #[cfg(feature = "tls")]
            Some(tls) => {
                tokio::spawn(serve_tls_connection(tls.clone(), tcp, remote, router, stop));
            }
            #[cfg(not(feature = "tls"))]
            Some(never) => match *never {},
        }
    }
}

/// The TLS handshake, then HTTP over it. A client that speaks plain HTTP to the TLS port gets
/// a plain-text 400 saying so (its first byte is not a TLS handshake record), then the close.
#[cfg(feature = "tls")]
async fn serve_tls_connection(
    tls: Arc<crate::tls::Tls>,
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    router: Router,
    stop: watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    /// The content type of a TLS handshake record, the first byte a TLS client sends.
    const TLS_HANDSHAKE: u8 = 0x16;
    let mut first = [0u8; 1];
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => {}
        Ok(Ok(1)) => {
            tls.record_handshake_failure();
            tracing::debug!(%remote, "plain-text request on the TLS listener");
            let body = r#"{"code":"invalid_argument","message":"this port speaks TLS: use https:// or wss://"}"#;
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            // Read the request head first and the rest after answering: closing with unread
            // input would reset the connection, and the client might lose the answer.
            let mut tcp = tcp;
            let mut buf = vec![0u8; 8192];
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let mut seen = 0;
                while seen < buf.len() && !buf[..seen].windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf[seen..]).await {
                        Ok(n) if n > 0 => seen += n,
                        _ => break,
                    }
                }
                let _ = tcp.write_all(answer.as_bytes()).await;
                let _ = tcp.shutdown().await;
                while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
            })
            .await;
            return;
        }
        _ => {
            tls.record_handshake_failure();
            return;
        }
    }
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp)).await {
        Ok(Ok(stream)) => serve_connection(stream, remote, router, stop).await,
        Ok(Err(e)) => {
            tls.record_handshake_failure();
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            tls.record_handshake_failure();
            tracing::debug!(%remote, "TLS handshake timed out");
        }
    }
}

/// Serves HTTP/1.1 with upgrades on one connection until it ends or the server shuts down.
async fn serve_connection<I>(io: I, remote: SocketAddr, router: Router, mut stop: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt as _;
    let (abort, _open) = crate::transport::HttpConnHandle::new();
    let handle = abort.clone();
    let svc = hyper::service::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(axum::extract::ConnectInfo(remote));
        req.extensions_mut().insert(handle.clone());
        router.clone().oneshot(req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        // A streaming handler gave up on a peer that stopped reading: drop the socket.
        () = abort.aborted() => {}
        () = async { let _ = stop.wait_for(|v| *v).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

async fn sweep_topics(ctx: Arc<HubContext>) {
    let period = Duration::from_millis(ctx.config.server.topic_sweep_interval_ms);
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let removed = ctx.manager.sweep_topics(ctx.clock.now().mono);
        if removed > 0 {
            tracing::debug!(removed, "swept idle topics");
        }
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "fanhub public API",
        description = "The public listener of a fanhub node: the WebSocket endpoint, server-sent events, health, session tokens for backends, backend publish and (when built with WebRTC) WebRTC signaling. Every error is `{\"code\",\"message\"}` (ErrorBody). The admin API has its own document on the admin listener."
    ),
    components(schemas(ErrorBody))
)]
struct PublicApiDoc;

/// The public router and its OpenAPI document, built from the same handler list: `/ws`,
/// `/v1/sse`, `/healthz`, `/readyz`, `POST /v1/sessions`, `POST /v1/publish`, WebRTC signaling (feature
/// `webrtc`), `POST /v1/dev/token` (development mode only), `GET /v1/demo` (while the demo
/// publisher runs). The document leaves out the demo
/// pages and itself.
pub fn public_router_and_openapi(state: AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    // `/ws` answers every method: a request that is not a GET upgrade gets the documented 400
    // from the WebSocket handler, not a 405.
    let (schemas, paths, ws_route) = routes!(ws_endpoint);
    let mut r = OpenApiRouter::with_openapi(PublicApiDoc::openapi())
        .routes((schemas, paths, ws_route.fallback(ws_endpoint)))
        .routes(routes!(sse_endpoint))
        .routes(routes!(http::healthz))
        .routes(routes!(readyz))
        .routes(routes!(create_session))
        .routes(routes!(http::publish));
    #[cfg(feature = "webrtc")]
    {
        r = r.routes(routes!(rtc::offer)).routes(routes!(rtc::config)).routes(routes!(rtc::trickle, rtc::delete));
    }
    if state.ctx.sessions.is_dev() {
        r = r.routes(routes!(dev_token));
    }
    if state.ctx.config.demo_enabled() {
        r = r.routes(routes!(crate::demo::describe));
    }
    r.split_for_parts()
}

/// The public router: the API of [`public_router_and_openapi`], its document at
/// `/v1/openapi.json`, the demo pages and what they load (`crate::web`), and JSON errors for
/// everything else (unknown path 404, method not served 405, rejected bodies, paths and queries).
pub fn public_router(state: AppState) -> Router {
    let (router, api) = public_router_and_openapi(state.clone());
    let api = Arc::new(api);
    let router = router
        .route("/v1/openapi.json", get(move || async move { Json((*api).clone()) }))
        .route("/client/{file}", get(web::client_module))
        .route("/assets/{file}", get(web::asset));
    web::DEMO_PAGES
        .iter()
        .fold(router, |r, (path, body)| r.route(path, get(|| async { web::page(body) })))
        .fallback(|method: Method, uri: Uri| async move { http::no_route(&method, &uri) })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move { http::wrong_method(&method, &uri) })
        .layer(axum::extract::DefaultBodyLimit::max(http::BODY_LIMIT))
        .layer(axum::middleware::map_response(http::json_errors))
        .with_state(state)
}

/// The WebSocket endpoint (`docs/protocol.md` §1): upgrades to a `fanhub.v1` WebSocket.
#[utoipa::path(get, path = "/ws",
    params(("token" = Option<String>, Query, description = "The JWT, for clients that cannot set `Authorization: Bearer` (browsers); or send it in `connect`")),
    responses(
        (status = 101, description = "Switching Protocols: a `fanhub.v1` WebSocket"),
        (status = 400, body = ErrorBody, description = "not a WebSocket upgrade (any other method, or no upgrade headers), `Sec-WebSocket-Version` other than 13, no `Sec-WebSocket-Key`, only unknown subprotocol versions"),
        (status = 503, body = ErrorBody, description = "the node is draining or shutting down")))]
async fn ws_endpoint(
    State(s): State<AppState>,
    remote: axum::extract::ConnectInfo<SocketAddr>,
    query: axum::extract::Query<std::collections::HashMap<String, String>>,
    req: axum::extract::Request,
) -> Response {
    ws::ws_handler(State(s.ctx.clone()), remote, query, req).await
}

/// Server-sent events (`docs/protocol.md` §10c): the records of `topics` as a
/// `text/event-stream`, resumable with `Last-Event-ID`.
#[utoipa::path(get, path = "/v1/sse",
    params(
        ("topics" = String, Query, description = "Comma-separated topics to subscribe to"),
        ("access_token" = Option<String>, Query, description = "The JWT, for clients that cannot set `Authorization: Bearer` (browsers' `EventSource`)"),
        ("last_event_id" = Option<String>, Query, description = "Resume after this event id (`epoch:offset` per topic, comma-separated); the `Last-Event-ID` header wins"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (sent by `EventSource` when it reconnects)")),
    responses(
        (status = 200, content_type = "text/event-stream", body = String, description = "`message` events (records), `welcome`, `subscribed`, `token_expiring`, `error` and `bye` events, keep-alive comments"),
        (status = 400, body = ErrorBody, description = "no or an invalid topic, a topic listed twice, a bad Last-Event-ID"),
        (status = 401, body = ErrorBody, description = "no, bad or expired token"),
        (status = 403, body = ErrorBody, description = "the token may not subscribe to a topic"),
        (status = 429, body = ErrorBody, description = "more topics than `max_subscriptions_per_connection`"),
        (status = 503, body = ErrorBody, description = "the node is draining or shutting down")))]
async fn sse_endpoint(
    State(s): State<AppState>,
    axum::extract::ConnectInfo(remote): axum::extract::ConnectInfo<SocketAddr>,
    parts: axum::http::request::Parts,
) -> Response {
    sse::sse_handler(s.ctx.clone(), remote, parts).await
}

/// WebRTC signaling over HTTP (`docs/protocol.md` §10b), built with the `webrtc` feature.
#[cfg(feature = "webrtc")]
mod rtc {
    use std::net::SocketAddr;

    use axum::extract::{ConnectInfo, Path, State};
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use axum::Json;

    use crate::http::{ApiError, AppState, ErrorBody};
    use crate::protocol::ErrorCode;
    use crate::transport::signaling;

    /// A peer's SDP offer (WHEP style); the answer is the SDP answer.
    #[utoipa::path(post, path = "/v1/rtc/offer",
        params(("token" = Option<String>, Query, description = "The JWT, when it cannot be sent as `Authorization: Bearer`")),
        request_body(content = String, content_type = "application/sdp", description = "The SDP offer (or JSON `{\"type\":\"offer\",\"sdp\":…}`); it must contain a data channel"),
        responses(
            (status = 201, content_type = "application/sdp", body = String, description = "The SDP answer",
                headers(("Location" = String, description = "`/v1/rtc/sessions/{id}`"))),
            (status = 400, body = ErrorBody, description = "not SDP, malformed SDP, no data channel"),
            (status = 401, body = ErrorBody, description = "no, bad or expired token"),
            (status = 404, body = ErrorBody, description = "WebRTC is disabled on this node"),
            (status = 503, body = ErrorBody, description = "draining")))]
    pub(super) async fn offer(
        State(s): State<AppState>,
        ConnectInfo(remote): ConnectInfo<SocketAddr>,
        uri: Uri,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> Response {
        let token = crate::transport::request_token(&headers, uri.query()).map(str::to_owned);
        signaling::offer(s.ctx.clone(), token, remote, body).await
    }

    /// What a peer needs before its offer: whether WebRTC is on, the ICE servers for its
    /// `RTCPeerConnection`, the channel labels and the chunk size.
    #[utoipa::path(get, path = "/v1/rtc/config",
        responses((status = 200, body = Object, description = "`{enabled, ice_servers, channels{control,lossy}, chunk_size, offer_url}`")))]
    pub(super) async fn config(State(s): State<AppState>) -> Response {
        Json(signaling::config(&s.ctx)).into_response()
    }

    /// The subject of a signaling request's bearer token.
    fn subject(s: &AppState, uri: &Uri, headers: &HeaderMap) -> Result<String, ApiError> {
        let token = crate::transport::request_token(headers, uri.query())
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "a bearer token is required"))?;
        s.ctx.sessions.verify(token, s.ctx.clock.now().unix_secs()).map(|i| i.subject).map_err(|e| {
            s.ctx.manager.counters().record_auth_failure(e.reason);
            ApiError::new(ErrorCode::Unauthenticated, e.to_string())
        })
    }

    /// Trickle ICE (WHEP): `a=candidate:` lines for a session the token's subject created.
    #[utoipa::path(patch, path = "/v1/rtc/sessions/{id}",
        params(("id" = u64, Path, description = "Session id (from the offer's `Location`)")),
        request_body(content = String, content_type = "application/trickle-ice-sdpfrag", description = "`a=candidate:` lines"),
        responses(
            (status = 204, description = "Candidates added"),
            (status = 400, body = ErrorBody, description = "no or a malformed candidate, a bad id"),
            (status = 401, body = ErrorBody),
            (status = 403, body = ErrorBody, description = "another subject's session"),
            (status = 404, body = ErrorBody, description = "no such session, or WebRTC disabled")))]
    pub(super) async fn trickle(
        State(s): State<AppState>,
        Path(id): Path<u64>,
        uri: Uri,
        headers: HeaderMap,
        body: String,
    ) -> Response {
        let subject = match subject(&s, &uri, &headers) {
            Ok(x) => x,
            Err(e) => return e.into_response(),
        };
        let lines: Vec<&str> = body.lines().map(str::trim).filter(|l| l.starts_with("a=candidate:")).collect();
        if lines.is_empty() {
            // No candidate: still say whether the session exists.
            if let Err(e) = s.ctx.signaling().and_then(|r| r.add_candidate(&subject, id, "")) {
                if e.code != ErrorCode::InvalidArgument {
                    return e.into_response();
                }
            }
            return ApiError::new(ErrorCode::InvalidArgument, "no a=candidate: line in the body").into_response();
        }
        for line in lines {
            if let Err(e) = s.ctx.signaling().and_then(|r| r.add_candidate(&subject, id, line)) {
                return e.into_response();
            }
        }
        StatusCode::NO_CONTENT.into_response()
    }

    /// Ends a session the token's subject created.
    #[utoipa::path(delete, path = "/v1/rtc/sessions/{id}",
        params(("id" = u64, Path, description = "Session id (from the offer's `Location`)")),
        responses(
            (status = 204, description = "Ended"),
            (status = 400, body = ErrorBody, description = "a bad id"),
            (status = 401, body = ErrorBody),
            (status = 403, body = ErrorBody, description = "another subject's session"),
            (status = 404, body = ErrorBody, description = "no such session, or WebRTC disabled")))]
    pub(super) async fn delete(
        State(s): State<AppState>,
        Path(id): Path<u64>,
        uri: Uri,
        headers: HeaderMap,
    ) -> Response {
        let subject = match subject(&s, &uri, &headers) {
            Ok(x) => x,
            Err(e) => return e.into_response(),
        };
        match s.ctx.signaling().and_then(|r| r.close_session(&subject, id)) {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => e.into_response(),
        }
    }
}

/// Readiness: 200 while this node takes connections, 503 while it drains or (cluster mode)
/// cannot reach Redis.
#[utoipa::path(get, path = "/readyz",
    responses(
        (status = 200, body = Object, description = "`{status, version, node_id, uptime_secs, connections, broker{kind, ready}}`, and `tls{reloads, reload_failures, handshake_failures}` with TLS on"),
        (status = 503, body = Object, description = "the same, `status` `unavailable`")))]
async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let ready = !s.ctx.draining.load(Ordering::Relaxed) && s.ctx.broker.is_ready();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(http::health_body(&s, ready)))
}

/// `POST /v1/sessions` and `POST /v1/dev/token` request: who the token is for and what it may do.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SessionRequest {
    /// Token subject (user or service id).
    subject: String,
    /// Topic patterns the token may subscribe to (`video/*`, `telemetry/>`).
    #[serde(default)]
    subscribe: Vec<String>,
    /// Topic patterns the token may publish to.
    #[serde(default)]
    publish: Vec<String>,
    /// Lifetime in seconds, 1..=`auth.max_session_ttl_secs` (default `auth.session_ttl_secs`).
    #[serde(default)]
    ttl_secs: Option<u64>,
}

/// A minted session token and where to use it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct SessionResponse {
    /// The JWT.
    token: String,
    /// Expiry, seconds since the UNIX epoch.
    expires_at: u64,
    /// The WebSocket URL to connect to.
    ws_url: String,
    /// The subprotocol (`fanhub.v1`).
    protocol: &'static str,
}

/// Mints a session token for a backend, guarded by an API key (`auth.api_keys`; in
/// development mode also the key printed at start).
#[utoipa::path(post, path = "/v1/sessions", request_body = SessionRequest,
    params(("X-Api-Key" = Option<String>, Header, description = "An API key (or send it as `Authorization: Bearer <key>`)")),
    responses(
        (status = 200, body = SessionResponse),
        (status = 400, body = ErrorBody, description = "bad body or TTL"),
        (status = 401, body = ErrorBody, description = "missing or unknown API key"),
        (status = 413, body = ErrorBody, description = "body over the request body limit")))]
async fn create_session(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<SessionResponse>, ApiError> {
    let key = http::bearer_or_key(&headers).ok_or_else(|| {
        ApiError::new(ErrorCode::Unauthenticated, "an API key is required (X-Api-Key or Authorization: Bearer)")
    })?;
    if !s.ctx.sessions.check_api_key(key) {
        s.ctx.manager.counters().record_auth_failure(crate::hub::AuthFailure::InvalidApiKey);
        return Err(ApiError::new(ErrorCode::Unauthenticated, "unknown API key"));
    }
    mint(&s, &body)
}

/// Development mode only (no auth key configured): mints a token like `/v1/sessions`, without
/// an API key.
#[utoipa::path(post, path = "/v1/dev/token", request_body = SessionRequest,
    responses(
        (status = 200, body = SessionResponse),
        (status = 400, body = ErrorBody, description = "bad body or TTL"),
        (status = 413, body = ErrorBody, description = "body over the request body limit")))]
async fn dev_token(State(s): State<AppState>, body: axum::body::Bytes) -> Result<Json<SessionResponse>, ApiError> {
    mint(&s, &body)
}

fn mint(s: &AppState, body: &[u8]) -> Result<Json<SessionResponse>, ApiError> {
    let req: SessionRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, format!("invalid session request: {e}")))?;
    let auth = &s.ctx.config.auth;
    let ttl = req.ttl_secs.unwrap_or(auth.session_ttl_secs);
    if ttl == 0 || ttl > auth.max_session_ttl_secs {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("ttl_secs must be 1..={}", auth.max_session_ttl_secs),
        ));
    }
    let minted = s
        .ctx
        .sessions
        .mint(
            &MintRequest { subject: req.subject, subscribe: req.subscribe, publish: req.publish, ttl_secs: ttl },
            unix_now(),
        )
        .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e))?;
    Ok(Json(SessionResponse {
        token: minted.token,
        expires_at: minted.expires_at,
        ws_url: s.ctx.public_url.clone(),
        protocol: SUBPROTOCOL,
    }))
}
