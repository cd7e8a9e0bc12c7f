#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cases;

use creditgate_plugin_openai::OpenAiProvider;
use creditgate_provider_sdk::testkit::replay_stream;
use creditgate_provider_sdk::{Provider, RequestContext, SseEvent, StreamEvent, Usage};

#[test]
fn passes_the_conformance_kit() {
    let report = cases::kit(&OpenAiProvider).run().into_result().unwrap();
    assert!(report.passed.len() >= 15, "{report:?}");
}

#[test]
fn base_url_and_max_tokens_field_come_from_configuration() {
    let mut ctx = RequestContext::new("http://127.0.0.1:11434/v1/");
    ctx.options.insert("max_tokens_field".into(), "max_tokens".into());
    let req = OpenAiProvider
        .build_chat_request(&ctx, &cases::fixture_request(false))
        .unwrap();
    assert_eq!(req.url, "http://127.0.0.1:11434/v1/chat/completions");
    let body: serde_json::Value = serde_json::from_str(req.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["max_tokens"], 256);
    assert!(body.get("max_completion_tokens").is_none());
}

#[test]
fn a_stream_cut_before_the_usage_chunk_has_text_but_no_usage() {
    let full = include_str!("../../../fixtures/providers/openai/chat-stream.sse");
    let cut: String = full.split("\n\n").take(5).collect::<Vec<_>>().join("\n\n") + "\n\n";
    let outcome = replay_stream(&OpenAiProvider, &cut).unwrap();
    assert_eq!(outcome.text, "The capital of France");
    assert!(!outcome.done);
    assert_eq!(outcome.complete_usage(), None);
}

#[test]
fn an_error_object_inside_the_stream_is_classified() {
    let event = SseEvent {
        event: None,
        data: r#"{"error":{"message":"overloaded","type":"server_error","param":null,"code":null}}"#.into(),
    };
    let events = OpenAiProvider.parse_stream_event(&event).unwrap();
    assert!(
        matches!(&events[..], [StreamEvent::Error(e)] if e.class == creditgate_provider_sdk::ErrorClass::Overloaded)
    );
}

/// The recorded response with cache and reasoning counts set (the fixture's
/// own details objects, carrying zeros, with other numbers in them).
fn with_details(body: &str, cached: u64, reasoning: u64) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(body).unwrap();
    let usage = &mut v["usage"];
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 0);
    usage["prompt_tokens_details"]["cached_tokens"] = cached.into();
    usage["completion_tokens_details"]["reasoning_tokens"] = reasoning.into();
    v
}

#[test]
fn the_recorded_usage_has_zero_cached_and_reasoning_parts() {
    let body = include_str!("../../../fixtures/providers/openai/chat-response.json");
    let usage = OpenAiProvider.parse_chat_response(body).unwrap().usage.unwrap();
    assert_eq!(usage, cases::USAGE);
    assert_eq!((usage.cached_input_tokens, usage.reasoning_tokens), (0, 0));
}

#[test]
fn cached_and_reasoning_tokens_are_parts_of_the_totals() {
    let body = include_str!("../../../fixtures/providers/openai/chat-response.json");
    let v = with_details(body, 20, 5);
    let usage = OpenAiProvider
        .parse_chat_response(&v.to_string())
        .unwrap()
        .usage
        .unwrap();
    // prompt_tokens already includes cached_tokens; completion_tokens
    // already includes reasoning_tokens: nothing is added to the totals.
    assert_eq!(usage, Usage::new(27, 7).cached_input(20).reasoning(5));
}

#[test]
fn missing_or_null_details_mean_no_parts() {
    let body = include_str!("../../../fixtures/providers/openai/chat-response.json");
    let mut v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["usage"]["prompt_tokens_details"] = serde_json::Value::Null;
    v["usage"].as_object_mut().unwrap().remove("completion_tokens_details");
    let usage = OpenAiProvider
        .parse_chat_response(&v.to_string())
        .unwrap()
        .usage
        .unwrap();
    assert_eq!(usage, Usage::new(27, 7));
}

#[test]
fn the_streamed_usage_chunk_carries_the_parts() {
    let full = include_str!("../../../fixtures/providers/openai/chat-stream.sse");
    let (head, last) = full.trim_end().rsplit_once("\n\n").unwrap();
    let (rest, usage_chunk) = head.rsplit_once("\n\n").unwrap();
    assert_eq!(last, "data: [DONE]");
    let chunk = with_details(usage_chunk.strip_prefix("data: ").unwrap(), 20, 5);
    assert_eq!(chunk["choices"], serde_json::json!([]));
    let sse = format!("{rest}\n\ndata: {chunk}\n\n{last}\n\n");
    let outcome = replay_stream(&OpenAiProvider, &sse).unwrap();
    assert!(outcome.done);
    assert_eq!(outcome.text, cases::TEXT);
    assert_eq!(
        outcome.complete_usage(),
        Some(Usage::new(27, 7).cached_input(20).reasoning(5))
    );
}
