//! One HTTP/1.1 request on a fresh connection to the HTTP side of an endpoint
//! (`ws://host:port/…` → `http://host:port`): `/healthz` for `health()`, and the WebRTC offer.

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

/// The `host` and `port` of the WebSocket URL `endpoint`.
pub(super) fn host_port(endpoint: &str) -> Result<(String, u16), String> {
    let uri: Uri = endpoint.parse().map_err(|e| format!("{e}"))?;
    let host = uri.host().ok_or("the endpoint has no host")?.trim_matches(['[', ']']).to_owned();
    Ok((host, uri.port_u16().unwrap_or(80)))
}

/// Sends `method path` with `headers` and `body` to the HTTP side of `endpoint`.
pub(super) async fn request(
    endpoint: &str,
    method: Method,
    path: &str,
    headers: &[(header::HeaderName, String)],
    body: Bytes,
) -> Result<Answer, String> {
    let (host, port) = host_port(endpoint)?;
    let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
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
