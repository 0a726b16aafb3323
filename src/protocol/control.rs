//! JSON control messages of `fanhub.v1` (WebSocket text frames).
//!
//! Client → server messages are tagged by `"op"`, server → client by `"type"`. A request may
//! carry a numeric `"id"`; every reply and error about it echoes the id. Unknown fields are
//! ignored so clients can be newer than the server.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::codes::{CloseReason, ErrorCode};

/// Connection details: what a connection is about (a data source and a session) and which
/// streams of it it wants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionDetails {
    /// First topic segment of the connection's streams.
    pub data_source: String,
    /// Second topic segment; `data_source/session_key` is the main stream.
    pub session_key: String,
    /// Stream names; each subscribes `data_source/session_key/stream`.
    pub streams: Vec<String>,
    /// Start offsets, one per stream (empty: all live).
    pub stream_offsets: Vec<u64>,
    /// The epoch each start offset belongs to, one per stream (empty, or 0 for a stream: the
    /// topic's current epoch is assumed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stream_epochs: Vec<u64>,
    /// When true, the main stream `data_source/session_key` is not subscribed.
    pub exclude_main_stream: bool,
}

impl ConnectionDetails {
    /// True when no data source was given (the connection uses plain subscribes only).
    pub fn is_empty(&self) -> bool {
        self.data_source.is_empty() && self.session_key.is_empty() && self.streams.is_empty()
    }
}

