//! # fanhub — a real-time pub/sub fan-out hub
//!
//! # Layout
//! Layers, with dependencies pointing one way (`server → admin → http → transport → session,
//! broker → auth, config, tls, clock → hub → protocol`; a tidy test holds the sans-IO ones):
//! - [`protocol`]: wire types and codecs (JSON control, binary records, WebRTC chunks, codes).
//! - [`hub`]: the sans-IO heart: `Connection`, `ConnectionManager`, topics, policies, history.
//! - [`clock`]: where time comes from (the system's, or a manual clock tests advance).
//! - [`config`]: configuration: defaults, TOML file, environment overlay, validation.
//! - [`tls`]: `[server.tls]`, the TLS policy and the reloadable certificate (rustls; feature `tls`).
//! - [`auth`]: the `SessionManager`: JWT verification and minting, API keys.
//! - [`session`]: the `fanhub.v1` session of one client, sans-IO, the same for every transport.
//! - [`broker`]: in memory, or cluster mode on Redis (offsets, history, channels, nodes).
//! - [`transport`]: the session driver, WebSocket and WebRTC, signaling, server-side publish.
//! - [`metrics`]: Prometheus metric names, the per-server recorder and the scrape.
//! - [`http`]: what the public and admin listeners share (state, the error shape, health, publish).
//! - [`admin`]: the admin HTTP API (connections, topics, policies, stats, drain, OpenAPI).
//! - [`web`]: the pages and assets both listeners serve, compiled in (demo pages, dashboard).
//! - [`demo`]: the built-in demo publisher (development mode).
//! - [`server`]: listeners, the public router, background tasks and graceful shutdown: [`run`].
//! - `client` (cargo feature `client`): the Rust client; it uses `protocol` only
//!   (`client → protocol`), like any outside client.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod admin;
pub mod auth;
pub mod broker;
#[cfg(feature = "client")]
pub mod client;
pub mod clock;
pub mod config;
pub mod demo;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod session;
pub mod source;
pub mod tls;
pub mod transport;
pub mod web;

pub use server::{run, Listeners, Server};
