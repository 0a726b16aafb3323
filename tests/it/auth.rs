//! Authentication: every way `connect` can fail (missing, malformed, badly signed, expired,
//! wrong-audience and wrong-issuer tokens, a first message that is not `connect`, no `connect`
//! in time, a bad token in the upgrade request) answers `error` `unauthenticated` naming the
//! reason, then closes with 4001, and leaves nothing registered in the hub. Tokens may also
//! come in the upgrade request (`Authorization: Bearer`, `?token=`), and asymmetric keys
//! (ES256) verify.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use fanhub::auth::{unix_now, MintRequest, SessionManager};
use fanhub::config::AuthConfig;
use serde_json::{json, Value};

/// Asserts the documented failure sequence: `error` `unauthenticated` (echoing `id`) whose
/// message starts with `reason`, then `bye` `unauthenticated`, then a close with 4001.
fn assert_refused(closed: &Closed, id: Option<u64>, reason: &str) {
    assert_eq!(closed.code, Some(4001), "close code; got {closed:?}");
    let err = closed.messages.first().unwrap_or_else(|| panic!("no error before the close: {closed:?}"));
    assert_eq!(err["type"], "error", "{closed:?}");
    assert_eq!(err["code"], "unauthenticated", "{err}");
    assert_eq!(err["id"], id.map_or(Value::Null, |i| json!(i)), "request id echoed: {err}");
    let message = err["message"].as_str().unwrap();
    assert!(message.starts_with(reason), "message {message:?} should name the reason {reason:?}");
    let bye = closed.messages.last().unwrap();
    assert_eq!(bye["type"], "bye", "{closed:?}");
    assert_eq!(bye["reason"], "unauthenticated", "{bye}");
    assert_eq!(bye["code"], 4001, "{bye}");
}

/// Asserts that the refused connection left nothing behind: no registered connection, no
/// connection still pending authentication, and the failure counted under `reason`.
async fn assert_nothing_registered(hub: &Hub, reason: &'static str) {
    hub.eventually("the refused connection is gone", |m| {
        let s = m.connection_stats();
        s.connections_by_state.get("authenticating").copied().unwrap_or(0) == 0
            && s.connections_by_state.get("establishing").copied().unwrap_or(0) == 0
    })
    .await;
    let stats = hub.manager.connection_stats();
    assert_eq!(stats.active_connections, 0, "nothing registered");
    assert_eq!(stats.connections_accepted, 0, "nothing accepted");
    assert_eq!(stats.subscriptions, 0);
    assert_eq!(stats.auth_failures[reason], 1, "failure counted under {reason}: {:?}", stats.auth_failures);
    let others: u64 = stats.auth_failures.iter().filter(|(k, _)| **k != reason).map(|(_, v)| v).sum();
    assert_eq!(others, 0, "no other reason counted: {:?}", stats.auth_failures);
}

/// Opens a socket and sends `connect` with id 1 carrying `token`; returns how it closed.
async fn connect_refused(hub: &Hub, token: Option<&str>) -> Closed {
    let mut c = hub.open().await;
    let mut msg = json!({"op": "connect", "id": 1});
    if let Some(t) = token {
        msg["token"] = json!(t);
    }
    c.send_json(msg).await;
    c.expect_close().await
}

/// A session manager configured like `cfg` (for tokens the hub must refuse).
fn other_sessions(cfg: AuthConfig) -> SessionManager {
    SessionManager::new(&cfg).expect("session manager")
}

fn mint(sessions: &SessionManager, subject: &str, now: u64, ttl_secs: u64) -> String {
    sessions
        .mint(
            &MintRequest { subject: subject.into(), subscribe: vec![">".into()], publish: vec![">".into()], ttl_secs },
            now,
        )
        .expect("mint")
        .token
}

#[tokio::test]
async fn connect_without_any_token_is_refused_as_missing_token() {
    let hub = spawn_hub(test_config()).await;
    let closed = connect_refused(&hub, None).await;
    assert_refused(&closed, Some(1), "missing_token");
    assert_nothing_registered(&hub, "missing_token").await;
    hub.shutdown().await;
}

