//! Protocol version negotiation at the WebSocket handshake (`Sec-WebSocket-Protocol`): only
//! unknown versions offered → HTTP 400 with a JSON `invalid_argument` body; a list including
//! `fanhub.v1` selects it; none offered → accepted, v1 implied. A request to `/ws` that is not
//! a valid upgrade is answered 400 JSON too.

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::Response;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `/ws` offering `protocols` (one `Sec-WebSocket-Protocol` header value; `None`: no
/// header).
async fn open_offering(hub: &Hub, protocols: Option<&str>) -> Result<(Ws, Response<Option<Vec<u8>>>), WsError> {
    let mut req = hub.ws_url().into_client_request().unwrap();
    if let Some(p) = protocols {
        req.headers_mut().insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(req)).await.expect("handshake hung")
}

/// Sends `connect` on a raw socket and returns the reply to it.
async fn connect_on(hub: &Hub, ws: &mut Ws) -> Value {
    let msg = json!({"op": "connect", "id": 1, "token": hub.token("alice")});
    ws.send(Message::text(msg.to_string())).await.unwrap();
    loop {
        match tokio::time::timeout(TIMEOUT, ws.next()).await.expect("no reply to connect") {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == 1 {
                    return v;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("connection ended before the reply to connect: {other:?}"),
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn upgrade_head(hub: &Hub, extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n",
        hub.addr
    )
}

#[tokio::test]
async fn offering_only_an_unknown_version_is_refused_with_400_and_a_json_body() {
    let hub = spawn_hub(test_config()).await;
    let err = match open_offering(&hub, Some("fanhub.v2")).await {
        Ok(_) => panic!("the handshake must fail"),
        Err(e) => e,
    };
    let WsError::Http(resp) = err else { panic!("expected an HTTP error response, got {err:?}") };
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(resp.headers().get("content-type").unwrap(), "application/json");
    let body: Value = serde_json::from_slice(resp.body().as_deref().expect("a body")).expect("JSON body");
    assert_eq!(body["code"], "invalid_argument", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("unsupported protocol version"), "{message}");
    assert!(message.contains("fanhub.v2"), "names what was offered: {message}");
    assert!(message.contains("fanhub.v1"), "names what is supported: {message}");
    assert_eq!(hub.manager.connection_stats().active_connections, 0);
    hub.shutdown().await;
}

#[tokio::test]
async fn offering_only_unknown_versions_over_raw_http_is_refused_with_400_json() {
    let hub = spawn_hub(test_config()).await;
    let head = upgrade_head(
        &hub,
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: fanhub.v3, mqtt\r\nConnection: close\r\n",
    );
    // `Connection: close` after `Connection: Upgrade` keeps the upgrade token in the header
    // list while letting the socket end after the response.
    let HttpResponse { status, headers, body } = http_raw(hub.addr, &head).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "invalid_argument", "{body}");
    assert!(body["message"].as_str().unwrap().contains("unsupported protocol version"), "{body}");
    hub.shutdown().await;
}

#[tokio::test]
async fn offering_v2_then_v1_selects_v1() {
    let hub = spawn_hub(test_config()).await;
    let (mut ws, resp) = open_offering(&hub, Some("fanhub.v2, fanhub.v1")).await.expect("handshake");
    assert_eq!(resp.status().as_u16(), 101);
    assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), "fanhub.v1");
    let w = connect_on(&hub, &mut ws).await;
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(w["protocol"], "fanhub.v1");
    hub.shutdown().await;
}

#[tokio::test]
async fn offering_only_v1_selects_v1() {
    let hub = spawn_hub(test_config()).await;
    let (mut ws, resp) = open_offering(&hub, Some("fanhub.v1")).await.expect("handshake");
    assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), "fanhub.v1");
    assert_eq!(connect_on(&hub, &mut ws).await["type"], "welcome");
    hub.shutdown().await;
}

#[tokio::test]
async fn offering_no_version_is_accepted_with_v1_implied() {
    let hub = spawn_hub(test_config()).await;
    let (mut ws, resp) = open_offering(&hub, None).await.expect("handshake");
    assert_eq!(resp.status().as_u16(), 101);
    assert!(resp.headers().get("sec-websocket-protocol").is_none(), "nothing selected when nothing offered");
    let w = connect_on(&hub, &mut ws).await;
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(w["protocol"], "fanhub.v1");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_plain_get_of_the_websocket_path_is_400_json() {
    let hub = spawn_hub(test_config()).await;
    let head = format!("GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", hub.addr);
    let HttpResponse { status, headers, body } = http_raw(hub.addr, &head).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "invalid_argument", "{body}");
    assert!(body["message"].as_str().unwrap().contains("WebSocket upgrade"), "{body}");
    hub.shutdown().await;
}

#[tokio::test]
async fn an_upgrade_with_another_websocket_version_is_400_json() {
    let hub = spawn_hub(test_config()).await;
    let HttpResponse { status, body, .. } =
        http_raw(hub.addr, &upgrade_head(&hub, "Sec-WebSocket-Version: 8\r\nConnection: close\r\n")).await;
    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "invalid_argument", "{body}");
    assert!(body["message"].as_str().unwrap().contains("Sec-WebSocket-Version must be 13"), "{body}");
    hub.shutdown().await;
}

#[tokio::test]
async fn an_upgrade_without_a_key_is_400_json() {
    let hub = spawn_hub(test_config()).await;
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n",
        hub.addr
    );
    let HttpResponse { status, body, .. } = http_raw(hub.addr, &head).await;
    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "invalid_argument", "{body}");
    assert!(body["message"].as_str().unwrap().contains("Sec-WebSocket-Key"), "{body}");
    hub.shutdown().await;
}
