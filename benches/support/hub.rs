//! An in-process hub with subscribers of one topic, for the in-process benches (`route`,
//! `detach`). Included with `#[path]`.

use std::sync::Arc;

use fanhub::hub::testing::TestConnection;
use fanhub::hub::{Connection, ConnectionManager, DeliveryPolicy, HubConfig, Now, SubscribeOptions, TopicName};

/// The time passed to the hub: the monotonic clock only (records get timestamp 0), so a timed
/// publish pays for one clock read, as a transport's would be amortised over a frame.
pub fn now() -> Now {
    Now { mono: std::time::Instant::now(), unix_us: 0 }
}

/// A manager (connection limits raised, `history` messages kept per topic) with `subscribers`
/// in-process connections subscribed to `topic` under `policy`.
pub fn hub_with_subscribers(
    subscribers: usize,
    topic: &str,
    policy: DeliveryPolicy,
    history: usize,
) -> (Arc<ConnectionManager>, TopicName, Vec<Arc<TestConnection>>) {
    let mut cfg = HubConfig::default();
    cfg.limits.max_connections_per_user = 1_000_000;
    cfg.limits.max_connections_per_ip = 1_000_000;
    cfg.topics.default_history.max_messages = history;
    let m = Arc::new(ConnectionManager::new(cfg).unwrap());
    let topic = TopicName::new(topic).unwrap();
    m.set_delivery_policy(&topic, policy).unwrap();
    let subs = (0..subscribers)
        .map(|i| {
            let c = TestConnection::register(&m, &format!("s{i}"), (i % 60000) as u16);
            m.subscribe(c.id(), &topic, SubscribeOptions::default(), now()).unwrap();
            c
        })
        .collect();
    (m, topic, subs)
}
