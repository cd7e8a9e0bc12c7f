//! Mock providers on 127.0.0.1 that replay the recorded wire fixtures
//! (fixtures/providers): OpenAI and Anthropic, plain and streamed, and
//! their errors.

use super::*;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/providers");

pub(crate) fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIX}/{name}")).unwrap()
}

pub(crate) fn json(status: u16, body: String) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body, "application/json")
}

pub(crate) fn sse(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
}

pub(crate) async fn openai_mock() -> MockServer {
    let server = MockServer::start().await;
    let chat = || Mock::given(method("POST")).and(path("/v1/chat/completions"));
    let bearer = |k: &str| header("authorization", format!("Bearer {k}").as_str());
    chat()
        .and(bearer("sk-good"))
        .and(body_partial_json(serde_json::json!({"stream": false})))
        .respond_with(json(200, fixture("openai/chat-response.json")))
        .mount(&server)
        .await;
    chat()
        .and(bearer("sk-good"))
        .and(body_partial_json(serde_json::json!({"stream": true})))
        .respond_with(sse(fixture("openai/chat-stream.sse")))
        .mount(&server)
        .await;
    chat()
        .and(bearer("creditgate-gateway"))
        .respond_with(json(200, fixture("openai/chat-response.json")))
        .mount(&server)
        .await;
    chat()
        .and(bearer("sk-bad"))
        .respond_with(json(401, fixture("openai/error-401.json")))
        .mount(&server)
        .await;
    chat()
        .and(bearer("sk-busy"))
        .respond_with(json(429, fixture("openai/error-429.json")).insert_header("retry-after", "1"))
        .mount(&server)
        .await;
    chat()
        .and(bearer("sk-broke"))
        .respond_with(json(429, fixture("openai/error-429-insufficient-quota.json")))
        .mount(&server)
        .await;
    chat()
        .and(bearer("sk-long"))
        .respond_with(json(400, fixture("openai/error-400-context-length.json")))
        .mount(&server)
        .await;
    chat()
        .and(bearer("sk-500"))
        .respond_with(json(500, fixture("openai/error-500.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(bearer("sk-good"))
        .respond_with(json(200, fixture("openai/models-list.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(bearer("sk-bad"))
        .respond_with(json(401, fixture("openai/error-401.json")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/slow/v1/chat/completions"))
        .respond_with(json(200, fixture("openai/chat-response.json")).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    server
}

/// The recorded stream with the cache-hit fixture's cache read (2,051) in
/// `message_start` and in the cumulative `message_delta`.
pub(crate) fn anthropic_cache_stream() -> String {
    let recorded = fixture("anthropic/messages-stream.sse");
    let zero = r#""cache_read_input_tokens":0"#;
    assert_eq!(recorded.matches(zero).count(), 2);
    recorded.replace(zero, r#""cache_read_input_tokens":2051"#)
}

pub(crate) async fn anthropic_mock() -> MockServer {
    let server = MockServer::start().await;
    let messages = || {
        Mock::given(method("POST"))
            .and(path("/v1/messages"))
            .and(header("anthropic-version", "2026-10-21"))
    };
    messages()
        .and(header("x-api-key", "ant-good"))
        .and(body_partial_json(serde_json::json!({"stream": true})))
        .respond_with(sse(fixture("anthropic/messages-stream.sse")))
        .mount(&server)
        .await;
    messages()
        .and(header("x-api-key", "ant-good"))
        .respond_with(json(200, fixture("anthropic/messages-response.json")))
        .mount(&server)
        .await;
    messages()
        .and(header("x-api-key", "ant-cache"))
        .and(body_partial_json(serde_json::json!({"stream": true})))
        .respond_with(sse(anthropic_cache_stream()))
        .mount(&server)
        .await;
    messages()
        .and(header("x-api-key", "ant-cache"))
        .respond_with(json(200, fixture("anthropic/messages-response-cache-hit.json")))
        .mount(&server)
        .await;
    messages()
        .and(header("x-api-key", "ant-bad"))
        .respond_with(json(401, fixture("anthropic/error-401.json")))
        .mount(&server)
        .await;
    messages()
        .and(header("x-api-key", "ant-busy"))
        .respond_with(json(429, fixture("anthropic/error-429.json")).insert_header("retry-after", "14"))
        .mount(&server)
        .await;
    messages()
        .and(header("x-api-key", "ant-overloaded"))
        .respond_with(json(529, fixture("anthropic/error-529.json")))
        .mount(&server)
        .await;
    messages()
        .and(header("x-api-key", "ant-midstream"))
        .respond_with(sse(fixture("anthropic/messages-stream-error.sse")))
        .mount(&server)
        .await;
    messages()
        .and(header("x-api-key", "ant-long"))
        .respond_with(json(400, fixture("anthropic/error-400-context-length.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("x-api-key", "ant-good"))
        .respond_with(json(200, fixture("anthropic/models-list.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("x-api-key", "ant-bad"))
        .respond_with(json(401, fixture("anthropic/error-401.json")))
        .mount(&server)
        .await;
    server
}