/// Optional self-description of the client, for operators.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientInfo {
    /// Client library or application name.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// A client → server control message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClientOp {
    /// First message: authenticate (unless the token came in the upgrade request) and
    /// optionally open the streams of a data source and session.
    Connect {
        /// Request id: echoed in the reply (absent: none was given).
        #[serde(default)]
        id: Option<u64>,
        /// The JWT (absent: the one from the upgrade request's header or query).
        #[serde(default)]
        token: Option<String>,
        /// Data source, session and streams to open with the connection.
        #[serde(default)]
        details: Option<ConnectionDetails>,
        /// Stable client instance id; a new connection with the same subject and client id
        /// replaces the old one (which gets bye `replaced`). Checked by [`check_client_id`].
        #[serde(default, deserialize_with = "client_id")]
        client_id: Option<String>,
        /// Who the client is (name, version), for operators.
        #[serde(default)]
        client: Option<ClientInfo>,
    },
    /// Subscribe to a topic, optionally from an offset (replay, then live).
    Subscribe {
        /// Request id: echoed in the reply (absent: none was given).
        #[serde(default)]
        id: Option<u64>,
        /// Topic to subscribe to.
        topic: String,
        /// First offset wanted. Absent: live only.
        #[serde(default)]
        offset: Option<u64>,
        /// The epoch `offset` belongs to. Absent: the topic's current epoch is assumed.
        #[serde(default)]
        epoch: Option<u64>,
    },
    /// Stop receiving a topic.
    Unsubscribe {
        /// Request id: echoed in the reply (absent: none was given).
        #[serde(default)]
        id: Option<u64>,
        /// Topic to leave.
        topic: String,
    },
    /// Publish a JSON value (`data`) or base64 bytes (`data_b64`) to a topic.
    Publish {
        /// Request id: echoed in the reply (absent: none was given).
        #[serde(default)]
        id: Option<u64>,
        /// Topic to publish on.
        topic: String,
        /// A JSON payload (exactly one of `data` and `data_b64`).
        #[serde(default, deserialize_with = "present")]
        data: Option<serde_json::Value>,
        /// A binary payload, base64 (standard alphabet).
        #[serde(default)]
        data_b64: Option<String>,
    },
    /// Add streams to the connection's data source and session.
    AddStreams {
        /// Request id: echoed in the reply (absent: none was given).
        #[serde(default)]
        id: Option<u64>,
        /// Stream names to add under the connection's `data_source/session_key`.
        streams: Vec<String>,
        /// Start offsets, one per stream (empty: all live).
        #[serde(default)]
        stream_offsets: Vec<u64>,
        /// The epoch of each start offset (empty, or 0: the topic's current epoch).
        #[serde(default)]
        stream_epochs: Vec<u64>,
    },
    /// Remove streams of the connection's data source and session.
    RemoveStreams {
        /// Request id: echoed in the reply (absent: none was given).
        #[serde(default)]
        id: Option<u64>,
        /// Stream names to remove.
        streams: Vec<String>,
    },
    /// Ask for this connection's details, state and topics.
    GetConnection {
        /// Request id: echoed in the reply (absent: none was given).
        #[serde(default)]
        id: Option<u64>,
    },
    /// Application-level ping; answered by `pong`.
    Ping {
        /// Request id: echoed in the reply (absent: none was given).
        #[serde(default)]
        id: Option<u64>,
    },
    /// Client-initiated time sync: `t1` is the client's send time (µs since the UNIX epoch).
    TimeSync {
        /// Request id: echoed in the reply (absent: none was given).
        #[serde(default)]
        id: Option<u64>,
        /// Client send time, µs since the UNIX epoch.
        t1: i64,
    },
    /// Answer to a server-initiated `time_sync_request`.
    TimeSyncReply {
        /// The `seq` of the server's `time_sync_request`.
        seq: u64,
        /// The server's `t1`, echoed.
        t1: i64,
        /// Client receive time, µs since the UNIX epoch.
        t2: i64,
        /// Client send time, µs since the UNIX epoch.
        t3: i64,
    },
    /// Replace the connection's token before it expires (same subject).
    Refresh {
        /// Request id: echoed in the reply (absent: none was given).
        #[serde(default)]
        id: Option<u64>,
        /// A new JWT for the same subject.
        token: String,
    },
    /// WebRTC signaling over this WebSocket: an SDP offer for a new WebRTC peer connection
    /// (authenticated with this connection's token); answered by `rtc_answer`.
    RtcOffer {
        /// Request id: echoed in the reply (absent: none was given).
        #[serde(default)]
        id: Option<u64>,
        /// The SDP offer of the new peer connection.
        sdp: String,
    },
    /// A trickled ICE candidate (`candidate:…` line) for a WebRTC session this connection
    /// created; answered by `rtc_candidate_added`.
    RtcCandidate {
        /// Request id: echoed in the reply (absent: none was given).
        #[serde(default)]
        id: Option<u64>,
        /// The WebRTC session the candidate is for.
        session: u64,
        /// An ICE candidate line (`candidate:…`, with or without `a=`).
        candidate: String,
    },
    /// Close the connection; answered by `closed`.
    Bye {
        /// Request id: echoed in the reply (absent: none was given).
        #[serde(default)]
        id: Option<u64>,
        /// Why the client leaves (free text, logged).
        #[serde(default)]
        reason: Option<String>,
    },
}

impl ClientOp {
    /// The request id, if the message carried one.
    pub fn id(&self) -> Option<u64> {
        match self {
            Self::Connect { id, .. }
            | Self::Subscribe { id, .. }
            | Self::Unsubscribe { id, .. }
            | Self::Publish { id, .. }
            | Self::AddStreams { id, .. }
            | Self::RemoveStreams { id, .. }
            | Self::GetConnection { id }
            | Self::Ping { id }
            | Self::TimeSync { id, .. }
            | Self::Refresh { id, .. }
            | Self::RtcOffer { id, .. }
            | Self::RtcCandidate { id, .. }
            | Self::Bye { id, .. } => *id,
            Self::TimeSyncReply { .. } => None,
        }
    }

