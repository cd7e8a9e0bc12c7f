//! Hardening: no request can take the server down or lock a user out.
//! Over-deep input at every entry point (GraphQL over POST, GET, batches,
//! variables, WebSocket messages, webhook bodies, provider responses, token
//! claims) is refused with a code and the server keeps serving; U+0000 in
//! any text behaves the same on SQLite and PostgreSQL; a body that is not a
//! GraphQL request gets a GraphQL error, not a plain-text debug string.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use creditgate_domain::{Clock, Role};
use creditgate_e2e::ws::{Incoming, WsClient};
use creditgate_e2e::{Backend, TestApp, on_both_databases, providers_toml};
use creditgate_server::TokenRequest;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Deep enough to overflow a worker's stack in a recursive parser (1,500
/// overflowed async-graphql's; these go far past it).
const DEEP: usize = 5_000;

fn deep_list() -> String {
    format!("{{ me(x: {}1{}) {{ id }} }}", "[".repeat(DEEP), "]".repeat(DEEP))
}

fn deep_object() -> String {
    format!("{{ me(x: {}1{}) {{ id }} }}", "{a: ".repeat(DEEP), "}".repeat(DEEP))
}

fn deep_json(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// The server still answers a real query.
async fn still_serving(app: &TestApp) {
    let alice = app.member("alice", "acme");
    let r = app.gql(Some(&alice), "{ me { id } }", json!({})).await;
    assert_eq!(r.data()["me"]["id"], "alice");
}

async fn post_raw(app: &TestApp, body: String, accept: Option<&str>) -> (u16, String, Value) {
    let mut req = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .bearer_auth(app.member("alice", "acme"))
        .body(body);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, ct, value)
}

fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code, got {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_documents_are_refused_over_post_get_and_batches() {
    let app = TestApp::new(Backend::Sqlite).await;
    let alice = app.member("alice", "acme");
    for q in [deep_list(), deep_object()] {
        let r = app.gql(Some(&alice), &q, json!({})).await;
        assert_eq!(r.code(), "BAD_USER_INPUT", "{}", r.0);
        assert!(r.message().contains("nests"), "{}", r.message());
    }
    // Without a token too: the guard runs before anything else.
    let r = app.gql(None, &deep_list(), json!({})).await;
    assert_eq!(r.code(), "BAD_USER_INPUT");
    // Deep variable types count the same.
    let q = format!(
        "query($v: {}Int{}) {{ me {{ id }} }}",
        "[".repeat(DEEP),
        "]".repeat(DEEP)
    );
    assert_eq!(app.gql(Some(&alice), &q, json!({})).await.code(), "BAD_USER_INPUT");
    // A chain of fragment spreads, each one level deep, is refused by count.
    let mut q = String::from("{ ...F0 }");
    for i in 0..3_000 {
        q.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
    }
    q.push_str(" fragment F3000 on Query { me { id } }");
    let r = app.gql(Some(&alice), &q, json!({})).await;
    assert_eq!(r.code(), "BAD_USER_INPUT");
    assert!(r.message().contains("fragments"), "{}", r.message());

    // GET.
    let resp = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", deep_list())])
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(code(&v), "BAD_USER_INPUT");

    // A batch: the deep one fails alone.
    let body = json!([{"query": "{ me { id } }"}, {"query": deep_list()}]).to_string();
    let (status, _, v) = post_raw(&app, body, None).await;
    assert_eq!(status, 200);
    assert_eq!(v[0]["data"]["me"]["id"], "alice");
    assert_eq!(v[1]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");

    // Variables and bodies nested past serde_json's limit never get built.
    let body = format!(
        r#"{{"query": "query($v: Int) {{ me {{ id }} }}", "variables": {{"v": {}}}}}"#,
        deep_json(100_000)
    );
    let (status, _, v) = post_raw(&app, body, None).await;
    assert_eq!((status, code(&v)), (400, "BAD_USER_INPUT"));
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("too deeply"),
        "{v}"
    );
    let (status, _, v) = post_raw(&app, deep_json(100_000), None).await;
    assert_eq!((status, code(&v)), (400, "BAD_USER_INPUT"));

    still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_websocket_messages_are_refused() {
    let app = TestApp::new(Backend::Sqlite).await;
    let alice = app.member("alice", "acme");
    let mut c = WsClient::connect(app.addr, &alice).await;
    let id = c
        .subscribe(&format!(
            "subscription {{ walletUpdated(x: {}1{}) {{ available }} }}",
            "[".repeat(DEEP),
            "]".repeat(DEEP)
        ))
        .await;
    let m = c.message(&id).await;
    let errors = match m["type"].as_str() {
        Some("error") => m["payload"].clone(),
        _ => m["payload"]["errors"].clone(),
    };
    assert_eq!(errors[0]["extensions"]["code"], "BAD_USER_INPUT", "{m}");
    // A message nested past the JSON limit closes that connection only.
    c.send(json!({"id": "9", "type": "subscribe", "payload": {"query": "subscription { walletUpdated { available } }", "variables": {"v": serde_json::from_str::<Value>(&deep_json(100)).unwrap()}}}))
        .await;
    let raw = format!(
        r#"{{"id": "10", "type": "subscribe", "payload": {}}}"#,
        deep_json(100_000)
    );
    c.send_raw(raw).await;
    loop {
        match c.recv().await {
            Incoming::Closed(code, _) => {
                assert!(code == 4400 || code == 1002 || code == 1006, "closed with {code}");
                break;
            }
            Incoming::Message(_) => continue,
        }
    }
    still_serving(&app).await;
}

const WEBHOOK_SECRET: &str = "whsec_hardening_test_secret";

fn stripe_signature(t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn stripe_app(backend: Backend) -> TestApp {
    TestApp::builder(backend)
        .config(&format!(
            r#"
[payments]
provider = "stripe"
[payments.stripe]
api_base = "http://127.0.0.1:9"
secret_key = "sk_test_creditgate"
webhook_secret = "{WEBHOOK_SECRET}"
success_url = "https://app.example.com/credits?purchase={{PURCHASE_ID}}"
cancel_url = "https://app.example.com/credits"
"#
        ))
        .start()
        .await
}

async fn deliver(app: &TestApp, body: String) -> u16 {
    let t = app.clock.now().timestamp();
    app.http
        .post(app.url("/webhooks/stripe"))
        .header("content-type", "application/json")
        .header("Stripe-Signature", stripe_signature(t, &body))
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_webhook_bodies_are_refused() {
    let app = stripe_app(Backend::Sqlite).await;
    let body = format!(
        r#"{{"id": "evt_deep", "type": "checkout.session.completed", "data": {{"object": {}}}}}"#,
        deep_json(100_000)
    );
    assert_eq!(deliver(&app, body).await, 400);
    still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_provider_responses_fail_the_request_only() {
    let mock = MockServer::start().await;
    let body = format!(r#"{{"id": "x", "choices": {}}}"#, deep_json(100_000));
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
        .mount(&mock)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("openai-key");
    std::fs::write(&key_file, "sk-platform").unwrap();
    let app = TestApp::builder(Backend::Sqlite)
        .config(&format!(
            "{}\n[ai]\nrequests_per_minute = 0\n",
            providers_toml(&format!("{}/v1", mock.uri()), &key_file, 5_000)
        ))
        .start()
        .await;
    let alice = app.member("alice", "acme");
    let r = app
        .gql(
            Some(&alice),
            "mutation($i: AiRequestInput!) { runAi(input: $i) { id } }",
            json!({"i": {"feature": "CHAT", "provider": "openai", "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}),
        )
        .await;
    assert_eq!(r.code(), "PROVIDER_ERROR", "{}", r.0);
    let w = app.wallet(&alice).await;
    assert_eq!((w["held"].as_str(), w["available"].as_str()), (Some("0"), Some("100")));
    still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_token_claims_are_refused() {
    let app = TestApp::new(Backend::Sqlite).await;
    // A token correctly signed with the server's secret, its claims nested deep.
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let exp = chrono::Utc::now().timestamp() + 3600;
    let claims = b64(format!(
        r#"{{"sub":"a","org":"o","role":"member","exp":{exp},"name":{}}}"#,
        deep_json(100_000)
    )
    .as_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(creditgate_e2e::TEST_SECRET.as_bytes()).unwrap();
    mac.update(format!("{header}.{claims}").as_bytes());
    let token = format!("{header}.{claims}.{}", b64(&mac.finalize().into_bytes()));
    let r = app.gql(Some(&token), "{ me { id } }", json!({})).await;
    assert_eq!(r.code(), "UNAUTHENTICATED");
    still_serving(&app).await;
}

// ------------------------------------------------------------ bad bodies

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_graphql_requests_get_graphql_errors() {
    let app = TestApp::new(Backend::Sqlite).await;
    for (body, why) in [
        ("{".to_owned(), "invalid JSON"),
        ("".to_owned(), "empty"),
        (r#"{"query": 5}"#.to_owned(), "expected"),
        (r#"{"variables": {}}"#.to_owned(), "no `query`"),
        ("[]".to_owned(), "at least one"),
        (
            json!(vec![json!({"query": "{ me { id } }"}); 21]).to_string(),
            "at most 20",
        ),
    ] {
        let (status, ct, v) = post_raw(&app, body.clone(), None).await;
        assert_eq!((status, code(&v)), (400, "BAD_USER_INPUT"), "{body}: {v}");
        assert_eq!(ct, "application/json", "{body}");
        let message = v["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(why), "{body}: {message}");
        // GraphQL over HTTP's own media type when the client asks for it.
        let (status, ct, _) = post_raw(&app, body, Some("application/graphql-response+json, application/json")).await;
        assert_eq!((status, ct.as_str()), (400, "application/graphql-response+json"));
    }
    // A form post (what a cross-site page can send without a preflight) is refused.
    let resp = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("query=%7B%20me%20%7B%20id%20%7D%20%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(code(&v), "BAD_USER_INPUT");

    // GET runs queries, never mutations; GraphiQL only for a browser without a query.
    let alice = app.member("alice", "acme");
    let get = |q: &str| {
        app.http
            .get(app.url("/graphql"))
            .query(&[("query", q)])
            .bearer_auth(&alice)
            .header("accept", "application/json")
            .send()
    };
    let v: Value = get("{ me { id } }").await.unwrap().json().await.unwrap();
    assert_eq!(v["data"]["me"]["id"], "alice");
    let v: Value =
        get("mutation { setAiSettings(preferredProvider: null, fallbackToCredits: true) { fallbackToCredits } }")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(code(&v), "BAD_USER_INPUT", "{v}");
    let page = app
        .http
        .get(app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("graphiql"), "{}", &page[..page.len().min(200)]);
}

// ------------------------------------------------------------ U+0000

fn token_with(app: &TestApp, sub: &str, name: &str, team: Option<&str>) -> String {
    app.app
        .auth
        .issue(&TokenRequest {
            sub: sub.into(),
            org: "acme".into(),
            role: Role::Member,
            name: Some(name.into()),
            email: Some(format!("{name}@example.com")),
            team: team.map(Into::into),
            org_name: Some("Ac\0me".into()),
            ttl: chrono::Duration::hours(1),
        })
        .unwrap()
}

async fn nul_in_text_is_bad_input_on_every_database(backend: Backend) {
    let app = TestApp::new(backend).await;
    let alice = app.member("alice", "acme");
    let svc = app.service();
    app.wallet(&alice).await;

    // A display name with U+0000 from the identity provider does not lock the user out.
    let bob = token_with(&app, "bob", "Bo\0b", Some("te\0am"));
    let r = app
        .gql(Some(&bob), "{ me { id name email } wallet { available } }", json!({}))
        .await;
    assert_eq!(r.data()["me"]["name"], "Bob");
    assert_eq!(r.data()["wallet"]["available"], "100");
    // An id with U+0000 is refused as a credential.
    let evil = token_with(&app, "ev\0il", "Evil", None);
    assert_eq!(
        app.gql(Some(&evil), "{ me { id } }", json!({})).await.code(),
        "UNAUTHENTICATED"
    );

    let grant = "mutation($u: ID!, $r: String!, $k: String!) { grantCredits(userId: $u, amount: \"5\", reason: $r, idempotencyKey: $k) { id } }";
    for vars in [
        json!({"u": "alice", "r": "ok", "k": "k\u{0}1"}),
        json!({"u": "alice", "r": "o\u{0}k", "k": "k2"}),
        json!({"u": "al\u{0}ice", "r": "ok", "k": "k3"}),
    ] {
        let r = app.gql(Some(&svc), grant, vars.clone()).await;
        assert_eq!(r.code(), "BAD_USER_INPUT", "{vars}: {}", r.0);
    }
    // The same as literals in the query text (escaped and raw).
    let r = app
        .gql(Some(&svc), r#"mutation { grantCredits(userId: "alice", amount: "5", reason: "a\u0000b", idempotencyKey: "k4") { id } }"#, json!({}))
        .await;
    assert_eq!(r.code(), "BAD_USER_INPUT", "{}", r.0);
    let r = app
        .gql(Some(&svc), "mutation { grantCredits(userId: \"alice\", amount: \"5\", reason: \"a\0b\", idempotencyKey: \"k5\") { id } }", json!({}))
        .await;
    assert_eq!(r.code(), "BAD_USER_INPUT", "{}", r.0);
    // An escaped backslash before `u0000` is not U+0000.
    let r = app
        .gql(Some(&svc), r#"mutation { grantCredits(userId: "alice", amount: "5", reason: "a\\u0000b", idempotencyKey: "k6") { description } }"#, json!({}))
        .await;
    assert_eq!(r.data()["grantCredits"]["description"], "a\\u0000b");

    // AI requests, purchases and keys.
    let run = "mutation($i: AiRequestInput!) { runAi(input: $i) { id } }";
    for input in [
        json!({"feature": "CHAT", "messages": [{"role": "user", "content": "hi\u{0}"}]}),
        json!({"feature": "CHAT", "messages": [{"role": "user", "content": "hi"}], "idempotencyKey": "a\u{0}"}),
        json!({"feature": "CHAT", "provider": "de\u{0}mo", "messages": [{"role": "user", "content": "hi"}]}),
    ] {
        assert_eq!(
            app.gql(Some(&alice), run, json!({"i": input})).await.code(),
            "BAD_USER_INPUT"
        );
    }
    let buy = "mutation($p: ID!, $k: String!) { purchaseCredits(packId: $p, idempotencyKey: $k) { id } }";
    assert_eq!(
        app.gql(Some(&alice), buy, json!({"p": "sta\u{0}rter", "k": "b1"}))
            .await
            .code(),
        "BAD_USER_INPUT"
    );
    assert_eq!(
        app.gql(Some(&alice), buy, json!({"p": "starter", "k": "b\u{0}1"}))
            .await
            .code(),
        "BAD_USER_INPUT"
    );

    // Nothing changed, and nothing failed inside.
    let w = app.wallet(&alice).await;
    assert_eq!(
        (w["available"].as_str(), w["permanentBalance"].as_str()),
        (Some("105"), Some("5"))
    );
    assert_eq!(app.app.store.reconcile().await.unwrap(), vec![]);
}

async fn nul_in_webhook_ids_is_refused(backend: Backend) {
    let app = stripe_app(backend).await;
    let body = json!({"id": "evt_\u{0}1", "type": "checkout.session.completed", "data": {"object": {"id": "cs_1", "payment_status": "paid"}}}).to_string();
    assert_eq!(deliver(&app, body).await, 400);
    let body = json!({"id": "evt_2", "type": "checkout.session.completed", "data": {"object": {"id": "cs_\u{0}1", "payment_status": "paid", "client_reference_id": "p1"}}}).to_string();
    assert_eq!(deliver(&app, body).await, 400);
    still_serving(&app).await;
}

// ------------------------------------------------------------ error codes

/// INTERNAL comes from the server's own failures only (here: its database
/// refusing), and says nothing of them.
async fn internal_is_a_server_failure_and_says_nothing(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let app = TestApp::new(backend).await;
    let alice = app.member("alice", "acme");
    app.wallet(&alice).await;
    let db = app.app.store.connection();
    db.execute_unprepared("ALTER TABLE wallets RENAME TO wallets_away")
        .await
        .unwrap();
    let r = app.gql(Some(&alice), "{ wallet { available } }", json!({})).await;
    assert_eq!(r.code(), "INTERNAL");
    assert_eq!(r.message(), "internal error; it has been logged");
    db.execute_unprepared("ALTER TABLE wallets_away RENAME TO wallets")
        .await
        .unwrap();
    assert_eq!(app.wallet(&alice).await["available"], "100");
}

on_both_databases!(
    nul_in_text_is_bad_input_on_every_database,
    nul_in_webhook_ids_is_refused,
    internal_is_a_server_failure_and_says_nothing,
);

/// The Rust sources under `dir`, its folders' too (a test binary split by
/// concern is a folder).
fn sources_under(dir: &std::path::Path) -> String {
    let mut sources = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources.push_str(&sources_under(&path));
        } else if path.extension().is_some_and(|x| x == "rs") {
            sources.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    sources
}

/// Every code the API can return is asserted by some end-to-end test (this
/// file's folder and the folders in it), and INTERNAL only as above or as
/// what must not happen.
#[test]
fn every_error_code_is_reached_by_a_test() {
    let sources = sources_under(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"));
    for code in creditgate_graphql::Code::ALL {
        // As an expected value: `"CODE"` in an assertion or a table of cases.
        let quoted = format!("\"{}\"", code.as_str());
        assert!(
            sources.contains(quoted.as_str()),
            "no test asserts the code {}",
            code.as_str()
        );
    }
}
