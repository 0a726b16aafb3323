//! A fault-injecting TCP proxy between a client and the hub: it can drop every connection
//! through it, refuse new ones, black-hole traffic (bytes vanish, sockets stay open) and delay
//! it. Used by the Rust and TypeScript client tests.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Default)]
struct Faults {
    refuse: AtomicBool,
    blackhole: AtomicBool,
    delay_us: AtomicU64,
    accepted: AtomicUsize,
}

/// A connection through the proxy: its task, and a handle on the client's socket to shut it
/// down at once (aborting a task takes effect only at its next await, on another thread maybe
/// after a few more bytes went through).
type Link = (JoinHandle<()>, std::net::TcpStream);

pub struct Proxy {
    pub addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    links: Arc<Mutex<Vec<Link>>>,
    faults: Arc<Faults>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<Link>>> = Arc::default();
        let faults = Arc::new(Faults::default());
        let upstream = Arc::new(Mutex::new(upstream));
        let (l, f, u) = (links.clone(), faults.clone(), upstream.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((down, _)) = listener.accept().await else { return };
                if f.refuse.load(Ordering::SeqCst) {
                    drop(down);
                    continue;
                }
                f.accepted.fetch_add(1, Ordering::SeqCst);
                let Ok(handle) = down.as_fd().try_clone_to_owned() else { continue };
                let (to, f) = (*u.lock().unwrap(), f.clone());
                let Ok(own) = down.as_fd().try_clone_to_owned() else { continue };
                let own = std::net::TcpStream::from(own);
                let link = tokio::spawn(async move {
                    // Whichever way the link ends, the client sees it close (the handle kept for
                    // `cut` holds the socket open otherwise).
                    let _close = CloseOnDrop(own);
                    let Ok(up) = TcpStream::connect(to).await else { return };
                    let _ = down.set_nodelay(true);
                    let _ = up.set_nodelay(true);
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = up.into_split();
                    tokio::select! {
                        () = pipe(dr, uw, f.clone()) => {}
                        () = pipe(ur, dw, f) => {}
                    }
                });
                l.lock().unwrap().push((link, std::net::TcpStream::from(handle)));
            }
        });
        Proxy { addr, upstream, links, faults, task }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Drops every connection through the proxy: the client's side is shut down before this
    /// returns (nothing more reaches it), and the hub's side closes as the link task ends.
    pub fn cut(&self) {
        for (task, client_side) in self.links.lock().unwrap().drain(..) {
            let _ = client_side.shutdown(std::net::Shutdown::Both);
            task.abort();
        }
    }

    /// Refuses (accepts and at once closes) new connections while set.
    pub fn refuse(&self, on: bool) {
        self.faults.refuse.store(on, Ordering::SeqCst);
    }

    /// While set, every byte through the proxy vanishes; the sockets stay open, as behind a
    /// pulled cable or a frozen peer.
    pub fn blackhole(&self, on: bool) {
        self.faults.blackhole.store(on, Ordering::SeqCst);
    }

    /// Delays every chunk by `d` in each direction (order kept).
    pub fn delay(&self, d: Duration) {
        self.faults.delay_us.store(d.as_micros() as u64, Ordering::SeqCst);
    }

    /// Connections accepted (not refused) so far.
    pub fn accepted(&self) -> usize {
        self.faults.accepted.load(Ordering::SeqCst)
    }

    /// Where new connections go from now on.
    pub fn set_upstream(&self, to: SocketAddr) {
        *self.upstream.lock().unwrap() = to;
    }
}

async fn pipe(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, f: Arc<Faults>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if f.blackhole.load(Ordering::SeqCst) {
            continue;
        }
        let delay = f.delay_us.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_micros(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

struct CloseOnDrop(std::net::TcpStream);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
