use creditgate_plugin_gemini::Gemini;
use creditgate_provider_sdk::testkit::ConformanceKit;
use creditgate_provider_sdk::{ChatRequest, ErrorClass, Message, Provider, Usage};

fn cases(provider: &dyn Provider) -> ConformanceKit<'_> {
    let usage = Some(Usage::new(14, 26).reasoning(18));
    let request = ChatRequest {
        model: "gemini-2.5-flash".into(),
        messages: vec![
            Message::system("You are a concise assistant. Answer in one sentence."),
            Message::user("What is the capital of France?"),
        ],
        max_output_tokens: 256,
        stream: false,
    };
    ConformanceKit::new(provider)
        .expected_request("generate", request, include_str!("../fixtures/generate-request.json"))
        .response("generate", include_str!("../fixtures/generate-response.json"), "The capital of France is Paris.", usage)
        .stream("stream", include_str!("../fixtures/stream-generate.sse"), "The capital of France is Paris.", usage)
        .error("bad key", 400, include_str!("../fixtures/error-400-api-key.json"), ErrorClass::Auth)
        .error("quota", 429, include_str!("../fixtures/error-429.json"), ErrorClass::RateLimit)
}

#[test]
fn the_plugin_conforms() {
    cases(&Gemini).run().into_result().unwrap();
}

#[test]
fn the_built_library_loads_through_the_host_and_conforms() {
    let plugin = creditgate_plugin_host::kit::load_built(env!("CARGO_MANIFEST_DIR")).unwrap();
    cases(&plugin).run().into_result().unwrap();
}
