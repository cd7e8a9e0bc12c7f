#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cases;

use creditgate_plugin_anthropic::AnthropicProvider;
use creditgate_provider_sdk::testkit::replay_stream;
use creditgate_provider_sdk::{Provider, RequestContext};

#[test]
fn passes_the_conformance_kit() {
    let report = cases::kit(&AnthropicProvider).run().into_result().unwrap();
    assert!(report.passed.len() >= 15, "{report:?}");
}

#[test]
fn headers_match_the_recorded_ones() {
    let req = AnthropicProvider
        .build_chat_request(
            &RequestContext::new("https://api.anthropic.com/v1"),
            &cases::fixture_request(false),
        )
        .unwrap();
    assert_eq!(req.url, "https://api.anthropic.com/v1/messages");
    assert_eq!(req.header_value("anthropic-version"), Some("2026-10-21"));
    assert_eq!(req.header_value("content-type"), Some("application/json"));
    assert!(req.header_value("authorization").is_none());
}

#[test]
fn a_cut_stream_keeps_input_usage_and_text() {
    let full = include_str!("../../../fixtures/providers/anthropic/messages-stream.sse");
    let cut: String = full.split("\n\n").take(5).collect::<Vec<_>>().join("\n\n") + "\n\n";
    let outcome = replay_stream(&AnthropicProvider, &cut).unwrap();
    assert_eq!(outcome.text, "The capital of France is");
    assert_eq!(outcome.usage.input_tokens, Some(24));
    assert_eq!(outcome.usage.output_tokens, None);
    assert!(!outcome.done);
}