#[tokio::test]
async fn connect_with_an_empty_token_is_refused_as_missing_token() {
    let hub = spawn_hub(test_config()).await;
    let closed = connect_refused(&hub, Some("")).await;
    assert_refused(&closed, Some(1), "missing_token");
    assert_nothing_registered(&hub, "missing_token").await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_token_that_is_not_a_jwt_is_refused_as_malformed() {
    let hub = spawn_hub(test_config()).await;
    let closed = connect_refused(&hub, Some("not-a-jwt")).await;
    assert_refused(&closed, Some(1), "malformed_token");
    assert_nothing_registered(&hub, "malformed_token").await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_refused_as_bad_signature() {
    let hub = spawn_hub(test_config()).await;
    let other = other_sessions(AuthConfig {
        hs256_secret: Some("a-completely-different-secret-0123456789".into()),
        ..Default::default()
    });
    let closed = connect_refused(&hub, Some(&mint(&other, "mallory", unix_now(), 600))).await;
    assert_refused(&closed, Some(1), "bad_signature");
    assert_nothing_registered(&hub, "bad_signature").await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_token_with_a_tampered_payload_is_refused_as_bad_signature() {
    let hub = spawn_hub(test_config()).await;
    let good = hub.token("alice");
    let parts: Vec<&str> = good.split('.').collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("root");
    let forged = format!("{}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2]);
    let closed = connect_refused(&hub, Some(&forged)).await;
    assert_refused(&closed, Some(1), "bad_signature");
    assert_nothing_registered(&hub, "bad_signature").await;
    hub.shutdown().await;
}

#[tokio::test]
async fn an_expired_token_is_refused_as_expired() {
    let hub = spawn_hub(test_config()).await;
    // Expired an hour ago, far beyond the leeway.
    let token = mint(&hub.sessions, "alice", unix_now() - 7200, 3600);
    let closed = connect_refused(&hub, Some(&token)).await;
    assert_refused(&closed, Some(1), "expired");
    assert_nothing_registered(&hub, "expired").await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused_as_wrong_audience() {
    let mut config = test_config();
    config.auth.audience = Some("fanhub".into());
    let hub = spawn_hub(config).await;
    // Control: the hub's own audience is accepted.
    let ok = hub.connect("alice").await;
    drop(ok);
    hub.eventually("control connection gone", |m| m.connection_stats().active_connections == 0).await;

    let other = other_sessions(AuthConfig { audience: Some("elsewhere".into()), ..Default::default() });
    let closed = connect_refused(&hub, Some(&mint(&other, "alice", unix_now(), 600))).await;
    assert_refused(&closed, Some(1), "wrong_audience");
    let stats = hub.manager.connection_stats();
    assert_eq!(stats.active_connections, 0);
    assert_eq!(stats.auth_failures["wrong_audience"], 1, "{:?}", stats.auth_failures);
    hub.shutdown().await;
}

/// Sends `connect` with `token` and asserts it is refused (not welcomed) with `unauthenticated`
/// naming one of `reasons`, then closed with 4001, and that nothing is registered.
async fn assert_connect_refused_as_one_of(hub: &Hub, token: &str, reasons: &[&str]) {
    let mut c = hub.open().await;
    c.send_json(json!({"op": "connect", "id": 1, "token": token})).await;
    let first = c.reply(1).await;
    assert_eq!(first["type"], "error", "the token must be refused, got {first}");
    assert_eq!(first["code"], "unauthenticated", "{first}");
    let message = first["message"].as_str().unwrap();
    assert!(reasons.iter().any(|r| message.starts_with(r)), "message {message:?} should name one of {reasons:?}");
    let closed = c.expect_close().await;
    assert_eq!(closed.code, Some(4001), "{closed:?}");
    assert_eq!(hub.manager.connection_stats().active_connections, 0);
}

#[tokio::test]
async fn a_token_without_an_audience_is_refused_when_one_is_required() {
    let mut config = test_config();
    config.auth.audience = Some("fanhub".into());
    let hub = spawn_hub(config).await;
    let no_aud = other_sessions(AuthConfig::default());
    let token = mint(&no_aud, "alice", unix_now(), 600);
    assert_connect_refused_as_one_of(&hub, &token, &["wrong_audience", "malformed_token"]).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_token_without_an_issuer_is_refused_when_one_is_required() {
    let mut config = test_config();
    config.auth.issuer = Some("https://auth.example".into());
    let hub = spawn_hub(config).await;
    let no_iss = other_sessions(AuthConfig::default());
    let token = mint(&no_iss, "alice", unix_now(), 600);
    assert_connect_refused_as_one_of(&hub, &token, &["wrong_issuer", "malformed_token"]).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused_as_wrong_issuer() {
    let mut config = test_config();
    config.auth.issuer = Some("https://auth.example".into());
    let hub = spawn_hub(config).await;
    // Control: the hub's own issuer is accepted.
    let ok = hub.connect("alice").await;
    drop(ok);
    hub.eventually("control connection gone", |m| m.connection_stats().active_connections == 0).await;

    let other = other_sessions(AuthConfig { issuer: Some("https://evil.example".into()), ..Default::default() });
    let closed = connect_refused(&hub, Some(&mint(&other, "alice", unix_now(), 600))).await;
    assert_refused(&closed, Some(1), "wrong_issuer");
    let stats = hub.manager.connection_stats();
    assert_eq!(stats.active_connections, 0);
    assert_eq!(stats.auth_failures["wrong_issuer"], 1, "{:?}", stats.auth_failures);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_first_message_other_than_connect_is_refused_as_no_connect() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.open().await;
    c.send_json(json!({"op": "subscribe", "id": 7, "topic": "a/b"})).await;
    let closed = c.expect_close().await;
    assert_refused(&closed, Some(7), "no_connect");
    let message = closed.messages[0]["message"].as_str().unwrap();
    assert!(message.contains("not subscribe"), "{message}");
    assert_nothing_registered(&hub, "no_connect").await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_binary_frame_before_connect_is_refused_as_no_connect() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.open().await;
    c.publish_bin_noack("a/b", b"sneaky").await;
    let closed = c.expect_close().await;
    assert_refused(&closed, None, "no_connect");
    assert_nothing_registered(&hub, "no_connect").await;
    assert_eq!(hub.manager.connection_stats().messages_in, 0, "nothing was published");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_malformed_first_message_is_refused_as_no_connect() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.open().await;
    c.send_raw(tokio_tungstenite::tungstenite::Message::text("{not json")).await;
    let closed = c.expect_close().await;
    assert_refused(&closed, None, "no_connect");
    assert_nothing_registered(&hub, "no_connect").await;
    hub.shutdown().await;
}

#[tokio::test]
async fn no_connect_within_the_auth_timeout_is_refused() {
    let mut config = test_config();
    config.session.auth_timeout_ms = 300;
    let hub = spawn_hub_manual(config).await;
    let mut c = hub.open().await;
    let started = hub.now().mono;
    hub.advance(std::time::Duration::from_millis(300));
    let closed = c.expect_close().await;
    let elapsed = hub.now().mono - started;
    assert!(elapsed >= std::time::Duration::from_millis(250), "closed too early: {elapsed:?}");
    assert_refused(&closed, None, "no_connect: no connect within 300 ms");
    assert_nothing_registered(&hub, "no_connect").await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_token_in_the_authorization_header_authenticates_a_connect_without_token() {
    let hub = spawn_hub(test_config()).await;
    let bearer = format!("Bearer {}", hub.token("alice"));
    let mut c = Client::open(&hub.ws_url(), &[("Authorization", &bearer)]).await;
    let w = c.request(json!({"op": "connect"})).await;
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(w["session"]["subject"], "alice");
    c.assert_alive().await;
    assert_eq!(hub.manager.connection_stats().active_connections, 1);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_token_in_the_query_string_authenticates_a_connect_without_token() {
    let hub = spawn_hub(test_config()).await;
    let url = format!("{}?token={}", hub.ws_url(), hub.token("bob"));
    let mut c = Client::open(&url, &[]).await;
    let w = c.request(json!({"op": "connect"})).await;
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(w["session"]["subject"], "bob");
    assert_eq!(hub.manager.connection_stats().active_connections, 1);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_bad_token_in_the_authorization_header_closes_with_4001_before_any_message() {
    let hub = spawn_hub(test_config()).await;
    let mut c = Client::open(&hub.ws_url(), &[("Authorization", "Bearer not-a-jwt")]).await;
    // The client sends nothing at all.
    let closed = c.expect_close().await;
    assert_refused(&closed, None, "malformed_token");
    assert_nothing_registered(&hub, "malformed_token").await;
    hub.shutdown().await;
}

#[tokio::test]
async fn an_expired_token_in_the_query_string_closes_with_4001_before_any_message() {
    let hub = spawn_hub(test_config()).await;
    let token = mint(&hub.sessions, "alice", unix_now() - 7200, 3600);
    let mut c = Client::open(&format!("{}?token={token}", hub.ws_url()), &[]).await;
    let closed = c.expect_close().await;
    assert_refused(&closed, None, "expired");
    assert_nothing_registered(&hub, "expired").await;
    hub.shutdown().await;
}

/// Generates an ES256 (P-256) key pair with the `openssl` CLI into `dir`: (private, public)
/// PEM paths, private in PKCS#8. `None` when openssl is not installed.
fn es256_key_pair(dir: &Path, name: &str) -> Option<(PathBuf, PathBuf)> {
    if Command::new("openssl").arg("version").output().is_err() {
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    let private = dir.join(format!("{name}-private.pem"));
    let public = dir.join(format!("{name}-public.pem"));
    let ok = Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"])
        .arg(&private)
        .output()
        .expect("run openssl genpkey");
    assert!(ok.status.success(), "openssl genpkey: {}", String::from_utf8_lossy(&ok.stderr));
    let ok = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .output()
        .expect("run openssl pkey");
    assert!(ok.status.success(), "openssl pkey: {}", String::from_utf8_lossy(&ok.stderr));
    Some((private, public))
}

fn es256_auth(private: &Path, public: &Path) -> AuthConfig {
    AuthConfig {
        algorithm: "ES256".into(),
        public_key_pem: Some(public.to_owned()),
        private_key_pem: Some(private.to_owned()),
        ..Default::default()
    }
}

fn temp_dir(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!("fanhub-auth-{test}-{}", std::process::id()))
}

#[tokio::test]
async fn es256_tokens_signed_with_the_configured_key_are_accepted() {
    let dir = temp_dir("es256-accept");
    let Some((private, public)) = es256_key_pair(&dir, "hub") else {
        eprintln!("SKIPPED es256_tokens_signed_with_the_configured_key_are_accepted: the openssl CLI is not installed");
        return;
    };
    let mut config = test_config();
    config.auth = AuthConfig { api_keys: config.auth.api_keys.clone(), ..es256_auth(&private, &public) };
    let hub = spawn_hub(config).await;
    let token = hub.token("alice");
    let header: Value = {
        use base64::Engine as _;
        let h = token.split('.').next().unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
    };
    assert_eq!(header["alg"], "ES256", "the hub mints with its private key");
    let mut c = hub.connect_with(json!({"op": "connect", "token": token})).await;
    assert_eq!(c.welcome["session"]["subject"], "alice");
    c.assert_alive().await;
    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn es256_tokens_signed_with_another_key_are_refused_as_bad_signature() {
    let dir = temp_dir("es256-other-key");
    let Some((private, public)) = es256_key_pair(&dir, "hub") else {
        eprintln!("SKIPPED es256_tokens_signed_with_another_key_are_refused_as_bad_signature: the openssl CLI is not installed");
        return;
    };
    let (other_private, other_public) = es256_key_pair(&dir, "other").unwrap();
    let mut config = test_config();
    config.auth = es256_auth(&private, &public);
    let hub = spawn_hub(config).await;
    let other = other_sessions(es256_auth(&other_private, &other_public));
    let closed = connect_refused(&hub, Some(&mint(&other, "mallory", unix_now(), 600))).await;
    assert_refused(&closed, Some(1), "bad_signature");
    assert_nothing_registered(&hub, "bad_signature").await;
    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_hs256_token_is_refused_by_an_es256_hub_as_bad_signature() {
    let dir = temp_dir("es256-hs256");
    let Some((private, public)) = es256_key_pair(&dir, "hub") else {
        eprintln!(
            "SKIPPED an_hs256_token_is_refused_by_an_es256_hub_as_bad_signature: the openssl CLI is not installed"
        );
        return;
    };
    let mut config = test_config();
    config.auth = es256_auth(&private, &public);
    let hub = spawn_hub(config).await;
    // Signed with the development HS256 secret (algorithm confusion attempt).
    let hs = other_sessions(AuthConfig::default());
    let closed = connect_refused(&hub, Some(&mint(&hs, "mallory", unix_now(), 600))).await;
    assert_refused(&closed, Some(1), "bad_signature");
    assert_nothing_registered(&hub, "bad_signature").await;
    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sessions_that_never_authenticate_and_refused_handshakes_are_counted_in_stats_and_metrics() {
    let hub = spawn_hub(test_config()).await;
    // A first message that is not connect, a malformed token, and a client that leaves silently.
    let mut wrong = hub.open().await;
    wrong.send_json(json!({"op": "ping", "id": 1})).await;
    wrong.expect_close().await;
    let mut bad = hub.open().await;
    bad.send_json(json!({"op": "connect", "token": "not-a-jwt"})).await;
    bad.expect_close().await;
    let silent = hub.open().await;
    drop(silent);
    // A handshake refused before any session.
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\nConnection: close\r\n\r\n",
        hub.addr
    );
    assert_eq!(http_raw(hub.addr, &head).await.status, 400);
    let _ok = hub.connect("fine").await;
    hub.eventually("three sessions ended unauthenticated", |m| m.connection_stats().sessions_unauthenticated == 3)
        .await;
    let stats = admin(&hub, "GET", "/v1/admin/stats", "").await.json();
    assert_eq!(
        (stats["sessions_opened"].as_u64(), stats["sessions_unauthenticated"].as_u64()),
        (Some(4), Some(3)),
        "{stats}"
    );
    assert_eq!(stats["handshakes_refused"], 1, "{stats}");
    assert_eq!(stats["connections_accepted"], 1, "{stats}");
    assert_eq!(stats["auth_failures"]["no_connect"], 1, "{stats}");
    assert_eq!(stats["auth_failures"]["malformed_token"], 1, "{stats}");
    let metrics = admin(&hub, "GET", "/metrics", "").await.body;
    for series in [
        "fanhub_sessions_opened_total 4",
        "fanhub_sessions_unauthenticated_total 3",
        "fanhub_handshakes_refused_total 1",
        "fanhub_auth_failures_total{reason=\"malformed_token\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    hub.shutdown().await;
}
