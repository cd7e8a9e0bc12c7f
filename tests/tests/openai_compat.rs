//! The OpenAI-compatible door, end to end: a real OpenAI client library
//! (async-openai, its base URL at the test server's /v1, the user's JWT as
//! its api key) against the demo provider and a mock OpenAI that replays the
//! recorded wire format, on SQLite and PostgreSQL. Charges are compared
//! with the same request through runAi.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{CreateChatCompletionRequest, CreateChatCompletionResponse};
use creditgate_e2e::openai::{OpenAiApp, mock_openai, openai_fixture};
use creditgate_e2e::{Backend, TestApp, on_both_databases};
use futures::StreamExt;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PLATFORM_KEY: &str = "sk-platform-0123456789abcdef";
const ALICE_KEY: &str = "sk-alice-SECRET-9f8e7d6c5b4a";
const QUESTION: &str = "What is the capital of France?";
const ANSWER: &str = "The capital of France is Paris.";

/// The mock OpenAI (plain answers for both keys, the recorded stream for
/// streamed requests) and a server in front of it.
async fn start(backend: Backend) -> (OpenAiApp, MockServer) {
    let mock = mock_openai(&[PLATFORM_KEY, ALICE_KEY], None).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"stream": true})))
        .respond_with(ResponseTemplate::new(200).set_body_raw(openai_fixture("chat-stream.sse"), "text/event-stream"))
        .with_priority(1)
        .mount(&mock)
        .await;
    let app = OpenAiApp::start(backend, &mock, PLATFORM_KEY, "").await;
    (app, mock)
}

/// An OpenAI SDK client pointed at creditgate, the JWT as its api key.
fn sdk(app: &TestApp, token: &str) -> Client<OpenAIConfig> {
    Client::with_config(OpenAIConfig::new().with_api_base(app.url("/v1")).with_api_key(token))
}

fn chat_request(model: &str, extra: Value) -> CreateChatCompletionRequest {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": QUESTION}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    serde_json::from_value(body).unwrap()
}

/// runAi's answer to the same question (for the runAi side of a comparison).
async fn run_ai(app: &TestApp, token: &str, provider: &str, model: &str) -> Value {
    let r = app
        .gql(
            Some(token),
            "mutation($i: AiRequestInput!) { runAi(input: $i) { content creditsCharged billingMode wallet { available } } }",
            json!({"i": {"feature": "CHAT", "provider": provider, "model": model,
                         "messages": [{"role": "user", "content": QUESTION}]}}),
        )
        .await;
    r.data()["runAi"].clone()
}

/// The newest journal entry of the caller, without what differs between users.
async fn last_entry(app: &TestApp, token: &str) -> Value {
    let r = app
        .gql(Some(token), "{ activity(first: 1) { edges { node { kind feature billingMode status provider model inputTokens outputTokens creditsConsumed monthlyDelta permanentDelta balanceAfter } } } }", json!({}))
        .await;
    r.data()["activity"]["edges"][0]["node"].clone()
}

async fn chat_requests_seen(mock: &MockServer) -> Vec<String> {
    mock.received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/chat/completions")
        .map(|r| r.headers.get("authorization").unwrap().to_str().unwrap().to_owned())
        .collect()
}

