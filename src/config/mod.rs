//! Configuration: defaults, the TOML file, `FANHUB_*` environment overrides, and validation.
//!
//! Every key has a default, so an empty file (or none) is a working development setup. An
//! environment variable `FANHUB_SECTION__KEY=value` overrides `[section] key` (double
//! underscore between levels; the value is parsed as TOML, falling back to a string).
//! [`Config::validate`] reports every problem at once, each naming the key, the value and the
//! allowed range.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hub::{HubConfig, HubLimits, TopicsConfig};

pub mod sources;

pub use sources::{BackpressureMode, ConsumerSettings, MappingConfig, OffsetReset, SourceConfig, SourceKind, Template};

/// The development HS256 secret used when no key is configured. Tokens signed with it are
/// worthless outside a developer's machine; the server warns loudly when it is in use.
pub const DEV_SECRET: &str = "fanhub-development-secret-do-not-use-in-production";

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This node's id (empty: generated at start).
    pub node_id: String,
    /// Listeners and shutdown.
    pub server: ServerConfig,
    /// The protocol session every transport runs: keep-alive, timeouts, time sync.
    pub session: SessionConfig,
    /// WebSocket transport.
    pub websocket: WsConfig,
    /// Authentication.
    pub auth: AuthConfig,
    /// Connection and enforcement limits.
    pub limits: HubLimits,
    /// Topics, policies and history.
    pub topics: TopicsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Admin API and metrics.
    pub admin: AdminConfig,
    /// Where topics are shared: in-process (default) or through Redis (cluster mode).
    pub broker: BrokerConfig,
    /// WebRTC data channels.
    pub webrtc: WebRtcConfig,
    /// The raw TCP transport (off unless `tcp.listen` is set).
    pub tcp: TcpConfig,
    /// The built-in demo publisher.
    pub demo: DemoConfig,
    /// Upstream logs consumed into topics (`[[sources]]`).
    pub sources: Vec<SourceConfig>,
    /// `session` keys that were given under their old `[websocket]` names (validation
    /// messages name the key as written).
    #[serde(skip)]
    aliased: Vec<String>,
}

/// Keys of `[session]` that were accepted under `[websocket]` before every transport shared
/// one session, and still are.
pub const SESSION_ALIASES: [&str; 5] =
    ["ping_interval_ms", "idle_timeout_ms", "auth_timeout_ms", "time_sync_interval_ms", "close_timeout_ms"];

/// `[demo]`: the built-in demo publisher — a simulated fleet's telemetry on
/// `demo/vehicle/{id}/{stream}`, published only while a stream has subscribers (and 30 s after).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// On or off; unset: on in development mode only. `true` needs development mode.
    pub enabled: Option<bool>,
    /// Simulated vehicles.
    pub vehicles: u32,
    /// Samples per second of each stream.
    pub rate_hz: u32,
    /// Frames per second of the synthetic video on `demo/video/cam1` (0: none).
    pub video_fps: u32,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self { enabled: None, vehicles: 3, rate_hz: 20, video_fps: 30 }
    }
}

/// The demo publisher's topics, declared ahead of the configured ones when it runs: each
/// vehicle's events `reliable` with a history, its telemetry streams best-effort with a history
/// of 2000 samples (a client that reconnects resumes without a hole), the video best-effort
/// with 8-frame queues and no history (late frames are useless). Only the hub publishes on
/// them.
pub fn demo_declarations() -> Vec<crate::hub::TopicDecl> {
    let decl = |v: serde_json::Value| serde_json::from_value(v).expect("a valid demo declaration");
    vec![
        decl(serde_json::json!({
            "pattern": "demo/vehicle/*/events", "policy": {"kind": "reliable"},
            "history": {"max_messages": 1000}, "publishers": [],
            "description": "demo: a simulated vehicle's events (lap, alarm)"
        })),
        decl(serde_json::json!({
            "pattern": "demo/video/>",
            "policy": {"kind": "best_effort", "queue_messages": 8, "queue_bytes": 8_388_608, "overflow": "drop_oldest"},
            "history": {"max_messages": 0}, "publishers": [],
            "description": "demo: synthetic video, one JPEG per message"
        })),
        decl(serde_json::json!({
            "pattern": "demo/vehicle/>", "policy": {"kind": "best_effort"},
            "history": {"max_messages": 2000}, "publishers": [],
            "description": "demo: a simulated vehicle's telemetry streams"
        })),
    ]
}

