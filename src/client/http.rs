//! One HTTP/1.1 request on a fresh connection to the HTTP side of an endpoint
//! (`ws://host:port/…` → `http://host:port`, `wss://` → `https://`): `/healthz` for
//! `health()`, and the WebRTC offer.

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::http::{header, Method, Request, Uri};
use tokio::net::TcpStream;

/// An answer: status and body.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Bytes,
}

/// The `host` and `port` of the WebSocket URL `endpoint` (default 80, or 443 for `wss://`).
pub(super) fn host_port(endpoint: &str) -> Result<(String, u16), String> {
    let uri: Uri = endpoint.parse().map_err(|e| format!("{e}"))?;
    let host = uri.host().ok_or("the endpoint has no host")?.trim_matches(['[', ']']).to_owned();
    let default = if uri.scheme_str() == Some("wss") { 443 } else { 80 };
    Ok((host, uri.port_u16().unwrap_or(default)))
}

/// Sends `method path` with `headers` and `body` to the HTTP side of `endpoint`, over TLS for a
/// `wss://` endpoint (trusting the system's roots and `ca_files`).
pub(super) async fn request(
    endpoint: &str,
    ca_files: &[PathBuf],
    method: Method,
    path: &str,
    headers: &[(header::HeaderName, String)],
    body: Bytes,
) -> Result<Answer, String> {
    let (host, port) = host_port(endpoint)?;
    let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
    let mut sender = if endpoint.starts_with("wss://") {
        #[cfg(feature = "client-tls")]
        {
            let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
            let tls = super::tls::connector(ca_files)?.connect(name, tcp).await.map_err(|e| e.to_string())?;
            handshake(tls).await?
        }
        #[cfg(not(feature = "client-tls"))]
        {
            let _ = ca_files;
            return Err("wss:// needs the `client-tls` cargo feature".into());
        }
    } else {
        handshake(tcp).await?
    };
    let mut req = Request::builder().method(method).uri(path).header(header::HOST, format!("{host}:{port}"));
    for (name, value) in headers {
        req = req.header(name, value);
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Answer { status, body })
}

/// An HTTP/1.1 connection over `io`, driven by its own task.
async fn handshake<I>(io: I) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}
