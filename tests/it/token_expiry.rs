//! Token expiry: a connection is warned ahead of its token's expiry and closed at expiry (4002)
//! unless it refreshes with a new token for the same subject. The hub runs on a manual clock:
//! the test moves time past the warning and the expiry; nothing waits for the wall clock.

use std::time::Duration;

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
    let hub = spawn_hub_manual(short_lived()).await;
    let token = hub.token_with("brief", &[">"], &[">"], 2);
    let mut c = hub.connect_with(json!({"op": "connect", "token": token})).await;
    let exp = c.welcome["session"]["expires_at"].as_u64().unwrap();
    // The warning window (1 s) opens at most 1 s after the token was minted.
    hub.advance(Duration::from_millis(1000));
    let warn = c.next_of_type("token_expiring").await;
    assert_eq!(warn["expires_at"], exp);
    assert!(warn["in_ms"].as_u64().unwrap() <= 1000);
    hub.advance(Duration::from_millis(1000));
    let closed = c.expect_close().await;
    assert_eq!(closed.code, Some(4002), "{closed:?}");
    assert!(closed.messages.iter().any(|m| m["type"] == "bye" && m["reason"] == "token_expired"), "{closed:?}");
    assert!(hub.now().unix_secs() >= exp, "not closed before expiry");
    hub.eventually("unregistered", |m| m.connection_stats().active_connections == 0).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_refreshed_token_keeps_the_connection_past_the_old_expiry() {
    let hub = spawn_hub_manual(short_lived()).await;
    let token = hub.token_with("steady", &[">"], &[">"], 2);
    let mut c = hub.connect_with(json!({"op": "connect", "token": token})).await;
    let old_exp = c.welcome["session"]["expires_at"].as_u64().unwrap();
    hub.advance(Duration::from_millis(1000));
    c.next_of_type("token_expiring").await;
    let fresh = hub.token_with("steady", &[">"], &[">"], 60);
    let r = c.request(json!({"op": "refresh", "token": fresh})).await;
    assert_eq!(r["type"], "refreshed", "{r}");
    assert!(r["expires_at"].as_u64().unwrap() > old_exp);
    // Move the hub's time past the old expiry, then prove liveness.
    let wait_ms = (old_exp * 1000 + 300).saturating_sub(hub.now().unix_ms());
    hub.advance(Duration::from_millis(wait_ms));
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

#[tokio::test]
async fn a_token_already_inside_its_warning_window_at_connect_is_warned_right_after_welcome() {
    let mut config = test_config();
    config.auth.expiry_warning_secs = 60;
    config.auth.leeway_secs = 0;
    let hub = spawn_hub_manual(config).await;
    let token = hub.token_with("late", &[">"], &[">"], 30);
    let mut c = hub.connect_with(json!({"op": "connect", "token": token})).await;
    // No time passes: the warning must not wait for the next timer.
    let warn = c.next_of_type("token_expiring").await;
    assert_eq!(warn["expires_at"], c.welcome["session"]["expires_at"]);
    let in_ms = warn["in_ms"].as_u64().unwrap();
    assert!((29_000..=30_000).contains(&in_ms), "{warn}");
    hub.shutdown().await;
}
