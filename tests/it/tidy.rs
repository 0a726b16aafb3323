//! Tidy: the layering and file conventions hold, read from the source itself. Every file under
//! `src/` starts with a `//!` comment saying what it owns; `hub/` and `session/` stay sans-IO
//! (no runtime, no awaits, no clock reads, no randomness of their own, nothing from the layers
//! above them); `protocol/` uses nothing of the crate but itself, and `client/` nothing but
//! `protocol/`.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source tree") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn files_under(sub: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    sources(&src().join(sub), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no sources under src/{sub}");
    files
}

/// The file's code without comments and without its unit tests (a `tests.rs` file, or what
/// follows `#[cfg(test)]`, which by convention closes a file).
fn code_of(path: &Path) -> String {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    let text = std::fs::read_to_string(path).expect("readable");
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

fn offences(files: &[PathBuf], forbidden: &[&str], exempt: impl Fn(&Path, &str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for f in files {
        let code = code_of(f);
        for word in forbidden {
            if code.contains(word) && !exempt(f, word) {
                found.push(format!("{} uses `{word}`", f.strip_prefix(src()).unwrap_or(f).display()));
            }
        }
    }
    found
}

#[test]
fn every_source_file_starts_with_a_module_comment() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a leading //! comment: {missing:#?}");
}

/// Layers above the hub, and the ways to do IO, wait, read the time or draw randomness.
const NOT_IN_THE_HUB: &[&str] = &[
    "tokio",
    "async fn",
    ".await",
    "crate::transport",
    "crate::server",
    "crate::admin",
    "crate::broker",
    "crate::session",
    "crate::auth",
    "crate::config",
    "crate::clock",
    "crate::http",
    "crate::metrics",
    "std::net::TcpStream",
    "std::net::UdpSocket",
    "std::fs",
    "std::thread",
    "Instant::now",
    "SystemTime::now",
    "rand::random",
    "thread_rng",
    "rand::rng()",
    "OsRng",
];

#[test]
fn the_hub_is_sans_io_and_imports_nothing_above_it() {
    // The test double plays a writer: its convenience `drain()` drains at the clock's time,
    // as a transport's writer would. Nothing else in hub/ reads a clock.
    let exempt = |f: &Path, word: &str| f.ends_with("hub/testing.rs") && word == "Instant::now";
    let found = offences(&files_under("hub"), NOT_IN_THE_HUB, exempt);
    assert!(found.is_empty(), "hub/ must stay sans-IO: {found:#?}");
}

#[test]
fn the_session_is_sans_io_and_imports_nothing_above_it() {
    let above = ["crate::transport", "crate::server", "crate::admin", "crate::broker", "crate::http", "crate::clock"];
    let forbidden: Vec<&str> = NOT_IN_THE_HUB
        .iter()
        .copied()
        .filter(|w| !["crate::session", "crate::auth", "crate::config"].contains(w))
        .chain(above)
        .collect();
    let found = offences(&files_under("session"), &forbidden, |_, _| false);
    assert!(found.is_empty(), "session/ must stay sans-IO: {found:#?}");
}

/// Uses of `crate::` under `src/<dir>` other than `crate::protocol` and `crate::<dir>` itself.
fn beyond_the_protocol(dir: &str) -> Vec<String> {
    let own = format!("crate::{dir}");
    let mut found = Vec::new();
    for f in files_under(dir) {
        let code = code_of(&f);
        for (i, _) in code.match_indices("crate::") {
            if !code[i..].starts_with("crate::protocol") && !code[i..].starts_with(&own) {
                let line = code[..i].lines().count();
                found.push(format!("{}:{line}", f.display()));
            }
        }
    }
    found
}

#[test]
fn the_protocol_uses_nothing_of_the_crate_but_itself() {
    let found = beyond_the_protocol("protocol");
    assert!(found.is_empty(), "protocol/ may use only serde and bytes: {found:#?}");
}

#[test]
fn the_client_uses_only_the_protocol_like_any_outside_client() {
    let found = beyond_the_protocol("client");
    assert!(found.is_empty(), "client/ may use only crate::protocol of the crate: {found:#?}");
}

#[test]
fn the_broker_does_not_reach_into_the_transports() {
    let found = offences(&files_under("broker"), &["crate::transport", "crate::server", "crate::admin"], |_, _| false);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_checks_above_can_fail() {
    // The same reading of a file that does what the rules forbid.
    let dir = std::env::temp_dir().join(format!("fanhub-tidy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.rs");
    std::fs::write(&bad, "//! Bad.\nuse tokio::sync::Notify; // tokio\nfn f() { let _ = std::time::Instant::now(); }\n#[cfg(test)]\nmod tests { async fn ok() {} }\n").unwrap();
    let found = offences(std::slice::from_ref(&bad), NOT_IN_THE_HUB, |_, _| false);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(!found.iter().any(|f| f.contains("async fn")), "test code is not checked: {found:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
