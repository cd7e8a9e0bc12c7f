//! A mock OpenAI server on 127.0.0.1 that replays the recorded wire format
//! (fixtures/providers/openai): the recorded answer for the keys it knows,
//! 401 for any other key, and /v1/models validating keys the same way.

use std::time::Duration;

use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{Backend, TestApp, providers_toml};

/// A recorded OpenAI body.
pub fn openai_fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../fixtures/providers/openai/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The mock; chat answers take `delay` when given.
pub async fn mock_openai(keys: &[&str], delay: Option<Duration>) -> MockServer {
    let mock = MockServer::start().await;
    for key in keys {
        let mut answer =
            ResponseTemplate::new(200).set_body_raw(openai_fixture("chat-response.json"), "application/json");
        if let Some(d) = delay {
            answer = answer.set_delay(d);
        }
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(header("authorization", format!("Bearer {key}").as_str()))
            .respond_with(answer)
            .with_priority(5)
            .mount(&mock)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/models"))
            .and(header("authorization", format!("Bearer {key}").as_str()))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw(openai_fixture("models-list.json"), "application/json"),
            )
            .with_priority(5)
            .mount(&mock)
            .await;
    }
    for (verb, route) in [("POST", "/v1/chat/completions"), ("GET", "/v1/models")] {
        Mock::given(method(verb))
            .and(path(route))
            .respond_with(ResponseTemplate::new(401).set_body_raw(openai_fixture("error-401.json"), "application/json"))
            .with_priority(10)
            .mount(&mock)
            .await;
    }
    mock
}

/// A test app serving the demo provider and `mock` as `openai`, whose
/// platform key is `platform_key`; no rate limit; `extra` TOML after.
pub struct OpenAiApp {
    pub app: TestApp,
    pub dir: tempfile::TempDir,
}

impl OpenAiApp {
    pub async fn start(backend: Backend, mock: &MockServer, platform_key: &str, extra: &str) -> OpenAiApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let app = TestApp::builder(backend)
            .config(&Self::toml(mock, platform_key, &dir, extra))
            .start()
            .await;
        OpenAiApp { app, dir }
    }

    /// The configuration that points at `mock` (for replicas too).
    pub fn toml(mock: &MockServer, platform_key: &str, dir: &tempfile::TempDir, extra: &str) -> String {
        let key_file = dir.path().join("openai-key");
        std::fs::write(&key_file, platform_key).expect("key file");
        format!(
            "{}\n[ai]\nrequests_per_minute = 0\n{extra}",
            providers_toml(&format!("{}/v1", mock.uri()), &key_file, 10_000)
        )
    }
}
