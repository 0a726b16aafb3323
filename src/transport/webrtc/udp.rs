//! A driver's UDP socket: GSO batching on send, recvmmsg with GRO splitting on receive
//! (quinn-udp).

use std::net::SocketAddr;

use tokio::net::UdpSocket;

/// A driver's outgoing datagrams. Consecutive datagrams to the same peer of the same size (the
/// last may be shorter) leave as one `sendmsg` with UDP GSO (`quinn-udp`: segmentation offload
/// where the kernel has it, one datagram per call where not): a 64 KiB frame is ~55 full-MTU
/// SCTP packets, and `sendto` per packet was 17–23 % of the driver's CPU.
#[derive(Debug)]
pub(super) struct Sender<'a> {
    socket: &'a UdpSocket,
    state: Option<&'a quinn_udp::UdpSocketState>,
    buf: Vec<u8>,
    destination: Option<SocketAddr>,
    segment: usize,
    count: usize,
}

/// Most bytes in one GSO send (a UDP datagram's limit, with room for headers).
const GSO_MAX_BYTES: usize = 65_000;

impl<'a> Sender<'a> {
    pub(super) fn new(socket: &'a UdpSocket, state: Option<&'a quinn_udp::UdpSocketState>) -> Self {
        Sender { socket, state, buf: Vec::with_capacity(GSO_MAX_BYTES), destination: None, segment: 0, count: 0 }
    }

    /// Datagrams one send may carry (quinn-udp lowers it to 1 if the kernel refuses GSO).
    fn max_segments(&self) -> usize {
        self.state.map_or(1, quinn_udp::UdpSocketState::max_gso_segments).max(1)
    }

    pub(super) fn push(&mut self, destination: SocketAddr, data: &[u8]) {
        let joins = self.destination == Some(destination)
            && data.len() <= self.segment
            && self.buf.len().is_multiple_of(self.segment) // the batch's last datagram is still full-size
            && self.count < self.max_segments()
            && self.buf.len() + data.len() <= GSO_MAX_BYTES;
        if !joins {
            self.flush();
            self.destination = Some(destination);
            self.segment = data.len().max(1);
        }
        self.buf.extend_from_slice(data);
        self.count += 1;
    }

    pub(super) fn flush(&mut self) {
        let Some(destination) = self.destination.take() else { return };
        // UDP: a full socket buffer loses the packets, as the network would; SCTP resends.
        match self.state {
            Some(state) => {
                let t = quinn_udp::Transmit {
                    destination,
                    ecn: None,
                    contents: &self.buf,
                    segment_size: (self.count > 1).then_some(self.segment),
                    src_ip: None,
                };
                let _ = state.try_send(self.socket.into(), &t);
            }
            None => {
                let _ = self.socket.try_send_to(&self.buf, destination);
            }
        }
        self.buf.clear();
        self.count = 0;
    }
}

/// Messages one `recvmmsg` takes.
const RECV_BATCH: usize = 8;

/// A driver's receive buffers: `RECV_BATCH` messages per `recvmmsg` (quinn-udp), each large
/// enough for a GRO buffer of up to `gro_segments` datagrams, split again by their stride.
#[derive(Debug)]
pub(super) struct Inbox {
    buf: Vec<u8>,
    size: usize,
    meta: [quinn_udp::RecvMeta; RECV_BATCH],
}

impl Inbox {
    pub(super) fn new(state: Option<&quinn_udp::UdpSocketState>) -> Self {
        // A GRO buffer holds up to `gro_segments` datagrams of at most an Ethernet MTU, and a
        // loopback GSO batch up to 64 KiB.
        let size = state.map_or(2048, |s| (1500 * s.gro_segments()).max(65_536));
        let batch = if state.is_some() { RECV_BATCH } else { 1 };
        Inbox { buf: vec![0; size * batch], size, meta: [quinn_udp::RecvMeta::default(); RECV_BATCH] }
    }

