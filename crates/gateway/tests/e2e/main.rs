//! End-to-end: the gateway loads the built plugin libraries from a folder and
//! runs real requests against mock providers on 127.0.0.1 that replay the
//! recorded wire fixtures (fixtures/providers).
//!
//! Needs the plugin libraries built first (see crates/plugin-host/tests/common).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../plugin-host/tests/common/mod.rs"]
mod common;
mod mocks;
mod streams;

use std::time::Duration;

use creditgate_gateway::{
    ApiKey, ChatRequest, ErrorKind, Gateway, KeySource, Message, ProviderConfig, ProviderError, ProvidersConfig,
    StreamEvent, Usage,
};
use futures::StreamExt;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use mocks::{anthropic_mock, fixture, openai_mock};

const TEXT: &str = "The capital of France is Paris.";

fn user(key: &str) -> ApiKey {
    ApiKey::User(SecretString::from(key.to_owned()))
}

fn openai_request(stream: bool) -> ChatRequest {
    ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![
            Message::system("You are a concise assistant. Answer in one sentence."),
            Message::user("What is the capital of France?"),
        ],
        max_output_tokens: 256,
        stream,
    }
}

fn anthropic_request() -> ChatRequest {
    ChatRequest {
        model: "claude-sonnet-4-6".into(),
        ..openai_request(false)
    }
}

struct Setup {
    gateway: Gateway,
    openai: MockServer,
    _anthropic: MockServer,
    _dir: tempfile::TempDir,
}

fn provider(plugin: &str, base_url: String) -> ProviderConfig {
    ProviderConfig {
        plugin: Some(plugin.into()),
        base_url: Some(base_url),
        ..ProviderConfig::default()
    }
}

async fn setup_with(extra: impl FnOnce(&mut ProvidersConfig)) -> Setup {
    let dir = common::folder_with_in_tree_plugins();
    common::install(dir.path(), "creditgate_testlib_faulty", "creditgate_plugin_faulty");
    let openai = openai_mock().await;
    let anthropic = anthropic_mock().await;
    let mut config = ProvidersConfig {
        plugin_dir: Some(dir.path().to_owned()),
        ..ProvidersConfig::default()
    };
    config.providers.insert(
        "openai".into(),
        ProviderConfig {
            api_key_env: Some("CARGO_PKG_NAME".into()),
            ..provider("openai", format!("{}/v1", openai.uri()))
        },
    );
    config.providers.insert(
        "anthropic".into(),
        ProviderConfig {
            api_key_env: Some("CREDITGATE_TEST_SURELY_UNSET_VARIABLE".into()),
            ..provider("anthropic", format!("{}/v1", anthropic.uri()))
        },
    );
    config.providers.insert(
        "slow".into(),
        ProviderConfig {
            timeout_ms: Some(300),
            ..provider("openai", format!("{}/slow/v1", openai.uri()))
        },
    );
    extra(&mut config);
    let gateway = Gateway::load(&config).unwrap();
    Setup {
        gateway,
        openai,
        _anthropic: anthropic,
        _dir: dir,
    }
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

async fn collect(stream: creditgate_gateway::ChatStream) -> (String, Option<StreamEvent>, Option<ProviderError>) {
    let mut text = String::new();
    let mut finished = None;
    let mut error = None;
    let mut stream = stream;
    while let Some(item) = stream.next().await {
        match item {
            Ok(StreamEvent::TextDelta(delta)) => text.push_str(&delta),
            Ok(event @ StreamEvent::Finished { .. }) => finished = Some(event),
            Err(err) => error = Some(err),
        }
    }
    (text, finished, error)
}

#[tokio::test]
async fn lists_the_loaded_providers() {
    let s = setup().await;
    let providers = s.gateway.providers();
    let ids: Vec<_> = providers.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["anthropic", "demo", "faulty", "openai", "slow"]);
    let openai = s.gateway.provider("openai").unwrap();
    assert_eq!(openai.name, "OpenAI");
    assert!(openai.supports_streaming);
    assert!(openai.has_platform_key);
    assert!(
        openai
            .models
            .iter()
            .any(|m| m.id == "gpt-4o-mini" && m.context_window == 128_000)
    );
    let slow = s.gateway.provider("slow").unwrap();
    assert_eq!(slow.plugin_id, "openai");
    let demo = s.gateway.provider("demo").unwrap();
    assert!(demo.offline);
    assert!(s.gateway.skipped_plugins().is_empty());
}

#[tokio::test]
async fn openai_chat_sends_the_recorded_request_and_parses_the_answer() {
    let s = setup().await;
    let answer = s
        .gateway
        .chat("openai", openai_request(false), user("sk-good"))
        .await
        .unwrap();
    assert_eq!(answer.text, TEXT);
    assert_eq!(answer.usage, Some(Usage::new(27, 7)));
    assert_eq!(answer.model, "gpt-4o-mini-2024-07-18");
    let received = s.openai.received_requests().await.unwrap();
    let sent = received
        .iter()
        .find(|r| r.url.path() == "/v1/chat/completions")
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    let recorded: serde_json::Value = serde_json::from_str(&fixture("openai/chat-request.json")).unwrap();
    assert_eq!(body, recorded);
    assert_eq!(sent.headers.get("authorization").unwrap(), "Bearer sk-good");
}

