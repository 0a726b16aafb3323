//! What a [`super::Client`] is built with, validated before anything connects.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::backoff::Backoff;
use super::breaker::BreakerOptions;
use super::ClientError;

/// Fetches a fresh token: called at start (when no static token is given), on
/// `token_expiring`, and once after an `unauthenticated` refusal.
pub type TokenProvider = Arc<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// Client settings. Build with [`ClientOptions::new`] and the `with_*` methods, or fill the
/// fields; [`super::Client::connect`] validates them first.
#[derive(Clone)]
pub struct ClientOptions {
    /// The hub's nodes, tried in order; at least one. WebSocket URLs (`ws://host:port/ws`, or
    /// `wss://` with the cargo feature `client-tls`) for [`Transport::WebSocket`] and
    /// [`Transport::WebRtc`]; `tcp://host:port` (or `tcps://host:port`, TLS, with `client-tls`)
    /// addresses of the hub's `tcp.listen` for [`Transport::Tcp`].
    pub endpoints: Vec<String>,
    /// A fixed token (JWT).
    pub token: Option<String>,
    /// A token provider (used instead of, or after, `token`).
    pub token_provider: Option<TokenProvider>,
    /// Sent in `connect` (over [`Transport::Tcp`], in the Token datagram): a reconnect replaces
    /// this client's previous connection at once. 1 to 128 bytes without control characters,
    /// as the hub checks it.
    pub client_id: Option<String>,
    /// Reconnect delays (exponential, full jitter).
    pub backoff: Backoff,
    /// The circuit breaker of each endpoint.
    pub breaker: BreakerOptions,
    /// Longest a connect (TCP, upgrade, `connect` → `welcome`) may take.
    pub connect_timeout: Duration,
    /// Longest a request (subscribe, publish, unsubscribe) waits for its answer.
    pub request_timeout: Duration,
    /// Connect attempts before [`super::Client::connect`] gives up (later reconnects never
    /// give up, except on a permanent refusal).
    pub initial_attempts: u32,
    /// Events buffered per subscription before the client stops reading the socket (the hub
    /// then applies the topic's policy to this client).
    pub buffer: usize,
    /// How the client reaches the endpoints (WebSocket, WebRTC data channels signaled on the
    /// same host and port, or the raw TCP transport).
    pub transport: Transport,
    /// After this long with nothing received, the client sends a `ping`.
    pub keepalive_interval: Duration,
    /// After a `ping` with nothing received for this long, the connection is dead (a black
    /// hole: a pulled cable, a frozen node) and the client reconnects.
    pub keepalive_timeout: Duration,
    /// PEM files of certificate authorities to trust for `wss://` and `tcps://` endpoints,
    /// besides the system's (a private CA, a self-signed hub).
    pub tls_ca_files: Vec<PathBuf>,
}

/// How a [`super::Client`] reaches the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// A WebSocket to each endpoint URL.
    #[default]
    WebSocket,
    /// WebRTC data channels (cargo feature `client-webrtc`): the offer goes to
    /// `POST http://host:port/v1/rtc/offer` of each endpoint URL `ws://host:port/…`; control
    /// messages and `reliable` records come on the reliable channel, best-effort and
    /// rate-limited records on the lossy one (whole frames or nothing).
    WebRtc,
    /// The raw TCP transport (`docs/protocol.md` §10d) to each endpoint `tcp://host:port` (the
    /// hub's `tcp.listen`), or `tcps://host:port` for a listener with `[tcp.tls]` (cargo feature
    /// `client-tls`). The token and the `client_id` travel in the Token datagram; a refused
    /// token closes the connection without a word (counted as a failed attempt); the
    /// WebSocket URLs of the hub's reconnect advice are not followed (the client reconnects
    /// through its own endpoints); `health()` has no HTTP side to ask and says so.
    Tcp,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("endpoints", &self.endpoints)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("token_provider", &self.token_provider.as_ref().map(|_| "…"))
            .field("client_id", &self.client_id)
            .field("backoff", &self.backoff)
            .field("breaker", &self.breaker)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("initial_attempts", &self.initial_attempts)
            .field("buffer", &self.buffer)
            .field("transport", &self.transport)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("keepalive_timeout", &self.keepalive_timeout)
            .field("tls_ca_files", &self.tls_ca_files)
            .finish()
    }
}

