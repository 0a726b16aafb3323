//! Interop with an independent WebRTC stack: Python `aiortc` (tests/rtc/aiortc_peer.py) signals
//! over `POST /v1/rtc/offer`, opens the `fanhub` and `fanhub-lossy` channels, connects and
//! subscribes; a WebSocket publisher then sends frames of 1 KiB to 512 KiB (chunked above
//! `webrtc.chunk_size`) on a `reliable` and a best-effort topic. The peer prints one JSON line
//! per whole record (length and SHA-1 of the payload, the channel it came on): every reliable
//! frame arrives once, in order, on `fanhub`, byte for byte; best-effort frames come on
//! `fanhub-lossy`, and those that arrive are whole.
//!
//! Needs aiortc: `tests/rtc/setup.sh` installs it into the virtual environment `target/rtc-venv`
//! (`.ci/run` calls it), whose python runs the script. All traffic is loopback:
//! the script limits aiortc to one 127.0.0.1 host candidate and no STUN server.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The script's own hard timeout is 40 s; these only guard against hangs.
const READY_TIMEOUT: Duration = Duration::from_secs(45);
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

const RELIABLE: &str = "rel/cam";
const LOSSY: &str = "be/cam";
const SIZES: [usize; 8] = [1024, 4096, 16 * 1024, 16 * 1024 + 1, 65_536, 100_000, 256 * 1024, 512 * 1024];

fn sha1_hex(data: &[u8]) -> String {
    sha1_smol::Sha1::from(data).digest().to_string()
}

/// The python of the virtual environment `tests/rtc/setup.sh` makes and installs aiortc into.
fn python() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/rtc-venv/bin/python")
}

/// aiortc's version. Fails (it does not skip) when aiortc is missing: CI runs
/// `tests/rtc/setup.sh` first.
fn require_aiortc() -> String {
    let out = std::process::Command::new(python())
        .args(["-c", "import aiortc; print(aiortc.__version__)"])
        .output()
        .unwrap_or_else(|e| panic!("no {} ({e}): run tests/rtc/setup.sh", python().display()));
    assert!(
        out.status.success(),
        "aiortc is not importable by {}: run tests/rtc/setup.sh (it installs aiortc there)\n{}",
        python().display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The script, its stdout lines as JSON, and a task collecting its stderr.
struct Script {
    child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    stderr: tokio::task::JoinHandle<String>,
}

fn spawn_script(hub: &Hub, token: &str, frames: usize) -> Script {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(python())
        .arg("tests/rtc/aiortc_peer.py")
        .arg(format!("http://{}", hub.addr))
        .arg(token)
        .arg(RELIABLE)
        .arg(LOSSY)
        .arg(frames.to_string())
        .current_dir(dir)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("target/rtc-venv/bin/python tests/rtc/aiortc_peer.py");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut r = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = r.next_line().await {
            let v = serde_json::from_str(&line).unwrap_or_else(|e| json!({"unparsed": line, "error": e.to_string()}));
            if tx.send(v).is_err() {
                return;
            }
        }
    });
    let stderr = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    Script { child, lines, stderr }
}

