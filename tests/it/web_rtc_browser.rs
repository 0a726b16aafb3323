//! Headless Debian Chromium as a WebRTC peer of a real hub (playwright-core, never a downloaded
//! browser; `web-demo/ci-setup.sh` installs both). `web-demo/tests/webrtc.mjs` opens the viewer
//! page `GET /rtc` (`web-demo/rtc.html`), which signals over `POST /v1/rtc/offer`, opens the
//! `fanhub` and `fanhub-lossy` data channels over loopback only, connects and subscribes to a
//! `reliable` and a best-effort topic. When the script says it is ready, this test publishes
//! frames of 1 KiB to 512 KiB (chunked above `webrtc.chunk_size`) from a WebSocket client and
//! checks what the page received by size and FNV-1a 64 checksum: every reliable frame once, in
//! order, byte-exact, on the reliable channel; every best-effort frame that arrived whole, on
//! the lossy channel. Then the page says bye and the hub forgets it.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// Longer than the script's own 150 s guard: it reports its failure itself.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);
const RELIABLE: &str = "rel/video";
const LOSSY: &str = "be/video";
const CHUNK_SIZE: usize = 16 * 1024;
/// Record header (§5.1) before the topic.
const RECORD_HEADER: usize = 32;

/// Payload sizes: 1 KiB to 512 KiB, with the reliable topic's records of exactly one chunk and
/// of one byte more.
fn sizes() -> Vec<usize> {
    let one_chunk = CHUNK_SIZE - RECORD_HEADER - RELIABLE.len();
    vec![1024, 4096, one_chunk, one_chunk + 1, 65_536, 100_000, 256 * 1024, 512 * 1024]
}

/// FNV-1a 64 as hex, as the page computes it.
fn fnv1a64(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{h:016x}")
}

/// One frame as the page reports it.
#[derive(Debug)]
struct Got {
    topic: String,
    offset: u64,
    size: usize,
    fnv: String,
    channel: String,
    chunks: u64,
    /// When it arrived, ms after the page started connecting.
    at: u64,
}

/// `node web-demo/tests/webrtc.mjs …`, read line by line: its stdout has only JSON event lines
/// and "ok"; the page's console goes to stderr.
struct Script {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stdout: Vec<String>,
    stderr: tokio::task::JoinHandle<String>,
}

impl Script {
    fn spawn(args: &[&str]) -> Script {
        let mut child = node_script("webrtc.mjs", args);
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut err = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s).await;
            s
        });
        Script { child, lines, stdout: Vec::new(), stderr }
    }

    /// Reads up to the JSON line with `"event": event`; panics with everything the script said
    /// when it fails, ends or hangs first.
    async fn event(&mut self, event: &str) -> Value {
        loop {
            let line = match tokio::time::timeout(SCRIPT_TIMEOUT, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) => self.fail(&format!("the script ended before {event:?}")).await,
                Ok(Err(e)) => self.fail(&format!("reading the script's stdout: {e}")).await,
                Err(_) => self.fail(&format!("no {event:?} after {SCRIPT_TIMEOUT:?}")).await,
            };
            self.stdout.push(line.clone());
            let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
            if v["event"] == event {
                return v;
            }
            if v["event"] == "failed" {
                self.fail(&format!("webrtc.mjs failed waiting for {event:?}")).await;
            }
        }
    }

    /// Waits for the script to exit 0 after "ok".
    async fn finish(mut self) {
        while let Ok(Ok(Some(line))) = tokio::time::timeout(SCRIPT_TIMEOUT, self.lines.next_line()).await {
            self.stdout.push(line);
        }
        let status = tokio::time::timeout(SCRIPT_TIMEOUT, self.child.wait()).await;
        match status {
            Ok(Ok(s)) if s.success() && self.stdout.last().map(String::as_str) == Some("ok") => {}
            other => self.fail(&format!("the script did not end with ok: {other:?}")).await,
        }
    }

    async fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(1), self.lines.next_line()).await {
            self.stdout.push(line);
        }
        let stderr = tokio::time::timeout(Duration::from_secs(5), &mut self.stderr).await;
        let stderr = stderr.ok().and_then(Result::ok).unwrap_or_default();
        panic!(
            "{what}; web-demo/ci-setup.sh installs what the script needs\n--- stdout\n{}\n--- stderr\n{stderr}",
            self.stdout.join("\n")
        );
    }
}

fn frames_of(result: &Value) -> Vec<Got> {
    result["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| Got {
            topic: f["topic"].as_str().unwrap().to_owned(),
            offset: f["offset"].as_u64().unwrap(),
            size: f["size"].as_u64().unwrap() as usize,
            fnv: f["fnv"].as_str().unwrap().to_owned(),
            channel: f["channel"].as_str().unwrap().to_owned(),
            chunks: f["chunks"].as_u64().unwrap(),
            at: f["at"].as_u64().unwrap(),
        })
        .collect()
}

fn chunks(topic: &str, size: usize) -> u64 {
    let record = RECORD_HEADER + topic.len() + size;
    if record <= CHUNK_SIZE {
        1
    } else {
        record.div_ceil(CHUNK_SIZE - 10) as u64
    }
}

