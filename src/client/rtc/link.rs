//! One WebRTC connection of the client: signals `POST /v1/rtc/offer` on the endpoint's HTTP
//! side, then a task drives the [`RtcPeer`] over its UDP socket and passes frames to and from
//! the client's actor over bounded channels.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use hyper::http::{header, Method};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::peer::{Offer, PeerOutput, RtcPeer};
use crate::client::frame::Frame;

/// Frames the driver holds for the actor before it stops reading the socket (the hub's
/// SCTP then slows down on the reliable channel; lossy frames are lost, as on a network).
const HELD: usize = 64;

/// Longest a graceful close (SCTP shutdown, DTLS close_notify) may take.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a WebRTC connect failed.
#[derive(Debug)]
pub(crate) enum RtcConnectError {
    /// The hub refused the token (401).
    Unauthenticated(String),
    /// Anything else (network, 503 draining, WebRTC disabled on that node, a bad answer).
    Failed(String),
}

/// The actor's side of a WebRTC connection. Dropping it ends the connection.
#[derive(Debug)]
pub(crate) struct RtcLink {
    out: mpsc::Sender<Frame>,
    inc: mpsc::Receiver<Frame>,
    task: JoinHandle<()>,
}

impl RtcLink {
    pub(crate) async fn send(&mut self, f: Frame) -> Result<(), ()> {
        self.out.send(f).await.map_err(|_| ())
    }

    pub(crate) async fn recv(&mut self) -> Option<Frame> {
        self.inc.recv().await
    }
}

impl Drop for RtcLink {
    fn drop(&mut self) {
        // The driver closes gracefully once it sees the channels dropped; past this, it is
        // stopped whatever it is doing.
        let task = self.task.abort_handle();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    tokio::time::sleep(CLOSE_WAIT).await;
                    task.abort();
                });
            }
            Err(_) => task.abort(),
        }
    }
}

/// Offers, posts, accepts the answer and starts the driver. Control frames sent before the
/// channel opens wait in the driver.
pub(crate) async fn connect(
    endpoint: &str,
    ca_files: &[std::path::PathBuf],
    token: &str,
) -> Result<RtcLink, RtcConnectError> {
    let failed = |e: String| RtcConnectError::Failed(format!("{endpoint}: {e}"));
    let (host, port) = crate::client::http::host_port(endpoint).map_err(failed)?;
    let hub = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| failed(e.to_string()))?
        .next()
        .ok_or_else(|| failed(format!("{host} has no address")))?;
    // The address the hub can reach us at: the source the route to it picks.
    let probe = UdpSocket::bind(unspecified(hub)).await.map_err(|e| failed(e.to_string()))?;
    probe.connect(hub).await.map_err(|e| failed(e.to_string()))?;
    let ip = probe.local_addr().map_err(|e| failed(e.to_string()))?.ip();
    drop(probe);
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await.map_err(|e| failed(e.to_string()))?;
    let local = socket.local_addr().map_err(|e| failed(e.to_string()))?;
    let (offer, sdp) = Offer::new(local, Instant::now()).map_err(|e| failed(e.to_string()))?;
    let headers =
        [(header::AUTHORIZATION, format!("Bearer {token}")), (header::CONTENT_TYPE, "application/sdp".to_owned())];
    let answer =
        crate::client::http::request(endpoint, ca_files, Method::POST, "/v1/rtc/offer", &headers, Bytes::from(sdp))
            .await
            .map_err(failed)?;
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    match answer.status {
        201 => {}
        401 => return Err(RtcConnectError::Unauthenticated(error_message(&text))),
        s => return Err(failed(format!("POST /v1/rtc/offer: {s} {}", error_message(&text)))),
    }
    let peer = offer.accept(&text).map_err(|e| failed(e.to_string()))?;
    let (out, out_rx) = mpsc::channel(HELD);
    let (inc_tx, inc) = mpsc::channel(HELD);
    let task = tokio::spawn(drive(peer, socket, local, out_rx, inc_tx));
    Ok(RtcLink { out, inc, task })
}

fn unspecified(to: SocketAddr) -> SocketAddr {
    match to {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// The `message` of the hub's JSON error, or the text.
fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

/// Drives the peer until it closes or the actor drops its side.
async fn drive(
    mut peer: RtcPeer,
    socket: UdpSocket,
    local: SocketAddr,
    mut out: mpsc::Receiver<Frame>,
    inc: mpsc::Sender<Frame>,
) {
    let mut held: VecDeque<Frame> = VecDeque::new();
    let mut unsent: VecDeque<Frame> = VecDeque::new();
    let mut buf = vec![0u8; 2048];
    loop {
        // What the peer has to do or say, until it waits.
        let wait = loop {
            match peer.poll() {
                PeerOutput::Wait(t) => break t,
                PeerOutput::Transmit { to, bytes } => {
                    // UDP: a full socket buffer loses the datagram, as a network would.
                    let _ = socket.send_to(&bytes, to).await;
                }
                PeerOutput::Open => {
                    while let Some(f) = unsent.pop_front() {
                        if !write(&mut peer, &f) {
                            return;
                        }
                    }
                }
                PeerOutput::Control(text) => match String::from_utf8(text) {
                    Ok(t) => held.push_back(Frame::Text(t)),
                    Err(_) => tracing::warn!("the hub sent a control message that is not UTF-8"),
                },
                PeerOutput::Records { bytes, .. } => held.push_back(Frame::Binary(Bytes::from(bytes))),
                PeerOutput::Corrupt(e) => tracing::warn!(%e, "the hub sent a malformed chunk"),
                PeerOutput::Closed(why) => {
                    tracing::debug!(%why, "WebRTC connection closed");
                    return;
                }
            }
        };
        tokio::select! {
            permit = inc.reserve(), if !held.is_empty() && !peer.is_closing() => {
                let Ok(permit) = permit else {
                    peer.close();
                    continue;
                };
                permit.send(held.pop_front().expect("not empty"));
            }
            r = socket.recv_from(&mut buf), if held.len() < HELD || peer.is_closing() => match r {
                Ok((n, source)) => {
                    if peer.receive(Instant::now(), source, local, &buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(%e, "WebRTC socket failed");
                    return;
                }
            },
            f = out.recv(), if !peer.is_closing() => match f {
                None => peer.close(),
                Some(f) if peer.is_open() => {
                    if !write(&mut peer, &f) {
                        return;
                    }
                }
                Some(f) => unsent.push_back(f),
            },
            () = tokio::time::sleep_until(wait.into()) => {
                if peer.advance(Instant::now()).is_err() {
                    return;
                }
            }
        }
    }
}

fn write(peer: &mut RtcPeer, f: &Frame) -> bool {
    match f {
        Frame::Text(t) => peer.send_text(t),
        Frame::Binary(b) => peer.send_binary(b),
    }
}
