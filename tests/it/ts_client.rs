//! The TypeScript client package (`web-demo/client`) from Node: its unit tests (records,
//! publish frames, backoff, options, dedupe and gaps, breakers, keep-alive, chunk reassembly),
//! a script that drives it against a real hub through a drain — reconnect with backoff, resume
//! of a `reliable` topic with every message exactly once and in order — and one that meets
//! faults from the TCP proxy of `common` on the script's cue: repeated cuts, a refusing first
//! endpoint, a black-holed connection; `health()`; the WebRTC transport in headless Chromium;
//! and the metadata of an upstream source's messages (a Redis Streams source). The committed
//! `dist/` equals a fresh `tsc` build, and the hub serves every module of it.
//! `web-demo/ci-setup.sh` installs Chromium, playwright-core and the package's dev tools.

use std::process::Stdio;
use std::time::Duration;

use fanhub::config::Config;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::common::*;

/// Longer than the scripts' own guards (30 to 90 s): they report their failure themselves.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `node <args…>` from the crate root; panics with its output unless it exits 0.
async fn node(what: &str, args: &[&str]) {
    node_ok(what, node_command(args), SCRIPT_TIMEOUT, "web-demo/ci-setup.sh installs the client's tools").await;
}

/// `rel/>` is `reliable`: a subscriber that resumes gets everything it missed.
fn reliable_config() -> Config {
    let mut c = test_config();
    c.topics.declare = vec![serde_json::from_value(json!({
        "pattern": "rel/>", "policy": {"kind": "reliable"}
    }))
    .unwrap()];
    c
}

#[tokio::test]
async fn the_committed_package_equals_a_fresh_build_and_the_hub_serves_every_module() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let fresh = root.join("target/ts-fresh");
    let _ = std::fs::remove_dir_all(&fresh);
    let fresh_arg = fresh.to_string_lossy().into_owned();
    node(
        "tsc (a fresh build of web-demo/client/src)",
        &[
            "web-demo/client/node_modules/typescript/bin/tsc",
            "-p",
            "web-demo/client/tsconfig.json",
            "--outDir",
            &fresh_arg,
        ],
    )
    .await;
    let dist = root.join("web-demo/client/dist");
    let names = |dir: &std::path::Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&dist), names(&fresh), "web-demo/client/dist: run `npm run build` there and commit it");
    for name in names(&fresh) {
        assert!(
            std::fs::read(dist.join(&name)).unwrap() == std::fs::read(fresh.join(&name)).unwrap(),
            "web-demo/client/dist/{name} is stale: run `npm run build` in web-demo/client and commit dist/"
        );
    }
    // Every module is served to the demo pages, byte for byte.
    let hub = spawn_hub(test_config()).await;
    for name in names(&dist).iter().filter(|n| n.ends_with(".js")) {
        let r = http(hub.addr, "GET", &format!("/client/{name}"), &[], "").await;
        assert_eq!(r.status, 200, "/client/{name}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("text/javascript; charset=utf-8"));
        assert_eq!(r.body.as_bytes(), std::fs::read(dist.join(name)).unwrap(), "/client/{name}");
    }
    assert_eq!(http(hub.addr, "GET", "/client/../Cargo.toml", &[], "").await.status, 404);
    hub.shutdown().await;
}

