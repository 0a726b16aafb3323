//! Unit tests of the manager: registration, subscribe/replay, publish and every policy, limits,
//! streams, sweeping; connections are the in-process test double, time is passed in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::hub::connection::{ConnCore, Connection};
use crate::hub::policy::{DeliveryPolicy, DropStrategy, ReliableOverflow};
use crate::hub::testing::TestConnection;
use crate::hub::{Identity, TopicPattern};

fn now() -> Now {
    Now { mono: Instant::now(), unix_us: 1_700_000_000_000_000 }
}

fn manager() -> ConnectionManager {
    ConnectionManager::new(HubConfig::default()).unwrap()
}

fn t(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

fn live() -> SubscribeOptions {
    SubscribeOptions::default()
}

fn from(offset: u64) -> SubscribeOptions {
    SubscribeOptions { offset: Some(offset), epoch: None }
}

#[test]
fn ids_are_unique_and_never_reused() {
    let m = manager();
    let a = TestConnection::register(&m, "u", 1);
    m.unregister_client(a.id());
    let b = TestConnection::register(&m, "u", 1);
    assert_ne!(a.id(), b.id());
    assert!(b.id() > a.id());
}

#[test]
fn unregister_removes_every_subscription() {
    let m = manager();
    let c = TestConnection::register(&m, "u", 1);
    for i in 0..5 {
        m.subscribe(c.id(), &t(&format!("a/{i}")), live(), now()).unwrap();
    }
    assert_eq!(m.connection_stats().subscriptions, 5);
    assert_eq!(m.clients_for_topic(&t("a/3")).len(), 1);
    assert!(m.unregister_client(c.id()));
    assert!(!m.unregister_client(c.id()), "idempotent");
    let stats = m.connection_stats();
    assert_eq!(stats.subscriptions, 0);
    assert_eq!(stats.active_connections, 0);
    for i in 0..5 {
        assert!(m.clients_for_topic(&t(&format!("a/{i}"))).is_empty());
    }
    assert!(matches!(
        m.subscribe(c.id(), &t("a/9"), live(), now()),
        Err(SubscribeError::Request(RequestError::UnknownConnection(_)))
    ));
}

#[test]
fn unregistering_after_a_draining_close_leaves_the_queue_to_the_writer() {
    let m = manager();
    let c = TestConnection::register(&m, "u", 1);
    let k = TestConnection::register(&m, "v", 2);
    for conn in [&c, &k] {
        m.subscribe(conn.id(), &t("d"), live(), now()).unwrap();
    }
    m.route_data(&t("d"), b"x", 0, now()).unwrap();
    c.close(crate::protocol::CloseReason::Shutdown, "server shutting down", &[]);
    assert!(m.unregister_client(c.id()));
    let d = c.drain();
    assert_eq!(d.records.len(), 1, "shutdown drains what was queued");
    assert_eq!(d.control.last().unwrap()["reason"], "shutdown");
    assert!(d.finished);
    // Gone without a draining close: nothing of its subscriptions is written any more.
    assert!(m.unregister_client(k.id()));
    assert!(k.drain().records.is_empty());
    // The peer closed (a `normal` close without a close frame of ours): nothing follows it.
    let gone = TestConnection::register(&m, "w", 3);
    m.subscribe(gone.id(), &t("d"), live(), now()).unwrap();
    m.route_data(&t("d"), b"y", 0, now()).unwrap();
    let info = crate::hub::CloseInfo {
        reason: crate::protocol::CloseReason::Normal,
        message: String::new(),
        send_close_frame: false,
    };
    gone.close_with(info, None);
    assert!(m.unregister_client(gone.id()));
    let d = gone.drain();
    assert!(d.records.is_empty() && d.finished, "{d:?}");
}

#[test]
fn a_writer_is_woken_only_when_its_queue_goes_from_empty_to_non_empty() {
    let m = manager();
    let c = TestConnection::register(&m, "u", 1);
    m.subscribe(c.id(), &t("w"), live(), now()).unwrap();
    for _ in 0..3 {
        m.route_data(&t("w"), b"x", 0, now()).unwrap();
    }
    assert_eq!(c.wakes(), 1, "a busy writer re-drains by itself");
    assert_eq!(c.drain_offsets(), [1, 2, 3]);
    m.route_data(&t("w"), b"x", 0, now()).unwrap();
    assert_eq!(c.wakes(), 2);
    c.close(crate::protocol::CloseReason::Kicked, "bye", &[]);
    assert_eq!(c.wakes(), 3, "closing wakes it to write the bye");
}

#[test]
fn route_data_reaches_every_subscriber_with_one_shared_record() {
    let m = manager();
    let subs: Vec<_> = (0..3).map(|i| TestConnection::register(&m, "u", i)).collect();
    for s in &subs {
        m.subscribe(s.id(), &t("news"), live(), now()).unwrap();
    }
    let r = m.route_data(&t("news"), b"hello", 0, now()).unwrap();
    assert_eq!((r.offset, r.delivered, r.dropped), (1, 3, 0));
    let drained: Vec<_> = subs.iter().map(|s| s.drain().records).collect();
    let ptrs: Vec<_> = drained.iter().map(|d| d[0].as_ptr()).collect();
    assert!(ptrs.windows(2).all(|w| w[0] == w[1]), "every subscriber shares the same bytes");
    let rec = crate::protocol::frame::decode_records(&drained[0][0]).next().unwrap().unwrap();
    assert_eq!((rec.offset, rec.topic, rec.payload), (1, "news", &b"hello"[..]));
    assert_eq!(rec.epoch, m.topic_info(&t("news")).unwrap().epoch);
}

#[test]
fn offsets_increase_and_history_replays_without_gap_or_duplicate() {
    let m = manager();
    for i in 0..10 {
        m.route_data(&t("s"), format!("{i}").as_bytes(), 0, now()).unwrap();
    }
    let c = TestConnection::register(&m, "u", 1);
    let info = m.subscribe(c.id(), &t("s"), from(4), now()).unwrap();
    assert_eq!((info.offset, info.head, info.replayed, info.recovered), (4, 11, 7, true));
    m.route_data(&t("s"), b"live", 0, now()).unwrap();
    assert_eq!(c.drain_offsets(), (4..=11).collect::<Vec<_>>());
}

#[test]
fn offset_zero_means_from_the_beginning() {
    let m = manager();
    m.route_data(&t("s"), b"a", 0, now()).unwrap();
    let c = TestConnection::register(&m, "u", 1);
    let info = m.subscribe(c.id(), &t("s"), from(0), now()).unwrap();
    assert!(info.recovered);
    assert_eq!(c.drain_offsets(), [1]);
}

#[test]
fn offset_older_than_history_is_not_recovered() {
    let mut cfg = HubConfig::default();
    cfg.topics.default_history.max_messages = 3;
    let m = ConnectionManager::new(cfg).unwrap();
    for _ in 0..10 {
        m.route_data(&t("s"), b"x", 0, now()).unwrap();
    }
    let c = TestConnection::register(&m, "u", 1);
    let info = m.subscribe(c.id(), &t("s"), from(2), now()).unwrap();
    assert!(!info.recovered);
    assert_eq!(info.offset, 8);
    assert_eq!(c.drain_offsets(), [8, 9, 10]);
}

#[test]
fn offset_beyond_head_and_other_epoch() {
    let m = manager();
    m.route_data(&t("s"), b"x", 0, now()).unwrap();
    let c = TestConnection::register(&m, "u", 1);
    let e = m.subscribe(c.id(), &t("s"), from(5), now()).unwrap_err();
    assert_eq!(e.code(), crate::protocol::ErrorCode::InvalidArgument);
    let epoch = m.topic_info(&t("s")).unwrap().epoch;
    let info =
        m.subscribe(c.id(), &t("s"), SubscribeOptions { offset: Some(99), epoch: Some(epoch + 1) }, now()).unwrap();
    assert!(!info.recovered, "a different epoch cannot be recovered");
    assert_eq!(c.drain_offsets(), [1], "everything of the new epoch is replayed");
}

#[test]
fn subscribe_racing_publishers_sees_no_gap_and_no_duplicate() {
    // History must hold every message of the test, or a late subscriber's offset 50 is rightly
    // reported as lost (`recovered: false`) instead of replayed.
    let mut config = HubConfig::default();
    config.topics.default_history.max_messages = 10_000;
    let m = Arc::new(ConnectionManager::new(config).unwrap());
    let roomy = DeliveryPolicy::BestEffort {
        queue_messages: 100_000,
        queue_bytes: 1 << 30,
        overflow: DropStrategy::DropNewest,
    };
    m.set_delivery_policy(&t("race"), roomy).unwrap();
    for _ in 0..100 {
        m.route_data(&t("race"), b"x", 0, now()).unwrap();
    }
    let publishers: Vec<_> = (0..2)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    m.route_data(&t("race"), b"x", 0, now()).unwrap();
                }
            })
        })
        .collect();
    let subs: Vec<_> = (0..20)
        .map(|i| {
            let c = TestConnection::register(&m, "u", i);
            let info = m.subscribe(c.id(), &t("race"), from(50), now()).unwrap();
            assert!(info.recovered);
            (c, info)
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    for (c, _) in subs {
        let offs = c.drain_offsets();
        let expected: Vec<u64> = (50..=4100).collect();
        assert!(
            offs == expected,
            "gap or duplicate: got {} offsets, first mismatch at {:?}",
            offs.len(),
            offs.iter().zip(&expected).position(|(a, b)| a != b)
        );
    }
}

#[test]
fn best_effort_drop_oldest_keeps_the_newest() {
    let m = manager();
    let policy =
        DeliveryPolicy::BestEffort { queue_messages: 3, queue_bytes: 1 << 20, overflow: DropStrategy::DropOldest };
    m.set_delivery_policy(&t("be"), policy).unwrap();
    let c = TestConnection::register(&m, "u", 1);
    m.subscribe(c.id(), &t("be"), live(), now()).unwrap();
    for _ in 0..10 {
        m.route_data(&t("be"), b"x", 0, now()).unwrap();
    }
    assert_eq!(c.drain_offsets(), [8, 9, 10]);
    let stats = &m.client_info(c.id()).unwrap().subscriptions[0];
    assert_eq!(stats.dropped, 7);
    assert_eq!(m.connection_stats().dropped["queue_full"], 7);
}

#[test]
fn best_effort_drop_newest_keeps_the_oldest() {
    let m = manager();
    let policy =
        DeliveryPolicy::BestEffort { queue_messages: 3, queue_bytes: 1 << 20, overflow: DropStrategy::DropNewest };
    m.set_delivery_policy(&t("be"), policy).unwrap();
    let c = TestConnection::register(&m, "u", 1);
    m.subscribe(c.id(), &t("be"), live(), now()).unwrap();
    let reports: Vec<_> = (0..5).map(|_| m.route_data(&t("be"), b"x", 0, now()).unwrap()).collect();
    assert_eq!(reports[4].dropped, 1);
    assert_eq!(c.drain_offsets(), [1, 2, 3]);
}

#[test]
fn best_effort_byte_bound_applies() {
    let m = manager();
    let policy =
        DeliveryPolicy::BestEffort { queue_messages: 1000, queue_bytes: 2048, overflow: DropStrategy::DropOldest };
    m.set_delivery_policy(&t("be"), policy).unwrap();
    let c = TestConnection::register(&m, "u", 1);
    m.subscribe(c.id(), &t("be"), live(), now()).unwrap();
    for _ in 0..10 {
        m.route_data(&t("be"), &[0u8; 500], 0, now()).unwrap();
    }
    let offs = c.drain_offsets();
    assert!(offs.len() <= 4, "{offs:?}");
    assert_eq!(*offs.last().unwrap(), 10);
}

#[test]
fn reliable_disconnects_the_slow_subscriber_only() {
    let m = manager();
    let policy = DeliveryPolicy::Reliable {
        queue_messages: 5,
        queue_bytes: 1 << 20,
        overflow: ReliableOverflow::Disconnect,
        backpressure_timeout_ms: 0,
    };
    m.set_delivery_policy(&t("r"), policy).unwrap();
    let slow = TestConnection::register(&m, "u", 1);
    let fast = TestConnection::register(&m, "u", 2);
    m.subscribe(slow.id(), &t("r"), live(), now()).unwrap();
    m.subscribe(fast.id(), &t("r"), live(), now()).unwrap();
    let mut fast_got = Vec::new();
    let mut disconnected = 0;
    for _ in 0..20 {
        let r = m.route_data(&t("r"), b"x", 0, now()).unwrap();
        disconnected += r.disconnected;
        fast_got.extend(fast.drain_offsets());
    }
    assert_eq!(fast_got, (1..=20).collect::<Vec<_>>());
    assert_eq!(disconnected, 1);
    assert_eq!(slow.state(), ConnState::Terminating);
    let d = slow.drain();
    assert!(d.records.is_empty(), "queued data is discarded on slow_consumer");
    assert_eq!(d.control[0]["type"], "bye");
    assert_eq!(d.control[0]["reason"], "slow_consumer");
    assert_eq!(d.control[0]["code"], 4004);
    assert!(d.finished);
    assert_eq!(m.connection_stats().slow_consumer_disconnects, 1);
}

#[test]
fn a_reliable_record_no_queue_can_hold_is_refused_not_waited_for_nor_disconnecting() {
    let m = manager();
    for (topic, overflow) in [("rb", ReliableOverflow::ApplyBackpressure), ("rd", ReliableOverflow::Disconnect)] {
        let policy =
            DeliveryPolicy::Reliable { queue_messages: 8, queue_bytes: 1024, overflow, backpressure_timeout_ms: 1000 };
        m.set_delivery_policy(&t(topic), policy).unwrap();
        let c = TestConnection::register(&m, topic, 1);
        m.subscribe(c.id(), &t(topic), live(), now()).unwrap();
        let e = m.route_data(&t(topic), &[0u8; 1000], 0, now()).unwrap_err();
        assert_eq!((e.code(), e.limit()), (crate::protocol::ErrorCode::ResourceExhausted, Some("queue_bytes")));
        assert!(matches!(e, PublishError::ExceedsQueue { max: 1024, .. }), "{e}");
        assert_eq!(m.check_fits(&t(topic), 1000).unwrap_err().limit(), Some("queue_bytes"));
        assert!(m.check_fits(&t(topic), 900).is_ok());
        assert_eq!(c.state(), ConnState::Active, "nobody is disconnected for it");
        assert_eq!(m.topic_info(&t(topic)).unwrap().head, 1, "no offset was taken");
        assert_eq!(m.route_data(&t(topic), b"small", 0, now()).unwrap().offset, 1);
    }
    // Best-effort topics take no such check: the policy drops what does not fit.
    assert!(m.check_fits(&t("be"), 1 << 20).is_ok());
}

#[test]
fn reliable_backpressure_asks_the_publisher_to_wait() {
    let m = manager();
    let policy = DeliveryPolicy::Reliable {
        queue_messages: 2,
        queue_bytes: 1 << 20,
        overflow: ReliableOverflow::ApplyBackpressure,
        backpressure_timeout_ms: 10,
    };
    m.set_delivery_policy(&t("r"), policy).unwrap();
    let c = TestConnection::register(&m, "u", 1);
    m.subscribe(c.id(), &t("r"), live(), now()).unwrap();
    m.route_data(&t("r"), b"x", 0, now()).unwrap();
    m.route_data(&t("r"), b"x", 0, now()).unwrap();
    match m.route_data(&t("r"), b"x", 0, now()) {
        Err(PublishError::Backpressure { waiting_for, timeout, .. }) => {
            assert_eq!(waiting_for.id(), c.id());
            assert_eq!(timeout, Duration::from_millis(10));
        }
        other => panic!("expected backpressure, got {other:?}"),
    }
    assert_eq!(m.topic_info(&t("r")).unwrap().head, 3, "no offset was consumed");
    assert_eq!(c.drain_offsets(), [1, 2]);
    assert_eq!(m.route_data(&t("r"), b"x", 0, now()).unwrap().offset, 3);
    assert_eq!(c.state(), ConnState::Active, "backpressure never disconnects");
}

#[test]
fn rate_limited_coalesces_newest_wins() {
    let m = manager();
    let policy = DeliveryPolicy::RateLimited { per_second: 1, burst: 1, queue_messages: 100, queue_bytes: 1 << 20 };
    m.set_delivery_policy(&t("v"), policy).unwrap();
    let c = TestConnection::register(&m, "u", 1);
    m.subscribe(c.id(), &t("v"), live(), now()).unwrap();
    for _ in 0..5 {
        m.route_data(&t("v"), b"frame", 0, now()).unwrap();
    }
    // The first message passes; 2..=5 are over the rate and coalesce into the newest (5),
    // which is held until the rate allows.
    assert_eq!(c.drain_offsets(), [1]);
    let info = m.client_info(c.id()).unwrap();
    assert_eq!(info.subscriptions[0].dropped, 3);
    assert_eq!(info.queue_depth, 1);
    // Time is passed in: a second later the held record goes out, nobody sleeps.
    assert_eq!(c.drain_offsets_at(Instant::now() + Duration::from_millis(1100)), [5]);
}

#[test]
fn policy_change_applies_to_the_next_message() {
    let m = manager();
    let c = TestConnection::register(&m, "u", 1);
    m.subscribe(c.id(), &t("p"), live(), now()).unwrap();
    assert_eq!(m.delivery_policy(&t("p")).kind(), "best_effort");
    let tight = DeliveryPolicy::BestEffort { queue_messages: 1, queue_bytes: 4096, overflow: DropStrategy::DropNewest };
    m.set_delivery_policy(&t("p"), tight.clone()).unwrap();
    assert_eq!(m.delivery_policy(&t("p")), tight);
    m.route_data(&t("p"), b"x", 0, now()).unwrap();
    assert_eq!(m.route_data(&t("p"), b"x", 0, now()).unwrap().dropped, 1);
    let bad = DeliveryPolicy::RateLimited { per_second: 0, burst: 1, queue_messages: 1, queue_bytes: 4096 };
    assert!(matches!(m.set_delivery_policy(&t("p"), bad), Err(SetPolicyError::Invalid(e)) if e.field == "per_second"));
}

#[test]
fn control_messages_go_before_data_and_reliable_before_best_effort() {
    let m = manager();
    let reliable = DeliveryPolicy::Reliable {
        queue_messages: 10,
        queue_bytes: 1 << 20,
        overflow: ReliableOverflow::Disconnect,
        backpressure_timeout_ms: 0,
    };
    m.set_delivery_policy(&t("rel"), reliable).unwrap();
    let c = TestConnection::register(&m, "u", 1);
    m.subscribe(c.id(), &t("be"), live(), now()).unwrap();
    m.subscribe(c.id(), &t("rel"), live(), now()).unwrap();
    m.route_data(&t("be"), b"b", 0, now()).unwrap();
    m.route_data(&t("rel"), b"r", 0, now()).unwrap();
    c.send_control(&crate::protocol::control::ServerMsg::Pong { id: Some(1), server_time_us: 0 });
    let mut batch = crate::hub::Batch::default();
    assert_eq!(c.core().outbound.drain(&mut batch, 10, 1 << 20, Instant::now()), crate::hub::Drain::Ready);
    assert_eq!(batch.control.len(), 1);
    let topics: Vec<String> = batch
        .records
        .iter()
        .map(|r| crate::protocol::frame::decode_records(r).next().unwrap().unwrap().topic.to_owned())
        .collect();
    assert_eq!(topics, ["rel", "be"]);
}

#[test]
fn permissions_are_enforced_and_the_connection_stays() {
    let m = manager();
    let core = m.new_core(Protocol::InProcess, "127.0.0.1:1".parse().unwrap(), 0);
    core.set_identity(Identity {
        subject: "viewer".into(),
        subscribe: vec![TopicPattern::new("video/*").unwrap()],
        publish: vec![],
        expires_at: None,
    });
    #[derive(Debug)]
    struct C(ConnCore);
    impl Connection for C {
        fn core(&self) -> &ConnCore {
            &self.0
        }
        fn wake(&self) {}
    }
    let c = Arc::new(C(core));
    m.register_client(c.clone(), None).unwrap();
    assert!(m.subscribe(c.id(), &t("video/cam1"), live(), now()).is_ok());
    let e = m.subscribe(c.id(), &t("audio/cam1"), live(), now()).unwrap_err();
    assert_eq!(e.code(), crate::protocol::ErrorCode::PermissionDenied);
    let e = m.publish_as(c.id(), &t("video/cam1"), b"x", 0, now()).unwrap_err();
    assert_eq!(e.code(), crate::protocol::ErrorCode::PermissionDenied);
    assert_eq!(c.state(), ConnState::Active);
}

#[test]
fn connection_limits_each_have_their_own_error() {
    let mut cfg = HubConfig::default();
    cfg.limits.max_connections = 3;
    cfg.limits.max_connections_per_user = 2;
    cfg.limits.max_connections_per_ip = 2;
    let m = ConnectionManager::new(cfg).unwrap();
    let _a = TestConnection::register(&m, "alice", 1);
    let _b = TestConnection::register(&m, "alice", 2);
    let c = TestConnection::unregistered(&m, "alice", 3);
    assert_eq!(m.register_client(c, None).unwrap_err().limit_name(), Some("max_connections_per_user"));
    // All test connections share 127.0.0.1: the per-IP limit (2) is next.
    let d = TestConnection::unregistered(&m, "bob", 4);
    assert_eq!(m.register_client(d, None).unwrap_err().limit_name(), Some("max_connections_per_ip"));
    assert_eq!(m.connection_stats().active_connections, 2);
    assert_eq!(m.connection_stats().connections_rejected, 2);
}

#[test]
fn subscription_limit_and_violation_enforcement() {
    let mut cfg = HubConfig::default();
    cfg.limits.max_subscriptions_per_connection = 1;
    cfg.limits.violations_to_monitor = 2;
    cfg.limits.violations_to_close = 3;
    let m = ConnectionManager::new(cfg).unwrap();
    let c = TestConnection::register(&m, "u", 1);
    m.subscribe(c.id(), &t("a"), live(), now()).unwrap();
    let e = m.subscribe(c.id(), &t("b"), live(), now()).unwrap_err();
    assert_eq!(e.limit(), Some("max_subscriptions_per_connection"));
    assert_eq!(c.state(), ConnState::Active);
    m.subscribe(c.id(), &t("c"), live(), now()).unwrap_err();
    assert_eq!(c.state(), ConnState::MonitoredViolation);
    m.subscribe(c.id(), &t("d"), live(), now()).unwrap_err();
    assert_eq!(c.state(), ConnState::Terminating);
    let d = c.drain();
    assert_eq!(d.control.last().unwrap()["reason"], "violation");
}

#[test]
fn replaced_connection_gets_bye_replaced() {
    let m = manager();
    let a = TestConnection::unregistered(&m, "u", 1);
    m.register_client(a.clone(), Some("tab-1".into())).unwrap();
    let b = TestConnection::unregistered(&m, "u", 2);
    m.register_client(b.clone(), Some("tab-1".into())).unwrap();
    assert_eq!(a.drain().control[0]["reason"], "replaced");
    assert_eq!(b.state(), ConnState::Active);
}

#[test]
fn connection_detail_streams_open_with_offsets_and_main_stream() {
    let m = manager();
    for _ in 0..3 {
        m.route_data(&t("vehicle/race-1/engine"), b"e", 0, now()).unwrap();
    }
    let c = TestConnection::register(&m, "u", 1);
    let details = ConnectionDetails {
        data_source: "vehicle".into(),
        session_key: "race-1".into(),
        streams: vec!["engine".into(), "brakes".into()],
        stream_offsets: vec![2, 0],
        stream_epochs: Vec::new(),
        exclude_main_stream: false,
    };
    let infos = m.open_streams(c.id(), &details, now()).unwrap();
    let topics: Vec<_> = infos.iter().map(|i| i.topic.as_str()).collect();
    assert_eq!(topics, ["vehicle/race-1", "vehicle/race-1/engine", "vehicle/race-1/brakes"]);
    assert_eq!(infos[1].replayed, 2);
    assert_eq!(m.connection_details(c.id()).unwrap(), details);

    let mut bad = details;
    bad.stream_offsets = vec![1];
    let c2 = TestConnection::register(&m, "u", 2);
    assert!(matches!(m.open_streams(c2.id(), &bad, now()), Err(SubscribeError::OffsetsMismatch { .. })));
    assert!(m.topics_of(c2.id()).is_empty(), "nothing half-subscribed");

    m.add_streams(c.id(), &["tyres".into()], super::Starts::LIVE, now()).unwrap();
    assert_eq!(m.topics_of(c.id()).len(), 4);
    m.remove_streams(c.id(), &["engine".into()]).unwrap();
    let d = m.connection_details(c.id()).unwrap();
    assert_eq!(d.streams, ["brakes", "tyres"]);
    assert_eq!(d.stream_offsets, [0, 0]);
    assert!(matches!(m.remove_streams(c.id(), &["nope".into()]), Err(SubscribeError::NotSubscribed(_))));
}

#[test]
fn exclude_main_stream_and_bad_details() {
    let m = manager();
    let c = TestConnection::register(&m, "u", 1);
    let details = ConnectionDetails {
        data_source: "d".into(),
        session_key: "s".into(),
        streams: vec!["x".into()],
        exclude_main_stream: true,
        ..Default::default()
    };
    let infos = m.open_streams(c.id(), &details, now()).unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].topic, "d/s/x");
    let bad = ConnectionDetails { data_source: "a/b".into(), session_key: "s".into(), ..Default::default() };
    let c2 = TestConnection::register(&m, "u", 2);
    assert_eq!(m.open_streams(c2.id(), &bad, now()).unwrap_err().code(), crate::protocol::ErrorCode::InvalidArgument);
}

