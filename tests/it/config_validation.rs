//! `fanhub serve` refuses an invalid configuration before binding anything: it exits non-zero
//! and stderr names each bad key with its value and the allowed range — for values in the file
//! and from `FANHUB_*` variables — and names unknown keys, wrong types and TOML syntax errors.

use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Guard against hangs only: an invalid configuration must make `serve` exit on its own.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `fanhub serve` on ephemeral loopback ports with `config_text` as its config file and
/// `env` added to a clean `FANHUB_*` environment, and returns how it ended (it must end).
async fn serve(config_text: &str, env: &[(&str, &str)]) -> Output {
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "fanhub-config-validation-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, config_text).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_fanhub"));
    cmd.args(["serve", "--config", path.to_str().unwrap(), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FANHUB_")) {
        cmd.env_remove(k);
    }
    // Keep stderr to the message (no backtrace from an inherited RUST_BACKTRACE).
    cmd.env("RUST_BACKTRACE", "0").env("RUST_LIB_BACKTRACE", "0");
    cmd.envs(env.iter().copied());
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = cmd.spawn().expect("spawn fanhub");
    // On timeout the child is dropped, which kills it.
    let out = tokio::time::timeout(TIMEOUT, child.wait_with_output()).await;
    let _ = std::fs::remove_file(&path);
    out.expect("fanhub serve kept running with an invalid configuration").expect("wait for fanhub")
}

/// Checks the run failed before serving, and returns its stderr.
fn refused(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "fanhub serve must exit non-zero; status {:?}, stderr:\n{err}", o.status);
    assert!(o.status.code().is_some(), "it exits by itself (not killed by a signal): {:?}", o.status);
    assert!(!err.contains("development mode") && !err.contains("fanhub serving"), "it did not start serving:\n{err}");
    err
}

/// Asserts stderr names `key` with `value` and the `allowed` range.
fn assert_names(err: &str, key: &str, value: &str, allowed: &str) {
    let line = err.lines().find(|l| l.contains(key)).unwrap_or_else(|| panic!("stderr names `{key}`:\n{err}"));
    assert!(line.contains(&format!("{key} = {value}")), "`{key}` with its value {value}: {line:?}");
    assert!(line.contains(allowed), "`{key}` with the allowed range {allowed}: {line:?}");
}

#[tokio::test]
async fn out_of_range_values_in_the_file_are_each_named_with_their_value_and_allowed_range() {
    let o = serve(
        "[websocket]\nidle_timeout_ms = 1\n\n[limits]\nmax_connections = 0\n\n[admin]\nstats_interval_ms = 5\n",
        &[],
    )
    .await;
    let err = refused(&o);
    assert_names(&err, "websocket.idle_timeout_ms", "1", "200..=3600000");
    assert_names(&err, "limits.max_connections", "0", "1..=10000000");
    assert_names(&err, "admin.stats_interval_ms", "5", "100..=60000");
}

#[tokio::test]
async fn an_out_of_range_environment_override_is_named_with_its_value_and_allowed_range() {
    let err = refused(&serve("", &[("FANHUB_WEBSOCKET__PING_INTERVAL_MS", "5")]).await);
    assert_names(&err, "websocket.ping_interval_ms", "5", "100..=600000");
    // The variable overrides a valid value from the file, and is validated all the same.
    let err =
        refused(&serve("[websocket]\nping_interval_ms = 1000\n", &[("FANHUB_WEBSOCKET__PING_INTERVAL_MS", "5")]).await);
    assert_names(&err, "websocket.ping_interval_ms", "5", "100..=600000");
}

#[tokio::test]
async fn an_unknown_key_in_the_file_is_named() {
    let err = refused(&serve("[websocket]\nidle_timout_ms = 1000\n", &[]).await);
    assert!(err.contains("idle_timout_ms"), "names the unknown key:\n{err}");
    assert!(err.contains("websocket"), "names its section:\n{err}");
    let err = refused(&serve("node_id = \"n1\"\nbogus_top_level_key = 1\n", &[]).await);
    assert!(err.contains("bogus_top_level_key"), "names the unknown key:\n{err}");
}

#[tokio::test]
async fn a_toml_syntax_error_is_reported_with_its_position() {
    let err = refused(&serve("node_id = \"n1\"\n[server\nlisten = \n", &[]).await);
    assert!(err.contains("invalid configuration"), "{err}");
    assert!(err.contains("line 2"), "points at the line of the error:\n{err}");
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_named_with_its_key() {
    let err = refused(&serve("[websocket]\nidle_timeout_ms = \"soon\"\n", &[]).await);
    assert!(err.contains("websocket.idle_timeout_ms"), "names the key:\n{err}");
    assert!(err.contains("soon"), "names the value:\n{err}");
}

#[tokio::test]
async fn an_unknown_jwt_algorithm_is_named_with_the_allowed_ones() {
    let err = refused(&serve("[auth]\nalgorithm = \"HS512\"\n", &[]).await);
    assert_names(&err, "auth.algorithm", "HS512", "HS256, RS256 or ES256");
}
