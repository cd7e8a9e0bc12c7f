//! Metered AI requests end to end, against a running server with the demo
//! provider and a mock OpenAI server on 127.0.0.1 that replays the recorded
//! wire format, on SQLite and PostgreSQL: credit-paid requests here,
//! bring-your-own-key requests in `byok.rs`, streams in `streams.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod byok;
mod streams;

use creditgate_e2e::logs::{captured_logs, logged};
use creditgate_e2e::{Backend, TestApp, on_both_databases, providers_toml};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PLATFORM_KEY: &str = "sk-platform-0123456789abcdef";
const ALICE_KEY: &str = "sk-alice-SECRET-9f8e7d6c5b4a";

use creditgate_e2e::openai::{mock_openai, openai_fixture as fixture};

struct Env {
    app: TestApp,
    mock: MockServer,
    _dir: tempfile::TempDir,
}

/// A mock OpenAI: the recorded answer for the platform key and for Alice's
/// key, 401 for any other key; /v1/models validates keys the same way.
async fn env_with(backend: Backend, extra: &str) -> Env {
    captured_logs();
    let mock = mock_openai(&[PLATFORM_KEY, ALICE_KEY], None).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("openai-key");
    std::fs::write(&key_file, PLATFORM_KEY).unwrap();
    let toml = format!(
        "{}\n[ai]\nrequests_per_minute = 0\n{extra}",
        providers_toml(&format!("{}/v1", mock.uri()), &key_file, 1_500)
    );
    let app = TestApp::builder(backend).config(&toml).start().await;
    Env { app, mock, _dir: dir }
}

const RUN: &str = "mutation($i: AiRequestInput!) { runAi(input: $i) { id content billingMode provider model inputTokens outputTokens creditsCharged wallet { available held permanentBalance monthlyBalance billingMode } } }";

fn openai_input(extra: Value) -> Value {
    let mut i = json!({
        "feature": "CHAT",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    });
    for (k, v) in extra.as_object().unwrap() {
        i[k] = v.clone();
    }
    i
}

/// Keys the mock saw on chat requests, in order.
async fn keys_seen(mock: &MockServer) -> Vec<String> {
    mock.received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/chat/completions")
        .map(|r| r.headers.get("authorization").unwrap().to_str().unwrap().to_owned())
        .collect()
}

async fn last_entry(app: &TestApp, token: &str) -> Value {
    let r = app
        .gql(Some(token), "{ activity(first: 1) { edges { node { kind feature billingMode status provider model inputTokens outputTokens creditsConsumed monthlyDelta balanceAfter description } } } }", json!({}))
        .await;
    r.data()["activity"]["edges"][0]["node"].clone()
}

