//! The integration tests: one crate (one link of the server), a module per behaviour, sharing
//! [`common`] (a real hub on ephemeral ports, real clients). Test names are sentences.

mod common;

mod admin_access;
mod admin_auth;
mod admin_connections;
mod admin_topics;
mod auth;
mod bad_input;
mod cli;
#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client-webrtc")]
mod client_rtc;
#[cfg(feature = "client")]
mod client_tcp;
#[cfg(feature = "redis")]
mod cluster;
#[cfg(feature = "redis")]
mod cluster_topics;
mod config_validation;
mod connection_details;
#[cfg(feature = "client")]
mod demo;
mod drain;
mod health;
mod http_errors;
mod keepalive;
mod lifecycle;
mod limits;
mod metrics;
mod offset_resume;
mod openapi;
mod permissions;
mod policies;
mod publish_api;
#[cfg(feature = "redis")]
mod redis_broker;
mod sessions_api;
mod shutdown;
mod slow_client;
#[cfg(feature = "kafka")]
mod source_kafka;
#[cfg(feature = "nats")]
mod source_nats;
#[cfg(feature = "postgres")]
mod source_postgres;
#[cfg(feature = "redis")]
mod source_redis;
mod sse;
mod tcp;
mod tidy;
#[cfg(feature = "tls")]
mod tls;
mod token_expiry;
mod ts_client;
mod version_negotiation;
mod web_dashboard;
mod web_demo;
#[cfg(feature = "webrtc")]
mod web_rtc_browser;
#[cfg(feature = "webrtc")]
mod web_video;
#[cfg(all(feature = "webrtc", feature = "client-webrtc"))]
mod webrtc;
#[cfg(feature = "webrtc")]
mod webrtc_aiortc;
