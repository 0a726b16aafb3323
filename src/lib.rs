//! # fanhub — a real-time pub/sub fan-out hub
//!
//! # Layout
//! Layers, with dependencies pointing one way (`server → transport → hub → protocol`):
//! - [`protocol`]: wire types and codecs (JSON control, binary records, error and close codes).
//! - [`hub`]: the sans-IO heart: `Connection`, `ConnectionManager`, topics, policies, history.
//! - [`auth`]: the `SessionManager`: JWT verification and minting, API keys.
//! - [`transport`]: WebSocket (and later WebRTC, TCP) connections implementing `Connection`.
//! - [`broker`]: the Redis side of cluster mode (offsets, history, channels, node registry).
//! - [`config`]: configuration: defaults, TOML file, validation.
//! - [`http`]: what the public and admin listeners share (state, the error shape, health, publish).
//! - [`admin`]: the admin HTTP API (connections, topics, policies, stats, drain, OpenAPI).
//! - [`metrics`]: Prometheus metric names, the per-server recorder and the scrape.
//! - [`server`]: the HTTP routers, listeners, background tasks and graceful shutdown: [`run`].

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod admin;
pub mod auth;
pub mod broker;
pub mod clock;
pub mod config;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod session;
pub mod transport;

pub use server::{run, Listeners, Server};
