#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cases;

use creditgate_plugin_demo::{DemoProvider, MODEL, answer};
use creditgate_provider_sdk::testkit::replay_stream;
use creditgate_provider_sdk::{ChatRequest, Message, Provider, RequestContext, Role, Usage};

#[test]
fn passes_the_conformance_kit() {
    let report = cases::kit(&DemoProvider).run().into_result().unwrap();
    assert!(report.passed.len() >= 8, "{report:?}");
}

#[test]
fn answers_from_the_prompt_deterministically_and_streams_word_by_word() {
    let (text, usage) = answer(&[(Role::System, "Be brief."), (Role::User, "What is  2+2?")], 1000);
    assert_eq!(
        text,
        "Demo answer to \"What is 2+2?\": this reply comes from the offline demo provider."
    );
    assert_eq!(usage, Usage::new(5, 14));
    let request = ChatRequest {
        model: MODEL.into(),
        messages: vec![Message::user("What is 2+2?")],
        max_output_tokens: 5,
        stream: true,
    };
    let built = DemoProvider
        .build_chat_request(&RequestContext::default(), &request)
        .unwrap();
    let response = DemoProvider.offline_exchange(&built).unwrap();
    assert_eq!(response.body.matches("\"delta\"").count(), 5);
    let outcome = replay_stream(&DemoProvider, &response.body).unwrap();
    assert_eq!(outcome.text, "Demo answer to \"What is");
    assert_eq!(outcome.complete_usage().unwrap().output_tokens, 5);
    assert!(outcome.done);
}

#[test]
fn an_unknown_model_is_refused() {
    let request = ChatRequest {
        model: "gpt-4o".into(),
        messages: vec![Message::user("hi")],
        max_output_tokens: 5,
        stream: false,
    };
    let built = DemoProvider
        .build_chat_request(&RequestContext::default(), &request)
        .unwrap();
    assert_eq!(DemoProvider.offline_exchange(&built).unwrap().status, 404);
}
