//! `fanhub serve` refuses an invalid configuration before binding anything: a non-zero exit
//! with a message naming each key, the value and the allowed range — from the file, from a
//! `FANHUB_*` variable, for unknown keys and for TOML syntax errors.

use std::process::Output;
use std::time::Duration;

fn serve(config_text: &str, env: &[(&str, &str)]) -> Output {
    let path = std::env::temp_dir().join(format!("fanhub-config-test-{}-{}.toml", std::process::id(), rand_suffix()));
    std::fs::write(&path, config_text).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fanhub"));
    cmd.args(["serve", "--config", path.to_str().unwrap(), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Guard against hangs only: an invalid config must make it exit on its own.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("fanhub serve kept running with an invalid configuration");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_file(path);
    out
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn stderr(o: &Output) -> String {
    assert!(!o.status.success(), "must fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn out_of_range_values_in_the_file_are_all_named_with_value_and_range() {
    let o =
        serve("[websocket]\nidle_timeout_ms = 1\n[limits]\nmax_connections = 0\n[admin]\nstats_interval_ms = 5\n", &[]);
    let e = stderr(&o);
    assert!(e.contains("websocket.idle_timeout_ms = 1: allowed 200..=3600000"), "{e}");
    assert!(e.contains("limits.max_connections = 0: allowed 1..=10000000"), "{e}");
    assert!(e.contains("admin.stats_interval_ms = 5: allowed 100..=60000"), "{e}");
}

#[test]
fn environment_overrides_are_validated_too() {
    let o = serve("", &[("FANHUB_WEBSOCKET__PING_INTERVAL_MS", "5")]);
    let e = stderr(&o);
    assert!(e.contains("websocket.ping_interval_ms = 5: allowed 100..=600000"), "{e}");
}

#[test]
fn unknown_keys_and_syntax_errors_are_reported() {
    let e = stderr(&serve("[websocket]\nidle_timout_ms = 1000\n", &[]));
    assert!(e.contains("idle_timout_ms"), "names the unknown key: {e}");
    let e = stderr(&serve("[server\nlisten = ", &[]));
    assert!(e.to_lowercase().contains("invalid") || e.contains("expected"), "{e}");
    let e = stderr(&serve("[auth]\nalgorithm = \"HS512\"\n", &[]));
    assert!(e.contains("auth.algorithm = HS512: allowed HS256, RS256 or ES256"), "{e}");
}
