#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cases;

use creditgate_plugin_openai::OpenAiProvider;
use creditgate_provider_sdk::testkit::replay_stream;
use creditgate_provider_sdk::{Provider, RequestContext, SseEvent, StreamEvent};

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
