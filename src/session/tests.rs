//! The session driven by hand: frames, ticks and replies at a fake `now`, in microseconds of
//! CPU. Every timeout is checked on both sides of its deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::*;
use crate::auth::MintRequest;
use crate::config::AuthConfig;
use crate::hub::testing::TestConnection;
use crate::hub::{DeliveryPolicy, HubConfig, ReliableOverflow};

const T0_UNIX_US: i64 = 1_800_000_000_000_000;

struct Rig {
    hub: Arc<ConnectionManager>,
    auth: Arc<SessionManager>,
    conn: Arc<TestConnection>,
    session: Session,
    t0: Instant,
}

fn config() -> SessionConfig {
    SessionConfig {
        ping_interval_ms: 1000,
        idle_timeout_ms: 3000,
        auth_timeout_ms: 2000,
        time_sync_interval_ms: 5000,
        close_timeout_ms: 1000,
        max_clock_offset_ms: 0,
        clock_offset_window_ms: 60_000,
    }
}

fn rig(keepalive: bool, brokered: bool) -> Rig {
    rig_with(keepalive, brokered, HubConfig::default())
}

fn rig_with(keepalive: bool, brokered: bool, hub_config: HubConfig) -> Rig {
    let hub = Arc::new(ConnectionManager::new(hub_config).unwrap());
    let auth = Arc::new(SessionManager::new(&AuthConfig::default()).unwrap());
    let conn = TestConnection::unregistered(&hub, "nobody", 1);
    let t0 = Instant::now();
    let params = SessionParams {
        conn: conn.clone(),
        hub: hub.clone(),
        auth: auth.clone(),
        config: config(),
        expiry_warning_secs: 60,
        node_id: "n1".into(),
        brokered,
        keepalive,
        accept_token: None,
    };
    let session = Session::new(params, Now { mono: t0, unix_us: T0_UNIX_US });
    Rig { hub, auth, conn, session, t0 }
}

impl Rig {
    fn at(&self, ms: u64) -> Now {
        Now { mono: self.t0 + Duration::from_millis(ms), unix_us: T0_UNIX_US + ms as i64 * 1000 }
    }

    fn token(&self, sub: &str, ttl_secs: u64, at_ms: u64) -> String {
        let req = MintRequest { subject: sub.into(), subscribe: vec![">".into()], publish: vec![">".into()], ttl_secs };
        self.auth.mint(&req, self.at(at_ms).unix_secs()).unwrap().token
    }

    fn text(&mut self, v: Value, ms: u64) {
        let now = self.at(ms);
        self.session.handle_input(Input::Text(Bytes::from(v.to_string())), now);
    }

    fn connect(&mut self, ttl_secs: u64) -> Value {
        let token = self.token("alice", ttl_secs, 0);
        self.text(json!({"op": "connect", "id": 1, "token": token}), 0);
        let mut c = self.control();
        assert_eq!(c.len(), 1, "{c:?}");
        c.remove(0)
    }

    fn tick(&mut self, ms: u64) {
        let now = self.at(ms);
        self.session.handle_tick(now);
    }

    fn control(&self) -> Vec<Value> {
        self.conn.drain().control
    }

    fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.session.poll_output()).collect()
    }

    /// A `reliable` + `apply_backpressure` topic (500 ms) with one subscriber whose queue holds
    /// one message and who never reads.
    fn full_after_one(&self, name: &str) -> (TopicName, Arc<TestConnection>) {
        let policy = DeliveryPolicy::Reliable {
            queue_messages: 1,
            queue_bytes: 1 << 20,
            overflow: ReliableOverflow::ApplyBackpressure,
            backpressure_timeout_ms: 500,
        };
        let topic = TopicName::new(name).unwrap();
        self.hub.set_delivery_policy(&topic, policy).unwrap();
        let slow = TestConnection::register(&self.hub, "slow", 2);
        self.hub.subscribe(slow.id(), &topic, SubscribeOptions::default(), self.at(0)).unwrap();
        (topic, slow)
    }

    fn deadline_ms(&self) -> Option<u64> {
        self.session.poll_timeout().map(|t| (t - self.t0).as_millis() as u64)
    }
}

