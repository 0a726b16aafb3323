//! Who a connection is: its id, its transport, its lifecycle state and the identity its token
//! proved. Plain values, shared by the connection, the manager and the counters; nothing here
//! depends on another hub module but topic names.

use serde::Serialize;

use super::name::{any_matches, TopicName, TopicPattern};

/// A connection id, unique for the life of the process (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The transport a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// WebSocket (`/ws`).
    #[serde(rename = "websocket")]
    WebSocket,
    /// WebRTC data channel.
    #[serde(rename = "webrtc")]
    WebRtc,
    /// Server-sent events (`/v1/sse`): records and notices only, subscriptions from the query.
    Sse,
    /// Raw TCP streaming protocol.
    Tcp,
    /// In-process connection (tests, benches, embedding).
    InProcess,
}

impl Protocol {
    /// Name used in stats, metrics and the admin API (and its serialized form).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::WebRtc => "webrtc",
            Self::Sse => "sse",
            Self::Tcp => "tcp",
            Self::InProcess => "in_process",
        }
    }
}

/// The lifecycle states of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum ConnState {
    /// Transport handshake in progress.
    Establishing = 0,
    /// Waiting for or checking credentials.
    Authenticating = 1,
    /// Authenticated and registered.
    Active = 2,
    /// Enforcement thresholds exceeded; further violations close it.
    MonitoredViolation = 3,
    /// Closing: final messages being written.
    Terminating = 4,
    /// Closed; resources released.
    Terminated = 5,
}

impl ConnState {
    /// All states, in lifecycle order.
    pub const ALL: [ConnState; 6] = [
        Self::Establishing,
        Self::Authenticating,
        Self::Active,
        Self::MonitoredViolation,
        Self::Terminating,
        Self::Terminated,
    ];

    /// Name used in stats and the admin API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Establishing => "establishing",
            Self::Authenticating => "authenticating",
            Self::Active => "active",
            Self::MonitoredViolation => "monitored_violation",
            Self::Terminating => "terminating",
            Self::Terminated => "terminated",
        }
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        Self::ALL.get(v as usize).copied().unwrap_or(Self::Terminated)
    }
}

/// Who is on the other end, and what they may do: the result of authentication.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// Token subject (user or service id).
    pub subject: String,
    /// Topics this identity may subscribe to.
    pub subscribe: Vec<TopicPattern>,
    /// Topics this identity may publish to.
    pub publish: Vec<TopicPattern>,
    /// Token expiry, seconds since the UNIX epoch.
    pub expires_at: Option<u64>,
}

impl Identity {
    /// Whether the claims allow subscribing to `topic`.
    pub fn can_subscribe(&self, topic: &TopicName) -> bool {
        any_matches(&self.subscribe, topic)
    }

    /// Whether the claims allow publishing to `topic`.
    pub fn can_publish(&self, topic: &TopicName) -> bool {
        any_matches(&self.publish, topic)
    }
}
