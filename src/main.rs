//! The `fanhub` binary: parses flags, loads and validates the configuration, sets up logging,
//! binds the listeners and runs the server until ctrl-c or SIGTERM.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

mod cli;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use fanhub::auth::{unix_now, MintRequest, SessionManager};
use fanhub::config::Config;
use fanhub::{Listeners, Server};

/// What `fanhub --help` says the hub is (a build without WebRTC says so).
#[cfg(feature = "webrtc")]
const ABOUT: &str = "fanhub: a real-time pub/sub fan-out hub for WebSocket clients and WebRTC peers (data channels)";
#[cfg(not(feature = "webrtc"))]
const ABOUT: &str = "fanhub: a real-time pub/sub fan-out hub for WebSocket clients (this build has no WebRTC)";

/// The command line.
#[derive(Parser)]
#[command(version, about = ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub (embedded in-memory broker unless a Redis URL is set; development auth unless a key is configured).
    Serve(ServeArgs),
    /// Mint a JWT with the configured key (in development mode: the built-in dev secret).
    Token(TokenArgs),
    /// Subscribe to a topic on a running hub and print its messages (like `nats sub`).
    #[cfg(feature = "client")]
    Sub(cli::SubArgs),
    /// Publish a message on a running hub and print its offset (like `nats pub`).
    #[cfg(feature = "client")]
    Pub(cli::PubArgs),
    /// Show a running hub's stats from its admin API (`--watch SECS` to refresh).
    Stats(cli::AdminTarget),
    /// List a running hub's connections from its admin API (`--watch SECS` to refresh).
    Connections(cli::ConnectionsArgs),
}

#[derive(Args)]
struct ConfigArg {
    /// TOML configuration file; every key can also be set as FANHUB_SECTION__KEY.
    #[arg(long, short, env = "FANHUB_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Public listener (WebSocket, health, sessions, demo). Overrides server.listen.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Admin listener. Overrides server.admin_listen.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Run as one node of a cluster through this Redis (`redis://host:port/db`). Overrides
    /// broker.redis.url; unset: the embedded in-memory broker.
    #[arg(long)]
    redis_url: Option<String>,
    /// This node's id (default: generated). Overrides node_id.
    #[arg(long)]
    node_id: Option<String>,
    /// Log filter, e.g. `info` or `info,fanhub::transport=debug`. Overrides log.level.
    #[arg(long)]
    log_level: Option<String>,
    /// `human` or `json`. Overrides log.format.
    #[arg(long)]
    log_format: Option<String>,
}

#[derive(Args)]
struct TokenArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Token subject (user or service id).
    #[arg(long, default_value = "dev")]
    sub: String,
    /// Topic pattern the token may subscribe to (repeatable), e.g. `video/*`, `telemetry/>`.
    #[arg(long = "subscribe", default_value = ">")]
    subscribe: Vec<String>,
    /// Topic pattern the token may publish to (repeatable).
    #[arg(long = "publish", default_value = ">")]
    publish: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    ttl_secs: u64,
}

fn load(arg: &ConfigArg) -> anyhow::Result<Config> {
    Ok(Config::load(arg.config.as_deref(), std::env::vars())?)
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = load(&args.config)?;
    if let Some(a) = args.listen {
        config.server.listen = a;
    }
    if let Some(a) = args.admin_listen {
        config.server.admin_listen = a;
    }
    if let Some(u) = args.redis_url {
        config.broker.redis.url = u;
    }
    if let Some(n) = args.node_id {
        config.node_id = n;
    }
    if let Some(l) = args.log_level {
        config.log.level = l;
    }
    if let Some(f) = args.log_format {
        config.log.format = f;
    }
    config.validate().map_err(fanhub::config::ConfigError::Invalid)?;
    init_tracing(&config);
    let listeners = Listeners {
        public: bind(config.server.listen, "--listen", "server.listen")?,
        admin: bind(config.server.admin_listen, "--admin-listen", "server.admin_listen")?,
        tcp: config.tcp.listen.map(|a| bind(a, "tcp.listen", "tcp.listen")).transpose()?,
    };
    let dev = config.auth.is_dev().then(|| DevCredentials::add_to(&mut config));
    let tls = config.server.tls.enabled();
    let server = Server::new(config, &listeners)?;
    #[cfg(all(unix, feature = "tls"))]
    if let Some(tls) = server.tls() {
        reload_on_sighup(tls)?;
    }
    if let Some(dev) = dev {
        let token = server
            .sessions()
            .mint(
                &MintRequest {
                    subject: "dev".into(),
                    subscribe: vec![">".into()],
                    publish: vec![">".into()],
                    ttl_secs: 86_400,
                },
                unix_now(),
            )
            .map_err(anyhow::Error::msg)?;
        tracing::warn!("development mode: no auth key configured, tokens use the built-in dev secret");
        eprintln!("{}", dev.banner(listeners.public.local_addr()?, listeners.admin.local_addr()?, tls, &token.token));
    }
    server.run(listeners, shutdown_signal()).await?;
    Ok(())
}

