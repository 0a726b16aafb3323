//! Admin topic endpoints: listing and one topic's facts (percent-encoded names), reading and
//! changing the delivery policy live — the change takes effect on traffic already flowing —
//! and `400 invalid_argument` naming the field for invalid policies; a run-time policy applies to
//! a topic created later, and a reset restores the declared one.

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn topics_are_listed_with_offsets_subscribers_and_policy() {
    let hub = spawn_hub(test_config()).await;
    let mut sub = hub.connect("s").await;
    let mut publ = hub.connect("p").await;
    sub.subscribe("video/cam1").await;
    for i in 0..4 {
        publ.publish_json("video/cam1", json!(i)).await;
    }
    sub.records(4).await;
    let list = admin(&hub, "GET", "/v1/admin/topics", "").await;
    assert_eq!(list.status, 200, "{}", list.body);
    let list = list.json();
    let t = list["items"].as_array().unwrap().iter().find(|t| t["name"] == "video/cam1").expect("listed").clone();
    assert_eq!(t["head"], 5, "{t}");
    assert_eq!(t["subscribers"], 1);
    assert_eq!(t["published"], 4);
    assert_eq!(t["delivered"], 4);
    assert!(t["epoch"].as_u64().unwrap() > 0);
    assert_eq!(t["policy"]["kind"], "best_effort");
    assert!(t["rates"]["publish_per_sec"].is_number(), "{t}");

    let one = admin(&hub, "GET", "/v1/admin/topics/video%2Fcam1", "").await;
    assert_eq!(one.status, 200, "{}", one.body);
    let one = one.json();
    assert_eq!(one["name"], "video/cam1");
    assert_eq!(one["history_messages"], 4);
    assert_eq!(one["subscriber_ids"], json!([sub.welcome["conn_id"]]));

    let missing = admin(&hub, "GET", "/v1/admin/topics/nobody%2Fhere", "").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["code"], "not_found");
    let invalid = admin(&hub, "GET", "/v1/admin/topics/a%2F%2Fb", "").await;
    assert_eq!(invalid.status, 400);
    assert_eq!(invalid.json()["code"], "invalid_argument");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_policy_change_takes_effect_on_live_traffic() {
    let hub = spawn_hub_manual(test_config()).await;
    let mut sub = hub.connect("s").await;
    sub.subscribe("tele/x").await;
    let got = admin(&hub, "GET", "/v1/admin/topics/tele%2Fx/policy", "").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json()["kind"], "best_effort");

    // Before: every message arrives.
    let publish = |n: u64| {
        let hub_addr = hub.addr;
        async move {
            let body = json!({"topic": "tele/x", "data": n}).to_string();
            let r = http(hub_addr, "POST", "/v1/publish", &[("X-Api-Key", API_KEY)], &body).await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()["offset"].as_u64().unwrap()
        }
    };
    for n in 0..5 {
        publish(n).await;
    }
    assert_eq!(sub.records(5).await.len(), 5);

    // Rate-limit to 1 message per second with newest-wins coalescing.
    let put = admin(&hub, "PUT", "/v1/admin/topics/tele%2Fx/policy", r#"{"kind":"rate_limited","per_second":1}"#).await;
    assert_eq!(put.status, 200, "{}", put.body);
    let now = admin(&hub, "GET", "/v1/admin/topics/tele%2Fx/policy", "").await.json();
    assert_eq!(now["kind"], "rate_limited");
    assert_eq!(now["per_second"], 1);
    let mut last = 0;
    for n in 0..40 {
        last = publish(100 + n).await;
    }
    // The hub's clock has not moved since the burst: a second later the newest may go.
    hub.advance(std::time::Duration::from_secs(1));
    // The newest message always arrives; most of the burst is coalesced away.
    let mut seen = Vec::new();
    loop {
        let r = sub.next_record().await;
        seen.push(r.offset);
        if r.offset == last {
            break;
        }
    }
    assert!(seen.len() < 40, "rate_limited coalesced the burst, got {} of 40: {seen:?}", seen.len());
    let stats = admin(&hub, "GET", "/v1/admin/stats", "").await.json();
    assert!(stats["dropped"]["coalesced"].as_u64().unwrap() > 0, "{stats}");
    hub.shutdown().await;
}

#[tokio::test]
async fn invalid_policies_are_rejected_naming_the_field_and_change_nothing() {
    let hub = spawn_hub(test_config()).await;
    let path = "/v1/admin/topics/p%2Fq/policy";
    for (body, needle) in [
        (r#"{"kind":"rate_limited","per_second":0}"#, "per_second"),
        (r#"{"kind":"best_effort","queue_messages":0}"#, "queue_messages"),
        (r#"{"kind":"teleport"}"#, "teleport"),
        (r#"{"kind":"best_effort","bogus":1}"#, "bogus"),
        (r#"not json"#, "invalid policy"),
    ] {
        let r = admin(&hub, "PUT", path, body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let e = r.json();
        assert_eq!(e["code"], "invalid_argument", "{body}");
        assert!(e["message"].as_str().unwrap().contains(needle), "{body}: message names {needle}: {e}");
    }
    let r = admin(&hub, "PUT", "/v1/admin/topics/a%2F%2Fb/policy", r#"{"kind":"best_effort"}"#).await;
    assert_eq!(r.status, 400);
    let still = admin(&hub, "GET", path, "").await.json();
    assert_eq!(still["kind"], "best_effort");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_policy_set_at_run_time_outlives_the_topic_and_a_reset_restores_the_declared_one() {
    let mut config = test_config();
    declare_topics(&mut config, "decl/>", reliable(64), None);
    let hub = spawn_hub(config).await;
    let path = "/v1/admin/topics/decl%2Fx/policy";
    let declared = admin(&hub, "GET", path, "").await.json();
    assert_eq!(declared["kind"], "reliable");
    let limited = serde_json::json!({"kind": "rate_limited", "per_second": 3, "burst": 1, "queue_messages": 4, "queue_bytes": 4096});
    assert_eq!(admin(&hub, "PUT", path, &limited.to_string()).await.status, 200);
    // A topic created after the change (nobody had used it) starts with it.
    let mut c = hub.connect("sub").await;
    c.subscribe("decl/x").await;
    let live = hub.manager.topic_info(&fanhub::hub::TopicName::new("decl/x").unwrap()).unwrap();
    assert_eq!(serde_json::to_value(&live.policy).unwrap(), limited);
    // The reset answers the declared policy, which the live topic uses from now on.
    let r = admin(&hub, "DELETE", path, "").await;
    assert_eq!((r.status, r.json()), (200, declared.clone()), "{}", r.body);
    let live = hub.manager.topic_info(&fanhub::hub::TopicName::new("decl/x").unwrap()).unwrap();
    assert_eq!(serde_json::to_value(&live.policy).unwrap(), declared);
    hub.shutdown().await;
}