#[tokio::test]
async fn ts_client_unit_tests_pass_under_node() {
    // The unit tests by name: `node --test <dir>` would also run the integration script, which
    // lives in the same directory and needs a hub.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web-demo/client/test");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("web-demo/client/test")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".test.mjs"))
        .map(|n| format!("web-demo/client/test/{n}"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "unit test files: {files:?}");
    let mut args = vec!["--test"];
    args.extend(files.iter().map(String::as_str));
    node("node --test web-demo/client/test/*.test.mjs", &args).await;
}

#[tokio::test]
async fn ts_client_reconnects_after_a_drain_and_resumes_a_reliable_topic_exactly_once() {
    let hub = spawn_hub(reliable_config()).await;
    let admin = format!("http://{}", hub.admin);
    node(
        "web-demo/client/test/integration.mjs",
        &["web-demo/client/test/integration.mjs", &hub.ws_url(), &admin, ADMIN_TOKEN],
    )
    .await;
    hub.shutdown().await;
}

/// Runs `node web-demo/client/test/faults.mjs <args…>`, carrying out on `proxy` the faults it
/// asks for (a JSON line `{"event":"cut"}` or `{"event":"blackhole"}` on its stdout, answered
/// `done` on its stdin once done). Returns its result line; panics with everything it said
/// unless it ends with `ok` and exit 0.
async fn faults(args: &[&str], proxy: Option<&Proxy>) -> Value {
    let mut child = tokio::process::Command::new("node")
        .arg("web-demo/client/test/faults.mjs")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node ({e}); run web-demo/ci-setup.sh"));
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let (mut said, mut result) = (Vec::new(), Value::Null);
    let ended = tokio::time::timeout(SCRIPT_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            said.push(line.clone());
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            let fault = v["event"].as_str().unwrap_or_default();
            match (fault, proxy) {
                ("cut", Some(p)) => p.cut(),
                ("blackhole", Some(p)) => p.blackhole(true),
                ("result", _) => result = v.clone(),
                _ => continue,
            }
            if fault != "result" {
                stdin.write_all(b"done\n").await.expect("answer the script");
                stdin.flush().await.expect("answer the script");
            }
        }
        child.wait().await.expect("wait for node")
    })
    .await;
    let stderr = tokio::time::timeout(Duration::from_secs(5), stderr).await.ok().and_then(Result::ok);
    let report = format!("--- stdout\n{}\n--- stderr\n{}", said.join("\n"), stderr.unwrap_or_default());
    match ended {
        Ok(status) if status.success() && said.last().map(String::as_str) == Some("ok") => {}
        Ok(status) => panic!("faults.mjs {args:?} failed ({status}); web-demo/ci-setup.sh builds the client\n{report}"),
        Err(_) => panic!("faults.mjs {args:?} still running after {SCRIPT_TIMEOUT:?}\n{report}"),
    }
    println!("faults.mjs {args:?}:\n{report}");
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_client_delivers_a_reliable_topic_exactly_once_and_in_order_through_repeated_connection_kills() {
    let hub = spawn_hub(reliable_config()).await;
    let proxy = Proxy::start(hub.addr).await;
    const CUTS: usize = 20;
    let result = faults(&["cuts", &proxy.url(), &hub.ws_url(), &CUTS.to_string()], Some(&proxy)).await;
    assert_eq!(result["messages"], CUTS * 200, "{result}");
    assert_eq!(proxy.accepted(), CUTS + 1, "one connection per cut, no storm");
    println!(
        "TS client replay delay after a cut over {CUTS} cuts: p50 {} ms, p99 {} ms, max {} ms",
        result["p50_ms"], result["p99_ms"], result["max_ms"]
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn ts_client_fails_over_from_a_refusing_endpoint_and_reports_it_in_status_events() {
    let hub = spawn_hub(reliable_config()).await;
    let refusing = Proxy::start(hub.addr).await;
    refusing.refuse(true);
    let result = faults(&["failover", &refusing.url(), &hub.ws_url()], None).await;
    assert_eq!(refusing.accepted(), 0, "every connection to the first endpoint was refused");
    assert_eq!(result["health"]["healthy"], true, "{result}");
    hub.shutdown().await;
}

#[tokio::test]
async fn ts_client_finds_a_black_holed_connection_by_keep_alive_and_resumes_on_the_next_endpoint() {
    let hub = spawn_hub(reliable_config()).await;
    let proxy = Proxy::start(hub.addr).await;
    let result = faults(&["blackhole", &proxy.url(), &hub.ws_url()], Some(&proxy)).await;
    assert_eq!(result["messages"], 101, "{result}");
    assert_eq!(proxy.accepted(), 1, "the black-holed endpoint was not retried: {result}");
    hub.shutdown().await;
}

#[tokio::test]
async fn ts_client_health_reports_the_hub_healthy_with_its_version() {
    let hub = spawn_hub(reliable_config()).await;
    let result = faults(&["health", &hub.ws_url(), env!("CARGO_PKG_VERSION")], None).await;
    assert_eq!(result["health"]["serverVersion"], env!("CARGO_PKG_VERSION"), "{result}");
    hub.shutdown().await;
}

// Multi-threaded like the real server, so the hub's WebRTC driver and the test's own tasks do
// not wait on each other on a loaded machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_client_subscribes_over_webrtc_in_chromium_and_resumes_with_a_new_peer_connection() {
    let hub = spawn_hub(rtc_config()).await;
    let token = hub.token_with("ts-rtc", &["rel/>"], &["rel/>"], 3600);
    let public = format!("http://{}", hub.addr);
    node("web-demo/client/test/webrtc-browser.mjs", &["web-demo/client/test/webrtc-browser.mjs", &public, &token])
        .await;
    hub.shutdown().await;
}

/// Entries of a Redis Streams source reach the TS client with their metadata (`meta`) split off
/// the payload; its own publish has none.
#[cfg(feature = "redis")]
#[tokio::test]
async fn ts_client_gets_a_sources_messages_with_their_metadata_and_the_payload_without_it() {
    use redis::AsyncCommands;
    let redis = RedisServer::start().await;
    let mut con = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let mut ids: Vec<String> = Vec::new();
    for n in 0..3 {
        let payload = json!({ "n": n }).to_string();
        ids.push(
            con.xadd("orders", "*", &[("payload", payload.as_str()), ("key", "car-7"), ("trace", "t")]).await.unwrap(),
        );
    }
    let mut config = resumable_config();
    config.sources = vec![redis_source(&redis.url(), "orders", "rel/orders")];
    let hub = spawn_hub(config).await;
    let (token, ids) = (hub.token("ts-source"), json!(ids).to_string());
    let script = "web-demo/client/test/source-meta.mjs";
    node(script, &[script, &hub.ws_url(), &token, "rel/orders", &ids]).await;
    hub.shutdown().await;
}
