//! Test doubles: an in-process [`Connection`] whose queue tests drain by hand.
//!
//! Used by the hub's unit tests, the criterion benches and anyone embedding the hub without a
//! socket. It is a real connection (it owns a real [`OutboundQueue`](super::OutboundQueue)), only
//! with no writer task: [`TestConnection::drain`] plays the writer.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::connection::{ConnCore, Connection};
use super::identity::{Identity, Protocol};
use super::manager::ConnectionManager;
use super::name::TopicPattern;
use super::outbound::{Batch, Control, Drain};

/// An in-process connection.
#[derive(Debug)]
pub struct TestConnection {
    core: ConnCore,
    wakes: AtomicU64,
}

impl Connection for TestConnection {
    fn core(&self) -> &ConnCore {
        &self.core
    }

    fn wake(&self) {
        self.wakes.fetch_add(1, Relaxed);
    }
}

/// Everything a [`TestConnection`] would have written.
#[derive(Debug, Default)]
pub struct Drained {
    /// Control messages as JSON values.
    pub control: Vec<serde_json::Value>,
    /// Data records.
    pub records: Vec<Bytes>,
    /// Whether the connection finished closing.
    pub finished: bool,
}

impl TestConnection {
    /// Creates and registers a connection for `subject`, allowed to subscribe and publish to
    /// everything, from 127.0.0.1:`port`.
    pub fn register(manager: &ConnectionManager, subject: &str, port: u16) -> Arc<Self> {
        let conn = Self::unregistered(manager, subject, port);
        manager.register_client(conn.clone(), None).expect("register");
        conn
    }

    /// Creates a connection without registering it.
    pub fn unregistered(manager: &ConnectionManager, subject: &str, port: u16) -> Arc<Self> {
        let core = manager.new_core(Protocol::InProcess, SocketAddr::from((Ipv4Addr::LOCALHOST, port)), 0);
        let all = vec![TopicPattern::new(">").expect("pattern")];
        core.set_identity(Identity { subject: subject.into(), subscribe: all.clone(), publish: all, expires_at: None });
        Arc::new(Self { core, wakes: AtomicU64::new(0) })
    }

    /// How many times the hub woke this connection's (absent) writer.
    pub fn wakes(&self) -> u64 {
        self.wakes.load(Relaxed)
    }

    /// Drains everything queued, as a writer would (coalesced records whose rate allows at
    /// this instant included).
    pub fn drain(&self) -> Drained {
        self.drain_at(Instant::now())
    }

    /// Drains everything queued at `now`, as a writer would.
    pub fn drain_at(&self, now: Instant) -> Drained {
        let mut out = Drained::default();
        let mut batch = Batch::default();
        loop {
            batch.clear();
            match self.core.outbound.drain(&mut batch, usize::MAX, usize::MAX, now) {
                Drain::Ready => {
                    for c in batch.control.drain(..) {
                        if let Control::Json(b) = c {
                            out.control.push(serde_json::from_slice(&b).expect("control is JSON"));
                        }
                    }
                    out.records.append(&mut batch.records);
                }
                Drain::Idle { .. } => return out,
                Drain::Finished(_) => {
                    out.finished = true;
                    return out;
                }
            }
        }
    }

    /// `(offset, epoch)` of the drained records, in order.
    pub fn drain_positions(&self) -> Vec<(u64, u64)> {
        self.drain()
            .records
            .iter()
            .flat_map(|r| {
                crate::protocol::frame::decode_records(r)
                    .map(|x| x.map(|x| (x.offset, x.epoch)).expect("record"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Offsets of the drained records, in order.
    pub fn drain_offsets(&self) -> Vec<u64> {
        self.drain_offsets_at(Instant::now())
    }

    /// Offsets of the records drained at `now`, in order.
    pub fn drain_offsets_at(&self, now: Instant) -> Vec<u64> {
        self.drain_at(now)
            .records
            .iter()
            .flat_map(|r| {
                crate::protocol::frame::decode_records(r).map(|x| x.expect("record").offset).collect::<Vec<_>>()
            })
            .collect()
    }
}