fn closed_for(outputs: &[Output]) -> Option<CloseReason> {
    outputs.iter().find_map(|o| match o {
        Output::Close { reason, .. } => Some(*reason),
        _ => None,
    })
}

#[test]
fn no_connect_within_the_auth_timeout_closes_at_the_deadline_and_not_before() {
    let mut r = rig(true, false);
    assert_eq!(r.deadline_ms(), Some(1000), "the first keep-alive comes before the auth deadline");
    r.tick(1999);
    assert_eq!(closed_for(&r.outputs()), None);
    r.tick(2000);
    assert_eq!(closed_for(&r.outputs()), Some(CloseReason::Unauthenticated));
    let c = r.control();
    assert_eq!(c[0]["code"], "unauthenticated");
    assert_eq!(c[0]["message"], "no_connect: no connect within 2000 ms");
    assert_eq!(r.session.waiting(), Waiting::Closed);
    assert_eq!(r.session.poll_timeout(), None);
}

#[test]
fn connect_answers_welcome_and_registers() {
    let mut r = rig(true, false);
    let w = r.connect(3600);
    assert_eq!(w["type"], "welcome");
    assert_eq!((w["id"].as_u64(), w["ping_interval_ms"].as_u64()), (Some(1), Some(1000)));
    assert_eq!(w["server_time_us"], T0_UNIX_US);
    assert!(r.session.is_registered());
    assert_eq!(r.hub.connection_stats().active_connections, 1);
    assert_eq!(r.session.waiting(), Waiting::Input);
}

#[test]
fn keep_alives_go_out_each_interval_and_silence_closes_at_the_idle_timeout() {
    let mut r = rig(true, false);
    r.connect(3600);
    for ms in [1000, 2000] {
        r.tick(ms);
        assert!(matches!(r.outputs()[..], [Output::KeepAlive]), "a ping at {ms} ms");
    }
    r.tick(2999);
    assert!(r.outputs().is_empty());
    r.tick(3000);
    assert_eq!(closed_for(&r.outputs()), Some(CloseReason::IdleTimeout));
}

#[test]
fn any_input_keeps_the_connection_alive() {
    let mut r = rig(true, false);
    r.connect(3600);
    r.session.handle_input(Input::Activity, r.at(2500));
    r.tick(3000);
    r.tick(5499);
    assert_eq!(closed_for(&r.outputs()), None);
    r.tick(5500);
    assert_eq!(closed_for(&r.outputs()), Some(CloseReason::IdleTimeout));
}

#[test]
fn a_transport_without_keep_alive_has_no_idle_timeout() {
    let mut r = rig(false, false);
    r.connect(3600);
    assert_eq!(r.deadline_ms(), Some(5000), "only the time sync is due");
    r.tick(60_000);
    let out = r.outputs();
    assert!(!out.iter().any(|o| matches!(o, Output::KeepAlive | Output::Close { .. })), "{out:?}");
}

#[test]
fn the_token_is_warned_before_expiry_closed_at_it_and_refresh_moves_it() {
    let mut r = rig(false, false);
    r.connect(100); // expires at t0 + 100 s; warned 60 s before
    assert_eq!(r.deadline_ms(), Some(5000));
    r.tick(39_999);
    let c = r.control();
    assert!(!c.iter().any(|m| m["type"] == "token_expiring"), "{c:?}");
    r.tick(40_000);
    let c = r.control();
    let warn = c.iter().find(|m| m["type"] == "token_expiring").expect("warned");
    assert_eq!(warn["in_ms"], 60_000);
    // Refreshed with a token valid for another 100 s from 50 s on.
    let fresh = r.token("alice", 100, 50_000);
    r.text(json!({"op": "refresh", "id": 2, "token": fresh}), 50_000);
    assert_eq!(r.control().iter().find(|m| m["id"] == 2).unwrap()["type"], "refreshed");
    r.tick(100_000);
    assert_eq!(closed_for(&r.outputs()), None, "the old expiry passes");
    r.tick(150_000);
    assert_eq!(closed_for(&r.outputs()), Some(CloseReason::TokenExpired));
    let c = r.control();
    assert!(c.iter().any(|m| m["type"] == "token_expiring"), "warned again before the bye: {c:?}");
}