/// A request through the SDK is charged and journaled exactly as the same
/// request through runAi: plain and streamed, demo and OpenAI.
async fn the_sdk_is_charged_like_run_ai(backend: Backend) {
    let (env, mock) = start(backend).await;
    let app = &env.app;
    for (provider, model, name) in [
        ("openai", "gpt-4o-mini", "openai/gpt-4o-mini"),
        // A bare model id the pricing table knows.
        ("openai", "gpt-4o-mini", "gpt-4o-mini"),
        ("demo", "demo-1", "demo/demo-1"),
    ] {
        let sub = |who: &str| format!("{who}-{}", name.replace('/', "-"));
        let (runner, plain, streamer) = (sub("runner"), sub("plain"), sub("streamer"));
        let runner = app.member(&runner, "acme");
        let expected = run_ai(app, &runner, provider, model).await;
        let expected_entry = last_entry(app, &runner).await;

        let plain = app.member(&plain, "acme");
        let answer: CreateChatCompletionResponse = sdk(app, &plain)
            .chat()
            .create(chat_request(name, json!({})))
            .await
            .unwrap();
        assert_eq!(answer.object, "chat.completion");
        assert_eq!(answer.model, format!("{provider}/{model}"));
        assert_eq!(answer.choices.len(), 1);
        assert_eq!(
            answer.choices[0].message.content.as_deref(),
            expected["content"].as_str()
        );
        let usage = answer.usage.unwrap();
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens),
            (
                expected_entry["inputTokens"].as_u64().unwrap() as u32,
                expected_entry["outputTokens"].as_u64().unwrap() as u32,
                (expected_entry["inputTokens"].as_u64().unwrap() + expected_entry["outputTokens"].as_u64().unwrap())
                    as u32
            )
        );
        assert_eq!(last_entry(app, &plain).await, expected_entry, "{name}");
        assert_eq!(app.wallet(&plain).await["available"], expected["wallet"]["available"]);

        let streamer = app.member(&streamer, "acme");
        let mut chunks = sdk(app, &streamer)
            .chat()
            .create_stream(chat_request(
                name,
                json!({"stream": true, "stream_options": {"include_usage": true}}),
            ))
            .await
            .unwrap();
        let (mut text, mut usage, mut n) = (String::new(), None, 0);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.unwrap();
            assert_eq!(chunk.object, "chat.completion.chunk");
            n += 1;
            for c in &chunk.choices {
                text.push_str(c.delta.content.as_deref().unwrap_or(""));
            }
            if chunk.usage.is_some() {
                assert!(chunk.choices.is_empty());
                usage = chunk.usage;
            }
        }
        assert!(n > 2, "{n} chunks");
        let usage = usage.expect("a usage chunk");
        assert_eq!(
            (u64::from(usage.prompt_tokens), u64::from(usage.completion_tokens)),
            (
                expected_entry["inputTokens"].as_u64().unwrap(),
                expected_entry["outputTokens"].as_u64().unwrap()
            )
        );
        assert_eq!(text, expected["content"].as_str().unwrap(), "{name}");
        assert_eq!(last_entry(app, &streamer).await, expected_entry, "{name}");
        assert_eq!(
            app.wallet(&streamer).await["available"],
            expected["wallet"]["available"]
        );
    }
    // The OpenAI requests all went through the platform's key: 3 per model name.
    assert_eq!(chat_requests_seen(&mock).await.len(), 6);
    assert!(app.app.store.reconcile().await.unwrap().is_empty());
}

