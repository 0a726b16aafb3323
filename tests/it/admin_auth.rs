//! Admin API authentication: every protected admin route refuses a request without a valid
//! admin token (none, a wrong `Authorization: Bearer`, a wrong `?token=`) with
//! `401 {"code":"unauthenticated",…}`, reveals no connection data and has no effect; the right
//! token in `?token=` is accepted; `/healthz` on the admin listener is open; and the admin API
//! does not exist on the public listener. Without a valid token the listener does not reveal
//! which routes exist: an unknown path and a method a route does not serve answer the same 401
//! as a protected route (no `Allow` header); with the token they answer a JSON 404 and 405.

use crate::common::*;
use serde_json::{json, Value};

/// A subject and a topic that must never show up in a refusal.
const SUBJECT: &str = "subject-admin-auth-7f3a";
const TOPIC: &str = "a";

/// Every protected route (`{id}` is the connected client's id) with a body that would change
/// something if the request got through.
const PROTECTED: &[(&str, &str, &str)] = &[
    ("GET", "/v1/admin/connections", ""),
    ("GET", "/v1/admin/connections/{id}", ""),
    ("DELETE", "/v1/admin/connections/{id}", ""),
    ("GET", "/v1/admin/topics", ""),
    ("GET", "/v1/admin/topics/a", ""),
    ("GET", "/v1/admin/topics/a/policy", ""),
    ("PUT", "/v1/admin/topics/a/policy", r#"{"kind":"reliable"}"#),
    ("GET", "/v1/admin/stats", ""),
    ("GET", "/v1/admin/cluster", ""),
    ("GET", "/v1/admin/stats/stream", ""),
    ("GET", "/v1/admin/drain", ""),
    ("POST", "/v1/admin/drain", "{}"),
    ("DELETE", "/v1/admin/drain", ""),
    ("POST", "/v1/publish", r#"{"topic":"a","data":"refused"}"#),
    ("GET", "/metrics", ""),
];

/// A hub with one connected client (subject [`SUBJECT`]) subscribed to [`TOPIC`].
async fn hub_with_client() -> (Hub, Client) {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect(SUBJECT).await;
    c.subscribe(TOPIC).await;
    (hub, c)
}

fn conn_id(c: &Client) -> u64 {
    c.welcome["conn_id"].as_u64().unwrap_or_else(|| panic!("welcome has a conn_id: {}", c.welcome))
}

/// Sends every protected request with `headers` and `query` (appended to the path) and checks
/// each is refused with 401 unauthenticated, without connection data in the body.
async fn assert_all_refused(hub: &Hub, c: &Client, headers: &[(&str, &str)], query: &str) {
    let id = conn_id(c).to_string();
    let peer = client_addr(c);
    for (method, path, body) in PROTECTED {
        let path = format!("{}{query}", path.replace("{id}", &id));
        let r = http(hub.admin, method, &path, headers, body).await;
        assert_eq!(r.status, 401, "{method} {path} {headers:?}: {}", r.body);
        let v = r.json();
        assert_eq!(v["code"], "unauthenticated", "{method} {path} {headers:?}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{method} {path}: a message explains it: {v}");
        assert!(!r.body.contains(SUBJECT), "{method} {path} {headers:?} leaks the subject: {}", r.body);
        assert!(!r.body.contains(&peer), "{method} {path} {headers:?} leaks the peer address: {}", r.body);
    }
}

/// The refused requests changed nothing: the client is connected and not kicked, the hub is
/// not draining, the policy is unchanged and no refused publish reached the subscriber.
async fn assert_nothing_changed(hub: &Hub, c: &mut Client, policy_before: &Value) {
    c.assert_alive().await;
    assert_eq!(hub.manager.connection_stats().active_connections, 1, "the client was not kicked");
    let ready = http(hub.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 200, "a refused drain did not drain: {}", ready.body);
    let policy = admin(hub, "GET", "/v1/admin/topics/a/policy", "").await;
    assert_eq!(&policy.json(), policy_before, "a refused PUT did not change the policy");
    let ok = admin(hub, "POST", "/v1/publish", &json!({"topic": TOPIC, "data": "accepted"}).to_string()).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["offset"], 1, "no refused publish took an offset");
    let rec = c.next_record().await;
    assert_eq!((rec.offset, rec.payload.as_slice()), (1, &b"\"accepted\""[..]), "no refused publish was delivered");
}

/// The client's own address: the server reports it as the connection's `remote_addr`.
fn client_addr(c: &Client) -> String {
    match c.ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s.local_addr().unwrap().to_string(),
        _ => unreachable!("plain TCP in tests"),
    }
}

