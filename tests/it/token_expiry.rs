//! Token expiry: a connection is warned ahead of its token's expiry and closed at expiry (4002)
//! unless it refreshes with a new token for the same subject.

use crate::common::*;
use serde_json::json;

fn short_lived() -> fanhub::config::Config {
    let mut c = test_config();
    c.auth.expiry_warning_secs = 1;
    c.auth.leeway_secs = 0;
    c
}

#[tokio::test]
async fn a_connection_is_warned_then_closed_when_its_token_expires() {
    let hub = spawn_hub(short_lived()).await;
    let token = hub.token_with("brief", &[">"], &[">"], 2);
    let mut c = hub.connect_with(json!({"op": "connect", "token": token})).await;
    let exp = c.welcome["session"]["expires_at"].as_u64().unwrap();
    let warn = c.next_of_type("token_expiring").await;
    assert_eq!(warn["expires_at"], exp);
    assert!(warn["in_ms"].as_u64().unwrap() <= 1000);
    let closed = c.expect_close().await;
    assert_eq!(closed.code, Some(4002), "{closed:?}");
    assert!(closed.messages.iter().any(|m| m["type"] == "bye" && m["reason"] == "token_expired"), "{closed:?}");
    assert!(fanhub::auth::unix_now() >= exp, "not closed before expiry");
    hub.eventually("unregistered", |m| m.connection_stats().active_connections == 0).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_refreshed_token_keeps_the_connection_past_the_old_expiry() {
    let hub = spawn_hub(short_lived()).await;
    let token = hub.token_with("steady", &[">"], &[">"], 2);
    let mut c = hub.connect_with(json!({"op": "connect", "token": token})).await;
    let old_exp = c.welcome["session"]["expires_at"].as_u64().unwrap();
    c.next_of_type("token_expiring").await;
    let fresh = hub.token_with("steady", &[">"], &[">"], 60);
    let r = c.request(json!({"op": "refresh", "token": fresh})).await;
    assert_eq!(r["type"], "refreshed", "{r}");
    assert!(r["expires_at"].as_u64().unwrap() > old_exp);
    // Let the old expiry pass (the behaviour under test is time passing), then prove liveness.
    let wait_ms = (old_exp * 1000 + 300).saturating_sub(fanhub::transport::unix_ms());
    tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
    c.assert_alive().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn refreshing_with_another_subjects_token_is_denied_and_the_connection_stays() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("alice").await;
    let r = c.request(json!({"op": "refresh", "token": hub.token("mallory")})).await;
    assert_eq!(r["code"], "permission_denied", "{r}");
    let r = c.request(json!({"op": "refresh", "token": "garbage"})).await;
    assert_eq!(r["code"], "unauthenticated", "{r}");
    c.assert_alive().await;
    hub.shutdown().await;
}