    /// The op name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Subscribe { .. } => "subscribe",
            Self::Unsubscribe { .. } => "unsubscribe",
            Self::Publish { .. } => "publish",
            Self::AddStreams { .. } => "add_streams",
            Self::RemoveStreams { .. } => "remove_streams",
            Self::GetConnection { .. } => "get_connection",
            Self::Ping { .. } => "ping",
            Self::TimeSync { .. } => "time_sync",
            Self::TimeSyncReply { .. } => "time_sync_reply",
            Self::Refresh { .. } => "refresh",
            Self::RtcOffer { .. } => "rtc_offer",
            Self::RtcCandidate { .. } => "rtc_candidate",
            Self::Bye { .. } => "bye",
        }
    }
}

/// The op names this version understands (for the `unknown op` error message).
pub const KNOWN_OPS: &[&str] = &[
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "add_streams",
    "remove_streams",
    "get_connection",
    "ping",
    "time_sync",
    "time_sync_reply",
    "refresh",
    "rtc_offer",
    "rtc_candidate",
    "bye",
];

/// A control message that could not be parsed, with what is needed to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The request id, when it could be recovered from the malformed message.
    pub id: Option<u64>,
    /// Always [`ErrorCode::InvalidArgument`] today; kept for symmetry with other errors.
    pub code: ErrorCode,
    /// Human-readable reason.
    pub message: String,
    /// The message's `op`, when it named one (a malformed `publish` still counts as a publish).
    pub op: Option<String>,
}

/// Parses one JSON control message, classifying failures into clear messages: malformed JSON,
/// not an object, missing or unknown `op`, or wrong field types.
///
/// # Errors
/// [`ParseError`] with code `invalid_argument`.
pub fn parse_client_op(text: &[u8]) -> Result<ClientOp, ParseError> {
    match serde_json::from_slice::<ClientOp>(text) {
        Ok(op) => Ok(op),
        Err(e) => Err(classify(text, e)),
    }
}

fn classify(text: &[u8], err: serde_json::Error) -> ParseError {
    let invalid = |id, message| ParseError { id, code: ErrorCode::InvalidArgument, message, op: None };
    let value: serde_json::Value = match serde_json::from_slice(text) {
        Ok(v) => v,
        Err(e) => return invalid(None, format!("malformed JSON: {e}")),
    };
    let Some(obj) = value.as_object() else {
        return invalid(None, "a control message must be a JSON object".into());
    };
    let id = obj.get("id").and_then(serde_json::Value::as_u64);
    match obj.get("op") {
        None => invalid(id, "missing field `op`".into()),
        Some(serde_json::Value::String(op)) if !KNOWN_OPS.contains(&op.as_str()) => {
            invalid(id, format!("unknown op `{op}`; known ops: {}", KNOWN_OPS.join(", ")))
        }
        Some(serde_json::Value::String(op)) => {
            ParseError { op: Some(op.clone()), ..invalid(id, format!("invalid `{op}` message: {err}")) }
        }
        Some(_) => invalid(id, "field `op` must be a string".into()),
    }
}

/// State of a subscription as reported to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionInfo {
    /// Topic name.
    pub topic: String,
    /// The topic's current epoch.
    pub epoch: u64,
    /// The first offset this subscription will deliver (replay start, or the live head).
    pub offset: u64,
    /// The offset the topic will assign to its next message.
    pub head: u64,
    /// Messages replayed from history.
    pub replayed: u64,
    /// False when the requested offset could not be fully served (history lost or trimmed, or
    /// a different epoch): the client may have missed messages.
    pub recovered: bool,
}

/// Authenticated session facts sent in `welcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Token subject.
    pub subject: String,
    /// Token expiry, seconds since the UNIX epoch (absent: no expiry).
    pub expires_at: Option<u64>,
}