impl ClientOptions {
    /// Options for `endpoints`, with the defaults: backoff 100 ms → 10 s ×2, breaker 50 % of at
    /// least 3 attempts in 30 s opens for 5 s, connect timeout 5 s, request timeout 10 s, 5
    /// initial attempts, 1024 buffered events per subscription, WebSocket, a `ping` after 15 s
    /// of silence and a dead connection 10 s after it.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            token: None,
            token_provider: None,
            client_id: None,
            backoff: Backoff::default(),
            breaker: BreakerOptions::default(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            initial_attempts: 5,
            buffer: 1024,
            transport: Transport::WebSocket,
            keepalive_interval: Duration::from_secs(15),
            keepalive_timeout: Duration::from_secs(10),
            tls_ca_files: Vec::new(),
        }
    }

    /// With a fixed token.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// With a token provider.
    #[must_use]
    pub fn with_token_provider<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<String, String>> + Send + 'static,
    {
        self.token_provider = Some(Arc::new(move || Box::pin(f())));
        self
    }

    /// Also trusting the certificate authorities in the PEM file `path` for `wss://` endpoints.
    #[must_use]
    pub fn with_tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca_files.push(path.into());
        self
    }

    /// With a client id.
    #[must_use]
    pub fn with_client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// Checks every field; the first problem is named in the error.
    ///
    /// # Errors
    /// [`ClientError::InvalidOptions`].
    pub fn validate(&self) -> Result<(), ClientError> {
        let bad = |m: String| Err(ClientError::InvalidOptions(m));
        if self.endpoints.is_empty() {
            return bad("`endpoints` is empty: give at least one ws:// URL of the hub".into());
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            if let Err(m) = check_endpoint(e, self.transport) {
                return bad(format!("`endpoints[{i}]` = {e:?}: {m}"));
            }
        }
        if let Some(Err(m)) = self.client_id.as_deref().map(crate::protocol::control::check_client_id) {
            return bad(format!("`client_id`: {m}"));
        }
        if self.token.is_none() && self.token_provider.is_none() {
            return bad("no `token` and no `token_provider`: the hub authenticates every connection".into());
        }
        let b = &self.backoff;
        if b.initial.is_zero() || b.max < b.initial || b.multiplier.is_nan() || b.multiplier < 1.0 {
            return bad(format!(
                "`backoff`: initial must be > 0, max ≥ initial, multiplier ≥ 1 (got {:?}, {:?}, {})",
                b.initial, b.max, b.multiplier
            ));
        }
        let c = &self.breaker;
        if !(c.failure_ratio > 0.0 && c.failure_ratio <= 1.0) || c.min_throughput == 0 {
            return bad(format!(
                "`breaker`: failure_ratio must be in (0, 1] and min_throughput ≥ 1 (got {}, {})",
                c.failure_ratio, c.min_throughput
            ));
        }
        if c.sampling_window.is_zero() || c.break_duration.is_zero() {
            return bad("`breaker`: sampling_window and break_duration must be > 0".into());
        }
        if self.connect_timeout.is_zero() || self.request_timeout.is_zero() {
            return bad("`connect_timeout` and `request_timeout` must be > 0".into());
        }
        if self.initial_attempts == 0 || self.buffer == 0 {
            return bad("`initial_attempts` and `buffer` must be ≥ 1".into());
        }
        if self.keepalive_interval.is_zero() || self.keepalive_timeout.is_zero() {
            return bad("`keepalive_interval` and `keepalive_timeout` must be > 0".into());
        }
        if self.transport == Transport::WebRtc && !cfg!(feature = "client-webrtc") {
            return bad("`transport` = webrtc needs the `client-webrtc` cargo feature".into());
        }
        Ok(())
    }
}