async fn credit_paid_request_charges_the_reported_usage(backend: Backend) {
    let env = env_with(backend, "").await;
    let app = &env.app;
    let alice = app.member("alice", "acme");
    let r = app.gql(Some(&alice), RUN, json!({"i": openai_input(json!({}))})).await;
    let res = &r.data()["runAi"];
    // 27 input and 7 output tokens at 0.15 / 0.6 per 1,000, plus the CHAT base of 0.1:
    // 0.1 + ceil((27*150 + 7*600) / 1000) milli = 0.1 + 0.009 = 0.109
    assert_eq!(res["creditsCharged"], "0.109");
    assert_eq!(res["content"], "The capital of France is Paris.");
    assert_eq!(
        (res["inputTokens"].as_i64(), res["outputTokens"].as_i64()),
        (Some(27), Some(7))
    );
    assert_eq!(res["billingMode"], "CREDITS");
    assert_eq!(res["wallet"]["available"], "99.891");
    assert_eq!(res["wallet"]["held"], "0");
    let e = last_entry(app, &alice).await;
    assert_eq!(
        e,
        json!({"kind": "AI_USAGE", "feature": "CHAT", "billingMode": "CREDITS", "status": "SUCCEEDED", "provider": "openai",
               "model": "gpt-4o-mini", "inputTokens": 27, "outputTokens": 7, "creditsConsumed": "0.109",
               "monthlyDelta": "-0.109", "balanceAfter": "99.891", "description": null})
    );
    assert_eq!(keys_seen(&env.mock).await, vec![format!("Bearer {PLATFORM_KEY}")]);
    // The estimate is what was held: at least the charge.
    let est = app
        .gql(
            Some(&alice),
            "query($i: AiRequestInput!) { estimateCost(input: $i) { maxCredits billingMode } }",
            json!({"i": openai_input(json!({}))}),
        )
        .await;
    let max: f64 = est.data()["estimateCost"]["maxCredits"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(max >= 0.109, "{max}");
    assert!(app.app.store.reconcile().await.unwrap().is_empty());
}

async fn failures_release_their_hold_and_charge_nothing(backend: Backend) {
    let env = env_with(backend, "").await;
    let app = &env.app;
    let carol = app.member("carol", "acme");
    let before = app.wallet(&carol).await;
    for (status, file, code, delay_ms) in [
        (500, "error-500.json", "PROVIDER_UNAVAILABLE", 0),
        (429, "error-429.json", "RATE_LIMITED", 0),
        (400, "error-400-context-length.json", "PROVIDER_ERROR", 0),
        (200, "chat-response.json", "PROVIDER_UNAVAILABLE", 4_000),
    ] {
        env.mock.reset().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(
                ResponseTemplate::new(status)
                    .set_body_raw(fixture(file), "application/json")
                    .set_delay(std::time::Duration::from_millis(delay_ms)),
            )
            .mount(&env.mock)
            .await;
        let r = app.gql(Some(&carol), RUN, json!({"i": openai_input(json!({}))})).await;
        assert_eq!(r.code(), code, "{status} {file}: {}", r.0);
        let w = app.wallet(&carol).await;
        assert_eq!(
            (w["available"].clone(), w["held"].as_str()),
            (before["available"].clone(), Some("0")),
            "{file}"
        );
        let e = last_entry(app, &carol).await;
        assert_eq!(
            (e["status"].as_str(), e["creditsConsumed"].as_str()),
            (Some("FAILED"), Some("0")),
            "{file}"
        );
    }
    // The platform key refused: an operator problem, PROVIDER_ERROR.
    env.mock.reset().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(401).set_body_raw(fixture("error-401.json"), "application/json"))
        .mount(&env.mock)
        .await;
    let r = app.gql(Some(&carol), RUN, json!({"i": openai_input(json!({}))})).await;
    assert_eq!(r.code(), "PROVIDER_ERROR");
    assert!(!r.0.to_string().contains(PLATFORM_KEY));
    assert!(app.app.store.reconcile().await.unwrap().is_empty());
}

async fn an_idempotent_retry_charges_once(backend: Backend) {
    let env = env_with(backend, "").await;
    let app = &env.app;
    let dan = app.member("dan", "acme");
    let input = openai_input(json!({"idempotencyKey": "req-1"}));
    let first = app.gql(Some(&dan), RUN, json!({"i": input})).await;
    let second = app.gql(Some(&dan), RUN, json!({"i": input})).await;
    assert_eq!(first.data()["runAi"]["id"], second.data()["runAi"]["id"]);
    assert_eq!(second.data()["runAi"]["content"], "The capital of France is Paris.");
    assert_eq!(second.data()["runAi"]["creditsCharged"], "0.109");
    assert_eq!(app.wallet(&dan).await["available"], "99.891", "charged once");
    assert_eq!(keys_seen(&env.mock).await.len(), 1, "the provider was called once");
    let other =
        openai_input(json!({"idempotencyKey": "req-1", "messages": [{"role": "user", "content": "something else"}]}));
    assert_eq!(
        app.gql(Some(&dan), RUN, json!({"i": other})).await.code(),
        "IDEMPOTENCY_CONFLICT"
    );
}