/// `[webrtc]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebRtcConfig {
    /// Serve WebRTC peers (`POST /v1/rtc/offer`).
    pub enabled: bool,
    /// Address of the drivers' UDP sockets (ICE-lite, peers muxed on each): driver *i* binds
    /// this port + *i* (so a range of `drivers` ports); port 0 = any free port for each.
    pub udp_listen: SocketAddr,
    /// Driver tasks, each with its own socket and peers: 0 = one per core; 1 = a single port.
    pub drivers: usize,
    /// Address advertised in the host candidate instead of `udp_listen`'s (NAT 1:1, e.g. a
    /// load balancer's public IP).
    pub public_ip: Option<std::net::IpAddr>,
    /// Largest data-channel message; bigger records are sent as chunks.
    pub chunk_size: usize,
    /// STUN/TURN servers handed to peers by `GET /v1/rtc/config` for their own gathering (the
    /// server is ICE-lite and needs none itself; on loopback none are needed at all).
    pub ice_servers: Vec<IceServer>,
}

/// One `[[webrtc.ice_servers]]` entry, in the browser's `RTCIceServer` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `stun:host:port` / `turn:host:port?transport=udp` URLs.
    pub urls: Vec<String>,
    /// TURN username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            udp_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            drivers: 0,
            public_ip: None,
            chunk_size: 16 * 1024,
            ice_servers: Vec::new(),
        }
    }
}

/// `[broker]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// `[broker.redis]`: set `url` to run as one node of a cluster.
    pub redis: RedisConfig,
}

/// `[broker.redis]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/db`; empty (the default) = the embedded in-memory broker.
    pub url: String,
    /// Key and channel prefix, so several hubs can share one Redis.
    pub prefix: String,
    /// Topic keys (sequence, epoch, history) expire this long after the topic's last publish.
    pub history_ttl_secs: u64,
    /// Node registry heartbeat and maintenance interval, ms; an entry expires after 3 of them.
    pub heartbeat_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self { url: String::new(), prefix: "fanhub".into(), history_ttl_secs: 86_400, heartbeat_ms: 1000 }
    }
}

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Whether `GET /metrics` needs the admin bearer token (metrics are admin-only by default).
    pub metrics_require_token: bool,
    /// How often rates are computed and the stats stream ticks, ms.
    pub stats_interval_ms: u64,
    /// Largest page `GET /v1/admin/connections` returns.
    pub max_page_size: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { metrics_require_token: true, stats_interval_ms: 1000, max_page_size: 1000 }
    }
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Public listener: WebSocket, health, sessions, demo.
    pub listen: SocketAddr,
    /// Admin listener: admin API and metrics.
    pub admin_listen: SocketAddr,
    /// The WebSocket URL clients are given (empty: `ws://<listen>/ws`, `wss://` with TLS on).
    pub public_url: String,
    /// Other nodes' WebSocket URLs, offered as reconnect advice on shutdown and drain.
    pub reconnect_urls: Vec<String>,
    /// How long a graceful shutdown may spend draining queues, ms.
    pub shutdown_grace_ms: u64,
    /// How often idle topics are swept, ms.
    pub topic_sweep_interval_ms: u64,
    /// TLS on the public listener (`[server.tls]`; off by default).
    pub tls: crate::tls::TlsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            public_url: String::new(),
            reconnect_urls: Vec::new(),
            shutdown_grace_ms: 5000,
            topic_sweep_interval_ms: 30_000,
            tls: crate::tls::TlsConfig::default(),
        }
    }
}

