//! `health()`: the current endpoint's `GET /healthz`, timed, with the client's own view (circuit
//! state, last error).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::http::{header, Request, Uri};
use tokio::net::TcpStream;

use super::CircuitState;

/// What [`super::Client::health`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The endpoint asked (the one the client uses, or last tried).
    pub endpoint: String,
    /// `/healthz` answered 200 `ok`.
    pub healthy: bool,
    /// How long `/healthz` took.
    pub response_time: Option<Duration>,
    /// The hub's version, from `/healthz`.
    pub version: Option<String>,
    /// The endpoint's circuit.
    pub circuit: CircuitState,
    /// The client's last connection error, if any.
    pub last_error: Option<String>,
    /// Why `/healthz` could not be read, if it could not.
    pub error: Option<String>,
}

/// Times `GET /healthz` on the HTTP side of the WebSocket URL `endpoint`.
pub(super) async fn probe(endpoint: &str, timeout: Duration) -> Result<(Duration, bool, Option<String>), String> {
    let uri: Uri = endpoint.parse().map_err(|e| format!("{e}"))?;
    let host = uri.host().ok_or("the endpoint has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let started = Instant::now();
    let ask = async {
        let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::get("/healthz")
            .header(header::HOST, format!("{host}:{port}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let ok = resp.status().is_success();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
        Ok::<_, String>((ok && v["status"] == "ok", v["version"].as_str().map(str::to_owned)))
    };
    let (healthy, version) =
        tokio::time::timeout(timeout, ask).await.map_err(|_| format!("no answer within {timeout:?}"))??;
    Ok((started.elapsed(), healthy, version))
}
