#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cases;

use creditgate_plugin_anthropic::AnthropicProvider;
use creditgate_provider_sdk::testkit::replay_stream;
use creditgate_provider_sdk::{Provider, RequestContext, Usage};

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

const RESPONSE: &str = include_str!("../../../fixtures/providers/anthropic/messages-response.json");
const CACHE_HIT: &str = include_str!("../../../fixtures/providers/anthropic/messages-response-cache-hit.json");
const STREAM: &str = include_str!("../../../fixtures/providers/anthropic/messages-stream.sse");

#[test]
fn a_cache_hit_is_input_of_which_cached() {
    let usage = AnthropicProvider.parse_chat_response(CACHE_HIT).unwrap().usage.unwrap();
    // input_tokens (24) excludes the cache read (2,051): the total adds them,
    // and the cached part is the read.
    assert_eq!(usage.input_tokens, 24 + 2051);
    assert_eq!(usage.cached_input_tokens, 2051);
    assert_eq!(usage.cache_write_tokens, 0);
    assert_eq!(usage.output_tokens, 10);
}

#[test]
fn a_cache_write_is_input_of_which_written() {
    let mut v: serde_json::Value = serde_json::from_str(RESPONSE).unwrap();
    assert_eq!(v["usage"]["cache_creation_input_tokens"], 0);
    v["usage"]["cache_creation_input_tokens"] = 1500.into();
    v["usage"]["cache_creation"]["ephemeral_5m_input_tokens"] = 1500.into();
    v["usage"]["cache_read_input_tokens"] = 300.into();
    let usage = AnthropicProvider
        .parse_chat_response(&v.to_string())
        .unwrap()
        .usage
        .unwrap();
    assert_eq!(
        usage,
        Usage::new(24 + 1500 + 300, 10).cached_input(300).cache_write(1500)
    );
}

#[test]
fn thinking_tokens_are_reasoning_within_the_output() {
    let mut v: serde_json::Value = serde_json::from_str(RESPONSE).unwrap();
    v["usage"]["output_tokens_details"] = serde_json::json!({ "thinking_tokens": 6 });
    let usage = AnthropicProvider
        .parse_chat_response(&v.to_string())
        .unwrap()
        .usage
        .unwrap();
    assert_eq!(usage, Usage::new(24, 10).reasoning(6));
}

/// The recorded stream with cache counters in `message_start` and in the
/// cumulative `message_delta`, as the current API repeats them.
fn stream_with_cache(read: u64, write: u64, delta_repeats: bool) -> String {
    let start = r#""cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation""#;
    let delta = r#""cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":10"#;
    assert_eq!(STREAM.matches(start).count(), 1);
    assert_eq!(STREAM.matches(delta).count(), 1);
    let s = STREAM.replace(
        start,
        &format!(r#""cache_creation_input_tokens":{write},"cache_read_input_tokens":{read},"cache_creation""#),
    );
    if delta_repeats {
        s.replace(
            delta,
            &format!(r#""cache_creation_input_tokens":{write},"cache_read_input_tokens":{read},"output_tokens":10"#),
        )
    } else {
        // The older docs' message_delta: only output_tokens.
        s.replace(
            r#""usage":{"input_tokens":24,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":10}"#,
            r#""usage":{"output_tokens":10}"#,
        )
    }
}

#[test]
fn a_stream_carries_the_cache_parts_from_start_and_delta() {
    for delta_repeats in [true, false] {
        let outcome = replay_stream(&AnthropicProvider, &stream_with_cache(2051, 100, delta_repeats)).unwrap();
        assert!(outcome.done);
        assert_eq!(outcome.text, cases::TEXT);
        assert_eq!(
            outcome.complete_usage(),
            Some(Usage::new(24 + 2051 + 100, 10).cached_input(2051).cache_write(100)),
            "message_delta repeats the input: {delta_repeats}"
        );
    }
}

#[test]
fn the_recorded_stream_has_no_cache_parts() {
    let outcome = replay_stream(&AnthropicProvider, STREAM).unwrap();
    assert_eq!(outcome.complete_usage(), Some(cases::USAGE));
    assert_eq!(outcome.usage.cached_input_tokens, Some(0));
}