#[test]
fn a_late_tick_still_warns_before_closing_an_expired_token() {
    let mut r = rig(false, false);
    r.connect(100);
    r.tick(200_000);
    assert_eq!(closed_for(&r.outputs()), Some(CloseReason::TokenExpired));
    let c = r.control();
    assert_eq!(c.last().unwrap()["type"], "token_expiring", "{c:?}");
    assert_eq!(c.last().unwrap()["in_ms"], 0);
}

#[test]
fn server_time_sync_asks_each_interval_and_records_the_answer() {
    let mut r = rig(false, false);
    r.connect(3600);
    r.tick(4999);
    assert!(r.control().is_empty());
    r.tick(5000);
    let c = r.control();
    assert_eq!(c[0]["type"], "time_sync_request");
    let (seq, t1) = (c[0]["seq"].clone(), c[0]["t1"].as_i64().unwrap());
    assert_eq!(t1, T0_UNIX_US + 5_000_000);
    // The client's clock is 1 s ahead; 20 ms each way.
    let t2 = t1 + 1_020_000;
    let t3 = t2 + 1000;
    r.text(json!({"op": "time_sync_reply", "seq": seq, "t1": t1, "t2": t2, "t3": t3}), 5041);
    assert_eq!(r.conn.core().time_sync(), Some((40_000, 1_000_000)));
    assert_eq!(r.deadline_ms(), Some(10_000));
}

/// Answers the time sync request due at `ms` as a client whose clock is `offset_ms` ahead
/// (20 ms each way).
fn answer_sync(r: &mut Rig, ms: u64, offset_ms: i64) -> Vec<Output> {
    r.tick(ms);
    let c = r.control();
    assert_eq!(c[0]["type"], "time_sync_request", "{c:?}");
    let (seq, t1) = (c[0]["seq"].clone(), c[0]["t1"].as_i64().unwrap());
    let t2 = t1 + 20_000 + offset_ms * 1000;
    r.text(json!({"op": "time_sync_reply", "seq": seq, "t1": t1, "t2": t2, "t3": t2}), ms + 40);
    r.outputs()
}

#[test]
fn a_clock_offset_averaging_over_the_limit_in_the_window_closes_the_connection_as_a_violation() {
    let mut r = rig(false, false);
    r.session.p.config.max_clock_offset_ms = 50;
    r.session.p.config.clock_offset_window_ms = 12_000;
    r.connect(3600);
    // 30 ms, then 90 ms: the average (60 ms) is over 50.
    assert_eq!(closed_for(&answer_sync(&mut r, 5000, 30)), None);
    let out = answer_sync(&mut r, 10_000, -90);
    assert_eq!(closed_for(&out), Some(CloseReason::Violation), "{out:?}");
    assert_eq!(r.conn.state(), crate::hub::ConnState::MonitoredViolation);
    match out.iter().find(|o| matches!(o, Output::Close { .. })) {
        Some(Output::Close { message, .. }) => {
            assert!(message.contains("60.0 ms") && message.contains("max_clock_offset_ms = 50"), "{message}")
        }
        _ => unreachable!(),
    }
}

#[test]
fn old_clock_offsets_leave_the_average_and_zero_turns_the_check_off() {
    let mut r = rig(false, false);
    r.session.p.config.max_clock_offset_ms = 50;
    r.session.p.config.clock_offset_window_ms = 4_000;
    r.connect(3600);
    // 45 ms every 5 s: each earlier sample has left the 4 s window, so each stands alone.
    assert_eq!(closed_for(&answer_sync(&mut r, 5000, 45)), None);
    assert_eq!(closed_for(&answer_sync(&mut r, 10_000, 45)), None);
    assert_eq!(closed_for(&answer_sync(&mut r, 15_000, 55)), Some(CloseReason::Violation), "55 alone is over 50");

    let mut off = rig(false, false);
    off.connect(3600);
    assert_eq!(closed_for(&answer_sync(&mut off, 5000, 10_000)), None, "not enforced at 0");
}

