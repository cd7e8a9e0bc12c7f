//! The GraphQL request path, through the real router.
//!
//! Input: one selector byte, then a request body. The selector's bits 0-1
//! pick the caller (none, member, admin, service), bits 2-3 the
//! `content-type` of the POST, bit 4 the WebSocket protocol. The same body
//! goes
//! * as a `POST /graphql` body through `App::router()` (`tower::ServiceExt::oneshot`),
//! * as the parameters of `GET /graphql?query=...&variables=...` (a JSON
//!   object's fields; anything else as the query),
//! * as the `payload` of a WebSocket `subscribe` (or legacy `start`)
//!   message, after a `connection_init`, to async-graphql's protocol
//!   machine over the same schema (what `/graphql/ws` runs for each socket).
//!
//! Oracles: no panic (the router turns a handler's panic into a 500, so no
//! 5xx), no abort or stack overflow, and no error whose `extensions.code`
//! is `INTERNAL`: the input is the client's, and client input never causes
//! an internal error.

use std::sync::OnceLock;
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::{WebSocket, WebSocketProtocols, WsMessage};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use creditgate_domain::Role;
use creditgate_graphql::{ApiSchema, Auth};
use creditgate_server::{Authenticator, TokenRequest};
use creditgate_storage::Identity;
use futures::StreamExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::support;

/// The biggest response body read (the router's own limit is on requests).
const RESPONSE_LIMIT: usize = 16 * 1024 * 1024;

/// How long the WebSocket part waits for the answer to its `subscribe`
/// (a subscription such as `activityAdded` rightly sends nothing at first).
const WS_WAIT: Duration = Duration::from_millis(200);

struct Setup {
    router: Router,
    schema: ApiSchema,
    auth: std::sync::Arc<Authenticator>,
    /// Bearer tokens by selector: none, member, admin, service.
    tokens: [Option<String>; 4],
}

fn token(auth: &Authenticator, sub: &str, org: &str, role: Role) -> String {
    auth.issue(&TokenRequest {
        sub: sub.into(),
        org: org.into(),
        role,
        name: Some(format!("{sub} name")),
        email: Some(format!("{sub}@example.com")),
        team: None,
        org_name: None,
        ttl: chrono::Duration::days(3650),
    })
    .expect("token")
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let app = support::build_app("graphql", "");
        let auth = app.auth.clone();
        let tokens = [
            None,
            Some(token(&auth, "alice", "acme", Role::Member)),
            Some(token(&auth, "ada", "acme", Role::Admin)),
            Some(token(&auth, "back-office", "platform", Role::Service)),
        ];
        Setup {
            router: app.router(),
            schema: app.schema.clone(),
            auth,
            tokens,
        }
    })
}

const CONTENT_TYPES: [Option<&str>; 4] = [
    Some("application/json"),
    Some("application/graphql-response+json"),
    Some("multipart/form-data; boundary=X"),
    None,
];

pub fn target(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let s = setup();
    let token = s.tokens[usize::from(selector & 3)].clone();
    let content_type = CONTENT_TYPES[usize::from((selector >> 2) & 3)];
    let protocol = if selector & 0x10 == 0 {
        WebSocketProtocols::GraphQLWS
    } else {
        WebSocketProtocols::SubscriptionsTransportWS
    };
    let body = body.to_vec();
    let router = s.router.clone();
    let schema = s.schema.clone();
    // The WebSocket needs a caller: the member when the selector names none.
    let ws_token = token.clone().or_else(|| s.tokens[1].clone()).unwrap_or_default();
    let identity = s.auth.authenticate(&ws_token).expect("the harness's own token");
    support::run(async move {
        post(router.clone(), token.as_deref(), content_type, body.clone()).await;
        get(router, token.as_deref(), &body).await;
        websocket(schema, identity, protocol, &body).await;
    });
}

async fn post(router: Router, token: Option<&str>, content_type: Option<&str>, body: Vec<u8>) {
    let mut req = Request::builder().method("POST").uri("/graphql");
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(Body::from(body)).expect("request");
    let resp = router.oneshot(req).await.expect("the router is infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), RESPONSE_LIMIT)
        .await
        .expect("response body");
    assert!(
        !status.is_server_error(),
        "POST /graphql answered {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    if let Ok(json) = serde_json::from_slice::<Value>(&bytes) {
        assert_no_internal(&json, "POST /graphql");
    }
}

/// The body as GET parameters: a JSON object's `query`, `variables` and
/// `operationName`, else the raw body as the query.
fn query_string(body: &[u8]) -> String {
    let mut params = url::form_urlencoded::Serializer::new(String::new());
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(request)) => {
            for (key, value) in &request {
                match value {
                    Value::String(text) => params.append_pair(key, text),
                    other => params.append_pair(key, &other.to_string()),
                };
            }
        }
        _ => {
            params.append_pair("query", &String::from_utf8_lossy(body));
        }
    }
    params.finish()
}