#[tokio::test]
async fn every_protected_admin_route_without_a_token_answers_401_unauthenticated_and_changes_nothing() {
    let (hub, mut c) = hub_with_client().await;
    let policy_before = admin(&hub, "GET", "/v1/admin/topics/a/policy", "").await.json();
    assert_all_refused(&hub, &c, &[], "").await;
    assert_nothing_changed(&hub, &mut c, &policy_before).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn every_protected_admin_route_refuses_a_wrong_bearer_token() {
    let (hub, mut c) = hub_with_client().await;
    let policy_before = admin(&hub, "GET", "/v1/admin/topics/a/policy", "").await.json();
    assert_all_refused(&hub, &c, &[("Authorization", "Bearer wrong-admin-token")], "").await;
    // The API key is not an admin token either (not even for the admin listener's publish).
    let api_key_bearer = format!("Bearer {API_KEY}");
    assert_all_refused(&hub, &c, &[("Authorization", &api_key_bearer)], "").await;
    assert_nothing_changed(&hub, &mut c, &policy_before).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn every_protected_admin_route_refuses_a_wrong_query_token() {
    let (hub, mut c) = hub_with_client().await;
    let policy_before = admin(&hub, "GET", "/v1/admin/topics/a/policy", "").await.json();
    assert_all_refused(&hub, &c, &[], "?token=wrong-admin-token").await;
    assert_nothing_changed(&hub, &mut c, &policy_before).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn the_right_admin_token_in_the_query_parameter_is_accepted() {
    let (hub, _c) = hub_with_client().await;
    let r = http(hub.admin, "GET", &format!("/v1/admin/stats?token={ADMIN_TOKEN}"), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["active_connections"], 1, "{}", r.body);
    hub.shutdown().await;
}

#[tokio::test]
async fn healthz_on_the_admin_listener_needs_no_token() {
    let hub = spawn_hub(test_config()).await;
    let r = http(hub.admin, "GET", "/healthz", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "ok", "{}", r.body);
    hub.shutdown().await;
}

#[tokio::test]
async fn the_admin_api_is_not_reachable_on_the_public_listener() {
    let (hub, _c) = hub_with_client().await;
    for headers in [vec![], vec![ADMIN_AUTH]] {
        let r = http(hub.addr, "GET", "/v1/admin/stats", &headers, "").await;
        assert_eq!(r.status, 404, "GET /v1/admin/stats on the public listener ({headers:?}): {}", r.body);
        assert!(!r.body.contains(SUBJECT), "{}", r.body);
    }
    let r = http(hub.addr, "GET", &format!("/v1/admin/stats?token={ADMIN_TOKEN}"), &[], "").await;
    assert_eq!(r.status, 404, "?token= does not open it either: {}", r.body);
    hub.shutdown().await;
}

/// Requests for what is not a route (or not with this method), each refused without a token.
const NOT_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/admin/nonexistent"),
    ("GET", "/v1/admin/connections/1/extra"),
    ("GET", "/nope"),
    ("DELETE", "/"),
    ("POST", "/v1/admin/stats"),
    ("PATCH", "/v1/admin/connections"),
    ("PUT", "/v1/admin/drain"),
    ("GET", "/v1/publish"),
];

#[tokio::test]
async fn without_a_valid_token_an_unknown_path_or_method_answers_the_same_401_as_a_protected_route() {
    let hub = spawn_hub(test_config()).await;
    let refusal = http(hub.admin, "GET", "/v1/admin/stats", &[], "").await;
    assert_eq!(refusal.status, 401, "{}", refusal.body);
    let wrong_bearer = [("Authorization", "Bearer wrong-admin-token")];
    for (headers, query) in [(&[][..], ""), (&wrong_bearer[..], ""), (&[][..], "?token=wrong-admin-token")] {
        for (method, path) in NOT_ROUTES {
            let path = format!("{path}{query}");
            let r = http(hub.admin, method, &path, headers, "").await;
            assert_eq!(r.status, 401, "{method} {path} {headers:?}: {}", r.body);
            assert_eq!(r.header("content-type"), Some("application/json"), "{method} {path}");
            assert_eq!(r.json(), refusal.json(), "{method} {path} {headers:?} answers like a protected route");
            assert_eq!(r.header("allow"), None, "{method} {path}: no Allow header tells the route exists");
        }
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn with_the_admin_token_an_unknown_path_is_a_json_404_and_a_wrong_method_a_json_405() {
    let hub = spawn_hub(test_config()).await;
    for (method, path) in [("GET", "/v1/admin/nonexistent"), ("GET", "/nope"), ("GET", "/v1/admin/connections/1/extra")]
    {
        let r = admin(&hub, method, path, "").await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
        let v = r.json();
        assert_eq!(v["code"], "not_found", "{v}");
        assert_eq!(v["message"], format!("{} {method} {path}", fanhub::admin::NO_ROUTE_PREFIX), "{v}");
    }
    for (method, path, allow) in [("POST", "/v1/admin/stats", "GET"), ("PUT", "/v1/admin/drain", "GET,POST,DELETE")] {
        let r = admin(&hub, method, path, "").await;
        assert_eq!(r.status, 405, "{method} {path}: {}", r.body);
        assert_eq!(r.json()["code"], "invalid_argument", "{}", r.body);
        let mut got: Vec<&str> = r.header("allow").unwrap_or_default().split(',').map(str::trim).collect();
        let mut want: Vec<&str> = allow.split(',').collect();
        got.sort_unstable();
        want.sort_unstable();
        assert!(want.iter().all(|m| got.contains(m)), "{method} {path}: Allow {got:?} lists {want:?}");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn the_open_admin_routes_stay_open_without_a_token() {
    let hub = spawn_hub(test_config()).await;
    for path in ["/healthz", "/dashboard", "/v1/openapi.json"] {
        let r = http(hub.admin, "GET", path, &[], "").await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    }
    let r = http(hub.admin, "GET", "/metrics", &[], "").await;
    assert_eq!(r.status, 401, "/metrics needs the token by default: {}", r.body);
    hub.shutdown().await;

    let mut config = test_config();
    config.admin.metrics_require_token = false;
    let hub = spawn_hub(config).await;
    let r = http(hub.admin, "GET", "/metrics", &[], "").await;
    assert_eq!(r.status, 200, "/metrics with admin.metrics_require_token off: {}", r.body);
    let r = http(hub.admin, "GET", "/v1/admin/stats", &[], "").await;
    assert_eq!(r.status, 401, "the rest still needs the token: {}", r.body);
    hub.shutdown().await;
}