    /// Receives what is queued (without waiting); how many messages.
    pub(super) fn recv(
        &mut self,
        socket: &UdpSocket,
        state: Option<&quinn_udp::UdpSocketState>,
    ) -> std::io::Result<usize> {
        let Some(state) = state else {
            // Without quinn-udp's state (it failed to set up, so no GRO): one datagram a call.
            let (n, source) = socket.try_recv_from(&mut self.buf)?;
            (self.meta[0].addr, self.meta[0].len, self.meta[0].stride) = (source, n, n);
            return Ok(1);
        };
        let mut chunks = self.buf.chunks_mut(self.size);
        let mut slices: [std::io::IoSliceMut<'_>; RECV_BATCH] =
            std::array::from_fn(|_| std::io::IoSliceMut::new(chunks.next().unwrap_or_default()));
        let meta = &mut self.meta;
        socket.try_io(tokio::io::Interest::READABLE, || state.recv(socket.into(), &mut slices, meta))
    }

    /// Message `i` of the last `recv`: its source, its bytes and the size of each datagram in it.
    pub(super) fn message(&self, i: usize) -> (SocketAddr, &[u8], usize) {
        let m = &self.meta[i];
        let start = i * self.size;
        (m.addr, &self.buf[start..start + m.len], m.stride.max(1))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Datagrams batched for GSO arrive as the same datagrams, in order, with their boundaries:
    /// full-size runs, a short last one, a change of size and of destination.
    #[tokio::test]
    async fn the_sender_batches_datagrams_and_the_receiver_sees_each_one_whole() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let datagram = |i: usize, len: usize| -> Vec<u8> { (0..len).map(|j| (i * 13 + j) as u8).collect() };
        let plan_a: Vec<(usize, usize)> =
            (0..70).map(|i| (i, 1200)).chain([(70, 300), (71, 1200), (72, 1200), (73, 1300)]).collect();
        let plan_b = [(100, 1200), (101, 1200), (102, 5)];
        let state = quinn_udp::UdpSocketState::new((&server).into()).ok();
        let mut out = Sender::new(&server, state.as_ref());
        for &(i, len) in &plan_a[..10] {
            out.push(to_a, &datagram(i, len));
        }
        for &(i, len) in &plan_b {
            out.push(to_b, &datagram(i, len));
        }
        for &(i, len) in &plan_a[10..] {
            out.push(to_a, &datagram(i, len));
        }
        out.flush();
        let mut buf = vec![0u8; 65_536];
        for (socket, plan) in [(&a, &plan_a[..]), (&b, &plan_b[..])] {
            for &(i, len) in plan {
                let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf)).await.unwrap().unwrap();
                assert_eq!(&buf[..n], &datagram(i, len)[..], "datagram {i} ({len} bytes) arrives whole");
            }
        }
    }

    /// A receiving driver socket has UDP GRO on (quinn-udp turns it on): a GSO batch may arrive
    /// as one buffer of several datagrams, which the inbox splits again by its stride.
    #[tokio::test]
    async fn the_inbox_splits_gro_buffers_back_into_the_datagrams_sent() {
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = receiver.local_addr().unwrap();
        let rx_state = quinn_udp::UdpSocketState::new((&receiver).into()).ok();
        let tx_state = quinn_udp::UdpSocketState::new((&sender).into()).ok();
        let mut inbox = Inbox::new(rx_state.as_ref());
        let mut out = Sender::new(&sender, tx_state.as_ref());
        let datagram = |i: usize, len: usize| -> Vec<u8> { (0..len).map(|j| (i * 7 + j) as u8).collect() };
        let plan: Vec<(usize, usize)> = (0..40).map(|i| (i, 1200)).chain([(40, 77), (41, 1200), (42, 9)]).collect();
        for &(i, len) in &plan {
            out.push(to, &datagram(i, len));
        }
        out.flush();
        let mut got: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while got.len() < plan.len() {
            assert!(tokio::time::Instant::now() < deadline, "only {} of {} datagrams", got.len(), plan.len());
            let _ = tokio::time::timeout(Duration::from_millis(100), receiver.readable()).await;
            let Ok(n) = inbox.recv(&receiver, rx_state.as_ref()) else { continue };
            for i in 0..n {
                let (source, data, stride) = inbox.message(i);
                got.extend(data.chunks(stride).map(|d| (source, d.to_vec())));
            }
        }
        for (k, &(i, len)) in plan.iter().enumerate() {
            assert_eq!(got[k].0, sender.local_addr().unwrap());
            assert_eq!(got[k].1, datagram(i, len), "datagram {i} ({len} bytes) whole and in order");
        }
    }
}
