//! The conformance cases of the demo plugin. Shared with the plugin host's tests.

use creditgate_provider_sdk::testkit::ConformanceKit;
use creditgate_provider_sdk::{ErrorClass, Provider, Usage};

/// All demo conformance cases.
pub fn kit(provider: &dyn Provider) -> ConformanceKit<'_> {
    ConformanceKit::new(provider)
        .response(
            "answer",
            r#"{"model":"demo-1","text":"Hello there.","usage":{"input_tokens":3,"output_tokens":2}}"#,
            "Hello there.",
            Some(Usage::new(3, 2)),
        )
        .stream(
            "words",
            "data: {\"type\":\"delta\",\"text\":\"Hello\"}\n\ndata: {\"type\":\"delta\",\"text\":\" there.\"}\n\ndata: {\"type\":\"usage\",\"usage\":{\"input_tokens\":3,\"output_tokens\":2}}\n\ndata: {\"type\":\"done\"}\n\n",
            "Hello there.",
            Some(Usage::new(3, 2)),
        )
        .error(
            "unknown model",
            404,
            r#"{"error":{"message":"the demo provider has no model \"x\""}}"#,
            ErrorClass::BadRequest,
        )
}
