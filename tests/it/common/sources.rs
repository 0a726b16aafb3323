//! What the upstream source tests share: mappings and sources as an operator writes them, the
//! admin view of the sources, and waiting on it.

use std::time::Duration;

use fanhub::config::{BackpressureMode, ConsumerSettings, MappingConfig, SourceConfig};
use serde_json::Value;

use super::{admin, declare_topics, reliable, spawn_hub, test_config, Client, Hub, Record};

/// A mapping `upstream` → `topic` with the defaults (buffer 1000, `apply_backpressure`).
pub fn mapping(upstream: &str, topic: &str) -> MappingConfig {
    MappingConfig {
        upstream: upstream.into(),
        topic: topic.into(),
        payload_field: None,
        key_suffix: false,
        headers: true,
        max_buffered_messages: 1000,
        backpressure_mode: BackpressureMode::ApplyBackpressure,
        exclusive: None,
    }
}

/// The poison tests' mapping: `events` → `events/all`, publishing the JSON field `/data`, so a
/// record that is not JSON is poison (`payload_field`).
pub fn data_field_mapping() -> MappingConfig {
    let mut m = mapping("events", "events/all");
    m.payload_field = Some("/data".into());
    m
}

/// A source `fleet` of `kind` at `url` from the TOML an operator writes (the parser fills in
/// the defaults; `extra` adds kind-specific keys), with `mappings`; quick reconnects.
pub fn source_of(kind: &str, url: &str, extra: &str, mappings: Vec<MappingConfig>) -> SourceConfig {
    let text = format!(
        "[[sources]]\nname = \"fleet\"\nkind = \"{kind}\"\nurl = \"{url}\"\nretry_initial_ms = 50\nretry_max_ms = 500\n\
         {extra}\n[[sources.mappings]]\nupstream = \"x\"\ntopic = \"x\"\n"
    );
    let mut s = fanhub::config::Config::from_toml(&text).expect("source TOML").sources.remove(0);
    s.mappings = mappings;
    s
}

/// `GET /v1/admin/sources`.
pub async fn sources(hub: &Hub) -> Value {
    let r = admin(hub, "GET", "/v1/admin/sources", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Polls the admin view until `f` holds (an observable, not a clock).
pub async fn until(hub: &Hub, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = sources(hub).await;
        if f(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {v:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `f` until it answers something (a condition upstream, not a clock): that answer.
pub async fn poll<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Mapping `i` of the first source in an admin view.
pub fn mapping_view(v: &Value, i: usize) -> &Value {
    &v["items"][0]["mappings"][i]
}

/// The first consumer's state in an admin view.
pub fn consumer_state(v: &Value) -> String {
    v["items"][0]["consumers"][0]["state"].as_str().unwrap_or_default().to_owned()
}

/// The `n` of a record whose payload is `{"n": …}`.
pub fn n_of(r: &Record) -> u64 {
    serde_json::from_slice::<Value>(&r.payload).unwrap()["n"].as_u64().unwrap()
}

/// The stalled-mapping scene every kind's tests share. `slow/…` is `reliable` under
/// `apply_backpressure` with a queue of 4; the source `source(mappings)` gets `slow` → `slow/t`
/// (8 buffered, `mode`, on its own consumer with `exclusive` when given) and `fast` → `fast/t`.
/// Returns the connected hub, a subscriber of `slow/t` that never reads (its socket buffers
/// fill, then its queue) and one of `fast/t`.
pub async fn stalled_hub(
    mode: BackpressureMode,
    exclusive: Option<ConsumerSettings>,
    source: impl FnOnce(Vec<MappingConfig>) -> SourceConfig,
) -> (Hub, Client, Client) {
    let mut config = test_config();
    let mut policy = reliable(4);
    if let fanhub::hub::DeliveryPolicy::Reliable { overflow, backpressure_timeout_ms, .. } = &mut policy {
        *overflow = fanhub::hub::ReliableOverflow::ApplyBackpressure;
        *backpressure_timeout_ms = 100;
    }
    declare_topics(&mut config, "slow/>", policy, None);
    let mut slow = mapping("slow", "slow/t");
    slow.max_buffered_messages = 8;
    slow.backpressure_mode = mode;
    slow.exclusive = exclusive;
    config.sources = vec![source(vec![slow, mapping("fast", "fast/t")])];
    let hub = spawn_hub(config).await;
    until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    let mut stalled = hub.connect("stalled").await;
    stalled.subscribe("slow/t").await;
    let mut fast = hub.connect("fast").await;
    fast.subscribe("fast/t").await;
    (hub, stalled, fast)
}

/// Record `n` of the stalled mapping's upstream: JSON with 64 KiB of padding, so a few fill a
/// subscriber's socket buffers.
pub fn stalled_payload(n: u64) -> Vec<u8> {
    serde_json::json!({ "n": n, "pad": "x".repeat(64 * 1024) }).to_string().into_bytes()
}

/// Waits until the stalled mapping (index 0) is stuck — paused, or dropping by its mode —
/// having published fewer than the 300 records its upstream got.
pub async fn until_stuck(hub: &Hub) {
    let v = until(hub, "the slow mapping stuck", |v| {
        let m = mapping_view(v, 0);
        m["paused"] == true
            || m["dropped"]["drop_oldest"].as_u64() > Some(0)
            || m["dropped"]["drop_newest"].as_u64() > Some(0)
    })
    .await;
    assert!(mapping_view(&v, 0)["published"].as_u64().unwrap() < 300, "{v:#}");
}

/// Waits until the stalled mapping's lag was measured (under `apply_backpressure`; at once
/// under the drop modes); returns the view.
pub async fn until_lag_measured(hub: &Hub, mode: BackpressureMode) -> Value {
    until(hub, "the lag measured", |v| {
        mode != BackpressureMode::ApplyBackpressure || mapping_view(v, 0)["lag"].as_u64() > Some(0)
    })
    .await
}
