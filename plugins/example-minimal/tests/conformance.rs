#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use creditgate_example_minimal::EchoProvider;
use creditgate_provider_sdk::testkit::ConformanceKit;
use creditgate_provider_sdk::{ErrorClass, Usage};

#[test]
fn echo_passes_the_conformance_kit() {
    let usage = Some(Usage::new(5, 2));
    ConformanceKit::new(&EchoProvider)
        .response(
            "answer",
            r#"{"output":"Hello there","tokens_in":5,"tokens_out":2}"#,
            "Hello there",
            usage,
        )
        .stream(
            "stream",
            "data: {\"delta\":\"Hello\"}\n\ndata: {\"delta\":\" there\"}\n\ndata: {\"done\":true,\"tokens_in\":5,\"tokens_out\":2}\n\n",
            "Hello there",
            usage,
        )
        .error("bad key", 401, r#"{"error":"bad key"}"#, ErrorClass::Auth)
        .error("slow down", 429, r#"{"error":"slow down"}"#, ErrorClass::RateLimit)
        .run()
        .into_result()
        .unwrap();
}
