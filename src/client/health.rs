//! `health()`: the current endpoint's `GET /healthz`, timed, with the client's own view (circuit
//! state, last error).

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::http::Method;

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
pub(super) async fn probe(
    endpoint: &str,
    ca_files: &[std::path::PathBuf],
    timeout: Duration,
) -> Result<(Duration, bool, Option<String>), String> {
    let started = Instant::now();
    let ask = async {
        let a = super::http::request(endpoint, ca_files, Method::GET, "/healthz", &[], Bytes::new()).await?;
        let v: serde_json::Value = serde_json::from_slice(&a.body).map_err(|e| format!("not JSON: {e}"))?;
        Ok::<_, String>((
            (200..300).contains(&a.status) && v["status"] == "ok",
            v["version"].as_str().map(str::to_owned),
        ))
    };
    let (healthy, version) =
        tokio::time::timeout(timeout, ask).await.map_err(|_| format!("no answer within {timeout:?}"))??;
    Ok((started.elapsed(), healthy, version))
}