#[test]
fn a_publish_held_by_a_full_subscriber_waits_then_fails_at_the_policy_deadline() {
    let mut r = rig(false, false);
    r.connect(3600);
    let (topic, slow) = r.full_after_one("bp");
    r.text(json!({"op": "publish", "id": 5, "topic": "bp", "data": 1}), 10);
    assert_eq!(r.control()[0]["type"], "published");
    r.text(json!({"op": "publish", "id": 6, "topic": "bp", "data": 2}), 20);
    let out = r.outputs();
    assert!(matches!(&out[..], [Output::Command(Command::WaitForSpace(c))] if c.id() == slow.id()), "{out:?}");
    assert_eq!(r.session.waiting(), Waiting::Reply, "no new request is read meanwhile");
    assert_eq!(r.deadline_ms(), Some(520));
    // The subscriber reads one: the publish goes through.
    assert_eq!(slow.drain_offsets(), [1]);
    r.session.handle_reply(Reply::SpaceFreed, r.at(100));
    assert_eq!(r.control()[0]["offset"], 2);
    // Again full, and this time nobody reads.
    r.text(json!({"op": "publish", "id": 7, "topic": "bp", "data": 3}), 200);
    assert!(matches!(r.outputs()[..], [Output::Command(Command::WaitForSpace(_))]));
    r.tick(699);
    assert!(r.control().is_empty());
    r.tick(700);
    let e = &r.control()[0];
    assert_eq!(
        (e["id"].as_u64(), e["code"].as_str(), e["limit"].as_str()),
        (Some(7), Some("resource_exhausted"), Some("backpressure_timeout_ms"))
    );
    assert_eq!(r.session.waiting(), Waiting::Input);
    assert_eq!(r.hub.topic_info(&topic).unwrap().head, 3, "the failed publish took no offset");
}

