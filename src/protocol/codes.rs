//! Stable error codes and close/bye reasons shared by every transport.
//!
//! The string forms are part of the protocol (`docs/protocol.md`, "Error codes" and "Close
//! codes"); never rename one, only add.

use serde::{Deserialize, Serialize};

/// A client-visible error code. Carried in `{"type":"error","code":…}` messages and in HTTP
/// error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or names something invalid (bad topic, bad JSON, wrong type).
    InvalidArgument,
    /// Missing, invalid, expired or wrong-audience credentials.
    Unauthenticated,
    /// Authenticated, but the token's claims do not allow this subscribe or publish.
    PermissionDenied,
    /// The named thing (topic, connection) does not exist.
    NotFound,
    /// A configured limit was hit (connections, subscriptions, message size, backpressure).
    ResourceExhausted,
    /// The request is valid but the connection or topic is not in a state that allows it.
    FailedPrecondition,
    /// The server cannot serve this now (shutting down, draining); retry elsewhere or later.
    Unavailable,
    /// The per-connection publish rate was exceeded.
    RateLimited,
    /// The subscriber fell behind a `reliable` topic's queue bound.
    SlowConsumer,
    /// An unexpected server-side failure.
    Internal,
}

impl ErrorCode {
    /// The wire string of this code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::Unauthenticated => "unauthenticated",
            Self::PermissionDenied => "permission_denied",
            Self::NotFound => "not_found",
            Self::ResourceExhausted => "resource_exhausted",
            Self::FailedPrecondition => "failed_precondition",
            Self::Unavailable => "unavailable",
            Self::RateLimited => "rate_limited",
            Self::SlowConsumer => "slow_consumer",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status used when this code answers an HTTP request.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::InvalidArgument => 400,
            Self::Unauthenticated => 401,
            Self::PermissionDenied => 403,
            Self::NotFound => 404,
            Self::FailedPrecondition => 409,
            Self::ResourceExhausted | Self::RateLimited | Self::SlowConsumer => 429,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// Whether the client caused this error (as opposed to the server). Logs and metrics keep
    /// the two apart.
    pub const fn is_client_fault(self) -> bool {
        !matches!(self, Self::Unavailable | Self::Internal)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the server ends a connection. Sent as `{"type":"bye","reason":…}` and mapped to a
/// WebSocket close code by [`CloseReason::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The client said bye, or the connection ended normally.
    Normal,
    /// The server is shutting down; reconnect elsewhere.
    Shutdown,
    /// The server is draining for maintenance; reconnect elsewhere.
    Maintenance,
    /// Repeated limit violations (enforcement: monitored, then closed).
    Violation,
    /// A newer connection with the same subject and `client_id` took over.
    Replaced,
    /// An operator closed the connection.
    Kicked,
    /// The subscriber fell behind a `reliable` topic's queue bound.
    SlowConsumer,
    /// Missing or invalid credentials, or the first message was not `connect`.
    Unauthenticated,
    /// The token expired and was not refreshed.
    TokenExpired,
    /// Nothing was received within the idle timeout.
    IdleTimeout,
    /// A connection limit (global, per user, per IP) was hit.
    ResourceExhausted,
    /// A message exceeded the maximum message size.
    MessageTooBig,
    /// The client broke the WebSocket protocol (bad frame, reserved bits, bad opcode).
    ProtocolError,
    /// A text frame was not valid UTF-8.
    InvalidUtf8,
    /// An unexpected server-side failure.
    Internal,
}

impl CloseReason {
    /// The wire string of this reason.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Shutdown => "shutdown",
            Self::Maintenance => "maintenance",
            Self::Violation => "violation",
            Self::Replaced => "replaced",
            Self::Kicked => "kicked",
            Self::SlowConsumer => "slow_consumer",
            Self::Unauthenticated => "unauthenticated",
            Self::TokenExpired => "token_expired",
            Self::IdleTimeout => "idle_timeout",
            Self::ResourceExhausted => "resource_exhausted",
            Self::MessageTooBig => "message_too_big",
            Self::ProtocolError => "protocol_error",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::Internal => "internal",
        }
    }

    /// The WebSocket close code for this reason (`docs/protocol.md`, "Close codes").
    pub const fn close_code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::Shutdown | Self::Maintenance => 1001,
            Self::ProtocolError => 1002,
            Self::InvalidUtf8 => 1007,
            Self::MessageTooBig => 1009,
            Self::Internal => 1011,
            Self::Unauthenticated => 4001,
            Self::TokenExpired => 4002,
            Self::Violation => 4003,
            Self::SlowConsumer => 4004,
            Self::Kicked => 4005,
            Self::Replaced => 4006,
            Self::IdleTimeout => 4007,
            Self::ResourceExhausted => 4008,
        }
    }

    /// Whether queued data should still be written before the connection closes. A graceful
    /// shutdown or drain delivers what was accepted; every other reason discards it (after a
    /// `normal` close the client has said `bye` or gone: nothing may follow its close frame).
    pub const fn drains_queue(self) -> bool {
        matches!(self, Self::Shutdown | Self::Maintenance)
    }

    /// Whether the client is invited to reconnect (to this or another node).
    pub const fn reconnect_advised(self) -> bool {
        matches!(self, Self::Shutdown | Self::Maintenance | Self::SlowConsumer | Self::IdleTimeout)
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_match_serde() {
        for code in [
            ErrorCode::InvalidArgument,
            ErrorCode::Unauthenticated,
            ErrorCode::PermissionDenied,
            ErrorCode::NotFound,
            ErrorCode::ResourceExhausted,
            ErrorCode::FailedPrecondition,
            ErrorCode::Unavailable,
            ErrorCode::RateLimited,
            ErrorCode::SlowConsumer,
            ErrorCode::Internal,
        ] {
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{code}\""));
        }
        for reason in [CloseReason::Kicked, CloseReason::SlowConsumer, CloseReason::TokenExpired] {
            assert_eq!(serde_json::to_string(&reason).unwrap(), format!("\"{reason}\""));
        }
    }

    #[test]
    fn close_codes_are_distinct_in_the_private_range() {
        let reasons = [
            CloseReason::Unauthenticated,
            CloseReason::TokenExpired,
            CloseReason::Violation,
            CloseReason::SlowConsumer,
            CloseReason::Kicked,
            CloseReason::Replaced,
            CloseReason::IdleTimeout,
            CloseReason::ResourceExhausted,
        ];
        let mut codes: Vec<u16> = reasons.iter().map(|r| r.close_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), reasons.len());
        assert!(codes.iter().all(|c| (4000..5000).contains(c)));
    }
}
