//! The Rust client of `fanhub.v1` (cargo feature `client`): a cheap cloneable [`Client`]
//! handle and one task that owns the connection — a WebSocket, WebRTC data channels
//! (feature `client-webrtc`, [`Transport::WebRtc`]) or the raw TCP transport
//! ([`Transport::Tcp`], `tcp://host:port` endpoints) with the same API.
//!
//! It reconnects after any disconnect (exponential backoff with full jitter, rotating through
//! the endpoints and the reconnect advice the hub gives, skipping endpoints whose circuit
//! breaker is open), resubscribes every topic from the last offset and epoch it delivered,
//! drops records it already delivered, and reports every hole as an [`Event::Gap`]. It stops
//! for good only when the hub refuses it permanently (`unauthenticated` after one fresh token,
//! `kicked`, `replaced`) or on [`Client::close`]. Every failure is a [`ClientError`].
//!
//! Layering: uses `protocol` only (the wire types and codecs), like any outside client.
//!
//! ```no_run
//! use fanhub::client::{Client, ClientOptions, Event, From, Status};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let token = std::env::var("FANHUB_TOKEN")?; // e.g. the dev token `fanhub serve` prints
//!     let options = ClientOptions::new(["ws://127.0.0.1:8080/ws", "ws://127.0.0.1:8081/ws"])
//!         .with_token(token)
//!         .with_client_id("telemetry-viewer-1");
//!     let client = Client::connect(options).await?;
//!
//!     // Status events: connecting, connected, reconnecting (attempt, delay), bye, circuits, closed.
//!     let mut status = client.status();
//!     tokio::spawn(async move {
//!         while let Ok(s) = status.recv().await {
//!             if let Status::Reconnecting { attempt, delay } = s {
//!                 eprintln!("reconnecting (attempt {attempt}) in {delay:?}");
//!             }
//!         }
//!     });
//!
//!     // Resumes after the last message it delivered, across reconnects; holes are explicit.
//!     let mut sub = client.subscribe("vehicle/7/speed", From::Oldest).await?;
//!     let answer = client.publish_json("vehicle/7/speed", &serde_json::json!({"kmh": 212})).await?;
//!     println!("published at offset {} of epoch {}", answer.offset, answer.epoch);
//!     while let Some(event) = sub.next().await {
//!         match event {
//!             Event::Message(m) => println!("{} #{}: {} bytes", m.topic, m.offset, m.payload.len()),
//!             Event::Gap(g) => println!("missed {:?} from {} to {:?}", g.reason, g.from, g.to),
//!         }
//!     }
//!     Ok(())
//! }
//! ```

mod actor;
pub use crate::protocol::backoff;
pub mod breaker;
mod frame;
mod health;
mod http;
mod link;
mod options;
mod pool;
pub mod resume;
#[cfg(feature = "client-webrtc")]
pub mod rtc;
mod tcp;
#[cfg(feature = "client-tls")]
mod tls;

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use self::backoff::Backoff;
pub use self::breaker::{BreakerOptions, CircuitState};
pub use self::health::Health;
pub use self::options::{ClientOptions, TokenProvider, Transport};
pub use self::pool::PublisherPool;
pub use self::resume::{Gap, GapReason};
use crate::protocol::control::SubscriptionInfo;
use crate::protocol::{CloseReason, ErrorCode};

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The options are invalid (nothing was started).
    #[error("invalid client options: {0}")]
    InvalidOptions(String),
    /// The hub refused the token, and a fresh one from the provider (if any) too.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The hub answered the request with an error.
    #[error("{code}: {message}")]
    Refused {
        /// Wire code.
        code: ErrorCode,
        /// The hub's message.
        message: String,
        /// The limit hit, for `resource_exhausted` and `rate_limited`.
        limit: Option<String>,
        /// When the hub would accept it (`rate_limited`). A rate-limited publish is retried
        /// after it by the client itself (up to 8 times) before this error is returned.
        retry_after: Option<Duration>,
    },
    /// The connection dropped before the answer: the request was not carried out (a publish
    /// was not published), unless the drop was abnormal — then it may have been.
    #[error("the connection dropped before the answer")]
    Disconnected,
    /// No answer within the request timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// No endpoint could be reached within the initial attempts.
    #[error("could not connect: {0}")]
    Connect(String),
    /// The token provider failed.
    #[error("the token provider failed: {0}")]
    Token(String),
    /// The hub ended the session and advised against reconnecting.
    #[error("ended by the hub ({reason:?}): {message}")]
    Ended {
        /// The `bye` reason.
        reason: CloseReason,
        /// Its message.
        message: String,
    },
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
}