async fn bad_requests_are_refused_and_change_nothing(backend: Backend) {
    let env = env_with(backend, "").await;
    let app = &env.app;
    let eve = app.member("eve", "acme");
    for (input, code) in [
        (openai_input(json!({"model": "gpt-unknown"})), "BAD_USER_INPUT"),
        (openai_input(json!({"provider": "nope"})), "BAD_USER_INPUT"),
        (openai_input(json!({"messages": []})), "BAD_USER_INPUT"),
        (
            openai_input(json!({"messages": [{"role": "wizard", "content": "x"}]})),
            "BAD_USER_INPUT",
        ),
        (openai_input(json!({"maxOutputTokens": 0})), "BAD_USER_INPUT"),
        (openai_input(json!({"feature": "DANCING"})), "BAD_USER_INPUT"),
    ] {
        assert_eq!(
            app.gql(Some(&eve), RUN, json!({"i": input})).await.code(),
            code,
            "{input}"
        );
    }
    assert_eq!(app.wallet(&eve).await["available"], "100");
    assert_eq!(keys_seen(&env.mock).await.len(), 0);
}

async fn the_demo_provider_works_offline_and_caps_output_to_the_balance(backend: Backend) {
    let env = env_with(backend, "").await;
    let app = &env.app;
    let features = app
        .gql(Some(&app.member("x", "acme")), "{ aiFeatures { feature defaultProvider defaultModel description } providers { id models supportsStreaming } }", json!({}))
        .await;
    assert_eq!(features.data()["aiFeatures"].as_array().unwrap().len(), 4);
    assert!(
        features.data()["providers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "demo")
    );
    let demo = json!({"feature": "CHAT", "messages": [{"role": "user", "content": "hello there"}]});
    // Fay has half a credit left: less than the default output budget costs
    // (about 1.7), more than the shortest useful answer (64 tokens, about 0.26).
    let fay = app.member("fay", "acme");
    let w = app.wallet(&fay).await;
    spend(app, "fay", w["monthlyBalance"].as_str().unwrap().parse().unwrap()).await;
    app.grant("fay", "0.5", "half").await.data();
    let est = app
        .gql(
            Some(&fay),
            "query($i: AiRequestInput!) { estimateCost(input: $i) { maxCredits } }",
            json!({"i": demo}),
        )
        .await;
    let max: f64 = est.data()["estimateCost"]["maxCredits"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(max > 0.5, "the full request costs more than Fay has: {max}");
    let r = app.gql(Some(&fay), RUN, json!({"i": demo})).await;
    let res = &r.data()["runAi"];
    assert_eq!(
        (res["provider"].as_str(), res["model"].as_str()),
        (Some("demo"), Some("demo-1"))
    );
    assert!(res["content"].as_str().unwrap().contains("hello there"));
    let charged: f64 = res["creditsCharged"].as_str().unwrap().parse().unwrap();
    assert!(charged > 0.0 && charged <= 0.5);
    // Gus cannot afford even the shortest useful answer.
    let gus = app.member("gus", "acme");
    let w = app.wallet(&gus).await;
    spend(app, "gus", w["monthlyBalance"].as_str().unwrap().parse().unwrap()).await;
    app.grant("gus", "0.2", "fifth").await.data();
    let r = app.gql(Some(&gus), RUN, json!({"i": demo})).await;
    assert_eq!(r.code(), "INSUFFICIENT_CREDITS");
    let w = app.wallet(&gus).await;
    assert_eq!((w["available"].as_str(), w["held"].as_str()), (Some("0.2"), Some("0")));
}

async fn concurrent_requests_never_overdraw(backend: Backend) {
    let env = env_with(backend, "").await;
    let app = &env.app;
    let input =
        json!({"feature": "CHAT", "maxOutputTokens": 64, "messages": [{"role": "user", "content": "plan the sprint"}]});
    // What one such request costs (the demo answers deterministically).
    let probe = app.member("probe", "acme");
    let one = app.gql(Some(&probe), RUN, json!({"i": input})).await;
    let cost: creditgate_domain::Credits = one.data()["runAi"]["creditsCharged"].as_str().unwrap().parse().unwrap();
    // Gina's wallet affords exactly ten of them.
    let gina = app.member("gina", "acme");
    let w = app.wallet(&gina).await;
    spend(app, "gina", w["monthlyBalance"].as_str().unwrap().parse().unwrap()).await;
    let ten = creditgate_domain::Credits::from_millis(cost.millis() * 10);
    app.grant("gina", &ten.to_string(), "ten").await.data();
    let tasks = (0..100).map(|_| {
        let http = app.http.clone();
        let url = app.url("/graphql");
        let token = gina.clone();
        let body = json!({"query": RUN, "variables": {"i": input}});
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    });
    let results: Vec<Value> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let ok = results.iter().filter(|r| r["data"]["runAi"].is_object()).count();
    let refused = results
        .iter()
        .filter(|r| r["errors"][0]["extensions"]["code"] == "INSUFFICIENT_CREDITS")
        .count();
    assert_eq!(
        ok + refused,
        100,
        "{:?}",
        results
            .iter()
            .find(|r| r["errors"].is_array() && r["errors"][0]["extensions"]["code"] != "INSUFFICIENT_CREDITS")
    );
    assert!((1..=10).contains(&ok), "at most ten of them run, {ok} did");
    let w = app.wallet(&gina).await;
    let available: creditgate_domain::Credits = w["available"].as_str().unwrap().parse().unwrap();
    assert!(!available.is_negative());
    assert_eq!(w["held"], "0");
    let charged: i64 = results
        .iter()
        .filter_map(|r| r["data"]["runAi"]["creditsCharged"].as_str())
        .map(|c| c.parse::<creditgate_domain::Credits>().unwrap().millis())
        .sum();
    assert_eq!(charged, cost.millis() * ok as i64, "each ran at its price");
    assert_eq!(
        charged + available.millis(),
        ten.millis(),
        "every credit is accounted for"
    );
    assert!(app.app.store.reconcile().await.unwrap().is_empty());
}

async fn spend(app: &TestApp, user: &str, amount: creditgate_domain::Credits) {
    use creditgate_storage::{HoldRequest, Placement, UsageDetails};
    if !amount.is_positive() {
        return;
    }
    let Placement::Placed { hold, .. } = app.app.store.place_hold(user, &HoldRequest::new(amount)).await.unwrap()
    else {
        panic!()
    };
    app.app
        .store
        .settle_hold(user, &hold.id, amount, UsageDetails::default())
        .await
        .unwrap();
}

async fn rate_limits_apply_per_user(backend: Backend) {
    let env = env_with(backend, "").await;
    // A second app on the same mock with a limit of 2 at once.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("k");
    std::fs::write(&key_file, PLATFORM_KEY).unwrap();
    let toml = format!(
        "{}\n[ai]\nrequests_per_minute = 1\nburst = 2\n",
        providers_toml(&format!("{}/v1", env.mock.uri()), &key_file, 1_500)
    );
    let app = TestApp::builder(backend).config(&toml).start().await;
    let ivy = app.member("ivy", "acme");
    let jo = app.member("jo", "acme");
    let input = json!({"feature": "CHAT", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..2 {
        app.gql(Some(&ivy), RUN, json!({"i": input})).await.data();
    }
    assert_eq!(
        app.gql(Some(&ivy), RUN, json!({"i": input})).await.code(),
        "RATE_LIMITED"
    );
    app.gql(Some(&jo), RUN, json!({"i": input})).await.data();
}

on_both_databases!(
    credit_paid_request_charges_the_reported_usage,
    failures_release_their_hold_and_charge_nothing,
    an_idempotent_retry_charges_once,
    bad_requests_are_refused_and_change_nothing,
    the_demo_provider_works_offline_and_caps_output_to_the_balance,
    concurrent_requests_never_overdraw,
    rate_limits_apply_per_user,
);