impl Script {
    /// Kills the script (if still running) and returns what it wrote on stderr.
    async fn stderr(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        tokio::time::timeout(Duration::from_secs(5), self.stderr)
            .await
            .map(|r| r.unwrap_or_default())
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn an_aiortc_peer_receives_every_reliable_frame_whole_and_lossy_frames_whole() {
    let aiortc = require_aiortc();
    let hub = spawn_hub(rtc_config()).await;
    let token = hub.token("aiortc-viewer");
    let mut script = spawn_script(&hub, &token, SIZES.len());

    // Ready: connected and subscribed to both topics.
    let ready = tokio::time::timeout(READY_TIMEOUT, script.lines.recv()).await;
    match ready {
        Ok(Some(v)) if v == json!({"ready": true}) => {}
        other => {
            let status = script.child.try_wait().ok().flatten();
            panic!(
                "the aiortc {aiortc} peer did not get ready ({other:?}, exit {status:?}); its stderr:\n{}",
                script.stderr().await
            )
        }
    }
    let rows = admin(&hub, "GET", "/v1/admin/connections?protocol=webrtc", "").await.json();
    assert_eq!(rows["total"], 1, "the aiortc peer is listed as a webrtc connection: {rows}");

    let mut publisher = hub.connect("aiortc-camera").await;
    for (i, &size) in SIZES.iter().enumerate() {
        assert_eq!(publisher.publish_bin(RELIABLE, &frame(i, size)).await, i as u64 + 1);
        assert_eq!(publisher.publish_bin(LOSSY, &frame(i + 100, size)).await, i as u64 + 1);
    }

    // Everything the script prints until it exits.
    let mut lines = Vec::new();
    let collect = async {
        while let Some(v) = script.lines.recv().await {
            lines.push(v);
        }
        script.child.wait().await
    };
    let status = tokio::time::timeout(RUN_TIMEOUT, collect).await;
    let ok = matches!(status, Ok(Ok(s)) if s.success());
    if !ok {
        panic!(
            "the aiortc {aiortc} peer failed ({status:?}) after {} lines:\n{}\nits stderr:\n{}",
            lines.len(),
            lines.iter().map(Value::to_string).collect::<Vec<_>>().join("\n"),
            script.stderr().await
        );
    }
    let stderr = script.stderr().await;
    let all = lines.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");

    let done = lines.last().filter(|v| v["done"] == true).unwrap_or_else(|| panic!("no done line:\n{all}"));
    assert_eq!(done["incomplete"].get("fanhub"), None, "no reliable frame left incomplete: {done}");
    assert_eq!(done["stray"], json!([]), "no chunk of an already whole frame (a duplicate message): {done}");
    assert_eq!(done["closed"], "closed", "bye is answered on the data channel: {done}\n{stderr}");
    let records: Vec<&Value> = lines.iter().filter(|v| v.get("topic").is_some()).collect();
    assert_eq!(records.len() + 1, lines.len(), "only records and done after ready: {all}");

    let (rel, be): (Vec<&Value>, Vec<&Value>) = records.into_iter().partition(|v| v["topic"] == RELIABLE);
    assert!(be.iter().all(|v| v["topic"] == LOSSY), "no other topic: {all}");

    // Reliable: every frame once, in order, on the reliable channel, byte for byte.
    let offsets: Vec<u64> = rel.iter().map(|v| v["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, (1..=SIZES.len() as u64).collect::<Vec<_>>(), "reliable offsets:\n{all}");
    for (i, v) in rel.iter().enumerate() {
        assert_eq!(v["channel"], "fanhub", "reliable frame {i} on the reliable channel: {v}");
        assert_eq!(v["len"], SIZES[i], "reliable frame {i} length: {v}");
        assert_eq!(v["sha1"], sha1_hex(&frame(i, SIZES[i])), "reliable frame {i} ({} bytes) content: {v}", SIZES[i]);
    }

    // Lossy (maxRetransmits 0): whatever arrives is whole and correct, each at most once.
    let mut seen = std::collections::HashSet::new();
    for v in &be {
        let offset = v["offset"].as_u64().unwrap();
        assert!(seen.insert(offset), "best-effort frame {offset} arrived twice:\n{all}");
        assert!((1..=SIZES.len() as u64).contains(&offset), "best-effort offset {offset}: {v}");
        let i = (offset - 1) as usize;
        assert_eq!(v["channel"], "fanhub-lossy", "best-effort frame {offset} on the lossy channel: {v}");
        assert_eq!(v["len"], SIZES[i], "best-effort frame {offset} length: {v}");
        assert_eq!(v["sha1"], sha1_hex(&frame(i + 100, SIZES[i])), "best-effort frame {offset} content: {v}");
    }
    assert!(seen.contains(&1), "the first (1 KiB) best-effort frame arrives on loopback:\n{all}\n{stderr}");

    // The peer said bye and closed: the hub forgets it.
    hub.eventually("the aiortc peer is unregistered", |m| m.connection_stats().active_connections == 1).await;
    hub.shutdown().await;
}