/// The X-Creditgate headers, the `creditgate` object of a stream's last
/// chunk, and `Idempotency-Key`: a retry is charged once.
async fn headers_streams_and_idempotency(backend: Backend) {
    let (env, mock) = start(backend).await;
    let app = &env.app;
    let alice = app.member("alice", "acme");
    let post = |body: Value, key: Option<&str>| {
        let mut req = app
            .http
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&alice)
            .json(&body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        req.send()
    };
    let body = json!({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": QUESTION}]});
    let first = post(body.clone(), Some("retry-1")).await.unwrap();
    assert_eq!(first.status(), 200);
    let header = |r: &reqwest::Response, name: &str| r.headers().get(name).unwrap().to_str().unwrap().to_owned();
    // 27 input and 7 output tokens at 0.15 / 0.6 per 1,000, plus the CHAT base of 0.1.
    assert_eq!(header(&first, "x-creditgate-credits-charged"), "0.109");
    assert_eq!(header(&first, "x-creditgate-balance"), "99.891");
    assert_eq!(header(&first, "x-creditgate-billing-mode"), "CREDITS");
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["choices"][0]["message"]["content"], ANSWER);
    assert_eq!(first["creditgate"]["credits_charged"], "0.109");

    // The retry answers the first result and charges nothing more.
    let retry = post(body.clone(), Some("retry-1")).await.unwrap();
    assert_eq!(retry.status(), 200);
    assert_eq!(header(&retry, "x-creditgate-credits-charged"), "0.109");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["id"], first["id"]);
    assert_eq!(app.wallet(&alice).await["available"], "99.891");
    assert_eq!(chat_requests_seen(&mock).await.len(), 1);
    // The same key for another request is a conflict.
    let other = json!({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Another question"}]});
    let conflict = post(other, Some("retry-1")).await.unwrap();
    assert_eq!(conflict.status(), 409);
    let conflict: Value = conflict.json().await.unwrap();
    assert_eq!(conflict["error"]["code"], "idempotency_conflict");

    // A stream: SSE chunks, the last one with the usage and the charge, then [DONE].
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let resp = post(streamed.clone(), None).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("text/event-stream"));
    let sse = resp.text().await.unwrap();
    let data: Vec<&str> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{sse}");
    let last: Value = serde_json::from_str(data[data.len() - 2]).unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        (&last["usage"]["prompt_tokens"], &last["usage"]["completion_tokens"]),
        (&json!(27), &json!(7))
    );
    assert_eq!(last["creditgate"]["credits_charged"], "0.109");
    assert_eq!(last["creditgate"]["balance"], "99.782");
    assert_eq!(last["creditgate"]["billing_mode"], "CREDITS");
    // Without include_usage the finish chunk is the last, with the charge and no usage.
    streamed["stream_options"] = json!({"include_usage": false});
    let sse = post(streamed, None).await.unwrap().text().await.unwrap();
    let data: Vec<&str> = sse.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    let last: Value = serde_json::from_str(data[data.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(last["usage"].is_null());
    assert_eq!(last["creditgate"]["balance"], "99.673");
}

async fn spend_everything(app: &TestApp, token: &str, user: &str) {
    use creditgate_storage::{HoldRequest, Placement, UsageDetails};
    let available: creditgate_domain::Credits = app.wallet(token).await["available"].as_str().unwrap().parse().unwrap();
    let Placement::Placed { hold, .. } = app
        .app
        .store
        .place_hold(user, &HoldRequest::new(available))
        .await
        .unwrap()
    else {
        panic!("no hold")
    };
    app.app
        .store
        .settle_hold(user, &hold.id, available, UsageDetails::default())
        .await
        .unwrap();
}

/// Failures in OpenAI's error shape, with fitting statuses; the SDK reads
/// them as API errors.
async fn errors_are_openai_errors(backend: Backend) {
    let (env, _mock) = start(backend).await;
    let app = &env.app;
    let broke = app.member("broke", "acme");
    spend_everything(app, &broke, "broke").await;
    match sdk(app, &broke)
        .chat()
        .create(chat_request("openai/gpt-4o-mini", json!({})))
        .await
    {
        Err(OpenAIError::ApiError(e)) => {
            assert_eq!(e.code.as_deref(), Some("insufficient_credits"));
            assert_eq!(e.r#type.as_deref(), Some("insufficient_quota"));
            assert!(e.message.contains("insufficient credits"), "{}", e.message);
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    // No token, a bad token.
    match sdk(app, "not-a-jwt")
        .chat()
        .create(chat_request("demo/demo-1", json!({})))
        .await
    {
        Err(OpenAIError::ApiError(e)) => assert_eq!(e.code.as_deref(), Some("unauthenticated")),
        other => panic!("expected an API error, got {other:?}"),
    }
    let raw = |token: Option<&str>, body: Value, headers: &[(&str, &str)]| {
        let mut req = app.http.post(app.url("/v1/chat/completions")).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            let e = &body["error"];
            // Exactly OpenAI's error body.
            let mut keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["code", "message", "param", "type"], "{body}");
            (status, e["code"].as_str().unwrap_or("").to_owned(), e.clone())
        }
    };
    let ok_body = json!({"model": "demo/demo-1", "messages": [{"role": "user", "content": "hi"}]});
    let (status, code, _) = raw(None, ok_body.clone(), &[]).await;
    assert_eq!((status, code.as_str()), (401, "unauthenticated"));
    let (status, code, _) = raw(Some(&broke), ok_body.clone(), &[]).await;
    assert_eq!((status, code.as_str()), (402, "insufficient_credits"));
    let alice = app.member("alice", "acme");
    let (status, code, _) = raw(Some(&alice), ok_body.clone(), &[("X-Creditgate-Feature", "TELEPATHY")]).await;
    assert_eq!((status, code.as_str()), (400, "bad_user_input"));
    let (status, code, e) = raw(
        Some(&alice),
        json!({"model": "nope/nothing", "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    )
    .await;
    assert_eq!(
        (status, code.as_str(), e["param"].as_str()),
        (404, "model_not_found", Some("model"))
    );
    let image = json!({"model": "demo/demo-1", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]});
    let (status, code, _) = raw(Some(&alice), image, &[]).await;
    assert_eq!((status, code.as_str()), (400, "bad_user_input"));
    let (status, _, _) = raw(Some(&alice), json!({"model": 7, "messages": "no"}), &[]).await;
    assert_eq!(status, 400);
    let (status, _, _) = raw(Some(&alice), json!({"model": "demo/demo-1", "messages": []}), &[]).await;
    assert_eq!(status, 400);
    let (status, _, _) = raw(
        Some(&alice),
        json!({"model": "demo/demo-1", "max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    let (status, code, _) = raw(Some(&app.service()), ok_body.clone(), &[]).await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    // Nothing above was charged to Alice.
    assert_eq!(app.wallet(&alice).await["available"], "100");

    // Text parts (what SDKs send) and the feature header are read.
    let parts = json!({"model": "demo/demo-1", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "standup notes"}]}]});
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&alice)
        .header("X-Creditgate-Feature", "STANDUP_SYNTHESIS")
        .json(&parts)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(last_entry(app, &alice).await["feature"], "STANDUP_SYNTHESIS");
}

/// /v1/models lists the priced models of the loaded providers.
async fn models_lists_the_priced_models(backend: Backend) {
    let (env, _mock) = start(backend).await;
    let app = &env.app;
    let alice = app.member("alice", "acme");
    let list = sdk(app, &alice).models().list().await.unwrap();
    assert_eq!(list.object, "list");
    let ids: Vec<String> = list.data.iter().map(|m| m.id.clone()).collect();
    let loaded = app.gql(Some(&alice), "{ providers { id } }", json!({})).await;
    let loaded: Vec<&str> = loaded.data()["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    // The shipped pricing table.
    let priced = [
        "anthropic/claude-haiku-4-5-20251001",
        "anthropic/claude-sonnet-4-6",
        "demo/demo-1",
        "openai/gpt-4.1",
        "openai/gpt-4o",
        "openai/gpt-4o-mini",
        "openai/gpt-5",
    ];
    let expected: Vec<String> = priced
        .iter()
        .filter(|id| loaded.contains(&id.split('/').next().unwrap()))
        .map(|s| s.to_string())
        .collect();
    assert_eq!(ids, expected);
    assert!(ids.contains(&"openai/gpt-4o-mini".to_string()) && ids.contains(&"demo/demo-1".to_string()));
    assert!(list.data.iter().all(|m| m.object == "model" && ids.contains(&m.id)));
    let r = app.http.get(app.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

/// A BYOK user's request through the door goes out with their key and
/// costs 0 credits.
async fn byok_through_the_door_costs_nothing(backend: Backend) {
    let (env, mock) = start(backend).await;
    let app = &env.app;
    let alice = app.member("alice", "acme");
    let set = app
        .gql(
            Some(&alice),
            "mutation($k: String!) { setByokKey(provider: \"openai\", apiKey: $k) { hint } }",
            json!({"k": ALICE_KEY}),
        )
        .await;
    set.data();
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&alice)
        .json(&json!({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": QUESTION}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = |n: &str| resp.headers().get(n).unwrap().to_str().unwrap().to_owned();
    assert_eq!(
        (
            h("x-creditgate-billing-mode"),
            h("x-creditgate-credits-charged"),
            h("x-creditgate-balance")
        ),
        ("BYOK".into(), "0".into(), "100".into())
    );
    let answer = sdk(app, &alice)
        .chat()
        .create(chat_request("gpt-4o-mini", json!({})))
        .await
        .unwrap();
    assert_eq!(answer.choices[0].message.content.as_deref(), Some(ANSWER));
    let e = last_entry(app, &alice).await;
    assert_eq!(
        (e["billingMode"].as_str(), e["creditsConsumed"].as_str()),
        (Some("BYOK"), Some("0"))
    );
    assert_eq!(app.wallet(&alice).await["available"], "100");
    assert_eq!(
        chat_requests_seen(&mock).await,
        vec![format!("Bearer {ALICE_KEY}"), format!("Bearer {ALICE_KEY}")]
    );
}

on_both_databases!(
    the_sdk_is_charged_like_run_ai,
    headers_streams_and_idempotency,
    errors_are_openai_errors,
    models_lists_the_priced_models,
    byok_through_the_door_costs_nothing,
);