/// A server → client control message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Answer to `connect`: the connection is active.
    Welcome {
        /// Request id: echoed in the reply (absent: none was given).
        id: Option<u64>,
        /// This connection's id (unique for the server process).
        conn_id: u64,
        /// Protocol version spoken (`fanhub.v1`).
        protocol: String,
        /// The node answering.
        node_id: String,
        /// Server time, µs since the UNIX epoch.
        server_time_us: i64,
        /// Who the token names and when it expires.
        session: SessionInfo,
        /// Keep-alive interval, ms.
        ping_interval_ms: u64,
        /// Silence after which the server closes the connection, ms.
        idle_timeout_ms: u64,
        /// Largest payload a publish may carry, bytes.
        max_message_size: usize,
        /// Streams opened by `details`, with where each starts.
        subscriptions: Vec<SubscriptionInfo>,
    },
    /// Answer to `subscribe`.
    Subscribed {
        /// Request id: echoed in the reply (absent: none was given).
        id: Option<u64>,
        /// Where the subscription starts.
        #[serde(flatten)]
        sub: SubscriptionInfo,
    },
    /// Answer to `unsubscribe`.
    Unsubscribed {
        /// Request id: echoed in the reply (absent: none was given).
        id: Option<u64>,
        /// The topic left.
        topic: String,
    },
    /// Answer to a publish that asked for one (JSON `id`, or binary request id ≠ 0).
    Published {
        /// Request id: echoed in the reply (absent: none was given).
        id: Option<u64>,
        /// The topic published on.
        topic: String,
        /// The offset the message got.
        offset: u64,
        /// The topic's epoch the offset belongs to.
        epoch: u64,
    },
    /// Answer to `add_streams`.
    StreamsAdded {
        /// Request id: echoed in the reply (absent: none was given).
        id: Option<u64>,
        /// Subscriptions opened, with where each starts.
        subscriptions: Vec<SubscriptionInfo>,
    },
    /// Answer to `remove_streams`.
    StreamsRemoved {
        /// Request id: echoed in the reply (absent: none was given).
        id: Option<u64>,
        /// The topics unsubscribed.
        topics: Vec<String>,
    },
    /// Answer to `get_connection`.
    Connection {
        /// Request id: echoed in the reply (absent: none was given).
        id: Option<u64>,
        /// This connection's id (unique for the server process).
        conn_id: u64,
        /// Connection state (`active`, `monitored_violation`, …).
        state: String,
        /// Token subject.
        subject: String,
        /// The data source, session and streams declared.
        details: ConnectionDetails,
        /// Topics subscribed, sorted.
        topics: Vec<String>,
    },
    /// Answer to `ping`.
    Pong {
        /// Request id: echoed in the reply (absent: none was given).
        id: Option<u64>,
        /// Server time, µs since the UNIX epoch.
        server_time_us: i64,
    },
    /// Answer to a client-initiated `time_sync`: `t2` receive, `t3` send time (server clock).
    TimeSync {
        /// Request id: echoed in the reply (absent: none was given).
        id: Option<u64>,
        /// The client's `t1`, echoed.
        t1: i64,
        /// Server receive time, µs since the UNIX epoch.
        t2: i64,
        /// Server send time, µs since the UNIX epoch.
        t3: i64,
    },
    /// Server-initiated time sync; the client answers `time_sync_reply` with t1, t2, t3.
    TimeSyncRequest {
        /// Sequence number; the answer echoes it.
        seq: u64,
        /// Server send time, µs since the UNIX epoch.
        t1: i64,
    },
    /// Answer to `refresh`.
    Refreshed {
        /// Request id: echoed in the reply (absent: none was given).
        id: Option<u64>,
        /// The new token's expiry, seconds since the UNIX epoch.
        expires_at: Option<u64>,
    },
    /// Answer to `rtc_offer`: the SDP answer and the new WebRTC connection's id (its session).
    RtcAnswer {
        /// Request id: echoed in the reply (absent: none was given).
        id: Option<u64>,
        /// The SDP answer.
        sdp: String,
        /// The new WebRTC connection's id (its session).
        session: u64,
    },
    /// Answer to `rtc_candidate`.
    RtcCandidateAdded {
        /// Request id: echoed in the reply (absent: none was given).
        id: Option<u64>,
        /// The WebRTC session.
        session: u64,
    },
    /// Answer to `bye`: the connection is closing at the client's request.
    Closed {
        /// Request id: echoed in the reply (absent: none was given).
        id: Option<u64>,
        /// Always true.
        success: bool,
    },
    /// A request failed (or, with no id, something about the connection went wrong).
    Error {
        /// Request id: echoed in the reply (absent: none was given).
        id: Option<u64>,
        /// Stable error code (`docs/protocol.md`).
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
        /// The topic the request was about, if any.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        topic: Option<String>,
        /// For `resource_exhausted` and `rate_limited`: which configured limit.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        limit: Option<String>,
        /// For an error about a publish: which of the connection's publishes (binary frames and
        /// JSON `publish` ops, counted from 1 in the order sent) it answers.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        publish_seq: Option<u64>,
        /// For `rate_limited`: milliseconds until the request would be accepted (a client
        /// retrying sooner is refused again).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        retry_after_ms: Option<u64>,
    },
    /// The token expires soon; send `refresh` or be closed at `expires_at`.
    TokenExpiring {
        /// Expiry, seconds since the UNIX epoch.
        expires_at: u64,
        /// Milliseconds until the expiry.
        in_ms: u64,
    },
    /// Reconnect advice: move to one of `urls` (and resume from your offsets).
    Reconnect {
        /// Why.
        reason: CloseReason,
        /// Nodes to reconnect to, in order of preference.
        urls: Vec<String>,
    },
    /// The server closes the connection for `reason`; a WebSocket close with `code` follows.
    Bye {
        /// Why the server closes the connection.
        reason: CloseReason,
        /// The WebSocket close code that follows.
        code: u16,
        /// Human-readable detail.
        message: String,
        /// Nodes to reconnect to (drain, shutdown), in order of preference.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        reconnect: Vec<String>,
    },
}

