//! Why a manager operation failed. Each operation has its own enum; the reasons every topic
//! operation shares (unknown connection, bad topic name, no permission, the topic may not
//! exist, the broker is unreachable) are one [`RequestError`] inside them, with one mapping to
//! wire codes. Ordinary outcomes (a drop, a slow consumer) are values, never errors.

use std::sync::Arc;
use std::time::Duration;

use crate::hub::connection::Connection;
use crate::hub::identity::ConnId;
use crate::hub::name::{TopicError, TopicName};
use crate::hub::policy::PolicyError;
use crate::hub::registry::TopicAccessError;
use crate::protocol::ErrorCode;

/// What a permission was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Subscribing.
    Subscribe,
    /// Publishing.
    Publish,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Subscribe => "subscribe",
            Self::Publish => "publish",
        })
    }
}

/// The reasons every topic operation can fail for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The connection is not registered (closed or never authenticated).
    #[error("connection {0} is not registered")]
    UnknownConnection(ConnId),
    /// Invalid topic name.
    #[error("invalid topic: {0}")]
    InvalidTopic(#[from] TopicError),
    /// The claims (or the topic's declared publishers) do not allow it.
    #[error("not allowed to {0} to {1}")]
    PermissionDenied(Action, TopicName),
    /// Topic lookup failed.
    #[error(transparent)]
    Topic(#[from] TopicAccessError),
    /// Cluster mode: the broker is unreachable and the operation needs it. Nothing was done;
    /// retry later or on another node.
    #[error("{0}")]
    Unavailable(String),
}

impl RequestError {
    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownConnection(_) => ErrorCode::FailedPrecondition,
            Self::InvalidTopic(_) => ErrorCode::InvalidArgument,
            Self::PermissionDenied(..) => ErrorCode::PermissionDenied,
            Self::Topic(TopicAccessError::Undeclared(_)) => ErrorCode::NotFound,
            Self::Topic(TopicAccessError::TooMany(_)) => ErrorCode::ResourceExhausted,
            Self::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    /// Which configured limit was hit, if any.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            Self::Topic(TopicAccessError::TooMany(_)) => Some("max_topics"),
            _ => None,
        }
    }
}

/// Why a connection could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// A connection limit was hit.
    #[error("connection limit reached: at most {limit} connections {scope}")]
    Limit {
        /// `global`, `per_user` or `per_ip`.
        scope: &'static str,
        /// The configured limit.
        limit: usize,
    },
    /// The id is already registered.
    #[error("connection {0} is already registered")]
    Duplicate(ConnId),
}

impl RegisterError {
    /// Which configured limit, for error messages.
    pub fn limit_name(&self) -> Option<&'static str> {
        match self {
            Self::Limit { scope: "global", .. } => Some("max_connections"),
            Self::Limit { scope: "per_user", .. } => Some("max_connections_per_user"),
            Self::Limit { .. } => Some("max_connections_per_ip"),
            Self::Duplicate(_) => None,
        }
    }
}

/// Why a subscribe, unsubscribe or stream change failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// A reason every topic operation shares.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// Subscribed already.
    #[error("already subscribed to {0}; unsubscribe first to restart from another offset")]
    AlreadySubscribed(TopicName),
    /// Not subscribed.
    #[error("not subscribed to {0}")]
    NotSubscribed(TopicName),
    /// `max_subscriptions_per_connection` reached.
    #[error("subscription limit reached: at most {0} subscriptions per connection")]
    TooManySubscriptions(usize),
    /// The topic's `max_subscribers` reached.
    #[error("topic {topic} has its maximum of {max} subscribers")]
    TopicFull {
        /// Topic.
        topic: TopicName,
        /// Its limit.
        max: usize,
    },
    /// The offset is past the topic's head.
    #[error("offset {offset} is beyond the head {head} of {topic}")]
    OffsetBeyondHead {
        /// Topic.
        topic: TopicName,
        /// Requested offset.
        offset: u64,
        /// The topic's next offset.
        head: u64,
    },
    /// `streams` and `stream_offsets` differ in length.
    #[error("stream_offsets has {offsets} entries but streams has {streams}")]
    OffsetsMismatch {
        /// Streams given.
        streams: usize,
        /// Offsets given.
        offsets: usize,
    },
    /// `data_source` or `session_key` is empty or not a single segment.
    #[error("invalid connection details: {0}")]
    InvalidDetails(String),
    /// `add_streams` without a data source on the connection.
    #[error("this connection has no data_source/session_key; connect with details first")]
    NoDataSource,
}

impl From<TopicError> for SubscribeError {
    fn from(e: TopicError) -> Self {
        Self::Request(e.into())
    }
}

impl From<TopicAccessError> for SubscribeError {
    fn from(e: TopicAccessError) -> Self {
        Self::Request(e.into())
    }
}

