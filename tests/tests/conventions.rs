//! What SPA tooling assumes of a GraphQL server: CORS for the configured
//! origins (and the same check on the WebSocket upgrade), queries over GET,
//! the standard introspection query under the default limits, automatic
//! persisted queries, codes of their own for parse and validation errors,
//! stable ids for cached objects and the conventional root type names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use creditgate_e2e::{Backend, TestApp};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const SPA: &str = "https://app.example.com";

async fn cors_app() -> TestApp {
    TestApp::builder(Backend::Sqlite)
        .config(&format!("[cors]\nallowed_origins = [\"{SPA}\"]\n"))
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_for_configured_origins_only() {
    let app = cors_app().await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let ok = preflight(SPA).await.unwrap();
    assert!(ok.status().is_success(), "{}", ok.status());
    let h = ok.headers();
    assert_eq!(h["access-control-allow-origin"], SPA);
    assert_eq!(h["access-control-allow-credentials"], "true");
    let allowed = h["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );

    let refused = preflight("https://evil.example.com").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());

    // The actual request carries the header for the SPA only.
    let alice = app.member("alice", "acme");
    let r = app
        .http
        .post(app.url("/graphql"))
        .header("origin", SPA)
        .bearer_auth(&alice)
        .json(&json!({"query": "{ me { id } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], SPA);
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");

    // Without configuration, no origin gets CORS headers.
    let plain = TestApp::new(Backend::Sqlite).await;
    let r = plain
        .http
        .request(reqwest::Method::OPTIONS, plain.url("/graphql"))
        .header("origin", SPA)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_check_the_origin() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = cors_app().await;
    let open = |origin: &'static str| {
        let mut req = format!("ws://{}/graphql/ws", app.addr).into_client_request().unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
        req.headers_mut().insert("Origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(req)
    };
    assert!(open(SPA).await.is_ok());
    let refused = open("https://evil.example.com").await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tooling_conventions() {
    let app = TestApp::new(Backend::Sqlite).await;
    let alice = app.member("alice", "acme");

    // The standard introspection query, over GET as urql sends it, passes
    // the default limits.
    let introspection = include_str!("../../crates/graphql/tests/fixtures/introspection.graphql");
    let v: Value = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", introspection)])
        .header("accept", "application/graphql-response+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["errors"].is_null(), "{v}");
    let schema = &v["data"]["__schema"];
    assert_eq!(schema["queryType"]["name"], "Query");
    assert_eq!(schema["mutationType"]["name"], "Mutation");
    assert_eq!(schema["subscriptionType"]["name"], "Subscription");
    let credits = schema["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Credits")
        .unwrap();
    assert!(credits["description"].as_str().unwrap().contains("decimal string"));

    // Parse and validation errors have codes of their own.
    let r = app.gql(Some(&alice), "{ me { id ", json!({})).await;
    assert_eq!(r.code(), "GRAPHQL_PARSE_FAILED");
    let r = app.gql(Some(&alice), "{ me { noSuchField } }", json!({})).await;
    assert_eq!(r.code(), "GRAPHQL_VALIDATION_FAILED");

    // Automatic persisted queries: a hash alone is unknown at first, then
    // known once sent with its query.
    let query = "{ wallet { id available } }";
    let hash = format!("{:x}", Sha256::digest(query.as_bytes()));
    let apq = |with_query: bool| {
        let mut body = json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": hash}}});
        if with_query {
            body["query"] = json!(query);
        }
        app.http
            .post(app.url("/graphql"))
            .bearer_auth(&alice)
            .json(&body)
            .send()
    };
    let v: Value = apq(false).await.unwrap().json().await.unwrap();
    assert_eq!(v["errors"][0]["message"], "PersistedQueryNotFound", "{v}");
    assert_eq!(v["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND");
    let v: Value = apq(true).await.unwrap().json().await.unwrap();
    assert_eq!(v["data"]["wallet"]["available"], "100", "{v}");
    let v: Value = apq(false).await.unwrap().json().await.unwrap();
    // The wallet's id is stable: the user's.
    assert_eq!(v["data"]["wallet"]["id"], "alice", "{v}");
    // A deep query registered by hash is refused before it is parsed.
    let deep = format!("{{ me(x: {}1{}) {{ id }} }}", "[".repeat(5_000), "]".repeat(5_000));
    let deep_hash = format!("{:x}", Sha256::digest(deep.as_bytes()));
    let v: Value = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(&alice)
        .json(&json!({"query": deep, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": deep_hash}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{v}");
}

/// Parsed documents are kept by their text (see the graphql crate's
/// `documents`); what the server checks of a request is checked every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_parsed_once_is_still_checked_every_time() {
    let app = TestApp::new(Backend::Sqlite).await;
    let alice = app.member("alice", "acme");
    let get = |query: &'static str| {
        app.http
            .get(app.url("/graphql"))
            .query(&[("query", query)])
            .bearer_auth(&alice)
            .header("accept", "application/graphql-response+json")
            .send()
    };

    // A mutation sent by POST, again and again, is answered each time...
    let mutation = "mutation { __typename }";
    for _ in 0..3 {
        let r = app.gql(Some(&alice), mutation, json!({})).await;
        assert_eq!(r.data()["__typename"], "Mutation", "{:?}", r.0);
    }
    // ...and its document, parsed and kept, is still refused over GET.
    let v: Value = get(mutation).await.unwrap().json().await.unwrap();
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{v}");
    assert!(v["data"].is_null(), "{v}");

    // One document, several operations: each request runs the one it names.
    let two = "query W { wallet { available } } query M { me { id } }";
    let wallet = json!({"wallet": {"available": app.wallet(&alice).await["available"]}});
    for (name, expect) in [("W", wallet), ("M", json!({"me": {"id": "alice"}}))] {
        for _ in 0..2 {
            let r = app
                .gql_body(Some(&alice), &json!({"query": two, "operationName": name}))
                .await;
            assert_eq!(*r.data(), expect);
        }
    }

    // What does not parse is refused every time, with its code.
    for _ in 0..2 {
        let r = app.gql(Some(&alice), "{ me { id ", json!({})).await;
        assert_eq!(r.code(), "GRAPHQL_PARSE_FAILED");
    }
    // Validation runs for a kept document too: a variable of the wrong type
    // is refused each time.
    let typed = "query($n: Int!) { activity(first: $n) { edges { cursor } } }";
    for _ in 0..2 {
        let r = app.gql(Some(&alice), typed, json!({"n": 5})).await;
        assert!(r.0["errors"].is_null(), "{:?}", r.0);
        let r = app.gql(Some(&alice), typed, json!({"n": "five"})).await;
        assert_eq!(r.code(), "BAD_USER_INPUT", "{:?}", r.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_are_told_to_go_away_on_shutdown() {
    let app = TestApp::new(Backend::Sqlite).await;
    let alice = app.member("alice", "acme");
    let mut c = creditgate_e2e::ws::WsClient::connect(app.addr, &alice).await;
    let id = c.subscribe(creditgate_e2e::ws::WALLET_UPDATED).await;
    c.next(&id, "walletUpdated").await;
    app.shutdown();
    let (code, reason) = c.closed().await;
    assert_eq!(code, 1001, "{reason}");
}