#[test]
fn undeclared_topics_can_be_refused_and_declarations_apply() {
    let mut cfg = HubConfig::default();
    cfg.topics.allow_undeclared = false;
    cfg.topics.declare.push(crate::hub::TopicDecl {
        pattern: "video/*".into(),
        policy: Some(DeliveryPolicy::RateLimited { per_second: 30, burst: 1, queue_messages: 8, queue_bytes: 1 << 20 }),
        history: None,
        max_subscribers: Some(1),
        publishers: Some(vec!["camera".into()]),
        description: None,
    });
    let m = ConnectionManager::new(cfg).unwrap();
    let c = TestConnection::register(&m, "viewer", 1);
    assert_eq!(
        m.subscribe(c.id(), &t("other"), live(), now()).unwrap_err().code(),
        crate::protocol::ErrorCode::NotFound
    );
    m.subscribe(c.id(), &t("video/a"), live(), now()).unwrap();
    assert_eq!(m.delivery_policy(&t("video/a")).kind(), "rate_limited");
    let c2 = TestConnection::register(&m, "viewer", 2);
    assert_eq!(m.subscribe(c2.id(), &t("video/a"), live(), now()).unwrap_err().limit(), Some("max_subscribers"));
    assert!(matches!(
        m.publish_as(c.id(), &t("video/a"), b"x", 0, now()),
        Err(PublishError::Request(RequestError::PermissionDenied(Action::Publish, _)))
    ));
    let cam = TestConnection::register(&m, "camera", 3);
    assert!(m.publish_as(cam.id(), &t("video/a"), b"x", 0, now()).is_ok());
}