impl SubscribeError {
    /// `unavailable` with `message`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Request(RequestError::Unavailable(message.into()))
    }

    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Request(e) => e.code(),
            Self::OffsetBeyondHead { .. } | Self::OffsetsMismatch { .. } | Self::InvalidDetails(_) => {
                ErrorCode::InvalidArgument
            }
            Self::TooManySubscriptions(_) | Self::TopicFull { .. } => ErrorCode::ResourceExhausted,
            Self::AlreadySubscribed(_) | Self::NotSubscribed(_) | Self::NoDataSource => ErrorCode::FailedPrecondition,
        }
    }

    /// Which configured limit was hit, if any.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            Self::Request(e) => e.limit(),
            Self::TooManySubscriptions(_) => Some("max_subscriptions_per_connection"),
            Self::TopicFull { .. } => Some("max_subscribers"),
            _ => None,
        }
    }
}

/// Why a publish failed.
#[derive(Clone, thiserror::Error)]
pub enum PublishError {
    /// A reason every topic operation shares.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// Payload over `max_message_size`.
    #[error("message of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Publish rate exceeded.
    #[error("publish rate exceeded: at most {per_second} messages per second; retry in {} ms", retry_after.as_millis())]
    RateLimited {
        /// The connection's allowance.
        per_second: u32,
        /// When the next publish would be accepted.
        retry_after: Duration,
    },
    /// Publish byte rate exceeded (`limits.publish_bytes_per_second`, checked by the session).
    #[error(
        "publish byte rate exceeded: at most {per_second} bytes of payload per second; this message of {size} bytes \
         would pass in {} ms",
        retry_after.as_millis()
    )]
    BytesRateLimited {
        /// The connection's allowance, bytes per second.
        per_second: u32,
        /// The refused payload's size.
        size: usize,
        /// When this publish would be accepted.
        retry_after: Duration,
    },
    /// A `reliable` + `apply_backpressure` subscriber is full: wait for its queue to drain
    /// (`OutboundQueue::space_freed`), then retry, until the policy's timeout.
    #[error("a subscriber of {topic} is full; publish delayed")]
    Backpressure {
        /// Topic.
        topic: TopicName,
        /// The full subscriber to wait on.
        waiting_for: Arc<dyn Connection>,
        /// How long the publisher may be delayed in total.
        timeout: Duration,
    },
    /// Backpressure lasted longer than the policy allows.
    #[error("subscribers of {0} did not drain in time; message not published")]
    BackpressureTimeout(TopicName),
    /// On a `reliable` topic, the record is larger than a subscriber's queue can ever hold
    /// (the policy's `queue_bytes` or `limits.queue.max_bytes`): no subscriber could take it.
    #[error("a message of {size} bytes on {topic} can never fit a subscriber's queue of {max} bytes")]
    ExceedsQueue {
        /// Topic.
        topic: TopicName,
        /// The encoded record's size.
        size: usize,
        /// The smaller of the two queue bounds.
        max: usize,
    },
}

impl std::fmt::Debug for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl From<TopicError> for PublishError {
    fn from(e: TopicError) -> Self {
        Self::Request(e.into())
    }
}

impl From<TopicAccessError> for PublishError {
    fn from(e: TopicAccessError) -> Self {
        Self::Request(e.into())
    }
}

impl PublishError {
    /// `unavailable` with `message`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Request(RequestError::Unavailable(message.into()))
    }

    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Request(e) => e.code(),
            Self::TooLarge { .. }
            | Self::Backpressure { .. }
            | Self::BackpressureTimeout(_)
            | Self::ExceedsQueue { .. } => ErrorCode::ResourceExhausted,
            Self::RateLimited { .. } | Self::BytesRateLimited { .. } => ErrorCode::RateLimited,
        }
    }

    /// The `error` answering publish number `seq` (request `id`) on `topic`.
    pub fn to_msg(&self, id: Option<u64>, topic: &TopicName, seq: u64) -> crate::protocol::control::ServerMsg {
        crate::protocol::control::ServerMsg::Error {
            id,
            code: self.code(),
            message: self.to_string(),
            topic: Some(topic.to_string()),
            limit: self.limit().map(str::to_owned),
            publish_seq: Some(seq),
            // Rounded up: retrying at the advised time is never too early.
            retry_after_ms: self.retry_after().map(|d| u64::try_from(d.as_micros().div_ceil(1000)).unwrap_or(u64::MAX)),
        }
    }

    /// How long to wait before retrying, when the hub knows (`rate_limited`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::BytesRateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Which configured limit was hit, if any.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            Self::Request(e) => e.limit(),
            Self::TooLarge { .. } => Some("max_message_size"),
            Self::RateLimited { .. } => Some("publish_rate_per_second"),
            Self::BytesRateLimited { .. } => Some("publish_bytes_per_second"),
            Self::Backpressure { .. } | Self::BackpressureTimeout(_) => Some("backpressure_timeout_ms"),
            Self::ExceedsQueue { .. } => Some("queue_bytes"),
        }
    }
}

/// Why a policy change failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetPolicyError {
    /// The policy is invalid.
    #[error(transparent)]
    Invalid(#[from] PolicyError),
    /// The topic may not be used.
    #[error(transparent)]
    Topic(#[from] TopicAccessError),
    /// Cluster mode: the policy could not be shared with the other nodes.
    #[error("{0}")]
    Unavailable(String),
}