/// Whether `endpoint` suits `transport`: a WebSocket URL, or a `tcp://` / `tcps://` address.
fn check_endpoint(e: &str, transport: Transport) -> Result<(), String> {
    let tcp = e.starts_with("tcp://") || e.starts_with("tcps://");
    if transport == Transport::Tcp {
        if !tcp {
            return Err("`transport` = tcp expects a tcp://host:port or tcps://host:port address".into());
        }
        if e.starts_with("tcps://") && !cfg!(feature = "client-tls") {
            return Err("tcps:// needs the `client-tls` cargo feature".into());
        }
        return tcp_host_port(e).map(|_| ());
    }
    if tcp {
        return Err("a tcp:// or tcps:// address needs `transport` = tcp".into());
    }
    if e.starts_with("wss://") && !cfg!(feature = "client-tls") {
        return Err("wss:// needs the `client-tls` cargo feature".into());
    }
    if !e.starts_with("ws://") && !e.starts_with("wss://") {
        return Err("expected a ws:// or wss:// URL".into());
    }
    if e.parse::<hyper::http::Uri>().is_err() {
        return Err("not a valid URL".into());
    }
    Ok(())
}

/// The host and port of a `tcp://host:port` or `tcps://host:port` endpoint (the port is
/// required: the hub's `tcp.listen` has no standard one; nothing may follow it).
pub(super) fn tcp_host_port(e: &str) -> Result<(String, u16), String> {
    let uri: hyper::http::Uri = e.parse().map_err(|_| "not a valid address".to_owned())?;
    let host = uri.host().filter(|h| !h.is_empty()).ok_or("no host")?;
    let port = uri.port_u16().ok_or("no port (tcp://host:port)")?;
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty()) {
        return Err("nothing may follow host:port".into());
    }
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

/// [`ClientOptions`] as a configuration file or the environment gives them: a `[client]`-style
/// TOML table, or `FANHUB_CLIENT_*` variables. Every field is optional but `endpoints`;
/// durations are milliseconds; unknown fields are refused.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileOptions {
    endpoints: Vec<String>,
    token: Option<String>,
    client_id: Option<String>,
    backoff_initial_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    backoff_multiplier: Option<f64>,
    breaker_failure_ratio: Option<f64>,
    breaker_min_throughput: Option<u32>,
    breaker_sampling_window_ms: Option<u64>,
    breaker_break_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    initial_attempts: Option<u32>,
    buffer: Option<usize>,
    transport: Option<Transport>,
    keepalive_interval_ms: Option<u64>,
    keepalive_timeout_ms: Option<u64>,
    tls_ca_files: Vec<PathBuf>,
}

impl FileOptions {
    fn into_options(self) -> Result<ClientOptions, ClientError> {
        let ms = Duration::from_millis;
        let mut o = ClientOptions::new(self.endpoints);
        o.token = self.token;
        o.client_id = self.client_id;
        let b = &mut o.backoff;
        b.initial = self.backoff_initial_ms.map_or(b.initial, ms);
        b.max = self.backoff_max_ms.map_or(b.max, ms);
        b.multiplier = self.backoff_multiplier.unwrap_or(b.multiplier);
        let c = &mut o.breaker;
        c.failure_ratio = self.breaker_failure_ratio.unwrap_or(c.failure_ratio);
        c.min_throughput = self.breaker_min_throughput.unwrap_or(c.min_throughput);
        c.sampling_window = self.breaker_sampling_window_ms.map_or(c.sampling_window, ms);
        c.break_duration = self.breaker_break_ms.map_or(c.break_duration, ms);
        o.connect_timeout = self.connect_timeout_ms.map_or(o.connect_timeout, ms);
        o.request_timeout = self.request_timeout_ms.map_or(o.request_timeout, ms);
        o.initial_attempts = self.initial_attempts.unwrap_or(o.initial_attempts);
        o.buffer = self.buffer.unwrap_or(o.buffer);
        o.transport = self.transport.unwrap_or(o.transport);
        o.keepalive_interval = self.keepalive_interval_ms.map_or(o.keepalive_interval, ms);
        o.keepalive_timeout = self.keepalive_timeout_ms.map_or(o.keepalive_timeout, ms);
        o.tls_ca_files = self.tls_ca_files;
        o.validate()?;
        Ok(o)
    }
}