impl ClientError {
    fn refused(code: ErrorCode, message: String, limit: Option<String>, retry_after_ms: Option<u64>) -> Self {
        match code {
            ErrorCode::Unauthenticated => Self::Unauthenticated(message),
            code => Self::Refused { code, message, limit, retry_after: retry_after_ms.map(Duration::from_millis) },
        }
    }
}

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// Live only.
    Live,
    /// From the oldest message the hub retains.
    Oldest,
    /// From `offset` of `epoch` (resume: last received + 1 and its epoch).
    Offset {
        /// First offset wanted.
        offset: u64,
        /// Its epoch, when known.
        epoch: Option<u64>,
    },
}

/// A message of a subscribed topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic (shared by the subscription's messages).
    pub topic: std::sync::Arc<str>,
    /// Offset.
    pub offset: u64,
    /// Epoch.
    pub epoch: u64,
    /// Publish time, µs since the UNIX epoch (hub clock).
    pub timestamp_us: u64,
    /// Record flags (bit 0: the payload is JSON text; bit 1: the record carried [`Self::meta`]).
    pub flags: u8,
    /// Payload (never the metadata block).
    pub payload: Bytes,
    /// The record's metadata (flag bit 1, `docs/protocol.md` §5.1): the JSON object's text as
    /// the hub sent it — where a message from an upstream source came from (`source`,
    /// `upstream`, `partition`, `position`, and `key`, `headers`, `reason`, `error` when they
    /// apply). `None` for messages without it (every client's publish). It is kept as a slice of
    /// the received buffer, like the payload — no copy and no parse per message; read it with
    /// [`Self::meta_str`] or [`Self::meta_json`] when it is wanted.
    pub meta: Option<Bytes>,
}

impl Message {
    /// Whether the payload is JSON text (published with JSON `data`).
    pub fn is_json(&self) -> bool {
        self.flags & crate::protocol::frame::FLAG_JSON != 0
    }

    /// The metadata's JSON text; `None` without metadata (the hub's is always UTF-8).
    pub fn meta_str(&self) -> Option<&str> {
        self.meta.as_deref().and_then(|m| std::str::from_utf8(m).ok())
    }

    /// The metadata parsed (a JSON object); `None` without metadata or when it is not JSON
    /// (never from the hub). Parses on every call.
    pub fn meta_json(&self) -> Option<serde_json::Value> {
        self.meta.as_deref().and_then(|m| serde_json::from_slice(m).ok())
    }
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The next message (never one already delivered).
    Message(Message),
    /// Messages the application will not get, and why.
    Gap(Gap),
}

/// The hub's answer to a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The offset the message got.
    pub offset: u64,
    /// The epoch it belongs to.
    pub epoch: u64,
}

/// What the client is doing (see [`Client::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Connecting to `endpoint`.
    Connecting {
        /// The URL.
        endpoint: String,
    },
    /// Connected and authenticated.
    Connected {
        /// The URL.
        endpoint: String,
        /// The hub's connection id.
        conn_id: u64,
    },
    /// Waiting `delay` before reconnect attempt `attempt`.
    Reconnecting {
        /// 1-based.
        attempt: u32,
        /// The jittered delay.
        delay: Duration,
    },
    /// The hub said `bye`.
    Bye {
        /// Why.
        reason: CloseReason,
        /// Its message.
        message: String,
        /// The URLs it advised.
        reconnect: Vec<String>,
    },
    /// An endpoint's circuit changed state.
    Circuit {
        /// The URL.
        endpoint: String,
        /// Its new state.
        state: CircuitState,
    },
    /// The client moved on from `from` to `to`.
    FailedOver {
        /// The endpoint left.
        from: String,
        /// The next one tried.
        to: String,
    },
    /// The client stopped (for `error`, if any).
    Closed {
        /// Why, unless it was closed by the application.
        error: Option<String>,
    },
}

/// A subscription: its first answer, then its events (a [`futures_util::Stream`] too).
#[derive(Debug)]
pub struct Subscription {
    /// The hub's answer to the first subscribe.
    pub info: SubscriptionInfo,
    rx: mpsc::Receiver<Event>,
}

impl Subscription {
    /// The next event; `None` once the subscription or the client ended.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next message, skipping nothing: a gap is returned as `Err`.
    ///
    /// # Errors
    /// The [`Gap`] that came first.
    pub async fn next_message(&mut self) -> Option<Result<Message, Gap>> {
        self.next().await.map(|e| match e {
            Event::Message(m) => Ok(m),
            Event::Gap(g) => Err(g),
        })
    }
}

impl futures_util::Stream for Subscription {
    type Item = Event;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// A handle on the client's task: clone it freely; the task ends with [`Client::close`] or
/// when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Client {
    cmd: mpsc::Sender<actor::Cmd>,
    status: broadcast::Sender<Status>,
    request_timeout: Duration,
    buffer: usize,
    /// Trusted for `wss://` endpoints besides the system's roots (for `health()`).
    tls_ca_files: std::sync::Arc<[std::path::PathBuf]>,
}

