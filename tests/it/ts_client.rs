//! The TypeScript client package (`web-demo/client`) from Node: its unit tests (records,
//! publish frames, backoff, options, dedupe and gaps), and a script that drives it against a
//! real hub through a drain — reconnect with backoff, resume of a `reliable` topic with every
//! message exactly once and in order. `web-demo/ci-setup.sh` installs and builds the package.

use std::time::Duration;

use fanhub::config::Config;
use serde_json::json;

use crate::common::*;

/// Longer than the integration script's own 30 s guard: it reports its failure itself.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `node <args…>` from the crate root; panics with its output unless it exits 0.
async fn node(what: &str, args: &[&str]) {
    let child = node_command(args);
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} still running after {SCRIPT_TIMEOUT:?}"))
        .expect("wait for node");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{what} failed ({}); web-demo/ci-setup.sh installs and builds the client\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    println!("{what}:\n{stdout}{stderr}");
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