impl ServerMsg {
    /// Serializes the message into a JSON text payload.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("server messages always serialize"))
    }

    /// Shorthand for an error message.
    pub fn error(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            id,
            code,
            message: message.into(),
            topic: None,
            limit: None,
            publish_seq: None,
            retry_after_ms: None,
        }
    }
}

/// The longest client id (`connect`'s `client_id`), in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 128;

/// Checks a client id, however it came (`connect`'s `client_id`, the raw TCP Token datagram):
/// 1 to [`MAX_CLIENT_ID_BYTES`] bytes of UTF-8 without control characters.
///
/// # Errors
/// What is wrong, in words for the client.
pub fn check_client_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_CLIENT_ID_BYTES {
        return Err(format!("client_id must be 1 to {MAX_CLIENT_ID_BYTES} bytes long (this one has {})", id.len()));
    }
    if let Some(c) = id.chars().find(|c| c.is_control()) {
        return Err(format!("client_id must not contain control characters (it has U+{:04X})", u32::from(c)));
    }
    Ok(())
}

/// Deserializes `connect`'s `client_id`: absent or null is `None`; a string must pass
/// [`check_client_id`], so a bad one makes the `connect` invalid like a value of the wrong type.
fn client_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let id = Option::<String>::deserialize(d)?;
    if let Some(id) = &id {
        check_client_id(id).map_err(serde::de::Error::custom)?;
    }
    Ok(id)
}

