//! The `fanhub` CLI against a running hub: `sub` prints what `pub` publishes (with offsets),
//! `stats` and `connections` pretty-print the admin API, and a missing admin token fails with
//! the API's error and a non-zero exit.

use std::process::Stdio;

use crate::common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn fanhub() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fanhub"));
    c.env_remove("FANHUB_TOKEN").env_remove("FANHUB_CONFIG").env_remove("FANHUB_URL").kill_on_drop(true);
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

#[tokio::test]
async fn every_subcommand_has_help() {
    for sub in ["serve", "token", "sub", "pub", "stats", "connections"] {
        let out = run(&[sub, "--help"]).await;
        assert!(out.status.success(), "{sub} --help");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage: fanhub"), "{sub}: {text}");
    }
}
