//! One connection of the client, whatever carries it: a WebSocket, (feature `client-webrtc`)
//! WebRTC data channels, or the raw TCP transport. The actor speaks frames to it.

use std::path::PathBuf;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::http::{header, HeaderValue, Uri};
use tokio::net::TcpStream;
use tokio_websockets::{MaybeTlsStream, Message as WsMessage, WebSocketStream};

pub(crate) use super::frame::Frame;
use super::options::Transport;
use crate::protocol::SUBPROTOCOL;

/// Why opening a connection failed.
pub(super) enum OpenError {
    /// The hub refused the token before any control message (WebRTC signaling's 401).
    #[cfg_attr(not(feature = "client-webrtc"), allow(dead_code))]
    Unauthenticated(String),
    Failed(String),
}

pub(super) enum Link {
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>),
    #[cfg(feature = "client-webrtc")]
    Rtc(super::rtc::RtcLink),
    Tcp(Box<super::tcp::TcpLink>),
}

impl Link {
    /// Connects to `endpoint` (a `ws://` or `wss://` URL, or `tcp://` / `tcps://` for raw TCP;
    /// `ca_files` are trusted for TLS besides the system's roots) over `transport`; `token`
    /// authenticates WebRTC signaling and is, with `client_id`, the raw TCP Token datagram (a
    /// WebSocket sends both in `connect`).
    pub(super) async fn open(
        endpoint: &str,
        ca_files: &[PathBuf],
        transport: Transport,
        token: &str,
        client_id: Option<&str>,
    ) -> Result<Link, OpenError> {
        let failed = |e: String| OpenError::Failed(format!("{endpoint}: {e}"));
        match transport {
            Transport::WebSocket => {
                let uri: Uri = endpoint.parse().map_err(|e| failed(format!("{e}")))?;
                let builder = tokio_websockets::ClientBuilder::from_uri(uri)
                    .add_header(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL))
                    .map_err(|e| failed(e.to_string()))?;
                #[cfg(feature = "client-tls")]
                let connector = if endpoint.starts_with("wss://") {
                    tokio_websockets::Connector::Rustls(super::tls::connector(ca_files).map_err(failed)?)
                } else {
                    tokio_websockets::Connector::Plain
                };
                #[cfg(feature = "client-tls")]
                let builder = builder.connector(&connector);
                #[cfg(not(feature = "client-tls"))]
                let _ = ca_files;
                let (ws, _) = builder.connect().await.map_err(|e| failed(e.to_string()))?;
                Ok(Link::Ws(Box::new(ws)))
            }
            #[cfg(feature = "client-webrtc")]
            Transport::WebRtc => match super::rtc::connect(endpoint, ca_files, token).await {
                Ok(l) => Ok(Link::Rtc(l)),
                Err(super::rtc::RtcConnectError::Unauthenticated(m)) => Err(OpenError::Unauthenticated(m)),
                Err(super::rtc::RtcConnectError::Failed(m)) => Err(OpenError::Failed(m)),
            },
            #[cfg(not(feature = "client-webrtc"))]
            Transport::WebRtc => Err(failed("WebRTC needs the `client-webrtc` cargo feature".into())),
            Transport::Tcp => match super::tcp::connect(endpoint, ca_files, token, client_id).await {
                Ok(l) => Ok(Link::Tcp(Box::new(l))),
                Err(e) => Err(failed(e)),
            },
        }
    }

    /// Whether the actor authenticates with a `connect` op (WebSocket, WebRTC); the raw TCP
    /// link has sent the token at open, in the Token datagram.
    pub(super) fn wants_connect_op(&self) -> bool {
        !matches!(self, Link::Tcp(_))
    }

    pub(super) async fn send(&mut self, f: Frame) -> Result<(), ()> {
        match self {
            Link::Ws(ws) => {
                let m = match f {
                    Frame::Text(t) => WsMessage::text(t),
                    Frame::Binary(b) => WsMessage::binary(b),
                };
                ws.send(m).await.map_err(|_| ())
            }
            #[cfg(feature = "client-webrtc")]
            Link::Rtc(l) => l.send(f).await,
            Link::Tcp(l) => l.send(f).await,
        }
    }

    /// The next text or binary message; `None` when the connection is gone. A WebSocket's
    /// pings and pongs come as `Some(None)`: traffic, for the keep-alive.
    pub(super) async fn recv(&mut self) -> Option<Option<Frame>> {
        match self {
            Link::Ws(ws) => {
                let m = ws.next().await?.ok()?;
                if m.is_close() {
                    return None;
                }
                if let Some(t) = m.as_text() {
                    return Some(Some(Frame::Text(t.to_owned())));
                }
                if m.is_binary() {
                    return Some(Some(Frame::Binary(Bytes::from(m.into_payload()))));
                }
                Some(None)
            }
            #[cfg(feature = "client-webrtc")]
            Link::Rtc(l) => l.recv().await.map(Some),
            Link::Tcp(l) => l.recv().await,
        }
    }

    /// Closes it (a WebSocket close handshake; raw TCP shuts its side; WebRTC just ends).
    pub(super) async fn close(&mut self) {
        match self {
            Link::Ws(ws) => {
                let _ = ws.close().await;
            }
            #[cfg(feature = "client-webrtc")]
            Link::Rtc(_) => {}
            Link::Tcp(l) => l.close().await,
        }
    }
}