#[test]
fn in_cluster_mode_a_subscribe_waits_for_its_topics_to_be_prepared() {
    let mut r = rig(false, true);
    r.connect(3600);
    r.text(json!({"op": "subscribe", "id": 3, "topic": "a/b", "offset": 4}), 10);
    let out = r.outputs();
    match &out[..] {
        [Output::Command(Command::Prepare { items, .. })] => {
            assert_eq!(items, &[(TopicName::new("a/b").unwrap(), Some(4), None)]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.session.waiting(), Waiting::Reply);
    r.session.handle_reply(Reply::Prepared(Err(SubscribeError::unavailable("redis is down"))), r.at(20));
    let e = &r.control()[0];
    assert_eq!((e["id"].as_u64(), e["code"].as_str()), (Some(3), Some("unavailable")));
    r.text(json!({"op": "subscribe", "id": 4, "topic": "a/b"}), 30);
    assert!(matches!(r.outputs()[..], [Output::Command(Command::Prepare { .. })]));
    r.session.handle_reply(Reply::Prepared(Ok(Box::new(()))), r.at(40));
    assert_eq!(r.control()[0]["type"], "subscribed");
    assert_eq!(r.hub.topics_of(r.conn.id()).len(), 1);
}

#[test]
fn in_cluster_mode_a_publish_is_checked_here_and_handed_to_the_broker() {
    let mut r = rig(false, true);
    r.connect(3600);
    r.text(json!({"op": "publish", "id": 8, "topic": "x", "data": {"v": 1}}), 10);
    match &r.outputs()[..] {
        [Output::Command(Command::Publish { id, topic, payload, flags, .. })] => {
            assert_eq!((*id, topic.as_str(), &payload[..], *flags), (Some(8), "x", &b"{\"v\":1}"[..], FLAG));
        }
        other => panic!("{other:?}"),
    }
    r.session.handle_reply(Reply::Enqueued(Ok(())), r.at(11));
    assert!(r.control().is_empty(), "the broker answers the client");
    r.text(json!({"op": "publish", "id": 9, "topic": "bad topic", "data": 1}), 12);
    assert_eq!(r.control()[0]["code"], "invalid_argument");
    assert!(r.outputs().is_empty(), "a refused publish never reaches the broker");
}

const FLAG: u8 = crate::protocol::frame::FLAG_JSON;

#[test]
fn replies_that_are_not_read_stop_the_reading_then_close_the_connection() {
    let mut r = rig(false, false);
    r.connect(3600);
    let high = r.hub.limits().queue.max_control / 2;
    for i in 0..high {
        r.text(json!({"op": "ping", "id": i}), 10);
    }
    assert_eq!(r.session.waiting(), Waiting::Backlog(high));
    assert_eq!(r.deadline_ms(), Some(3010), "the stall is timed from the reply that filled the lane");
    r.tick(3009);
    assert_eq!(closed_for(&r.outputs()), None);
    r.tick(3010);
    assert_eq!(closed_for(&r.outputs()), Some(CloseReason::SlowConsumer));
}

#[test]
fn waiting_for_a_reply_never_asks_for_a_tick_in_the_past_and_silence_is_not_held_against_it() {
    let mut r = rig(true, true);
    r.connect(3600);
    r.text(json!({"op": "subscribe", "id": 3, "topic": "a/b"}), 2500);
    assert!(matches!(r.outputs()[..], [Output::Command(Command::Prepare { .. })]));
    // The idle deadline (5.5 s) passes while the broker is slow: only keep-alives are due.
    for ms in [3000, 4000, 5000, 6000, 7000] {
        r.tick(ms);
        assert!(matches!(r.outputs()[..], [Output::KeepAlive]), "at {ms} ms");
        assert!(r.deadline_ms().unwrap() > ms, "the next deadline is ahead of {ms} ms");
    }
    r.session.handle_reply(Reply::Prepared(Ok(Box::new(()))), r.at(7100));
    let c = r.control();
    assert!(c.iter().any(|m| m["type"] == "subscribed" && m["id"] == 3), "{c:?}");
    assert_eq!(closed_for(&r.outputs()), None);
}

#[test]
fn a_violation_from_the_transport_is_answered_and_closes() {
    let mut r = rig(true, false);
    r.connect(3600);
    let v = Input::Violation {
        reason: CloseReason::MessageTooBig,
        code: ErrorCode::ResourceExhausted,
        message: "frame of 9 bytes exceeds the limit of 8".into(),
        limit: Some("max_message_size"),
    };
    r.session.handle_input(v, r.at(5));
    assert_eq!(closed_for(&r.outputs()), Some(CloseReason::MessageTooBig));
    assert_eq!(r.control()[0]["limit"], "max_message_size");
}

#[test]
fn a_bad_token_at_accept_closes_before_any_frame_and_shutdown_closes_with_shutdown() {
    let hub = Arc::new(ConnectionManager::new(HubConfig::default()).unwrap());
    let auth = Arc::new(SessionManager::new(&AuthConfig::default()).unwrap());
    let conn = TestConnection::unregistered(&hub, "x", 1);
    let now = Now { mono: Instant::now(), unix_us: T0_UNIX_US };
    let params = SessionParams {
        conn,
        hub: hub.clone(),
        auth,
        config: config(),
        expiry_warning_secs: 60,
        node_id: "n".into(),
        brokered: false,
        keepalive: true,
        accept_token: Some("garbage".into()),
    };
    let mut s = Session::new(params.clone(), now);
    assert!(matches!(s.poll_output(), Some(Output::Close { reason: CloseReason::Unauthenticated, .. })));
    assert_eq!(hub.counters().auth_failures()["malformed_token"], 1);
    let mut s = Session::new(SessionParams { accept_token: None, ..params }, now);
    s.handle_shutdown(now);
    assert!(matches!(s.poll_output(), Some(Output::Close { reason: CloseReason::Shutdown, .. })));
    assert!(s.poll_output().is_none());
}

#[test]
fn in_cluster_mode_a_connect_in_time_is_not_failed_by_a_slow_broker() {
    let mut r = rig(false, true);
    let token = r.token("alice", 3600, 0);
    let details = json!({"data_source": "car7", "session_key": "race1", "streams": ["engine"]});
    r.text(json!({"op": "connect", "id": 1, "token": token, "details": details}), 1900);
    assert!(matches!(r.outputs()[..], [Output::Command(Command::Prepare { .. })]));
    // The broker answers after the auth timeout (2 s): the connect came in time.
    r.tick(2500);
    assert_eq!(closed_for(&r.outputs()), None);
    r.session.handle_reply(Reply::Prepared(Ok(Box::new(()))), r.at(2600));
    let w = &r.control()[0];
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(w["subscriptions"].as_array().unwrap().len(), 2);
    assert_eq!(r.hub.counters().auth_failures()["no_connect"], 0);
}

#[test]
fn shutdown_answers_the_publish_waiting_for_room_and_refuses_every_frame_already_received() {
    let mut r = rig(true, false);
    r.connect(3600);
    let (topic, _slow) = r.full_after_one("bp");
    r.text(json!({"op": "publish", "id": 5, "topic": "bp", "data": 1}), 10);
    let published = r.control().remove(0);
    assert_eq!((published["type"].as_str(), published["offset"].as_u64()), (Some("published"), Some(1)));
    assert_eq!(published["epoch"], r.hub.topic_info(&topic).unwrap().epoch, "{published}");
    r.text(json!({"op": "publish", "id": 6, "topic": "bp", "data": 2}), 20);
    assert!(matches!(r.outputs()[..], [Output::Command(Command::WaitForSpace(_))]));

    r.session.handle_shutdown(r.at(30));
    let e = r.control().remove(0);
    assert_eq!(
        (e["id"].as_u64(), e["code"].as_str(), e["publish_seq"].as_u64()),
        (Some(6), Some("unavailable"), Some(2))
    );
    assert_eq!(r.session.waiting(), Waiting::Drain, "what has arrived is read before the bye");
    assert_eq!(r.session.poll_timeout(), None);
    // Frames the transport already holds: each request is refused, nothing is carried out.
    r.text(json!({"op": "publish", "id": 7, "topic": "bp", "data": 3}), 31);
    let frame = crate::protocol::frame::encode_publish("bp", 9, 0, b"raw");
    r.session.handle_input(Input::Binary(Bytes::from(frame)), r.at(32));
    r.text(json!({"op": "subscribe", "id": 10, "topic": "other"}), 33);
    r.text(json!({"op": "time_sync_reply", "seq": 1, "t1": 1, "t2": 2, "t3": 3}), 34);
    r.text(json!({"op": "publish", "topic": "bp"}), 35);
    let c = r.control();
    let got: Vec<_> = c
        .iter()
        .map(|m| (m["id"].as_u64(), m["code"].as_str(), m["publish_seq"].as_u64(), m["topic"].as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Some(7), Some("unavailable"), Some(3), Some("bp")),
            (Some(9), Some("unavailable"), Some(4), Some("bp")),
            (Some(10), Some("unavailable"), None, None),
            (None, Some("unavailable"), Some(5), Some("bp")),
        ],
        "{c:?}"
    );
    assert!(r.outputs().is_empty(), "no close before the drain ends");
    r.session.handle_drained(r.at(36));
    assert_eq!(closed_for(&r.outputs()), Some(CloseReason::Shutdown));
    assert_eq!(r.hub.topic_info(&topic).unwrap().head, 2, "nothing after the shutdown was published");
}

#[test]
fn in_cluster_mode_shutdown_closes_only_after_the_broker_answered_the_queued_publishes() {
    let mut r = rig(false, true);
    r.connect(3600);
    r.text(json!({"op": "publish", "id": 8, "topic": "x", "data": 1}), 10);
    assert!(matches!(r.outputs()[..], [Output::Command(Command::Publish { seq: 1, .. })]));
    r.session.handle_reply(Reply::Enqueued(Ok(())), r.at(11));
    r.session.handle_shutdown(r.at(12));
    assert_eq!(r.session.waiting(), Waiting::Drain);
    r.session.handle_drained(r.at(13));
    assert!(matches!(r.outputs()[..], [Output::Command(Command::Flush)]), "the broker's answers come first");
    assert_eq!(r.session.waiting(), Waiting::Reply);
    r.session.handle_reply(Reply::Flushed, r.at(14));
    assert_eq!(closed_for(&r.outputs()), Some(CloseReason::Shutdown));
}

#[test]
fn a_publish_enqueued_when_shutdown_comes_is_answered_unavailable_and_a_session_without_publishes_needs_no_flush() {
    let mut r = rig(false, true);
    r.connect(3600);
    r.text(json!({"op": "publish", "id": 8, "topic": "x", "data": 1}), 10);
    assert!(matches!(r.outputs()[..], [Output::Command(Command::Publish { .. })]));
    // The driver drops the unfinished enqueue: the job never reached the broker.
    r.session.handle_shutdown(r.at(11));
    let e = r.control().remove(0);
    assert_eq!(
        (e["id"].as_u64(), e["code"].as_str(), e["publish_seq"].as_u64()),
        (Some(8), Some("unavailable"), Some(1))
    );
    r.session.handle_drained(r.at(12));
    assert_eq!(closed_for(&r.outputs()), Some(CloseReason::Shutdown));
}

#[test]
fn errors_about_publishes_carry_their_sequence_number_even_without_a_request_id() {
    let mut r = rig(false, false);
    r.connect(3600);
    r.text(json!({"op": "publish", "topic": "bad topic", "data": 1}), 10);
    r.session.handle_input(Input::Binary(Bytes::from_static(b"\x02\x00")), r.at(11));
    r.text(json!({"op": "publish", "topic": 5}), 12);
    r.text(json!({"op": "publish", "topic": "ok", "data": 1}), 13);
    r.text(json!({"op": "publish", "topic": "ok", "data": 1, "data_b64": "AA=="}), 14);
    r.text(json!({"op": "ping", "id": 3}), 15);
    let c = r.control();
    let seqs: Vec<_> = c.iter().map(|m| (m["type"].as_str().unwrap(), m["publish_seq"].as_u64())).collect();
    assert_eq!(
        seqs,
        [("error", Some(1)), ("error", Some(2)), ("error", Some(3)), ("error", Some(5)), ("pong", None)],
        "{c:?}"
    );
}

/// A hub allowing 1000 payload bytes per second (burst: one second's worth), messages of at
/// most 600 bytes, and closing at the third violation.
fn byte_limited(brokered: bool) -> Rig {
    let mut hub_config = HubConfig::default();
    hub_config.limits.publish_bytes_per_second = 1000;
    hub_config.limits.max_message_size = 600;
    hub_config.limits.violations_to_monitor = 2;
    hub_config.limits.violations_to_close = 3;
    hub_config.limits.violations_window_ms = 600_000;
    let mut r = rig_with(false, brokered, hub_config);
    r.connect(3600);
    r
}

impl Rig {
    fn publish_bin(&mut self, id: u32, len: usize, ms: u64) {
        let frame = crate::protocol::frame::encode_publish("b/t", id, 0, &vec![7u8; len]);
        let now = self.at(ms);
        self.session.handle_input(Input::Binary(Bytes::from(frame)), now);
    }

    fn state(&self) -> ConnState {
        self.conn.state()
    }
}

#[test]
fn publishes_over_the_byte_rate_are_refused_rate_limited_until_the_bytes_refill() {
    let mut r = byte_limited(false);
    r.publish_bin(1, 600, 10);
    r.publish_bin(2, 400, 10);
    let c = r.control();
    assert_eq!((c[0]["type"].as_str(), c[1]["type"].as_str()), (Some("published"), Some("published")), "{c:?}");
    // The burst is spent: 300 bytes need 300 ms.
    r.publish_bin(3, 300, 10);
    let e = r.control().remove(0);
    assert_eq!(
        (e["id"].as_u64(), e["code"].as_str(), e["limit"].as_str(), e["topic"].as_str(), e["publish_seq"].as_u64()),
        (Some(3), Some("rate_limited"), Some("publish_bytes_per_second"), Some("b/t"), Some(3)),
        "{e}"
    );
    assert_eq!(e["retry_after_ms"], 300, "{e}");
    assert!(e["message"].as_str().unwrap().contains("at most 1000 bytes of payload per second"), "{e}");
    assert_eq!(r.state(), ConnState::Active, "one violation is only counted");
    // A JSON publish counts its data's JSON text: `"…"` of 98 characters is 100 bytes.
    r.text(json!({"op": "publish", "id": 4, "topic": "b/t", "data": "x".repeat(98)}), 109);
    assert_eq!(r.control()[0]["retry_after_ms"], 1, "100 bytes at 109 ms: one more ms");
    assert_eq!(r.state(), ConnState::MonitoredViolation, "two violations");
    r.text(json!({"op": "publish", "id": 5, "topic": "b/t", "data": "x".repeat(98)}), 110);
    assert_eq!(r.control()[0]["type"], "published", "the refusals took nothing");
    // Time passes: the refused message goes through, an empty one always does.
    r.publish_bin(6, 300, 410);
    r.publish_bin(7, 0, 410);
    let c = r.control();
    assert_eq!((c[0]["id"].as_u64(), c[0]["type"].as_str()), (Some(6), Some("published")), "{c:?}");
    assert_eq!((c[1]["id"].as_u64(), c[1]["type"].as_str()), (Some(7), Some("published")), "{c:?}");
    assert!(r.outputs().is_empty(), "not closed");
    assert_eq!(r.hub.connection_stats().violations, 2);
}

#[test]
fn the_third_byte_rate_violation_closes_the_connection_and_an_oversized_message_is_not_a_byte_rate_matter() {
    let mut r = byte_limited(false);
    r.publish_bin(1, 700, 0);
    assert_eq!(r.control()[0]["limit"], "max_message_size", "checked before the byte rate");
    r.publish_bin(2, 600, 0);
    r.publish_bin(3, 500, 0);
    let c = r.control();
    assert_eq!(c[0]["type"], "published");
    assert_eq!(c[1]["limit"], "publish_bytes_per_second", "{c:?}");
    assert_eq!(r.state(), ConnState::MonitoredViolation);
    r.publish_bin(4, 500, 50);
    assert_eq!(r.conn.core().outbound.closing().map(|c| c.reason), Some(CloseReason::Violation));
    let c = r.control();
    let seen: Vec<_> = c.iter().map(|m| (m["type"].as_str().unwrap(), m["id"].as_u64())).collect();
    assert_eq!(seen, [("error", Some(4)), ("bye", None)], "the refusal is answered before the bye: {c:?}");
    assert_eq!(c[1]["reason"], "violation");
    assert_eq!(r.hub.connection_stats().violations, 3);
}

#[test]
fn in_cluster_mode_the_byte_rate_is_checked_before_the_broker_and_zero_turns_it_off() {
    let mut r = byte_limited(true);
    r.publish_bin(1, 600, 0);
    assert!(matches!(r.outputs()[..], [Output::Command(Command::Publish { .. })]));
    r.session.handle_reply(Reply::Enqueued(Ok(())), r.at(1));
    r.publish_bin(2, 600, 2);
    assert_eq!(r.control()[0]["limit"], "publish_bytes_per_second");
    assert!(r.outputs().is_empty(), "a refused publish never reaches the broker");

    let mut off = rig(false, false);
    off.connect(3600);
    for i in 1..=5 {
        off.publish_bin(i, 1 << 20, 0);
    }
    assert!(off.control().iter().all(|m| m["type"] == "published"), "no byte rate by default");
}