/// `[session]`: the `fanhub.v1` session, the same on every transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Keep-alive interval, ms: a WebSocket ping (transports with their own liveness checks,
    /// WebRTC's ICE consent, send none).
    pub ping_interval_ms: u64,
    /// A connection whose transport has a keep-alive and that sends nothing for this long is
    /// closed (`idle_timeout`), ms.
    pub idle_timeout_ms: u64,
    /// Time allowed from the transport's accept to a successful `connect`, ms.
    pub auth_timeout_ms: u64,
    /// Server-initiated time sync interval, ms (0: off).
    pub time_sync_interval_ms: u64,
    /// How long a closing connection may take to flush, ms.
    pub close_timeout_ms: u64,
    /// Largest average clock offset (absolute, over the answered server-initiated time syncs of
    /// the last `clock_offset_window_ms`) a client may show, ms; above it the connection is
    /// closed (`violation`). 0: not enforced.
    pub max_clock_offset_ms: u64,
    /// The window of that average, ms.
    pub clock_offset_window_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ping_interval_ms: 20_000,
            idle_timeout_ms: 60_000,
            auth_timeout_ms: 10_000,
            time_sync_interval_ms: 30_000,
            close_timeout_ms: 5000,
            max_clock_offset_ms: 0,
            clock_offset_window_ms: 60_000,
        }
    }
}

/// `[websocket]`: framing of the WebSocket transport. The session keys it used to hold
/// (`ping_interval_ms`, `idle_timeout_ms`, `auth_timeout_ms`, `time_sync_interval_ms`,
/// `close_timeout_ms`) are still accepted here and mean their `[session]` namesakes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsConfig {
    /// Most records in one binary data message.
    pub batch_max_records: usize,
    /// Target size of one binary data message, bytes (a single larger record still goes alone).
    pub batch_max_bytes: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self { batch_max_records: 512, batch_max_bytes: 256 * 1024 }
    }
}

/// `[tcp]`: the raw TCP transport (`docs/protocol.md` §10d). Off unless `listen` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpConfig {
    /// Where TCP clients connect (unset: the transport is off).
    pub listen: Option<SocketAddr>,
    /// Time allowed from the accept (and TLS handshake) to the client's version byte, ms.
    pub version_timeout_ms: u64,
    /// TLS on the TCP listener (`[tcp.tls]`, the same keys as `[server.tls]`; off by default).
    pub tls: crate::tls::TlsConfig,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self { listen: None, version_timeout_ms: 5000, tls: crate::tls::TlsConfig::default() }
    }
}

/// `[auth]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `HS256`, `RS256` or `ES256`.
    pub algorithm: String,
    /// HS256 shared secret (unset with no public key: development mode).
    pub hs256_secret: Option<String>,
    /// PEM public key for RS256/ES256 verification.
    pub public_key_pem: Option<PathBuf>,
    /// PEM private key for RS256/ES256 minting (`POST /v1/sessions`, `fanhub token`).
    pub private_key_pem: Option<PathBuf>,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Required `aud`, if set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp`/`nbf`, seconds.
    pub leeway_secs: u64,
    /// API keys allowed to create sessions (`POST /v1/sessions`) and publish over HTTP.
    pub api_keys: Vec<String>,
    /// Bearer tokens of the admin API.
    pub admin_tokens: Vec<String>,
    /// Subscribe patterns for tokens without a `subscribe` claim.
    pub default_subscribe: Vec<String>,
    /// Publish patterns for tokens without a `publish` claim.
    pub default_publish: Vec<String>,
    /// How long before expiry the client is warned, seconds.
    pub expiry_warning_secs: u64,
    /// Default TTL of sessions created over HTTP, seconds.
    pub session_ttl_secs: u64,
    /// Longest TTL a session may ask for, seconds.
    pub max_session_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            algorithm: "HS256".into(),
            hs256_secret: None,
            public_key_pem: None,
            private_key_pem: None,
            issuer: None,
            audience: None,
            leeway_secs: 5,
            api_keys: Vec::new(),
            admin_tokens: Vec::new(),
            default_subscribe: Vec::new(),
            default_publish: Vec::new(),
            expiry_warning_secs: 60,
            session_ttl_secs: 3600,
            max_session_ttl_secs: 86_400,
        }
    }
}

impl AuthConfig {
    /// True when no key is configured and the built-in development secret is used.
    pub fn is_dev(&self) -> bool {
        self.hs256_secret.is_none() && self.public_key_pem.is_none()
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: String,
    /// A tracing filter: `info`, or per module `info,fanhub::transport=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: "human".into(), level: "info".into() }
    }
}

