//! The raw TCP link (`docs/protocol.md` §10d, [`super::Transport::Tcp`]): the version byte and
//! the Token datagram (the token and the client id) at open, then datagrams through
//! [`crate::protocol::tcp`] mapped to the frames the actor speaks — Control datagrams as text,
//! Data datagrams as binary, publish frames as Publish datagrams, the hub's Bye as a `bye`
//! control message. The hub's Ping is answered with Pong here; the actor's keep-alive stays its
//! JSON `ping`.
//!
//! Writes go through a buffer drained by single `write` calls, so a receive cancelled while
//! writing a Pong loses nothing: what was not written is written by the next send or receive.

use std::path::PathBuf;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::frame::Frame;
use crate::protocol::tcp::{encode, header, token_payload, Decoder, Kind, VERSION};

/// The largest datagram accepted from the hub (a WebSocket client's default frame limit).
const MAX_DATAGRAM: usize = 64 << 20;

/// The stream under the link: plain TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub(super) struct TcpLink {
    io: Box<dyn Io>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    decoder: Decoder,
}

/// Connects to `endpoint` (`tcp://host:port`, or `tcps://host:port` trusting the system's roots
/// and `ca_files`), then sends the version byte and the Token datagram (with `client_id`, when
/// the client has one). The hub's answer (the `welcome`, or a close without a word for a refused
/// token) is read by the caller.
pub(super) async fn connect(
    endpoint: &str,
    ca_files: &[PathBuf],
    token: &str,
    client_id: Option<&str>,
) -> Result<TcpLink, String> {
    let (host, port) = super::options::tcp_host_port(endpoint)?;
    let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if endpoint.starts_with("tcps://") {
        #[cfg(feature = "client-tls")]
        {
            let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
            Box::new(super::tls::connector(ca_files)?.connect(name, tcp).await.map_err(|e| e.to_string())?)
        }
        #[cfg(not(feature = "client-tls"))]
        {
            let _ = ca_files;
            return Err("tcps:// needs the `client-tls` cargo feature".into());
        }
    } else {
        Box::new(tcp)
    };
    let mut link =
        TcpLink { io, rbuf: BytesMut::with_capacity(8192), wbuf: BytesMut::new(), decoder: Decoder::new(MAX_DATAGRAM) };
    link.wbuf.extend_from_slice(&[VERSION]);
    link.wbuf.extend_from_slice(&encode(Kind::Token, &token_payload(token, client_id)));
    link.flush().await.map_err(|()| "the hub closed the connection".to_owned())?;
    Ok(link)
}

impl TcpLink {
    /// Writes what is buffered. Cancel-safe: each write's progress is recorded as it completes.
    async fn flush(&mut self) -> Result<(), ()> {
        while !self.wbuf.is_empty() {
            match self.io.write(&self.wbuf).await {
                Ok(0) | Err(_) => return Err(()),
                Ok(n) => self.wbuf.advance(n),
            }
        }
        self.io.flush().await.map_err(|_| ())
    }

    /// Sends a control message as a Control datagram, binary (a publish frame) as a Publish one.
    pub(super) async fn send(&mut self, f: Frame) -> Result<(), ()> {
        let (kind, payload) = match &f {
            Frame::Text(t) => (Kind::Control, t.as_bytes()),
            Frame::Binary(b) => (Kind::Publish, &b[..]),
        };
        self.wbuf.extend_from_slice(&header(kind, payload.len()));
        self.wbuf.extend_from_slice(payload);
        self.flush().await
    }

    /// The next frame; `Some(None)` for keep-alive traffic; `None` when the connection is gone
    /// (closed, or the hub's framing broken).
    pub(super) async fn recv(&mut self) -> Option<Option<Frame>> {
        if !self.wbuf.is_empty() {
            self.flush().await.ok()?;
        }
        let d = loop {
            match self.decoder.decode(&mut self.rbuf) {
                Ok(Some(d)) => break d,
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "tcp: the hub's framing is broken; dropping the connection");
                    return None;
                }
            }
            match self.io.read_buf(&mut self.rbuf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        };
        Some(match d.kind {
            Kind::Control => Some(Frame::Text(String::from_utf8(d.payload.to_vec()).ok()?)),
            Kind::Data => Some(Frame::Binary(d.payload)),
            Kind::Bye => Some(Frame::Text(bye(&d.payload))),
            Kind::Reconnect => {
                // The hub's WebSocket URLs: not addresses of its TCP listeners.
                tracing::debug!(advice = %String::from_utf8_lossy(&d.payload), "tcp: reconnect advice not followed");
                None
            }
            Kind::Ping => {
                self.wbuf.extend_from_slice(&encode(Kind::Pong, &[]));
                self.flush().await.ok()?;
                None
            }
            Kind::Pong => None,
            Kind::Token | Kind::Publish => {
                tracing::debug!(kind = ?d.kind, "tcp: a client-only datagram from the hub; dropping the connection");
                return None;
            }
        })
    }

    /// Ends the stream (our FIN; the hub closes its side after its `closed`).
    pub(super) async fn close(&mut self) {
        let _ = self.flush().await;
        let _ = self.io.shutdown().await;
    }
}

/// The hub's Bye datagram `{"reason","message"}` as the `bye` control message a WebSocket
/// carries, so the actor treats both alike (the close code is not on the wire over TCP).
fn bye(payload: &Bytes) -> String {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    serde_json::json!({
        "type": "bye",
        "reason": v["reason"].as_str().unwrap_or("normal"),
        "code": 1000,
        "message": v["message"].as_str().unwrap_or_default(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::control::ServerMsg;
    use crate::protocol::CloseReason;

    #[test]
    fn the_hubs_bye_datagram_reads_as_a_bye_message() {
        let m: ServerMsg =
            serde_json::from_str(&bye(&Bytes::from_static(br#"{"reason":"kicked","message":"out"}"#))).unwrap();
        assert!(
            matches!(m, ServerMsg::Bye { reason: CloseReason::Kicked, ref message, .. } if message == "out"),
            "{m:?}"
        );
        let m: ServerMsg = serde_json::from_str(&bye(&Bytes::from_static(b"not json"))).unwrap();
        assert!(matches!(m, ServerMsg::Bye { reason: CloseReason::Normal, .. }), "{m:?}");
    }
}
