//! The conformance cases of the Anthropic plugin, built on the repository's
//! recorded wire fixtures. Shared with the plugin host's tests.

use creditgate_provider_sdk::testkit::ConformanceKit;
use creditgate_provider_sdk::{ChatRequest, ErrorClass, Message, Provider, Usage};

/// The request the fixtures were recorded for.
pub fn fixture_request(stream: bool) -> ChatRequest {
    ChatRequest {
        model: "claude-sonnet-4-6".into(),
        messages: vec![
            Message::system("You are a concise assistant. Answer in one sentence."),
            Message::user("What is the capital of France?"),
        ],
        max_output_tokens: 256,
        stream,
    }
}

/// The usage of the plain response and the stream.
pub const USAGE: Usage = Usage::new(24, 10);

/// The answer every fixture gives.
pub const TEXT: &str = "The capital of France is Paris.";

/// All Anthropic conformance cases.
pub fn kit(provider: &dyn Provider) -> ConformanceKit<'_> {
    ConformanceKit::new(provider)
        .expected_request(
            "messages",
            fixture_request(false),
            include_str!("../../../../fixtures/providers/anthropic/messages-request.json"),
        )
        .expected_request(
            "messages stream",
            fixture_request(true),
            include_str!("../../../../fixtures/providers/anthropic/messages-stream-request.json"),
        )
        .response(
            "messages",
            include_str!("../../../../fixtures/providers/anthropic/messages-response.json"),
            TEXT,
            Some(USAGE),
        )
        .response(
            "cache hit (input includes cache reads)",
            include_str!("../../../../fixtures/providers/anthropic/messages-response-cache-hit.json"),
            TEXT,
            Some(Usage::new(24 + 2051, 10).cached_input(2051)),
        )
        .stream(
            "messages",
            include_str!("../../../../fixtures/providers/anthropic/messages-stream.sse"),
            TEXT,
            Some(USAGE),
        )
        .stream_error(
            "overloaded mid-stream",
            include_str!("../../../../fixtures/providers/anthropic/messages-stream-error.sse"),
            "",
            ErrorClass::Overloaded,
        )
        .error(
            "401",
            401,
            include_str!("../../../../fixtures/providers/anthropic/error-401.json"),
            ErrorClass::Auth,
        )
        .error(
            "429",
            429,
            include_str!("../../../../fixtures/providers/anthropic/error-429.json"),
            ErrorClass::RateLimit,
        )
        .error(
            "529",
            529,
            include_str!("../../../../fixtures/providers/anthropic/error-529.json"),
            ErrorClass::Overloaded,
        )
        .error(
            "400",
            400,
            include_str!("../../../../fixtures/providers/anthropic/error-400.json"),
            ErrorClass::BadRequest,
        )
        .error(
            "400 context",
            400,
            include_str!("../../../../fixtures/providers/anthropic/error-400-context-length.json"),
            ErrorClass::ContextTooLong,
        )
}
