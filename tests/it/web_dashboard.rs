//! The operator dashboard (`/dashboard`, admin listener) in headless Debian Chromium
//! (playwright-core, never a downloaded browser), against real hubs on ephemeral loopback
//! ports. `web-demo/ci-setup.sh` installs Chromium and playwright-core.
//!
//! One hub: the dashboard takes its token from the URL fragment or the query (and refuses a
//! wrong one), lists the telemetry page's own WebSocket connection and kicks it (the page connects
//! again and shows up anew), kicks a test client, changes a topic's delivery policy through its
//! row (the API agrees), and charts the live stats. A two-node cluster: the nodes card lists both.
//! A hub with a Redis Streams source: the sources card shows its mapping, consumer and counts.

use std::time::Duration;

use crate::common::*;
use serde_json::json;

/// Subscribed to by a test client and the browser page; published to all along.
const WATCHED: &str = "dashboard/watched";
/// The topic whose policy the page changes (`@` needs percent-encoding in the path).
const POLICY_TOPIC: &str = "dashboard/policy@test";
const POLICY_PATH: &str = "/v1/admin/topics/dashboard%2Fpolicy%40test/policy";

/// The demo publisher on (the telemetry page is the browser connection the dashboard lists and
/// kicks); stats every 250 ms: the charts get points quickly.
fn dashboard_config() -> fanhub::config::Config {
    let mut c = demo_config();
    c.admin.stats_interval_ms = 250;
    c
}

/// Publishes to both topics every 50 ms until aborted, so the charts and rates have traffic.
async fn publish_forever(mut publisher: Client) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for n in 0u64.. {
        tick.tick().await;
        publisher.publish_json(WATCHED, json!({ "n": n })).await;
        publisher.publish_json(POLICY_TOPIC, json!({ "n": n })).await;
    }
}

#[tokio::test]
async fn dashboard_lists_and_kicks_connections_and_changes_a_topic_policy_in_chromium() {
    let hub = spawn_hub(dashboard_config()).await;
    let mut watcher = hub.connect("dashboard-watcher").await;
    watcher.subscribe(WATCHED).await;
    watcher.subscribe(POLICY_TOPIC).await;
    let mut kicked = hub.connect("kick-me").await;
    let traffic = tokio::spawn(publish_forever(hub.connect("dashboard-publisher").await));

    let (public, admin_base) = (format!("http://{}", hub.addr), format!("http://{}", hub.admin));
    browser_script("dashboard.mjs", &["single", &public, &admin_base, ADMIN_TOKEN, "kick-me", POLICY_TOPIC]).await;
    traffic.abort();

    let closed = kicked.expect_close().await;
    assert_eq!(closed.code, Some(4005), "kicked from the dashboard: {closed:?}");
    assert!(closed.messages.iter().any(|m| m["type"] == "bye" && m["reason"] == "kicked"), "{closed:?}");
    let policy = admin(&hub, "GET", POLICY_PATH, "").await.json();
    assert_eq!((&policy["kind"], &policy["per_second"]), (&json!("rate_limited"), &json!(5)), "{policy}");
    watcher.assert_alive().await;
    hub.shutdown().await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn dashboard_lists_the_nodes_of_a_cluster_in_chromium() {
    let redis = RedisServer::start().await;
    let a = crate::cluster::node(&redis, "dash-node-a").await;
    let b = crate::cluster::node(&redis, "dash-node-b").await;
    let admin_base = format!("http://{}", a.admin);
    browser_script("dashboard.mjs", &["cluster", &admin_base, ADMIN_TOKEN, "dash-node-a", "dash-node-b"]).await;
    b.shutdown().await;
    a.shutdown().await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn dashboard_shows_an_upstream_source_with_its_mapping_consumer_and_counts_in_chromium() {
    let redis = RedisServer::start().await;
    let mut config = test_config();
    config.sources = vec![redis_source(&redis.url(), "orders", "orders/all")];
    let hub = spawn_hub(config).await;
    let mut con = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    for n in 0..5 {
        let _: String =
            redis::AsyncCommands::xadd(&mut con, "orders", "*", &[("payload", n.to_string())]).await.unwrap();
    }
    let admin_base = format!("http://{}", hub.admin);
    browser_script("dashboard.mjs", &["sources", &admin_base, ADMIN_TOKEN, "fleet", "orders", "5"]).await;
    hub.shutdown().await;
}