impl Client {
    /// Validates `options`, connects (up to `initial_attempts`), and returns the handle.
    ///
    /// # Errors
    /// [`ClientError::InvalidOptions`], [`ClientError::Unauthenticated`],
    /// [`ClientError::Connect`], [`ClientError::Token`].
    pub async fn connect(options: ClientOptions) -> Result<Self, ClientError> {
        options.validate()?;
        let (cmd, rx) = mpsc::channel(256);
        let (status, _) = broadcast::channel(256);
        let (ready_tx, ready_rx) = oneshot::channel();
        let (request_timeout, buffer) = (options.request_timeout, options.buffer);
        let tls_ca_files = options.tls_ca_files.clone().into();
        tokio::spawn(actor::Actor::new(options, rx, status.clone()).run(ready_tx));
        ready_rx.await.map_err(|_| ClientError::Closed)??;
        Ok(Self { cmd, status, request_timeout, buffer, tls_ca_files })
    }

    /// Status events from now on.
    pub fn status(&self) -> broadcast::Receiver<Status> {
        self.status.subscribe()
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> actor::Cmd,
    ) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(make(tx)).await.map_err(|_| ClientError::Closed)?;
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout(self.request_timeout)),
        }
    }

    /// Subscribes `topic` from `from`. The subscription survives reconnects: it resumes after
    /// the last message it delivered.
    ///
    /// # Errors
    /// [`ClientError::Refused`] (permission, limits, already subscribed), and the transport's.
    pub async fn subscribe(&self, topic: &str, from: From) -> Result<Subscription, ClientError> {
        let (events, rx) = mpsc::channel(self.buffer);
        let topic = topic.to_owned();
        let info = self.request(|reply| actor::Cmd::Subscribe { topic, from, events, reply }).await?;
        Ok(Subscription { info, rx })
    }

    /// Unsubscribes `topic`.
    ///
    /// # Errors
    /// [`ClientError::Refused`] when not subscribed, and the transport's.
    pub async fn unsubscribe(&self, topic: &str) -> Result<(), ClientError> {
        let topic = topic.to_owned();
        self.request(|reply| actor::Cmd::Unsubscribe { topic, reply }).await
    }

    /// Publishes `payload` (binary) on `topic` and returns where it landed.
    ///
    /// # Errors
    /// [`ClientError::Refused`], [`ClientError::Disconnected`] (not published), [`ClientError::Timeout`].
    pub async fn publish(&self, topic: &str, payload: impl Into<Bytes>) -> Result<Published, ClientError> {
        let (topic, payload) = (topic.to_owned(), payload.into());
        self.request(|reply| actor::Cmd::Publish { topic, payload, json: false, reply }).await
    }

    /// Publishes a JSON value on `topic` (subscribers see the JSON flag).
    ///
    /// # Errors
    /// As [`Self::publish`].
    pub async fn publish_json(&self, topic: &str, value: &serde_json::Value) -> Result<Published, ClientError> {
        let (topic, payload) = (topic.to_owned(), Bytes::from(value.to_string()));
        self.request(|reply| actor::Cmd::Publish { topic, payload, json: true, reply }).await
    }

    /// The current endpoint's health: its `GET /healthz` (timed, with the hub's version) and the
    /// client's view (the endpoint's circuit, the last connection error). A `tcp://` endpoint
    /// has no HTTP side: `healthy` is false and `error` says that `/healthz` was not asked.
    ///
    /// # Errors
    /// [`ClientError::Closed`] when the client is closed.
    pub async fn health(&self) -> Result<Health, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(actor::Cmd::Health(tx)).await.map_err(|_| ClientError::Closed)?;
        let (endpoint, circuit, last_error) = rx.await.map_err(|_| ClientError::Closed)?;
        let probe = if endpoint.starts_with("tcp://") || endpoint.starts_with("tcps://") {
            Err(format!(
                "{endpoint} is the hub's raw TCP listener, which has no HTTP side: /healthz was not asked \
                 (ask the hub's HTTP listener; the circuit and last error are the client's own view)"
            ))
        } else {
            health::probe(&endpoint, &self.tls_ca_files, self.request_timeout).await
        };
        Ok(match probe {
            Ok((t, healthy, version)) => {
                Health { endpoint, healthy, response_time: Some(t), version, circuit, last_error, error: None }
            }
            Err(e) => Health {
                endpoint,
                healthy: false,
                response_time: None,
                version: None,
                circuit,
                last_error,
                error: Some(e),
            },
        })
    }

    /// Says `bye` and stops the task; subscriptions end.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(actor::Cmd::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}