/// Runs the viewer in Chromium against `hub` (with `token`, or a development token the page
/// fetches for `subject`), publishes frames of `sizes` on both topics once it is ready, and
/// checks what the page received. Returns the script's result line.
async fn view(hub: &Hub, token: Option<&str>, subject: &str, sizes: &[usize]) -> Value {
    if std::env::var_os("RUST_LOG").is_some() {
        let filter = tracing_subscriber::EnvFilter::from_default_env();
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
    let public = format!("http://{}", hub.addr);
    let n = sizes.len().to_string();
    let token_arg = token.map_or_else(|| format!("dev:{subject}"), str::to_owned);
    let mut script = Script::spawn(&[&public, &token_arg, RELIABLE, LOSSY, &n, &n]);

    let ready = script.event("ready").await;
    println!("ready: {ready}");
    let rows = admin(hub, "GET", "/v1/admin/connections?protocol=webrtc", "").await.json();
    assert_eq!(rows["total"], 1, "the page is one webrtc connection: {rows}");
    assert_eq!(rows["items"][0]["id"], ready["conn_id"], "{rows}");
    assert_eq!(rows["items"][0]["subject"], subject, "{rows}");
    assert_eq!(rows["items"][0]["subscriptions"], 2, "{rows}");

    let mut camera = hub.connect("camera").await;
    let frames: Vec<(Vec<u8>, Vec<u8>)> =
        sizes.iter().enumerate().map(|(i, &size)| (frame(i, size), frame(i + 100, size))).collect();
    for (rel, lossy) in &frames {
        camera.publish_bin(RELIABLE, rel).await;
        camera.publish_bin(LOSSY, lossy).await;
    }
    let result = script.event("result").await;
    script.finish().await;
    let got = frames_of(&result);
    println!(
        "received {} frames (topic, offset, size, chunks, ms): {:?}\nused candidate pairs: {}\ntransport: {}\ntimeline (ms): {}",
        got.len(),
        got.iter().map(|g| (g.topic.as_str(), g.offset, g.size, g.chunks, g.at)).collect::<Vec<_>>(),
        result["used_pairs"],
        result["stats"],
        result["timeline"]
    );
    assert_eq!(result["errors"], json!([]), "the page reported errors: {result}");
    assert_eq!(result["malformed"], 0, "{result}");

    // Reliable: every frame, once, in order, whole, on the reliable channel.
    let rel: Vec<&Got> = got.iter().filter(|g| g.topic == RELIABLE).collect();
    assert_eq!(
        rel.iter().map(|g| g.offset).collect::<Vec<_>>(),
        (1..=sizes.len() as u64).collect::<Vec<_>>(),
        "reliable offsets: {rel:?}"
    );
    for (g, (bytes, _)) in rel.iter().zip(&frames) {
        assert_eq!(g.channel, "fanhub", "reliable frames come on the reliable channel: {g:?}");
        assert_eq!((g.size, g.fnv.as_str()), (bytes.len(), fnv1a64(bytes).as_str()), "reliable frame {g:?}");
        assert_eq!(g.chunks, chunks(RELIABLE, bytes.len()), "reliable frame chunking: {g:?}");
    }

    // Best-effort: what arrived is whole and on the lossy channel, each once.
    let lossy: Vec<&Got> = got.iter().filter(|g| g.topic == LOSSY).collect();
    let mut seen = HashSet::new();
    for g in &lossy {
        assert!(seen.insert(g.offset), "best-effort offset {} twice: {lossy:?}", g.offset);
        assert_eq!(g.channel, "fanhub-lossy", "{g:?}");
        let (_, bytes) = frames.get((g.offset - 1) as usize).unwrap_or_else(|| panic!("an unpublished offset: {g:?}"));
        assert_eq!((g.size, g.fnv.as_str()), (bytes.len(), fnv1a64(bytes).as_str()), "best-effort frame {g:?}");
    }
    assert!(seen.contains(&1), "the first best-effort frame arrives on loopback: {lossy:?}");
    assert_eq!(got.len(), rel.len() + lossy.len(), "only the two topics: {got:?}");
    // Where the missing ones went: the hub's own drops (queue policy) vs. the lossy channel's.
    let stats = admin(hub, "GET", "/v1/admin/stats", "").await.json();
    println!(
        "best-effort: {}/{} frames whole, {} incomplete dropped, still incomplete {}; hub dropped {}",
        lossy.len(),
        sizes.len(),
        result["lossy_incomplete"],
        result["incomplete"],
        stats["dropped"]
    );

    // Loopback only: the offer carried no other address, and ICE used no other address.
    assert_eq!(result["non_loopback_pairs"], json!([]), "ICE used a non-loopback address: {result}");

    // The page said bye (answered `closed`): the hub forgets it; the camera stays.
    assert_eq!(result["bye"]["type"], "closed", "{result}");
    hub.eventually("the page is unregistered", |m| m.connection_stats().active_connections == 1).await;
    camera.assert_alive().await;
    result
}

// Multi-threaded like the real server, so the hub's WebRTC driver pushing megabytes to the
// page does not hold up the test's own WebSocket client on a loaded machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_receives_every_reliable_frame_byte_exact_over_webrtc_data_channels() {
    let hub = spawn_hub(rtc_config()).await;
    let token = hub.token_with("chromium-viewer", &["rel/>", "be/>"], &[], 3600);
    view(&hub, Some(&token), "chromium-viewer", &sizes()).await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_page_gets_a_development_token_when_given_none() {
    let hub = spawn_hub(rtc_config()).await;
    view(&hub, None, "dev-viewer", &[1000, 40_000]).await;
    hub.shutdown().await;
}