/// Reloads the public listener's certificate and key on every SIGHUP. A refused reload is
/// logged by the reload itself, and the current certificate keeps serving.
#[cfg(all(unix, feature = "tls"))]
fn reload_on_sighup(tls: std::sync::Arc<fanhub::tls::Tls>) -> anyhow::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler (certificate reload)")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the TLS certificate");
            let _ = tls.reload();
        }
    });
    Ok(())
}

/// Binds a listener, or says which address failed and which flag or key sets it.
fn bind(addr: SocketAddr, flag: &str, key: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let env = format!("FANHUB_{}", key.to_ascii_uppercase().replace('.', "__"));
    fanhub::server::listen(addr).with_context(|| {
        format!(
            "cannot listen on {addr}: choose another address with {flag}, `{key}` in the configuration file or {env}"
        )
    })
}

/// What development mode makes for one run when the configuration has none, so that every
/// route can be tried at once: an admin token (admin API, dashboard) and an API key
/// (`POST /v1/sessions`, `POST /v1/publish`). Never made outside development mode, where
/// credentials come only from the configuration.
struct DevCredentials {
    admin_token: Option<String>,
    api_key: Option<String>,
}

impl DevCredentials {
    fn add_to(config: &mut Config) -> Self {
        let admin_token = config.auth.admin_tokens.is_empty().then(|| {
            let t = format!("dev-admin-{:032x}", rand::random::<u128>());
            config.auth.admin_tokens.push(t.clone());
            t
        });
        let api_key = config.auth.api_keys.is_empty().then(|| {
            let k = format!("dev-key-{:032x}", rand::random::<u128>());
            config.auth.api_keys.push(k.clone());
            k
        });
        Self { admin_token, api_key }
    }

    /// The start-up banner: where to point a browser, and credentials to copy.
    /// `tls`: whether the public listener speaks TLS (https and wss URLs); the admin listener
    /// is always plain HTTP.
    fn banner(&self, public: SocketAddr, admin: SocketAddr, tls: bool, token: &str) -> String {
        let (http, ws) = if tls { ("https", "wss") } else { ("http", "ws") };
        let mut b = format!(
            "\nfanhub (development mode)\n  demo:      {http}://{public}/ (telemetry), {http}://{public}/video, {http}://{public}/console\n  websocket: {ws}://{public}/ws (subprotocol fanhub.v1)\n  dev token (24 h, all topics): {token}\n  more tokens: fanhub token --sub NAME --subscribe 'video/*' --publish 'video/>'\n"
        );
        let body = r#"'{"subject":"alice","subscribe":["video/*"]}'"#;
        match &self.api_key {
            Some(k) => b.push_str(&format!(
                "  dev API key: {k}\n  a token from a backend: curl -X POST {http}://{public}/v1/sessions -H 'X-Api-Key: {k}' -d {body}\n"
            )),
            None => b.push_str("  API keys: auth.api_keys\n"),
        }
        b.push_str(&format!(
            "  or, no key (development mode only): curl -X POST {http}://{public}/v1/dev/token -d {body}\n"
        ));
        if let Some(t) = &self.admin_token {
            b.push_str(&format!(
                "  admin API: http://{admin}/v1/admin/stats (Authorization: Bearer {t})\n  dashboard: http://{admin}/dashboard#token={t}\n  from a shell: fanhub stats --admin-token {t} --watch 1\n"
            ));
        }
        b
    }
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let config = load(&args.config)?;
    let sessions = SessionManager::new(&config.auth).map_err(anyhow::Error::msg)?;
    let minted = sessions
        .mint(
            &MintRequest {
                subject: args.sub,
                subscribe: args.subscribe,
                publish: args.publish,
                ttl_secs: args.ttl_secs,
            },
            unix_now(),
        )
        .map_err(anyhow::Error::msg)?;
    writeln!(std::io::stdout().lock(), "{}", minted.token)?;
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let small = || tokio::runtime::Builder::new_current_thread().enable_all().build();
    match cli.command {
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve(args)),
        Command::Token(args) => token(args),
        #[cfg(feature = "client")]
        Command::Sub(args) => small()?.block_on(cli::sub(args)),
        #[cfg(feature = "client")]
        Command::Pub(args) => small()?.block_on(cli::publish(args)),
        Command::Stats(args) => small()?.block_on(cli::stats(args)),
        Command::Connections(args) => small()?.block_on(cli::connections(args)),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`fanhub stats | head -1`): not an error, stop quietly. (A C
        // program dies of SIGPIPE here; Rust ignores the signal, so the write fails instead.)
        Err(e) if cli::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}