async fn get(router: Router, token: Option<&str>, body: &[u8]) {
    let mut req = Request::builder()
        .method("GET")
        .uri(format!("/graphql?{}", query_string(body)))
        .header(header::ACCEPT, "application/json");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    // A URI past the HTTP layer's limit (64 KiB) cannot be sent at all.
    let Ok(req) = req.body(Body::empty()) else {
        return;
    };
    let resp = router.oneshot(req).await.expect("the router is infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), RESPONSE_LIMIT)
        .await
        .expect("response body");
    assert!(
        !status.is_server_error(),
        "GET /graphql answered {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    if let Ok(json) = serde_json::from_slice::<Value>(&bytes) {
        assert_no_internal(&json, "GET /graphql");
    }
}

async fn websocket(schema: ApiSchema, identity: Identity, protocol: WebSocketProtocols, body: &[u8]) {
    let kind = match protocol {
        WebSocketProtocols::GraphQLWS => "subscribe",
        WebSocketProtocols::SubscriptionsTransportWS => "start",
    };
    let payload = String::from_utf8_lossy(body);
    let messages = vec![
        r#"{"type":"connection_init","payload":{}}"#.to_owned(),
        format!(r#"{{"id":"1","type":"{kind}","payload":{payload}}}"#),
    ];
    // The client stays connected while the subscription runs.
    let input = futures::stream::iter(messages).chain(futures::stream::pending());
    let machine = WebSocket::new(schema, input, protocol).on_connection_init(move |_payload| async move {
        let mut data = Data::default();
        data.insert(Auth::Caller(identity));
        Ok(data)
    });
    futures::pin_mut!(machine);
    let answer = async {
        while let Some(msg) = machine.next().await {
            let WsMessage::Text(text) = msg else {
                // Closed (an unreadable message): nothing to check.
                return;
            };
            let Ok(json) = serde_json::from_str::<Value>(&text) else {
                panic!("the WebSocket sent a message that is not JSON: {text}");
            };
            match json["type"].as_str() {
                Some("next" | "data" | "error") => {
                    assert_no_internal(&json["payload"], "WebSocket");
                    return;
                }
                Some("complete") => return,
                _ => {}
            }
        }
    };
    let _ = tokio::time::timeout(WS_WAIT, answer).await;
}

/// Panics when a GraphQL response (or a batch, or a list of errors) has an
/// error with `extensions.code` INTERNAL.
pub fn assert_no_internal(json: &Value, context: &str) {
    let errors: Vec<&Value> = match json {
        Value::Array(items) => items
            .iter()
            .flat_map(|item| match item {
                Value::Object(o) if o.contains_key("message") => vec![item],
                other => other["errors"]
                    .as_array()
                    .map(|e| e.iter().collect())
                    .unwrap_or_default(),
            })
            .collect(),
        other => other["errors"]
            .as_array()
            .map(|e| e.iter().collect())
            .unwrap_or_default(),
    };
    for e in errors {
        assert_ne!(
            e["extensions"]["code"].as_str(),
            Some("INTERNAL"),
            "{context}: client input caused an INTERNAL error: {e}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::assert_no_internal;
    use serde_json::json;

    #[test]
    fn the_internal_oracle_sees_every_shape_of_response() {
        let internal = json!({"message": "boom", "extensions": {"code": "INTERNAL"}});
        let fine = json!({"message": "no", "extensions": {"code": "BAD_USER_INPUT"}});
        for response in [
            json!({"data": null, "errors": [fine.clone(), internal.clone()]}),
            json!([{"data": {}}, {"errors": [internal.clone()]}]),
            json!([internal.clone()]),
        ] {
            assert!(
                std::panic::catch_unwind(|| assert_no_internal(&response, "test")).is_err(),
                "{response}"
            );
        }
        assert_no_internal(&json!({"data": null, "errors": [fine.clone()]}), "test");
        assert_no_internal(&json!([fine]), "test");
    }
}