/// One invalid setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key, e.g. `websocket.idle_timeout_ms`.
    pub key: String,
    /// The value given.
    pub value: String,
    /// What is allowed.
    pub allowed: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}: allowed {}", self.key, self.value, self.allowed)
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// TOML syntax or an unknown key or a wrong type.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// Values out of range.
    #[error("invalid configuration:\n  {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<ConfigProblem>),
}

impl Config {
    /// Loads the file at `path` (if any), applies `FANHUB_*` variables from `env`, and
    /// validates.
    ///
    /// # Errors
    /// [`ConfigError`] describing every problem.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Io { path: p.to_owned(), source })?,
            None => String::new(),
        };
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        for (k, v) in env {
            let Some(rest) = k.strip_prefix("FANHUB_") else { continue };
            if rest == "CONFIG" || rest.is_empty() {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            set_path(&mut table, &path, parse_env_value(&v));
        }
        Self::from_table(table)
    }

    /// Parses a TOML string (no environment), and validates.
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_table(text.parse().map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?)
    }

    fn from_table(mut table: toml::Table) -> Result<Self, ConfigError> {
        let aliased = move_session_aliases(&mut table)?;
        let mut config: Config = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
            // Name a key as the file wrote it, under its old section if that is where it was.
            let mut text = e.to_string();
            for k in &aliased {
                text = text.replace(&format!("session.{k}"), &format!("websocket.{k}"));
            }
            ConfigError::Parse(text)
        })?;
        config.aliased = aliased;
        config.validate().map_err(ConfigError::Invalid)?;
        Ok(config)
    }

    /// The dotted name of `[session] key` as the configuration wrote it.
    fn session_key(&self, key: &str) -> String {
        let section = if self.aliased.iter().any(|k| k == key) { "websocket" } else { "session" };
        format!("{section}.{key}")
    }

    /// Checks every value's range; returns all problems.
    ///
    /// # Errors
    /// The list of problems.
    pub fn validate(&self) -> Result<(), Vec<ConfigProblem>> {
        let mut p = Vec::new();
        let mut range = |key: &str, v: u64, lo: u64, hi: u64| {
            if v < lo || v > hi {
                p.push(ConfigProblem { key: key.into(), value: v.to_string(), allowed: format!("{lo}..={hi}") });
            }
        };
        let se = &self.session;
        range(&self.session_key("ping_interval_ms"), se.ping_interval_ms, 100, 600_000);
        range(&self.session_key("idle_timeout_ms"), se.idle_timeout_ms, 200, 3_600_000);
        range(&self.session_key("auth_timeout_ms"), se.auth_timeout_ms, 100, 600_000);
        range(&self.session_key("time_sync_interval_ms"), se.time_sync_interval_ms, 0, 3_600_000);
        range("session.max_clock_offset_ms", se.max_clock_offset_ms, 0, 3_600_000);
        range("session.clock_offset_window_ms", se.clock_offset_window_ms, 1000, 3_600_000);
        range(&self.session_key("close_timeout_ms"), se.close_timeout_ms, 10, 600_000);
        let ws = &self.websocket;
        range("websocket.batch_max_records", ws.batch_max_records as u64, 1, 1000);
        range("websocket.batch_max_bytes", ws.batch_max_bytes as u64, 1024, 64 << 20);
        range("webrtc.chunk_size", self.webrtc.chunk_size as u64, 1024, 256 * 1024);
        range("webrtc.drivers", self.webrtc.drivers as u64, 0, 256);
        range("demo.vehicles", self.demo.vehicles.into(), 1, 50);
        range("demo.rate_hz", self.demo.rate_hz.into(), 1, 200);
        range("demo.video_fps", self.demo.video_fps.into(), 0, 60);
        range("broker.redis.history_ttl_secs", self.broker.redis.history_ttl_secs, 1, 365 * 86_400);
        range("broker.redis.heartbeat_ms", self.broker.redis.heartbeat_ms, 100, 60_000);
        range("admin.stats_interval_ms", self.admin.stats_interval_ms, 100, 60_000);
        range("admin.max_page_size", self.admin.max_page_size as u64, 1, 100_000);
        range("server.shutdown_grace_ms", self.server.shutdown_grace_ms, 0, 600_000);
        range("server.topic_sweep_interval_ms", self.server.topic_sweep_interval_ms, 100, 86_400_000);
        let l = &self.limits;
        range("limits.max_connections", l.max_connections as u64, 1, 10_000_000);
        range("limits.max_connections_per_user", l.max_connections_per_user as u64, 1, 10_000_000);
        range("limits.max_connections_per_ip", l.max_connections_per_ip as u64, 1, 10_000_000);
        range("limits.max_subscriptions_per_connection", l.max_subscriptions_per_connection as u64, 1, 100_000);
        range("limits.max_message_size", l.max_message_size as u64, 64, 64 << 20);
        range("limits.publish_rate_per_second", l.publish_rate_per_second.into(), 1, 10_000_000);
        range("limits.publish_burst", l.publish_burst.into(), 1, 10_000_000);
        range("limits.publish_bytes_per_second", l.publish_bytes_per_second.into(), 0, 1_000_000_000);
        range("limits.violations_window_ms", l.violations_window_ms, 1, 86_400_000);
        range("limits.violations_to_monitor", l.violations_to_monitor.into(), 1, 1_000_000);
        range("limits.violations_to_close", l.violations_to_close.into(), 1, 1_000_000);
        range("limits.queue.max_messages", l.queue.max_messages as u64, 1, 10_000_000);
        range("limits.queue.max_bytes", l.queue.max_bytes as u64, 1024, 1 << 32);
        range("limits.queue.max_control", l.queue.max_control as u64, 8, 1_000_000);
        range("topics.max_topics", self.topics.max_topics as u64, 1, 100_000_000);
        range("topics.default_history.max_messages", self.topics.default_history.max_messages as u64, 0, 10_000_000);
        range("auth.expiry_warning_secs", self.auth.expiry_warning_secs, 0, 86_400);
        range("auth.leeway_secs", self.auth.leeway_secs, 0, 3600);
        range("auth.session_ttl_secs", self.auth.session_ttl_secs, 1, self.auth.max_session_ttl_secs.max(1));
        range("tcp.version_timeout_ms", self.tcp.version_timeout_ms, 10, 600_000);
        sources::problems(&self.sources, self.limits.max_message_size, &mut p);
        let mut tls = Vec::new();
        self.server.tls.problems("server.tls", &mut tls);
        self.tcp.tls.problems("tcp.tls", &mut tls);
        p.extend(tls.into_iter().map(|t| ConfigProblem { key: t.key, value: t.value, allowed: t.allowed }));
        let r = &self.broker.redis;
        if !r.url.is_empty() && !cfg!(feature = "redis") {
            p.push(ConfigProblem {
                key: "broker.redis.url".into(),
                value: r.url.clone(),
                allowed: "empty: this build has no Redis support (build with the cargo feature `redis`)".into(),
            });
        } else if !r.url.is_empty() && !r.url.starts_with("redis://") {
            p.push(ConfigProblem {
                key: "broker.redis.url".into(),
                value: r.url.clone(),
                allowed: "empty (in-memory) or redis://[user:password@]host:port[/db]".into(),
            });
        }
        if r.prefix.is_empty() || r.prefix.contains(char::is_whitespace) {
            p.push(ConfigProblem {
                key: "broker.redis.prefix".into(),
                value: r.prefix.clone(),
                allowed: "a non-empty string without spaces".into(),
            });
        }
        let w = &self.webrtc;
        if w.udp_listen.port() != 0 && usize::from(w.udp_listen.port()) + w.drivers.max(1) - 1 > 65535 {
            p.push(ConfigProblem {
                key: "webrtc.udp_listen".into(),
                value: w.udp_listen.to_string(),
                allowed: "a port such that port + webrtc.drivers - 1 <= 65535".into(),
            });
        }
        for (i, server) in self.webrtc.ice_servers.iter().enumerate() {
            let bad = server.urls.is_empty()
                || server.urls.iter().any(|u| !["stun:", "stuns:", "turn:", "turns:"].iter().any(|p| u.starts_with(p)));
            if bad {
                p.push(ConfigProblem {
                    key: format!("webrtc.ice_servers[{i}].urls"),
                    value: format!("{:?}", server.urls),
                    allowed: "one or more stun:, stuns:, turn: or turns: URLs".into(),
                });
            }
        }
        if self.demo.enabled == Some(true) && !self.auth.is_dev() {
            p.push(ConfigProblem {
                key: "demo.enabled".into(),
                value: "true".into(),
                allowed: "false, or unset (the demo publisher runs in development mode only)".into(),
            });
        }
        let l = &self.limits;
        if l.publish_bytes_burst != 0 && (l.publish_bytes_burst as usize) < l.max_message_size {
            p.push(ConfigProblem {
                key: "limits.publish_bytes_burst".into(),
                value: l.publish_bytes_burst.to_string(),
                allowed: format!(
                    "0 (the larger of limits.publish_bytes_per_second and limits.max_message_size), or >= \
                     limits.max_message_size ({}): a message of the largest size must be able to pass",
                    l.max_message_size
                ),
            });
        }
        if self.limits.violations_to_close < self.limits.violations_to_monitor {
            p.push(ConfigProblem {
                key: "limits.violations_to_close".into(),
                value: self.limits.violations_to_close.to_string(),
                allowed: format!(">= limits.violations_to_monitor ({})", self.limits.violations_to_monitor),
            });
        }
        if !["HS256", "RS256", "ES256"].contains(&self.auth.algorithm.as_str()) {
            p.push(ConfigProblem {
                key: "auth.algorithm".into(),
                value: self.auth.algorithm.clone(),
                allowed: "HS256, RS256 or ES256".into(),
            });
        }
        if self.auth.algorithm != "HS256" && self.auth.public_key_pem.is_none() {
            p.push(ConfigProblem {
                key: "auth.public_key_pem".into(),
                value: "(unset)".into(),
                allowed: format!("a PEM file path (required with algorithm {})", self.auth.algorithm),
            });
        }
        if self.auth.hs256_secret.as_ref().is_some_and(|s| s.len() < 16) {
            p.push(ConfigProblem {
                key: "auth.hs256_secret".into(),
                value: "(hidden)".into(),
                allowed: "at least 16 bytes".into(),
            });
        }
        if !["human", "json"].contains(&self.log.format.as_str()) {
            p.push(ConfigProblem {
                key: "log.format".into(),
                value: self.log.format.clone(),
                allowed: "human or json".into(),
            });
        }
        for (i, pat) in self.auth.default_subscribe.iter().chain(&self.auth.default_publish).enumerate() {
            if let Err(e) = crate::hub::TopicPattern::new(pat) {
                p.push(ConfigProblem {
                    key: format!("auth.default_subscribe/default_publish[{i}]"),
                    value: pat.clone(),
                    allowed: e.to_string(),
                });
            }
        }
        if let Err(e) = crate::hub::TopicRegistry::new(self.topics.clone(), 0) {
            let key = if e.0 == usize::MAX {
                "topics.default_policy".to_string()
            } else {
                format!("topics.declare[{}]", e.0)
            };
            p.push(ConfigProblem { key, value: "(see message)".into(), allowed: e.1 });
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(p)
        }
    }

    /// Whether the demo publisher runs: `demo.enabled`, or unset in development mode.
    pub fn demo_enabled(&self) -> bool {
        self.demo.enabled.unwrap_or(true) && self.auth.is_dev()
    }

    /// The hub's part of the configuration (with the demo's topics declared first when it runs).
    pub fn hub(&self) -> HubConfig {
        let mut topics = self.topics.clone();
        if self.demo_enabled() {
            let mut declare = demo_declarations();
            declare.append(&mut topics.declare);
            topics.declare = declare;
        }
        HubConfig { limits: self.limits.clone(), topics, epoch_seed: 0 }
    }

    /// The WebSocket URL clients should use: `server.public_url`, or `ws://<bound>/ws`
    /// (`wss://` when the public listener speaks TLS).
    pub fn public_url(&self, bound: SocketAddr) -> String {
        if self.server.public_url.is_empty() {
            let scheme = if self.server.tls.enabled() { "wss" } else { "ws" };
            format!("{scheme}://{bound}/ws")
        } else {
            self.server.public_url.clone()
        }
    }
}