#[tokio::test]
async fn the_platform_key_comes_from_the_configured_environment_variable() {
    let s = setup().await;
    let answer = s
        .gateway
        .chat("openai", openai_request(false), ApiKey::Platform)
        .await
        .unwrap();
    assert_eq!(answer.text, TEXT);
    let err = s
        .gateway
        .chat("anthropic", anthropic_request(), ApiKey::Platform)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::PlatformKeyMissing { .. }), "{err}");
}

#[tokio::test]
async fn openai_stream_yields_the_text_and_the_final_usage() {
    let s = setup().await;
    let stream = s
        .gateway
        .chat_stream("openai", openai_request(true), user("sk-good"))
        .await
        .unwrap();
    let meter = stream.meter();
    let (text, finished, error) = collect(stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(text, TEXT);
    assert_eq!(
        finished,
        Some(StreamEvent::Finished {
            usage: Some(Usage::new(27, 7)),
            model: "gpt-4o-mini-2024-07-18".into()
        })
    );
    let snap = meter.snapshot();
    assert!(snap.finished);
    assert_eq!(snap.text, TEXT);
}

#[tokio::test]
async fn anthropic_chat_and_stream() {
    let s = setup().await;
    let answer = s
        .gateway
        .chat("anthropic", anthropic_request(), user("ant-good"))
        .await
        .unwrap();
    assert_eq!(answer.text, TEXT);
    assert_eq!(answer.usage, Some(Usage::new(24, 10)));
    let stream = s
        .gateway
        .chat_stream("anthropic", anthropic_request(), user("ant-good"))
        .await
        .unwrap();
    let (text, finished, error) = collect(stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(text, TEXT);
    assert!(matches!(
        finished,
        Some(StreamEvent::Finished {
            usage: Some(u),
            ..
        }) if u == Usage::new(24, 10)
    ));
}

#[tokio::test]
async fn cache_reads_cross_the_plugin_boundary_as_a_part_of_the_input() {
    let s = setup().await;
    let cached = Usage::new(24 + 2051, 10).cached_input(2051);
    let answer = s
        .gateway
        .chat("anthropic", anthropic_request(), user("ant-cache"))
        .await
        .unwrap();
    assert_eq!(answer.usage, Some(cached));
    let tokens = answer.token_usage().unwrap();
    assert_eq!((tokens.plain_input(), tokens.cached_input()), (24, 2051));
    let stream = s
        .gateway
        .chat_stream(
            "anthropic",
            ChatRequest {
                stream: true,
                ..anthropic_request()
            },
            user("ant-cache"),
        )
        .await
        .unwrap();
    let meter = stream.meter();
    let (text, finished, error) = collect(stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(text, TEXT);
    assert!(
        matches!(finished, Some(StreamEvent::Finished { usage: Some(u), .. }) if u == cached),
        "{finished:?}"
    );
    let snap = meter.snapshot();
    assert_eq!(snap.cached_input_tokens, Some(2051));
    assert_eq!(snap.token_usage_or(0, 0), tokens);
}

#[tokio::test]
async fn provider_errors_are_classified_and_never_show_the_key() {
    let s = setup().await;
    let chat = |provider: &'static str, key: &'static str| {
        let request = if provider == "openai" {
            openai_request(false)
        } else {
            anthropic_request()
        };
        let gateway = &s.gateway;
        async move { gateway.chat(provider, request, user(key)).await.unwrap_err() }
    };
    let err = chat("openai", "sk-bad").await;
    assert!(
        matches!(
            err,
            ProviderError::KeyRejected {
                key_source: KeySource::User,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::KeyInvalid);
    assert!(!err.to_string().contains("sk-bad"));

    let err = chat("openai", "sk-busy").await;
    assert!(
        matches!(err, ProviderError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(1)),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::RateLimited);

    let err = chat("openai", "sk-broke").await;
    assert!(matches!(err, ProviderError::QuotaExceeded { .. }), "{err}");

    let err = chat("openai", "sk-long").await;
    assert!(matches!(err, ProviderError::ContextTooLong { .. }), "{err}");

    let err = chat("openai", "sk-500").await;
    assert!(
        matches!(err, ProviderError::Unavailable { status: Some(500), .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable);

    let err = chat("anthropic", "ant-bad").await;
    assert_eq!(err.kind(), ErrorKind::KeyInvalid, "{err}");
    let err = chat("anthropic", "ant-busy").await;
    assert!(
        matches!(err, ProviderError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(14)),
        "{err}"
    );
    let err = chat("anthropic", "ant-overloaded").await;
    assert!(
        matches!(err, ProviderError::Unavailable { status: Some(529), .. }),
        "{err}"
    );
    let err = chat("anthropic", "ant-long").await;
    assert!(matches!(err, ProviderError::ContextTooLong { .. }), "{err}");
}

#[tokio::test]
async fn an_error_event_inside_an_anthropic_stream_ends_it() {
    let s = setup().await;
    let stream = s
        .gateway
        .chat_stream("anthropic", anthropic_request(), user("ant-midstream"))
        .await
        .unwrap();
    let meter = stream.meter();
    let (text, finished, error) = collect(stream).await;
    assert_eq!(text, "");
    assert!(finished.is_none());
    assert!(matches!(error, Some(ProviderError::Unavailable { .. })), "{error:?}");
    let snap = meter.snapshot();
    assert_eq!(snap.input_tokens, Some(24));
    assert!(!snap.finished);
}

#[tokio::test]
async fn key_validation_uses_the_models_endpoint() {
    let s = setup().await;
    let key = |k: &str| SecretString::from(k.to_owned());
    s.gateway.validate_key("openai", &key("sk-good")).await.unwrap();
    let err = s.gateway.validate_key("openai", &key("sk-bad")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyInvalid, "{err}");
    s.gateway.validate_key("anthropic", &key("ant-good")).await.unwrap();
    let err = s.gateway.validate_key("anthropic", &key("ant-bad")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyInvalid, "{err}");
    s.gateway.validate_key("demo", &key("anything")).await.unwrap();
}

#[tokio::test]
async fn a_slow_upstream_hits_the_configured_timeout() {
    let s = setup().await;
    let err = s
        .gateway
        .chat("slow", openai_request(false), user("sk-good"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Timeout { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn unknown_providers_and_models_are_refused() {
    let s = setup().await;
    let err = s
        .gateway
        .chat("nope", openai_request(false), ApiKey::Platform)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownProviderOrModel);
    let mut request = openai_request(false);
    request.model = "gpt-0".into();
    let err = s.gateway.chat("openai", request, user("sk-good")).await.unwrap_err();
    assert!(matches!(err, ProviderError::UnknownModel { .. }), "{err}");
}

fn faulty_request(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![Message::user("hi")],
        max_output_tokens: 10,
        stream: false,
    }
}

#[tokio::test]
async fn forbidden_hosts_misplaced_keys_and_panics_are_refused_and_the_gateway_goes_on() {
    let s = setup().await;
    let err = s
        .gateway
        .chat("faulty", faulty_request("evil-host"), user("sk-secret-1234"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::HostNotAllowed { host, .. } if host.contains("attacker.invalid")),
        "{err}"
    );
    let err = s
        .gateway
        .chat("faulty", faulty_request("key-in-url"), user("sk-secret-1234"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Plugin { .. }), "{err}");
    assert!(!err.to_string().contains("sk-secret-1234"));
    for _ in 0..3 {
        let err = s
            .gateway
            .chat("faulty", faulty_request("panic"), user("sk-secret-1234"))
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::PluginPanic { .. }), "{err}");
        assert_eq!(err.kind(), ErrorKind::ProviderError);
        let err = s
            .gateway
            .validate_key("faulty", &SecretString::from("k".to_owned()))
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::PluginPanic { .. }), "{err}");
    }
    // The gateway still serves the others.
    let answer = s
        .gateway
        .chat("demo", demo_request(false), ApiKey::Platform)
        .await
        .unwrap();
    assert!(answer.text.starts_with("Demo answer to"));
}

fn demo_request(stream: bool) -> ChatRequest {
    ChatRequest {
        model: "demo-1".into(),
        messages: vec![Message::user("How are the sprints going?")],
        max_output_tokens: 100,
        stream,
    }
}

#[tokio::test]
async fn the_demo_provider_answers_and_streams_offline() {
    let s = setup().await;
    let answer = s
        .gateway
        .chat("demo", demo_request(false), ApiKey::Platform)
        .await
        .unwrap();
    let stream = s
        .gateway
        .chat_stream("demo", demo_request(true), ApiKey::Platform)
        .await
        .unwrap();
    let (text, finished, error) = collect(stream).await;
    assert!(error.is_none());
    assert_eq!(text, answer.text);
    assert!(matches!(finished, Some(StreamEvent::Finished { usage, .. }) if usage == answer.usage));
}

#[tokio::test]
async fn the_embedded_default_serves_the_three_plugins_and_parses_from_toml() {
    let dir = common::folder_with_in_tree_plugins();
    let config: ProvidersConfig = toml::from_str(&format!(
        "plugin_dir = {:?}\n[providers.openai]\napi_key_env = \"OPENAI_API_KEY\"\n[providers.groq]\nplugin = \"openai\"\nbase_url = \"https://api.groq.com/openai/v1\"\nmodels = [{{ id = \"llama-3.3-70b-versatile\", context_window = 131072 }}]\n[providers.anthropic]\nenabled = false\n",
        dir.path().display().to_string()
    ))
    .unwrap();
    let gateway = Gateway::load(&config).unwrap();
    let ids: Vec<_> = gateway.providers().into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["demo", "groq", "openai"]);
    let default = ProvidersConfig {
        plugin_dir: Some(dir.path().to_owned()),
        ..ProvidersConfig::default()
    };
    let ids: Vec<_> = Gateway::load(&default)
        .unwrap()
        .providers()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["anthropic", "demo", "openai"]);
}
