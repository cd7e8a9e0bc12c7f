//! The conformance kit must fail a plugin that breaks the rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use creditgate_provider_sdk::testkit::ConformanceKit;
use creditgate_provider_sdk::{
    ChatRequest, ChatResponse, ClassifiedError, ErrorClass, HttpRequest, KEY_PLACEHOLDER, Manifest, Method, ModelInfo,
    PluginError, Provider, RequestContext, SseEvent, StreamEvent,
};

struct Leaky;

impl Provider for Leaky {
    fn manifest(&self) -> Manifest {
        Manifest::new("leaky", "Leaky", "1.0.0")
            .model(ModelInfo::new("m", 100))
            .allowed_host("api.leaky.example")
            .default_base_url("https://api.leaky.example/v1")
    }
    fn build_chat_request(&self, _ctx: &RequestContext, request: &ChatRequest) -> Result<HttpRequest, PluginError> {
        // Key in the URL, hard-coded host, no output cap.
        Ok(HttpRequest::new(
            Method::Post,
            format!("https://other.example/v1/chat?key={KEY_PLACEHOLDER}"),
        )
        .json_body(&serde_json::json!({ "model": request.model })))
    }
    fn parse_chat_response(&self, _body: &str) -> Result<ChatResponse, PluginError> {
        panic!("boom")
    }
    fn classify_error(&self, _status: u16, _body: &str) -> ClassifiedError {
        ClassifiedError::new(ErrorClass::Other, "")
    }
    fn parse_stream_event(&self, _event: &SseEvent) -> Result<Vec<StreamEvent>, PluginError> {
        Ok(Vec::new())
    }
    fn build_validate_key_request(&self, ctx: &RequestContext) -> Result<HttpRequest, PluginError> {
        Ok(HttpRequest::new(Method::Get, ctx.url("/models")))
    }
}

#[test]
fn a_leaky_plugin_fails_with_every_problem_listed() {
    let failure = ConformanceKit::new(&Leaky)
        .response("r", "{}", "x", None)
        .error("401", 401, "{}", ErrorClass::Auth)
        .run()
        .into_result()
        .unwrap_err();
    let text = failure.to_string();
    assert!(text.contains("placeholder is in the URL"), "{text}");
    assert!(text.contains("validate-key request"), "{text}");
    assert!(text.contains("panicked: boom"), "{text}");
    assert!(text.contains("error 401"), "{text}");
    assert!(text.contains("status-only classification 429"), "{text}");
}