/// Moves session keys written under `[websocket]` to `[session]`; returns which. Giving one
/// under both names is refused, since which one would win is a guess.
fn move_session_aliases(table: &mut toml::Table) -> Result<Vec<String>, ConfigError> {
    let mut moved = Vec::new();
    let Some(toml::Value::Table(ws)) = table.get_mut("websocket") else { return Ok(moved) };
    let mut taken = Vec::new();
    for key in SESSION_ALIASES {
        if let Some(v) = ws.remove(key) {
            taken.push((key, v));
        }
    }
    if taken.is_empty() {
        return Ok(moved);
    }
    let session = table.entry("session").or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(session) = session else {
        return Err(ConfigError::Parse("`session` must be a table".into()));
    };
    for (key, v) in taken {
        if session.contains_key(key) {
            return Err(ConfigError::Parse(format!(
                "session.{key} is set both as session.{key} and as websocket.{key} (its old name); keep one"
            )));
        }
        session.insert(key.to_owned(), v);
        moved.push(key.to_owned());
    }
    Ok(moved)
}

fn parse_env_value(v: &str) -> toml::Value {
    match format!("v = {v}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(v.into())),
        Err(_) => toml::Value::String(v.into()),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [head, rest @ ..] => {
            let entry = table.entry(head.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                set_path(t, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_valid_dev_config() {
        let c = Config::load(None, Vec::new()).unwrap();
        assert!(c.auth.is_dev());
        assert_eq!(c.server.listen.port(), 8080);
    }

    #[test]
    fn the_example_file_documents_a_valid_config() {
        let c = Config::from_toml(include_str!("../../deploy/fanhub.example.toml")).unwrap();
        let d = Config::default();
        assert_eq!(c.server, d.server);
        assert_eq!(c.session, d.session);
        assert_eq!(c.websocket, d.websocket);
        assert_eq!(c.limits, d.limits);
        assert_eq!(c.topics.default_policy, d.topics.default_policy);
        assert_eq!(c.topics.default_history, d.topics.default_history);
        assert_eq!(c.topics.declare.len(), 2);
        assert_eq!(c.broker, d.broker);
        assert_eq!(c.webrtc, d.webrtc);
        assert_eq!(c.tcp, d.tcp);
    }

    #[test]
    fn webrtc_drivers_and_their_port_range_are_validated() {
        let c = Config::from_toml("[webrtc]\nudp_listen = \"0.0.0.0:50000\"\ndrivers = 4\n").unwrap();
        assert_eq!((c.webrtc.drivers, c.webrtc.udp_listen.port()), (4, 50000));
        let e = Config::from_toml("[webrtc]\nudp_listen = \"0.0.0.0:65534\"\ndrivers = 4\n").unwrap_err();
        assert!(e.to_string().contains("webrtc.udp_listen"), "ports 65534..65537 do not exist: {e}");
        let e = Config::from_toml("[webrtc]\ndrivers = 1000\n").unwrap_err();
        assert!(e.to_string().contains("webrtc.drivers"), "{e}");
        let env = vec![("FANHUB_WEBRTC__DRIVERS".to_string(), "1".to_string())];
        assert_eq!(Config::load(None, env).unwrap().webrtc.drivers, 1);
    }

    #[test]
    fn broker_keys_are_validated_and_settable_from_the_environment() {
        let env = vec![("FANHUB_BROKER__REDIS__URL".to_string(), "redis://127.0.0.1:6380/2".to_string())];
        let c = Config::load(None, env).unwrap();
        assert_eq!(c.broker.redis.url, "redis://127.0.0.1:6380/2");
        let e = Config::from_toml("[broker.redis]\nurl = \"http://x\"\nheartbeat_ms = 5\nprefix = \"\"\n").unwrap_err();
        let text = e.to_string();
        let e = Config::from_toml("[[webrtc.ice_servers]]\nurls = [\"http://stun\"]\n").unwrap_err();
        assert!(e.to_string().contains("webrtc.ice_servers[0].urls"), "{e}");
        for key in ["broker.redis.url = http://x", "broker.redis.heartbeat_ms = 5", "broker.redis.prefix"] {
            assert!(text.contains(key), "{key} in {text}");
        }
    }

    #[test]
    fn env_overrides_file() {
        let dir = std::env::temp_dir().join(format!("fanhub-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "[websocket]\nidle_timeout_ms = 1000\n").unwrap();
        let env = vec![
            ("FANHUB_WEBSOCKET__PING_INTERVAL_MS".to_string(), "500".to_string()),
            ("FANHUB_SERVER__LISTEN".to_string(), "127.0.0.1:1234".to_string()),
            ("FANHUB_AUTH__API_KEYS".to_string(), "[\"k1\"]".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let c = Config::load(Some(&f), env).unwrap();
        assert_eq!(c.session.idle_timeout_ms, 1000);
        assert_eq!(c.session.ping_interval_ms, 500);
        assert_eq!(c.server.listen.port(), 1234);
        assert_eq!(c.auth.api_keys, ["k1"]);
    }

    #[test]
    fn session_keys_are_accepted_under_their_old_websocket_names() {
        let c = Config::from_toml("[websocket]\nping_interval_ms = 700\nbatch_max_records = 9\n").unwrap();
        assert_eq!((c.session.ping_interval_ms, c.websocket.batch_max_records), (700, 9));
        let c = Config::from_toml("[session]\nauth_timeout_ms = 300\n").unwrap();
        assert_eq!(c.session.auth_timeout_ms, 300);
        let e = Config::from_toml("[session]\nping_interval_ms = 1\n").unwrap_err();
        assert!(e.to_string().contains("session.ping_interval_ms = 1"), "{e}");
        let e =
            Config::from_toml("[session]\nping_interval_ms = 700\n[websocket]\nping_interval_ms = 800\n").unwrap_err();
        assert!(e.to_string().contains("keep one"), "{e}");
    }

    #[test]
    fn invalid_values_name_key_value_and_range() {
        let err = Config::from_toml("[websocket]\nidle_timeout_ms = 5\n[limits]\nmax_connections = 0\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("websocket.idle_timeout_ms = 5: allowed 200..=3600000"), "{msg}");
        assert!(msg.contains("limits.max_connections = 0: allowed 1..=10000000"), "{msg}");
    }

    #[test]
    fn the_publish_byte_rate_is_off_by_default_ranged_and_its_burst_holds_the_largest_message() {
        let d = Config::default().limits;
        assert_eq!((d.publish_bytes_per_second, d.publish_bytes_burst), (0, 0), "off by default");
        let c = Config::from_toml("[limits]\npublish_bytes_per_second = 1000\nmax_message_size = 500\n").unwrap();
        assert_eq!(c.limits.effective_publish_bytes_burst(), 1000, "one second's worth");
        let c = Config::from_toml("[limits]\npublish_bytes_per_second = 100\nmax_message_size = 500\n").unwrap();
        assert_eq!(c.limits.effective_publish_bytes_burst(), 500, "the largest message");
        let env = vec![
            ("FANHUB_LIMITS__PUBLISH_BYTES_PER_SECOND".to_string(), "2000".to_string()),
            ("FANHUB_LIMITS__PUBLISH_BYTES_BURST".to_string(), "2097152".to_string()),
        ];
        let c = Config::load(None, env).unwrap();
        assert_eq!((c.limits.publish_bytes_per_second, c.limits.effective_publish_bytes_burst()), (2000, 2_097_152));
        let e = Config::from_toml("[limits]\npublish_bytes_per_second = 2000000000\n").unwrap_err().to_string();
        assert!(e.contains("limits.publish_bytes_per_second = 2000000000: allowed 0..=1000000000"), "{e}");
        let e = Config::from_toml(
            "[limits]\npublish_bytes_per_second = 1000\npublish_bytes_burst = 100\nmax_message_size = 500\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("limits.publish_bytes_burst = 100") && e.contains(">= limits.max_message_size (500)"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_declarations_are_refused() {
        assert!(matches!(Config::from_toml("[websocket]\nidle = 5\n"), Err(ConfigError::Parse(_))));
        let err = Config::from_toml("[[topics.declare]]\npattern = \"a/>/b\"\n").unwrap_err();
        assert!(err.to_string().contains("topics.declare[0]"), "{err}");
    }
}
