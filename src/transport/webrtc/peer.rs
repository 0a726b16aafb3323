//! One WebRTC peer inside its driver: its `Rtc`, its channels, and the work of moving its
//! outbound queue into the channels while SCTP has room for whole records.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use str0m::channel::{ChannelData, ChannelId};
use str0m::{Event, IceConnectionState, Output, Rtc};
use tokio::sync::mpsc;

use super::udp::Sender;
use super::{RtcConnection, LOSSY_BUDGET};
use crate::hub::stats::DropReason;
use crate::hub::{Batch, Connection, Control, Drain};
use crate::protocol::rtc::{send_chunked, CONTROL_LABEL, LOSSY_LABEL};
use crate::protocol::CloseReason;

/// A driver's sizes and buffers, reused for every peer it serves.
#[derive(Debug)]
pub(super) struct Scratch {
    /// What one drain of an outbound queue took.
    batch: Batch,
    /// One chunk being built.
    chunk: Vec<u8>,
    /// Largest data-channel message (`webrtc.chunk_size`).
    chunk_size: usize,
    /// Largest record there can be (the largest payload and its header).
    max_record: usize,
}

impl Scratch {
    pub(super) fn new(chunk_size: usize, max_record: usize) -> Self {
        Self { batch: Batch::default(), chunk: Vec::with_capacity(chunk_size), chunk_size, max_record }
    }
}

#[derive(Debug)]
pub(super) struct Peer {
    pub(super) rtc: Rtc,
    pub(super) conn: Arc<RtcConnection>,
    control: Option<ChannelId>,
    lossy: Option<ChannelId>,
    /// Control-channel messages to the session task.
    to_session: mpsc::Sender<(bool, Bytes)>,
    frame_id: u32,
    /// When a coalesced record of its queue may go.
    pub(super) retry_at: Option<Instant>,
    /// When the `Rtc` wants `Input::Timeout` next.
    pub(super) timeout: Instant,
    counters: Arc<crate::hub::Counters>,
    /// Its queue finished closing: the driver drops it.
    pub(super) finished: bool,
}

impl Peer {
    pub(super) fn new(
        rtc: Rtc,
        conn: Arc<RtcConnection>,
        to_session: mpsc::Sender<(bool, Bytes)>,
        counters: Arc<crate::hub::Counters>,
    ) -> Self {
        Self {
            rtc,
            conn,
            control: None,
            lossy: None,
            to_session,
            frame_id: 0,
            retry_at: None,
            timeout: Instant::now(),
            counters,
            finished: false,
        }
    }

    /// Runs the `Rtc` until it wants time to pass; returns when.
    pub(super) fn poll(&mut self, out: &mut Sender<'_>, s: &mut Scratch) -> Instant {
        loop {
            if !self.rtc.is_alive() {
                out.flush();
                return Instant::now();
            }
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    out.flush();
                    return t;
                }
                Ok(Output::Transmit(t)) => out.push(t.destination, &t.contents),
                Ok(Output::Event(e)) => self.event(e, s),
                Err(e) => {
                    tracing::debug!(conn = self.conn.id().0, error = %e, "webrtc peer failed");
                    self.rtc.disconnect();
                }
            }
        }
    }

    fn event(&mut self, e: Event, s: &mut Scratch) {
        match e {
            Event::ChannelOpen(id, label) => {
                if label == CONTROL_LABEL && self.control.is_none() {
                    self.control = Some(id);
                } else if label == LOSSY_LABEL && self.lossy.is_none() {
                    self.lossy = Some(id);
                }
                self.flush(s);
            }
            Event::ChannelData(ChannelData { id, binary, data }) if Some(id) == self.control => {
                let full = self.to_session.try_send((binary, Bytes::from(data))).is_err();
                if full {
                    // The session does not keep up with this peer's requests.
                    self.conn.close(CloseReason::SlowConsumer, "too many requests in flight", &[]);
                }
            }
            Event::ChannelClose(id) if Some(id) == self.control => self.rtc.disconnect(),
            Event::ChannelBufferedAmountLow(_) => self.flush(s),
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => self.rtc.disconnect(),
            _ => {}
        }
    }

    fn buffered(&mut self) -> usize {
        let mut n = 0;
        for id in [self.control, self.lossy].into_iter().flatten() {
            if let Some(mut ch) = self.rtc.channel(id) {
                n += ch.buffered_amount();
            }
        }
        n
    }

    /// Moves what the outbound queue has into the channels, while they have room for whole
    /// records.
    pub(super) fn flush(&mut self, s: &mut Scratch) {
        let (batch, max_record) = (&mut s.batch, s.max_record);
        let Some(control) = self.control else { return };
        let capacity = 2 * max_record;
        loop {
            let buffered = self.buffered();
            if buffered + max_record > capacity {
                // Wait for ChannelBufferedAmountLow.
                if let Some(mut ch) = self.rtc.channel(control) {
                    ch.set_buffered_amount_low_threshold(max_record / 2);
                }
                return;
            }
            batch.clear();
            match self.conn.core.outbound.drain(batch, 64, capacity - max_record - buffered, Instant::now()) {
                Drain::Ready => {}
                Drain::Idle { retry_at } => {
                    self.retry_at = retry_at;
                    return;
                }
                Drain::Finished(_) => {
                    self.finished = true;
                    return;
                }
            }
            for c in batch.control.drain(..) {
                if let Control::Json(b) = c {
                    if let Some(mut ch) = self.rtc.channel(control) {
                        let _ = ch.write(false, &b);
                    }
                }
            }
            let (mut sent, mut bytes) = (0u64, 0u64);
            for (i, record) in batch.records.iter().enumerate() {
                let reliable = i < batch.reliable_records;
                if let (false, Some(lossy)) = (reliable, self.lossy) {
                    let waiting = self.rtc.channel(lossy).map_or(0, |mut c| c.buffered_amount());
                    if waiting > 0 && waiting + record.len() > LOSSY_BUDGET {
                        // Late video is useless: drop this frame whole rather than queue it
                        // behind what the peer has not taken yet.
                        self.counters.record_drop(DropReason::QueueFull);
                        continue;
                    }
                }
                let cid = if reliable { control } else { self.lossy.unwrap_or(control) };
                self.frame_id = self.frame_id.wrapping_add(1);
                if let Some(mut ch) = self.rtc.channel(cid) {
                    // Whole or absent: the client drops a frame whose chunks do not all come.
                    send_chunked(record, s.chunk_size, self.frame_id, &mut s.chunk, |m| {
                        matches!(ch.write(true, m), Ok(true))
                    });
                }
                sent += 1;
                bytes += record.len() as u64;
            }
            self.conn.core.record_sent(sent, bytes);
        }
    }
}