#[test]
fn idle_topics_are_swept_and_come_back_with_a_new_epoch() {
    let mut cfg = HubConfig::default();
    cfg.topics.default_history.max_age_ms = 10;
    let m = ConnectionManager::new(cfg).unwrap();
    let t0 = now();
    m.route_data(&t("tmp"), b"x", 0, t0).unwrap();
    let epoch = m.topic_info(&t("tmp")).unwrap().epoch;
    assert_eq!(m.sweep_topics(t0.mono), 0, "history still fresh");
    assert_eq!(m.sweep_topics(t0.mono + Duration::from_millis(20)), 1);
    assert!(m.topic_info(&t("tmp")).is_none());
    m.route_data(&t("tmp"), b"x", 0, t0).unwrap();
    let info = m.topic_info(&t("tmp")).unwrap();
    assert_eq!(info.head, 2);
    assert_ne!(info.epoch, epoch);
}

#[test]
fn publish_limits_message_size_and_rate() {
    let mut cfg = HubConfig::default();
    cfg.limits.max_message_size = 4;
    cfg.limits.publish_rate_per_second = 1;
    cfg.limits.publish_burst = 2;
    let m = ConnectionManager::new(cfg).unwrap();
    let c = TestConnection::register(&m, "u", 1);
    assert_eq!(m.publish_as(c.id(), &t("x"), b"12345", 0, now()).unwrap_err().limit(), Some("max_message_size"));
    m.publish_as(c.id(), &t("x"), b"1", 0, now()).unwrap();
    m.publish_as(c.id(), &t("x"), b"1", 0, now()).unwrap();
    let e = m.publish_as(c.id(), &t("x"), b"1", 0, now()).unwrap_err();
    assert_eq!(e.code(), crate::protocol::ErrorCode::RateLimited);
}
