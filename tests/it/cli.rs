//! The `fanhub` binary: `sub` prints what `pub` publishes (with offsets), `stats` and
//! `connections` pretty-print the admin API (the table's columns aligned whatever the widths),
//! and a missing admin token fails with the API's error and a non-zero exit. A reader that goes
//! away (`fanhub stats | head -1`) ends a command quietly. `serve` on an address in use names
//! the address and what sets it; in development mode it prints an API key that
//! `POST /v1/sessions` accepts, and outside it makes none. `--help` describes what is built.

use std::process::Stdio;

use crate::common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};

fn fanhub() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fanhub"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FANHUB_")) {
        c.env_remove(k);
    }
    c.kill_on_drop(true);
    c
}

async fn run(args: &[&str]) -> std::process::Output {
    let out = fanhub().args(args).output();
    tokio::time::timeout(TIMEOUT, out).await.expect("cli hung").expect("spawn")
}

#[tokio::test]
async fn sub_prints_what_pub_publishes_and_admin_commands_pretty_print() {
    let hub = spawn_hub(test_config()).await;
    let url = hub.ws_url();
    let mut sub = fanhub()
        .args(["sub", "cli/demo", "--count", "2", "--json", "--url", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(sub.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(TIMEOUT, err.next_line()).await.expect("sub hung").unwrap().unwrap();
    assert!(line.contains("subscribed to cli/demo"), "{line}");

    let out = run(&["pub", "cli/demo", r#"{"n":1}"#, "--count", "2", "--url", &url]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed.lines().collect::<Vec<_>>(), ["published cli/demo offset 1", "published cli/demo offset 2"]);

    let got = tokio::time::timeout(TIMEOUT, sub.wait_with_output()).await.expect("sub never exited").unwrap();
    assert!(got.status.success());
    let lines: Vec<serde_json::Value> =
        String::from_utf8(got.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["topic"], "cli/demo");
    assert_eq!(lines[0]["offset"], 1);
    assert_eq!(lines[1]["offset"], 2);
    assert_eq!(lines[1]["payload"], serde_json::json!({"n": 1}));

    let _watcher = hub.connect("watched-user").await;
    let admin_url = format!("http://{}", hub.admin);
    let stats = run(&["stats", "--admin-url", &admin_url, "--admin-token", ADMIN_TOKEN]).await;
    assert!(stats.status.success(), "{}", String::from_utf8_lossy(&stats.stderr));
    let text = String::from_utf8(stats.stdout).unwrap();
    assert!(text.contains("connections  1 active"), "{text}");
    assert!(text.contains("messages in"), "{text}");

    let conns = run(&["connections", "--admin-url", &admin_url, "--admin-token", ADMIN_TOKEN]).await;
    assert!(conns.status.success(), "{}", String::from_utf8_lossy(&conns.stderr));
    let text = String::from_utf8(conns.stdout).unwrap();
    assert!(text.contains("watched-user") && text.contains("websocket"), "{text}");
    assert!(text.contains("1 of 1 connections"), "{text}");

    let denied = run(&["stats", "--admin-url", &admin_url]).await;
    assert!(!denied.status.success());
    let err = String::from_utf8(denied.stderr).unwrap();
    assert!(err.contains("401") && err.contains("unauthenticated"), "{err}");

    let bad = run(&["sub", "a//b", "--count", "1", "--url", &url]).await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid_argument"));
    hub.shutdown().await;
}

#[cfg(feature = "client-webrtc")]
#[tokio::test]
async fn sub_receives_over_webrtc_what_pub_publishes() {
    let hub = spawn_hub(test_config()).await;
    let url = hub.ws_url();
    let mut sub = fanhub()
        .args(["sub", "cli/rtc", "--count", "2", "--webrtc", "--url", &url, "--token", &hub.token("viewer")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(sub.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(TIMEOUT, err.next_line()).await.expect("sub hung").unwrap().unwrap();
    assert!(line.contains("subscribed to cli/rtc"), "{line}");
    let rows = admin(&hub, "GET", "/v1/admin/connections?protocol=webrtc", "").await.json();
    assert_eq!(rows["total"], 1, "the subscriber is a webrtc connection: {rows}");
    let out = run(&["pub", "cli/rtc", "hello", "--count", "2", "--url", &url]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = tokio::time::timeout(TIMEOUT, sub.wait_with_output()).await.expect("sub never exited").unwrap();
    assert!(got.status.success());
    assert_eq!(
        String::from_utf8(got.stdout).unwrap().lines().collect::<Vec<_>>(),
        [r#"[cli/rtc #1] "hello""#, r#"[cli/rtc #2] "hello""#]
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn every_subcommand_has_help() {
    for sub in ["serve", "token", "sub", "pub", "stats", "connections"] {
        let out = run(&[sub, "--help"]).await;
        assert!(out.status.success(), "{sub} --help");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage: fanhub"), "{sub}: {text}");
    }
}

/// Whether `stderr` shows a panic.
fn panicked(stderr: &[u8]) -> bool {
    let text = String::from_utf8_lossy(stderr);
    text.contains("panicked") || text.contains("RUST_BACKTRACE")
}

#[tokio::test]
async fn stats_into_a_pipe_nobody_reads_exits_quietly() {
    let hub = spawn_hub(test_config()).await;
    let admin_url = format!("http://{}", hub.admin);
    for cmd in ["stats", "connections"] {
        let mut child = fanhub()
            .args([cmd, "--admin-url", &admin_url, "--admin-token", ADMIN_TOKEN])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes before the command can write: the hub answers it only once this
        // test awaits (same runtime), after the pipe is closed.
        drop(child.stdout.take());
        let out = tokio::time::timeout(TIMEOUT, child.wait_with_output()).await.expect("cli hung").unwrap();
        assert!(!panicked(&out.stderr), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{cmd}: {:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "{cmd} says nothing: {}", String::from_utf8_lossy(&out.stderr));
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn stats_watch_piped_into_head_exits_quietly_after_the_first_line() {
    let hub = spawn_hub(test_config()).await;
    let admin_url = format!("http://{}", hub.admin);
    let mut child = fanhub()
        .args(["stats", "--admin-url", &admin_url, "--admin-token", ADMIN_TOKEN, "--watch", "0.2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(TIMEOUT, lines.next_line()).await.expect("no first line").unwrap();
    assert!(first.is_some_and(|l| l.contains("node")), "the first line of the stats");
    // Like `head -1`: the reader goes; the next refresh writes into a closed pipe.
    drop(lines);
    let out =
        tokio::time::timeout(TIMEOUT, child.wait_with_output()).await.expect("stats --watch never ended").unwrap();
    assert!(!panicked(&out.stderr), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    hub.shutdown().await;
}

#[tokio::test]
async fn connections_aligns_its_columns_for_rows_of_different_widths() {
    let hub = spawn_hub(test_config()).await;
    let mut clients = Vec::new();
    for (sub, topics) in [("a", 0), ("a-subject-much-longer-than-the-user-column", 3), ("bob", 12)] {
        let mut c = hub.connect(sub).await;
        for t in 0..topics {
            c.subscribe(&format!("align/{t}")).await;
        }
        clients.push(c);
    }
    let admin_url = format!("http://{}", hub.admin);
    let out = run(&["connections", "--admin-url", &admin_url, "--admin-token", ADMIN_TOKEN]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "a header, three rows, a total: {text}");
    assert!(lines[0].trim_start().starts_with("ID"), "{text}");
    // Every header ends (numbers, right-aligned) or starts (text, left-aligned) where its cells do.
    let header = lines[0];
    for (name, right) in [
        ("ID", true),
        ("PROTOCOL", false),
        ("REMOTE", false),
        ("USER", false),
        ("STATE", false),
        ("SUBS", true),
        ("QUEUE", true),
        ("SENT", true),
        ("DROPPED", true),
    ] {
        let start = header.find(name).unwrap_or_else(|| panic!("{name} in {header:?}"));
        let end = start + name.len();
        for row in &lines[1..4] {
            let bytes = row.as_bytes();
            if right {
                assert!(end <= row.len() && bytes[end - 1] != b' ', "{name} ends where its cell does:\n{text}");
                assert!(bytes.get(end).is_none_or(|b| *b == b' '), "{name} ends where its cell does:\n{text}");
            } else {
                assert!(bytes[start] != b' ' && bytes[start - 1] == b' ', "{name} starts where its cell does:\n{text}");
            }
        }
    }
    assert!(text.contains("a-subject-much-longer-than-the-user-column"), "nothing is cut: {text}");
    hub.shutdown().await;
}

/// A port taken by a listener this test holds.
fn taken_port() -> (std::net::TcpListener, std::net::SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

#[tokio::test]
async fn serve_on_an_address_in_use_names_the_address_and_what_sets_it() {
    let (_held, taken) = taken_port();
    let taken = taken.to_string();
    for (listen, admin_listen, flag, key) in [
        (taken.as_str(), "127.0.0.1:0", "--listen", "server.listen"),
        ("127.0.0.1:0", taken.as_str(), "--admin-listen", "server.admin_listen"),
    ] {
        let out = run(&["serve", "--listen", listen, "--admin-listen", admin_listen]).await;
        assert!(!out.status.success(), "{flag}: serve on a port in use fails");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!panicked(&out.stderr), "{err}");
        for part in [taken.as_str(), flag, key, "in use"] {
            assert!(err.contains(part), "{flag}: the error names {part:?}: {err}");
        }
    }
}

#[cfg(feature = "webrtc")]
#[tokio::test]
async fn serve_on_a_webrtc_port_in_use_names_the_address_and_the_key() {
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().to_string();
    let out = fanhub()
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("FANHUB_WEBRTC__UDP_LISTEN", &taken)
        .env("FANHUB_WEBRTC__DRIVERS", "1")
        .output();
    let out = tokio::time::timeout(TIMEOUT, out).await.expect("serve hung").unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for part in [taken.as_str(), "webrtc.udp_listen", "in use"] {
        assert!(err.contains(part), "the error names {part:?}: {err}");
    }
}

#[tokio::test]
async fn help_says_what_the_hub_serves_today() {
    for args in [&["--help"][..], &["serve", "--help"][..]] {
        let out = run(args).await;
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!text.to_lowercase().contains("later"), "{args:?}: {text}");
        if args.len() == 1 {
            assert!(text.contains("WebSocket"), "{text}");
            assert_eq!(text.contains("WebRTC peers"), cfg!(feature = "webrtc"), "{text}");
        }
    }
    let manifest = include_str!("../../Cargo.toml");
    let description = manifest.lines().find(|l| l.starts_with("description")).unwrap();
    assert!(!description.contains("later"), "{description}");
    assert!(description.contains("WebRTC"), "{description}");
}

/// `fanhub serve` on ephemeral ports with `env`; returns the child and its stderr, read up to
/// and including the line that says it serves.
async fn serve(env: &[(&str, &str)]) -> (Child, Vec<String>, tokio::io::Lines<BufReader<ChildStderr>>) {
    let mut child = fanhub()
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-format", "json"])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(TIMEOUT, lines.next_line()).await.expect("serve never started").unwrap();
        let line = line.unwrap_or_else(|| panic!("serve ended: {seen:#?}"));
        let done = line.contains("fanhub serving");
        seen.push(line);
        if done {
            return (child, seen, lines);
        }
    }
}

/// The public address in the `fanhub serving` log line (`url` is `ws://ADDR/ws`).
fn served_addr(lines: &[String]) -> std::net::SocketAddr {
    let log: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    let url = log["fields"]["url"].as_str().unwrap_or_else(|| panic!("{log}"));
    url.trim_start_matches("ws://").trim_end_matches("/ws").parse().unwrap()
}

#[tokio::test]
async fn serve_in_development_mode_prints_an_api_key_that_post_v1_sessions_accepts() {
    let (mut child, lines, _rest) = serve(&[]).await;
    let addr = served_addr(&lines);
    let key = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("dev API key: "))
        .unwrap_or_else(|| panic!("the banner prints an API key: {lines:#?}"))
        .to_owned();
    let example = lines.iter().find(|l| l.contains("/v1/sessions")).expect("a curl example");
    assert!(example.contains(&format!("curl -X POST http://{addr}/v1/sessions -H 'X-Api-Key: {key}'")), "{example}");
    assert!(lines.iter().any(|l| l.contains(&format!("http://{addr}/v1/dev/token"))), "{lines:#?}");

    let r =
        http(addr, "POST", "/v1/sessions", &[("X-Api-Key", &key)], r#"{"subject":"alice","subscribe":["a/>"]}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let mut c = Client::open(&format!("ws://{addr}/ws"), &[]).await;
    let w = c.request(serde_json::json!({"op": "connect", "token": token})).await;
    assert_eq!(w["type"], "welcome", "the token connects: {w}");
    let wrong = http(addr, "POST", "/v1/sessions", &[("X-Api-Key", "dev-key-wrong")], r#"{"subject":"a"}"#).await;
    assert_eq!(wrong.status, 401, "only the printed key: {}", wrong.body);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn serve_outside_development_mode_makes_no_api_key() {
    let (mut dev, dev_lines, _rest) = serve(&[]).await;
    let dev_key =
        dev_lines.iter().find_map(|l| l.trim().strip_prefix("dev API key: ")).expect("a development key").to_owned();
    dev.kill().await.unwrap();

    let (mut child, lines, _rest) =
        serve(&[("FANHUB_AUTH__HS256_SECRET", "a-production-secret-0123456789abcdef")]).await;
    let addr = served_addr(&lines);
    assert!(!lines.iter().any(|l| l.contains("API key") || l.contains("dev-key-")), "{lines:#?}");
    for key in [dev_key.as_str(), "dev-key-0"] {
        let r = http(addr, "POST", "/v1/sessions", &[("X-Api-Key", key)], r#"{"subject":"alice"}"#).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.json()["code"], "unauthenticated");
    }
    let r = http(addr, "POST", "/v1/dev/token", &[], r#"{"subject":"alice"}"#).await;
    assert_eq!(r.status, 404, "no dev token route outside development mode: {}", r.body);
    child.kill().await.unwrap();
}