impl ClientOptions {
    /// Options from TOML: `endpoints = ["ws://…/ws"]`, `token`, `client_id`,
    /// `backoff_initial_ms`, `backoff_max_ms`, `backoff_multiplier`, `breaker_failure_ratio`,
    /// `breaker_min_throughput`, `breaker_sampling_window_ms`, `breaker_break_ms`,
    /// `connect_timeout_ms`, `request_timeout_ms`, `initial_attempts`, `buffer`, `transport`
    /// (`"websocket"`, `"webrtc"` or `"tcp"`), `keepalive_interval_ms`, `keepalive_timeout_ms`,
    /// `tls_ca_files`; the rest take their defaults. A token provider, if any, is set in code afterwards.
    ///
    /// # Errors
    /// [`ClientError::InvalidOptions`] naming the field (unknown fields too).
    pub fn from_toml(text: &str) -> Result<Self, ClientError> {
        let file: FileOptions =
            toml::from_str(text).map_err(|e| ClientError::InvalidOptions(format!("client options: {e}")))?;
        file.into_options()
    }

    /// Options from `FANHUB_CLIENT_*` variables of `vars` (pass `std::env::vars()`): the TOML
    /// field names in upper case, `FANHUB_CLIENT_ENDPOINTS` and `FANHUB_CLIENT_TLS_CA_FILES`
    /// comma-separated.
    ///
    /// # Errors
    /// [`ClientError::InvalidOptions`] naming the variable.
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ClientError> {
        let mut table = toml::Table::new();
        for (k, v) in vars {
            let Some(field) = k.strip_prefix("FANHUB_CLIENT_") else { continue };
            let field = field.to_ascii_lowercase();
            let value = match field.as_str() {
                "endpoints" | "tls_ca_files" => toml::Value::Array(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.into()))
                        .collect(),
                ),
                "token" | "client_id" | "transport" => toml::Value::String(v),
                "backoff_multiplier" | "breaker_failure_ratio" => toml::Value::Float(
                    v.parse().map_err(|_| ClientError::InvalidOptions(format!("{k}: {v:?} is not a number")))?,
                ),
                _ => toml::Value::Integer(
                    v.parse().map_err(|_| ClientError::InvalidOptions(format!("{k}: {v:?} is not an integer")))?,
                ),
            };
            table.insert(field, value);
        }
        let file: FileOptions = toml::Value::Table(table)
            .try_into()
            .map_err(|e| ClientError::InvalidOptions(format!("FANHUB_CLIENT_*: {e}")))?;
        file.into_options()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(o: &ClientOptions) -> String {
        match o.validate() {
            Err(ClientError::InvalidOptions(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_options_are_refused_naming_the_field() {
        let ok = ClientOptions::new(["ws://127.0.0.1:8080/ws"]).with_token("t");
        assert!(ok.validate().is_ok());
        assert!(message(&ClientOptions::new(Vec::<String>::new()).with_token("t")).contains("`endpoints` is empty"));
        assert!(message(&ClientOptions::new(["http://x/ws"]).with_token("t")).contains("`endpoints[0]`"));
        let wss = ClientOptions::new(["wss://hub.example/ws"]).with_token("t").validate();
        assert_eq!(wss.is_ok(), cfg!(feature = "client-tls"), "{wss:?}");
        assert!(message(&ClientOptions::new(["ws://x/ws"])).contains("no `token`"));
        let mut o = ok.clone();
        o.backoff.multiplier = 0.5;
        assert!(message(&o).contains("`backoff`"));
        let mut o = ok.clone();
        o.breaker.failure_ratio = 1.5;
        assert!(message(&o).contains("`breaker`"));
        let mut o = ok.clone();
        o.buffer = 0;
        assert!(message(&o).contains("`buffer`"));
        let mut o = ok.clone();
        o.keepalive_timeout = Duration::ZERO;
        assert!(message(&o).contains("`keepalive_interval` and `keepalive_timeout`"));
        assert!(message(&ok.clone().with_client_id("")).contains("`client_id`: client_id must be 1 to 128 bytes"));
        assert!(message(&ok.with_client_id("a\tb")).contains("control characters"));
    }

    #[test]
    fn tcp_addresses_go_with_the_tcp_transport_only() {
        let tcp = |e: &str| {
            let mut o = ClientOptions::new([e]).with_token("t");
            o.transport = Transport::Tcp;
            o
        };
        assert!(tcp("tcp://127.0.0.1:9000").validate().is_ok());
        assert!(tcp("tcp://[::1]:9000").validate().is_ok());
        assert_eq!(tcp_host_port("tcp://[::1]:9000").unwrap(), ("::1".to_owned(), 9000));
        let tls = tcp("tcps://hub.example:9443").validate();
        assert_eq!(tls.is_ok(), cfg!(feature = "client-tls"), "{tls:?}");
        assert!(message(&tcp("ws://127.0.0.1:8080/ws")).contains("expects a tcp://host:port"));
        assert!(message(&tcp("tcp://127.0.0.1")).contains("no port"));
        assert!(message(&tcp("tcp://127.0.0.1:9000/ws")).contains("nothing may follow"));
        assert!(tcp("tcp://127.0.0.1:9000").with_client_id("c").validate().is_ok(), "a client id goes over TCP too");
        // A tcp:// address with another transport is refused, naming the fix.
        let ws = ClientOptions::new(["tcp://127.0.0.1:9000"]).with_token("t");
        assert!(message(&ws).contains("needs `transport` = tcp"), "{}", message(&ws));
        let o =
            ClientOptions::from_toml("endpoints = [\"tcp://a:9000\"]\ntoken = \"t\"\ntransport = \"tcp\"\n").unwrap();
        assert_eq!(o.transport, Transport::Tcp);
    }

    #[test]
    fn options_come_from_toml_and_the_environment_with_defaults_for_the_rest() {
        let o = ClientOptions::from_toml(
            "endpoints = [\"ws://a:1/ws\", \"ws://b:2/ws\"]\ntoken = \"t\"\nbackoff_initial_ms = 50\nbreaker_min_throughput = 9\n",
        )
        .unwrap();
        assert_eq!(o.endpoints, ["ws://a:1/ws", "ws://b:2/ws"]);
        assert_eq!((o.backoff.initial, o.backoff.max), (Duration::from_millis(50), Duration::from_secs(10)));
        assert_eq!(o.breaker.min_throughput, 9);
        let env = [
            ("FANHUB_CLIENT_ENDPOINTS", "ws://a:1/ws, ws://b:2/ws"),
            ("FANHUB_CLIENT_TLS_CA_FILES", "/etc/a.pem, /etc/b.pem"),
            ("FANHUB_CLIENT_TOKEN", "t"),
            ("FANHUB_CLIENT_BACKOFF_MULTIPLIER", "3"),
            ("FANHUB_CLIENT_REQUEST_TIMEOUT_MS", "250"),
            ("FANHUB_CLIENT_TRANSPORT", "websocket"),
            ("FANHUB_CLIENT_KEEPALIVE_TIMEOUT_MS", "400"),
            ("PATH", "/bin"),
        ];
        let o = ClientOptions::from_env(env.map(|(k, v)| (k.to_owned(), v.to_owned()))).unwrap();
        assert_eq!(o.endpoints.len(), 2);
        assert_eq!(o.tls_ca_files, [PathBuf::from("/etc/a.pem"), PathBuf::from("/etc/b.pem")]);
        assert_eq!((o.backoff.multiplier, o.request_timeout), (3.0, Duration::from_millis(250)));
        assert_eq!((o.transport, o.keepalive_timeout), (Transport::WebSocket, Duration::from_millis(400)));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused_by_name() {
        let e = ClientOptions::from_toml("endpoints = [\"ws://a/ws\"]\ntoken = \"t\"\nretries = 3\n").unwrap_err();
        assert!(e.to_string().contains("retries"), "{e}");
        let e = ClientOptions::from_toml("endpoints = [\"ws://a/ws\"]\n").unwrap_err();
        assert!(e.to_string().contains("no `token`"), "{e}");
        let env = [("FANHUB_CLIENT_ENDPOINTS", "ws://a/ws"), ("FANHUB_CLIENT_BUFFER", "lots")];
        let e = ClientOptions::from_env(env.map(|(k, v)| (k.to_owned(), v.to_owned()))).unwrap_err();
        assert!(e.to_string().contains("FANHUB_CLIENT_BUFFER"), "{e}");
        let e =
            ClientOptions::from_toml("endpoints = [\"ws://a/ws\"]\ntoken = \"t\"\ntransport = \"carrier-pigeon\"\n")
                .unwrap_err();
        assert!(e.to_string().contains("carrier-pigeon"), "{e}");
    }
}