/// Deserializes a field that may hold any JSON value, `null` included: a present field is
/// `Some` (so `"data": null` publishes JSON `null`); only an absent one is `None` (via
/// `#[serde(default)]`).
pub(crate) fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    <serde_json::Value as serde::Deserialize>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_op() {
        let op = parse_client_op(br#"{"op":"subscribe","id":3,"topic":"a/b","offset":5}"#).unwrap();
        assert_eq!(op, ClientOp::Subscribe { id: Some(3), topic: "a/b".into(), offset: Some(5), epoch: None });
        let op = parse_client_op(
            br#"{"op":"connect","token":"t","details":{"data_source":"d","session_key":"s","streams":["x"]}}"#,
        )
        .unwrap();
        assert!(matches!(op, ClientOp::Connect { details: Some(d), .. } if d.streams == ["x"]));
        assert!(parse_client_op(br#"{"op":"ping","extra":true}"#).is_ok());
        // `"data": null` publishes JSON null; only an absent `data` is missing.
        let op = parse_client_op(br#"{"op":"publish","topic":"a","data":null}"#).unwrap();
        assert!(matches!(op, ClientOp::Publish { data: Some(serde_json::Value::Null), .. }), "{op:?}");
        let op = parse_client_op(br#"{"op":"publish","topic":"a","data_b64":"AA=="}"#).unwrap();
        assert!(matches!(op, ClientOp::Publish { data: None, .. }), "{op:?}");
    }

    #[test]
    fn a_client_id_is_1_to_128_bytes_without_control_characters() {
        let connect = |cid: serde_json::Value| {
            parse_client_op(serde_json::json!({"op": "connect", "token": "t", "client_id": cid}).to_string().as_bytes())
        };
        for ok in [serde_json::json!("tab-7"), serde_json::json!("é".repeat(64)), serde_json::Value::Null] {
            assert!(connect(ok.clone()).is_ok(), "{ok}");
        }
        assert!(matches!(connect("a b".into()), Ok(ClientOp::Connect { client_id: Some(c), .. }) if c == "a b"));
        for (bad, why) in [
            (serde_json::json!(""), "1 to 128 bytes long (this one has 0)"),
            (serde_json::json!("x".repeat(129)), "1 to 128 bytes long (this one has 129)"),
            (serde_json::json!("a\nb"), "control characters (it has U+000A)"),
            (serde_json::json!("a\u{0}"), "control characters (it has U+0000)"),
            (serde_json::json!(7), "invalid type"),
        ] {
            let e = connect(bad.clone()).unwrap_err();
            assert_eq!((e.code, e.op.as_deref()), (ErrorCode::InvalidArgument, Some("connect")), "{bad}");
            assert!(e.message.contains(why), "{bad}: {}", e.message);
        }
        assert_eq!(check_client_id("ok"), Ok(()));
    }

    #[test]
    fn classifies_bad_input() {
        let e = parse_client_op(b"{nope").unwrap_err();
        assert!(e.message.starts_with("malformed JSON"), "{}", e.message);
        let e = parse_client_op(b"[1,2]").unwrap_err();
        assert!(e.message.contains("object"));
        let e = parse_client_op(br#"{"id":4}"#).unwrap_err();
        assert_eq!(e.id, Some(4));
        assert!(e.message.contains("missing field `op`"));
        let e = parse_client_op(br#"{"op":"dance","id":5}"#).unwrap_err();
        assert_eq!(e.id, Some(5));
        assert!(e.message.contains("unknown op `dance`"));
        let e = parse_client_op(br#"{"op":"subscribe","id":6,"topic":7}"#).unwrap_err();
        assert_eq!(e.id, Some(6));
        assert!(e.message.contains("invalid `subscribe` message"), "{}", e.message);
        let e = parse_client_op(br#"{"op":5}"#).unwrap_err();
        assert!(e.message.contains("must be a string"));
    }

    #[test]
    fn server_messages_are_tagged_by_type() {
        let v: serde_json::Value =
            serde_json::from_slice(&ServerMsg::error(Some(1), ErrorCode::NotFound, "x").to_bytes()).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], "not_found");
        assert_eq!(v["id"], 1);
        let sub = ServerMsg::Subscribed {
            id: None,
            sub: SubscriptionInfo { topic: "t".into(), epoch: 1, offset: 2, head: 3, replayed: 0, recovered: true },
        };
        let v: serde_json::Value = serde_json::from_slice(&sub.to_bytes()).unwrap();
        assert_eq!(v["type"], "subscribed");
        assert_eq!(v["head"], 3);
    }
}
