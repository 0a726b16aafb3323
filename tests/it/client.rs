//! The Rust client against a real hub, through a fault-injecting TCP proxy: a `reliable` topic
//! arrives exactly once and in order while the connection is cut again and again; publishes
//! answer offset and epoch; a refused token is a typed, permanent error (one fresh token is
//! tried, no reconnect loop); a dead first endpoint fails over to the second; an operator's kick
//! ends the client for good; a black-holed connection is found by the keep-alive; a slow link
//! still delivers, and a request slower than its timeout is a typed error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use fanhub::client::{CircuitState, Client, ClientError, ClientOptions, Event, From, Status};
use fanhub::hub::TopicName;

fn options(hub: &Hub, endpoints: &[String]) -> ClientOptions {
    let mut o = ClientOptions::new(endpoints.iter().cloned()).with_token(hub.token("client"));
    o.backoff.initial = Duration::from_millis(20);
    o.backoff.max = Duration::from_millis(200);
    o
}

#[tokio::test]
async fn a_reliable_topic_arrives_exactly_once_and_in_order_through_repeated_connection_kills() {
    let hub = spawn_hub(resumable_config()).await;
    let proxy = Proxy::start(hub.addr).await;
    let client = Client::connect(options(&hub, &[proxy.url()])).await.expect("connect");
    let mut sub = client.subscribe("rel/t", From::Live).await.expect("subscribe");
    let topic = TopicName::new("rel/t").unwrap();
    const CUTS: u64 = 10;
    const CHUNK: u64 = 100;
    const TOTAL: u64 = CUTS * 2 * CHUNK;
    let mut got: Vec<u64> = Vec::new();
    let mut replay_delays = Vec::new();
    let publish = |n: u64| {
        for _ in 0..n {
            hub.manager.route_data(&topic, b"m", 0, now()).unwrap();
        }
    };
    for round in 0..CUTS {
        // The client is connected (again), so the cut below hits a live connection.
        let deadline = Instant::now() + TIMEOUT;
        while proxy.accepted() as u64 <= round {
            assert!(Instant::now() < deadline, "the client never came back after cut {round}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A chunk, cut while it is being read, and another published while the client is away.
        publish(CHUNK);
        while (got.len() as u64) < round * 2 * CHUNK + CHUNK / 2 {
            got.push(next_message(&mut sub).await);
        }
        proxy.cut();
        let cut_at = Instant::now();
        publish(CHUNK);
        let first_after_cut = (round * 2 + 1) * CHUNK + 1;
        while !got.contains(&first_after_cut) {
            got.push(next_message(&mut sub).await);
        }
        replay_delays.push(cut_at.elapsed());
        while (got.len() as u64) < (round + 1) * 2 * CHUNK {
            got.push(next_message(&mut sub).await);
        }
    }
    assert_eq!(got, (1..=TOTAL).collect::<Vec<_>>(), "every message once, in order");
    assert_eq!(proxy.accepted() as u64, CUTS + 1, "one connection per cut, no storm");
    replay_delays.sort();
    // Nearest rank: with fewer than 100 cuts, p99 is the slowest.
    let rank = |p: f64| replay_delays[((p * replay_delays.len() as f64).ceil() as usize).max(1) - 1];
    println!("replay delay after a cut over {CUTS} cuts: p50 {:?}, p99 {:?}", rank(0.50), rank(0.99));
    client.close().await;
    hub.shutdown().await;
}

async fn next_message(sub: &mut fanhub::client::Subscription) -> u64 {
    match tokio::time::timeout(TIMEOUT, sub.next()).await.expect("no message in time") {
        Some(Event::Message(m)) => m.offset,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test]
async fn publishes_answer_offset_and_epoch_and_subscribers_get_json_and_binary() {
    let hub = spawn_hub(resumable_config()).await;
    let client = Client::connect(options(&hub, &[hub.ws_url()])).await.unwrap();
    let mut sub = client.subscribe("rel/p", From::Live).await.unwrap();
    let a = client.publish_json("rel/p", &serde_json::json!({"v": 1})).await.unwrap();
    let b = client.publish("rel/p", &b"raw"[..]).await.unwrap();
    assert_eq!((a.offset, b.offset, a.epoch), (1, 2, sub.info.epoch));
    let Some(Event::Message(m)) = sub.next().await else { panic!() };
    assert!(m.is_json() && &m.payload[..] == br#"{"v":1}"#);
    let Some(Event::Message(m)) = sub.next().await else { panic!() };
    assert!(!m.is_json() && &m.payload[..] == b"raw");
    // Refusals are typed.
    let e = client.publish("bad topic", &b"x"[..]).await.unwrap_err();
    assert!(matches!(e, ClientError::Refused { code: fanhub::protocol::ErrorCode::InvalidArgument, .. }), "{e:?}");
    client.close().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_refused_token_is_a_permanent_typed_error_after_one_fresh_token() {
    let hub = spawn_hub(test_config()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let opts = ClientOptions::new([hub.ws_url()]).with_token("not-a-jwt").with_token_provider(move || {
        c.fetch_add(1, Ordering::SeqCst);
        async { Ok("still-not-a-jwt".to_owned()) }
    });
    let e = Client::connect(opts).await.unwrap_err();
    assert!(matches!(e, ClientError::Unauthenticated(_)), "{e:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the provider is asked once, then the client gives up");
    // Bad options never reach the network.
    let e = Client::connect(ClientOptions::new(["http://x"]).with_token("t")).await.unwrap_err();
    assert!(matches!(e, ClientError::InvalidOptions(_)), "{e:?}");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_dead_first_endpoint_fails_over_to_the_second() {
    let hub = spawn_hub(test_config()).await;
    let dead = Proxy::start(hub.addr).await;
    dead.refuse(true);
    let client = Client::connect(options(&hub, &[dead.url(), hub.ws_url()])).await.expect("the second endpoint");
    let mut sub = client.subscribe("fo/t", From::Live).await.unwrap();
    client.publish("fo/t", &b"x"[..]).await.unwrap();
    assert!(matches!(sub.next().await, Some(Event::Message(_))));
    client.close().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_kick_ends_the_client_with_a_typed_error_and_no_reconnect() {
    let hub = spawn_hub(test_config()).await;
    let client = Client::connect(options(&hub, &[hub.ws_url()])).await.unwrap();
    let mut status = client.status();
    let mut sub = client.subscribe("k/t", From::Live).await.unwrap();
    let rows = admin(&hub, "GET", "/v1/admin/connections", "").await.json();
    let id = rows["items"][0]["id"].as_u64().unwrap();
    assert_eq!(admin(&hub, "DELETE", &format!("/v1/admin/connections/{id}"), "").await.status, 200);
    assert_eq!(tokio::time::timeout(TIMEOUT, sub.next()).await.unwrap(), None, "the subscription ends");
    let closed = loop {
        match tokio::time::timeout(TIMEOUT, status.recv()).await.unwrap().unwrap() {
            Status::Closed { error } => break error,
            Status::Connecting { endpoint } => panic!("reconnected to {endpoint} after a kick"),
            _ => {}
        }
    };
    assert!(closed.unwrap().contains("Kicked"));
    assert!(matches!(client.publish("k/t", &b"x"[..]).await, Err(ClientError::Closed)));
    hub.shutdown().await;
}

#[tokio::test]
async fn the_token_provider_refreshes_the_token_when_the_hub_warns_of_its_expiry() {
    let mut config = test_config();
    // Every token is inside the warning window at once: the hub warns right after welcome.
    config.auth.expiry_warning_secs = 3600;
    let hub = spawn_hub(config).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let (c, token) = (calls.clone(), hub.token("fresh"));
    let opts = ClientOptions::new([hub.ws_url()]).with_token(hub.token("fresh")).with_token_provider(move || {
        c.fetch_add(1, Ordering::SeqCst);
        let t = token.clone();
        async move { Ok(t) }
    });
    let client = Client::connect(opts).await.unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the provider was never asked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Still connected: a request round-trips.
    client.publish("tok/t", &b"x"[..]).await.unwrap();
    client.close().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_drain_moves_the_client_to_the_node_the_hub_advises() {
    let b = spawn_hub(resumable_config()).await;
    let mut config = resumable_config();
    config.server.reconnect_urls = vec![b.ws_url()];
    let a = spawn_hub(config).await;
    let client = Client::connect(options(&a, &[a.ws_url()])).await.unwrap();
    let mut status = client.status();
    client.subscribe("rel/moving", From::Live).await.unwrap();
    assert_eq!(admin(&a, "POST", "/v1/admin/drain", "").await.status, 200);
    let moved_to = loop {
        match tokio::time::timeout(TIMEOUT, status.recv()).await.unwrap().unwrap() {
            Status::Connected { endpoint, .. } => break endpoint,
            Status::Closed { error } => panic!("closed: {error:?}"),
            _ => {}
        }
    };
    assert_eq!(moved_to, b.ws_url(), "the advised node");
    client.close().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn when_its_cluster_node_shuts_down_the_client_resumes_on_another_without_loss() {
    let redis = RedisServer::start().await;
    let (mut a, b, c) = (
        crate::cluster::node(&redis, "A").await,
        crate::cluster::node(&redis, "B").await,
        crate::cluster::node(&redis, "C").await,
    );
    // The nodes know each other (the shutdown's reconnect advice lists the live ones).
    let deadline = Instant::now() + TIMEOUT;
    while admin(&a, "GET", "/v1/admin/cluster", "").await.json()["nodes"].as_array().map_or(0, Vec::len) < 3 {
        assert!(Instant::now() < deadline, "the nodes never saw each other");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let endpoints = [a.ws_url(), b.ws_url(), c.ws_url()];
    let client = Client::connect(options(&a, &endpoints)).await.unwrap();
    let mut sub = client.subscribe("rel/failover", From::Live).await.unwrap();
    let mut publisher = c.connect("pub").await;
    for i in 0..50 {
        publisher.publish_json("rel/failover", serde_json::json!(i)).await;
    }
    let mut got = Vec::new();
    while got.len() < 25 {
        got.push(next_message(&mut sub).await);
    }
    a.begin_shutdown();
    for i in 50..100 {
        publisher.publish_json("rel/failover", serde_json::json!(i)).await;
    }
    while got.len() < 100 {
        got.push(next_message(&mut sub).await);
    }
    assert_eq!(got, (1..=100).collect::<Vec<_>>(), "every message once, in order, across the move");
    client.close().await;
    a.wait_stopped().await;
    b.shutdown().await;
    c.shutdown().await;
}

#[tokio::test]
async fn health_reports_the_endpoint_its_answer_time_version_and_circuit() {
    let hub = spawn_hub(test_config()).await;
    let dead = Proxy::start(hub.addr).await;
    dead.refuse(true);
    let client = Client::connect(options(&hub, &[dead.url(), hub.ws_url()])).await.unwrap();
    let h = client.health().await.unwrap();
    assert_eq!(h.endpoint, hub.ws_url(), "the endpoint in use");
    assert!(h.healthy && h.response_time.is_some(), "{h:?}");
    assert_eq!(h.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(h.circuit, fanhub::client::CircuitState::Closed);
    assert!(h.last_error.is_some(), "the refused first endpoint is remembered: {h:?}");
    client.close().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_publisher_pool_spreads_publishes_over_its_connections_and_keeps_each_topics_order() {
    let hub = spawn_hub(resumable_config()).await;
    let pool =
        fanhub::client::PublisherPool::connect(options(&hub, &[hub.ws_url()]).with_client_id("svc"), 4).await.unwrap();
    assert_eq!(hub.manager.connection_stats().active_connections, 4, "client ids made distinct");
    let reader = Client::connect(options(&hub, &[hub.ws_url()])).await.unwrap();
    let topics: Vec<String> = (0..8).map(|i| format!("rel/pool/{i}")).collect();
    let mut subs = Vec::new();
    for t in &topics {
        subs.push(reader.subscribe(t, From::Live).await.unwrap());
    }
    // Each topic pipelines bursts of 10 publishes (all made before any answer), all topics at
    // once: a topic's burst follows its publishes in flight, so its order holds.
    let tasks: Vec<_> = topics
        .iter()
        .map(|t| {
            let (pool, t) = (pool.clone(), t.clone());
            tokio::spawn(async move {
                for burst in 0..5u8 {
                    let sends = (0..10u8).map(|i| pool.publish(&t, vec![burst * 10 + i]));
                    for r in futures_util::future::join_all(sends).await {
                        r.unwrap();
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for sub in &mut subs {
        let mut payloads = Vec::new();
        while payloads.len() < 50 {
            match tokio::time::timeout(TIMEOUT, sub.next()).await.unwrap() {
                Some(Event::Message(m)) => payloads.push(m.payload[0]),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(payloads, (0..50).collect::<Vec<u8>>(), "one topic's publishes keep their order");
    }
    let sent = pool.sent();
    assert_eq!(sent.iter().sum::<u64>(), 400);
    assert!(sent.iter().filter(|&&n| n > 0).count() > 1, "the publishes spread over the connections: {sent:?}");
    pool.close().await;
    reader.close().await;
    hub.shutdown().await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn when_its_cluster_node_is_killed_the_client_resumes_on_another_exactly_once() {
    const N: u64 = 300;
    let redis = RedisServer::start().await;
    let a = crate::cluster::node(&redis, "A").await;
    let mut b = crate::cluster::node_process(&redis, "B").await;
    let c = crate::cluster::node(&redis, "C").await;
    // B first: the client lands there, and B dies without a word (SIGKILL).
    let endpoints = [format!("ws://{}/ws", b.addr), a.ws_url(), c.ws_url()];
    let client = Client::connect(options(&a, &endpoints)).await.unwrap();
    let mut sub = client.subscribe("rel/killed", From::Live).await.unwrap();
    let mut publisher = a.connect("publisher").await;
    let publishing = tokio::spawn(async move {
        for i in 0..N {
            publisher.publish_json("rel/killed", serde_json::json!(i)).await;
            if i % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let mut got = Vec::new();
    while got.len() < 100 {
        got.push(next_message(&mut sub).await);
    }
    b.child.start_kill().unwrap();
    b.child.wait().await.unwrap();
    while (got.len() as u64) < N {
        got.push(next_message(&mut sub).await);
    }
    assert_eq!(got, (1..=N).collect::<Vec<_>>(), "every message once, in order, across the kill");
    tokio::time::timeout(TIMEOUT, publishing).await.unwrap().unwrap();
    client.close().await;
    a.shutdown().await;
    c.shutdown().await;
}

#[tokio::test]
async fn after_a_hub_restart_the_client_resumes_and_reports_the_lost_history_as_a_gap() {
    let first = spawn_hub(resumable_config()).await;
    let proxy = Proxy::start(first.addr).await;
    let mut opts = options(&first, &[proxy.url()]);
    opts.breaker.min_throughput = 1000; // this test is about the restart, not the breaker
    let client = Client::connect(opts).await.unwrap();
    let mut sub = client.subscribe("rel/restart", From::Live).await.unwrap();
    let old_epoch = sub.info.epoch;
    for _ in 0..5 {
        client.publish("rel/restart", &b"before"[..]).await.unwrap();
    }
    for o in 1..=5 {
        assert_eq!(next_message(&mut sub).await, o);
    }
    // The hub restarts (same address, same keys): its in-memory history is gone.
    first.shutdown().await;
    let second = spawn_hub(resumable_config()).await;
    proxy.set_upstream(second.addr);
    let gap = match tokio::time::timeout(TIMEOUT, sub.next()).await.unwrap() {
        Some(Event::Gap(g)) => g,
        other => panic!("expected the lost history as a gap, got {other:?}"),
    };
    assert_eq!((gap.reason, gap.from, gap.to), (fanhub::client::GapReason::EpochChanged, 6, None));
    let p = client.publish("rel/restart", &b"after"[..]).await.unwrap();
    assert_ne!(p.epoch, old_epoch);
    assert_eq!(next_message(&mut sub).await, 1, "the new history from its start");
    client.close().await;
    second.shutdown().await;
}

#[tokio::test]
async fn a_black_holed_connection_is_found_by_the_keepalive_and_the_client_resumes_elsewhere_without_loss() {
    let hub = spawn_hub(resumable_config()).await;
    let proxy = Proxy::start(hub.addr).await;
    let mut opts = options(&hub, &[proxy.url(), hub.ws_url()]);
    opts.keepalive_interval = Duration::from_millis(200);
    opts.keepalive_timeout = Duration::from_millis(300);
    opts.connect_timeout = Duration::from_millis(500);
    let client = Client::connect(opts).await.expect("connect through the proxy");
    let mut status = client.status();
    let mut sub = client.subscribe("rel/t", From::Oldest).await.unwrap();
    let topic = TopicName::new("rel/t").unwrap();
    for _ in 0..50 {
        hub.manager.route_data(&topic, b"m", 0, now()).unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 50 {
        got.push(next_message(&mut sub).await);
    }
    // Bytes now vanish both ways; the sockets stay open (no FIN, no RST).
    proxy.blackhole(true);
    for _ in 0..50 {
        hub.manager.route_data(&topic, b"m", 0, now()).unwrap();
    }
    // The black-holed endpoint times out (keep-alive, then connect); the next one takes over.
    loop {
        match tokio::time::timeout(TIMEOUT * 3, status.recv()).await.expect("no failover in time").unwrap() {
            Status::Connected { endpoint, .. } if endpoint == hub.ws_url() => break,
            _ => continue,
        }
    }
    while got.len() < 100 {
        got.push(next_message(&mut sub).await);
    }
    assert_eq!(got, (1..=100).collect::<Vec<_>>(), "every message once, in order");
    let h = client.health().await.unwrap();
    assert!(h.healthy, "{h:?}");
    client.close().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_slow_link_still_delivers_everything_and_a_request_slower_than_its_timeout_is_a_typed_error() {
    let hub = spawn_hub(resumable_config()).await;
    let proxy = Proxy::start(hub.addr).await;
    let mut opts = options(&hub, &[proxy.url()]);
    opts.request_timeout = Duration::from_millis(1000);
    let client = Client::connect(opts).await.expect("connect");
    let mut sub = client.subscribe("rel/t", From::Oldest).await.unwrap();
    proxy.delay(Duration::from_millis(20));
    for i in 1..=20u64 {
        let p = client.publish("rel/t", format!("m{i}")).await.expect("published within the timeout");
        assert_eq!(p.offset, i);
    }
    for i in 1..=20u64 {
        assert_eq!(next_message(&mut sub).await, i);
    }
    // A round trip now takes longer than the request timeout.
    proxy.delay(Duration::from_millis(1500));
    match client.publish("rel/t", "late").await {
        Err(ClientError::Timeout(t)) => assert_eq!(t, Duration::from_millis(1000)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    proxy.delay(Duration::ZERO);
    client.close().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn rate_limited_publishes_are_sent_again_after_the_advised_wait_and_all_land_once() {
    let mut config = resumable_config();
    config.limits.publish_rate_per_second = 100;
    config.limits.publish_burst = 5;
    // This test is about the client's retries, not the hub's enforcement of repeat offenders.
    config.limits.violations_to_monitor = 10_000;
    config.limits.violations_to_close = 10_000;
    let hub = spawn_hub(config).await;
    let client = Client::connect(options(&hub, &[hub.ws_url()])).await.unwrap();
    let mut sub = client.subscribe("rel/rate", From::Live).await.unwrap();
    // 30 at once: the burst passes, the rest are refused with `retry_after_ms` and sent again.
    let answers = futures_util::future::join_all((0..30).map(|i| client.publish("rel/rate", format!("m{i}")))).await;
    let mut offsets: Vec<u64> = answers.into_iter().map(|a| a.expect("published after waiting").offset).collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (1..=30).collect::<Vec<_>>(), "each publish landed exactly once");
    let mut got = Vec::new();
    while got.len() < 30 {
        got.push(next_message(&mut sub).await);
    }
    assert_eq!(got, (1..=30).collect::<Vec<_>>());
    assert!(hub.manager.connection_stats().violations > 0, "some publishes were refused on the way");
    client.close().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn an_endpoints_circuit_opens_after_its_failures_half_opens_after_the_break_and_closes_on_success() {
    let hub = spawn_hub(resumable_config()).await;
    let (a, b) = (Proxy::start(hub.addr).await, Proxy::start(hub.addr).await);
    a.refuse(true);
    let mut opts = options(&hub, &[a.url(), b.url()]);
    // One failure opens a circuit (for 200 ms); so a, refused at connect, is open.
    opts.breaker.min_throughput = 1;
    opts.breaker.failure_ratio = 0.5;
    opts.breaker.break_duration = Duration::from_millis(200);
    opts.initial_attempts = 10;
    let client = Client::connect(opts).await.expect("b takes over from the refusing a");
    let mut status = client.status();
    assert_eq!(client.health().await.unwrap().endpoint, b.url());
    // a comes back, b goes away: the client must return to a through its half-open probe.
    a.refuse(false);
    b.refuse(true);
    b.cut();
    let mut seen = Vec::new();
    loop {
        let s = tokio::time::timeout(TIMEOUT * 3, status.recv()).await.expect("no status in time").unwrap();
        let done = matches!(&s, Status::Connected { endpoint, .. } if *endpoint == a.url());
        seen.push(s);
        if done {
            break;
        }
    }
    let a_circuit: Vec<_> = seen
        .iter()
        .filter_map(|s| match s {
            Status::Circuit { endpoint, state } if *endpoint == a.url() => Some(*state),
            _ => None,
        })
        .collect();
    assert_eq!(a_circuit, [CircuitState::HalfOpen, CircuitState::Closed], "a was probed, then closed: {seen:?}");
    assert!(seen.contains(&Status::Circuit { endpoint: b.url(), state: CircuitState::Open }), "{seen:?}");
    assert!(seen.contains(&Status::FailedOver { from: b.url(), to: a.url() }), "{seen:?}");
    let h = client.health().await.unwrap();
    assert_eq!((h.endpoint, h.circuit), (a.url(), CircuitState::Closed));
    client.close().await;
    hub.shutdown().await;
}
