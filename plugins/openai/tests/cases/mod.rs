//! The conformance cases of the OpenAI plugin, built on the repository's
//! recorded wire fixtures. Shared with the plugin host's tests, which run the
//! same cases against the built library through the C ABI.

use creditgate_provider_sdk::testkit::ConformanceKit;
use creditgate_provider_sdk::{ChatRequest, ErrorClass, Message, Provider, Usage};

/// The request the fixtures were recorded for.
pub fn fixture_request(stream: bool) -> ChatRequest {
    ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![
            Message::system("You are a concise assistant. Answer in one sentence."),
            Message::user("What is the capital of France?"),
        ],
        max_output_tokens: 256,
        stream,
    }
}

/// The usage every fixture reports.
pub const USAGE: Usage = Usage::new(27, 7);

/// The answer every fixture gives.
pub const TEXT: &str = "The capital of France is Paris.";

/// All OpenAI conformance cases.
pub fn kit(provider: &dyn Provider) -> ConformanceKit<'_> {
    let f = |name: &str| -> &'static str {
        match name {
            "chat-request" => {
                include_str!("../../../../fixtures/providers/openai/chat-request.json")
            }
            "chat-stream-request" => {
                include_str!("../../../../fixtures/providers/openai/chat-stream-request.json")
            }
            "chat-response" => {
                include_str!("../../../../fixtures/providers/openai/chat-response.json")
            }
            "chat-stream" => include_str!("../../../../fixtures/providers/openai/chat-stream.sse"),
            "error-401" => include_str!("../../../../fixtures/providers/openai/error-401.json"),
            "error-429" => include_str!("../../../../fixtures/providers/openai/error-429.json"),
            "error-429-quota" => {
                include_str!("../../../../fixtures/providers/openai/error-429-insufficient-quota.json")
            }
            "error-400-context" => {
                include_str!("../../../../fixtures/providers/openai/error-400-context-length.json")
            }
            "error-500" => include_str!("../../../../fixtures/providers/openai/error-500.json"),
            _ => "",
        }
    };
    ConformanceKit::new(provider)
        .expected_request("chat", fixture_request(false), f("chat-request"))
        .expected_request("chat stream", fixture_request(true), f("chat-stream-request"))
        .response("chat", f("chat-response"), TEXT, Some(USAGE))
        .stream("chat", f("chat-stream"), TEXT, Some(USAGE))
        .error("401 invalid key", 401, f("error-401"), ErrorClass::Auth)
        .error("429 rate limit", 429, f("error-429"), ErrorClass::RateLimit)
        .error("429 quota", 429, f("error-429-quota"), ErrorClass::QuotaExceeded)
        .error("400 context", 400, f("error-400-context"), ErrorClass::ContextTooLong)
        .error("500", 500, f("error-500"), ErrorClass::Overloaded)
}
