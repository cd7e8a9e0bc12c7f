//! `creditgate rotate-key` re-encrypts every stored BYOK key to a new
//! identity without losing any: a server started afterwards still uses
//! each user's own key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use creditgate_e2e::{TestApp, plugin_dir, providers_toml};
use creditgate_metering::{AiMessage, AiRequest};
use creditgate_server::{App, Config};
use creditgate_storage::testing::Backend;
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../fixtures/providers/openai/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_every_key() {
    let mock = MockServer::start().await;
    for (user, key) in [
        ("alice", "sk-alice-rotate-000000001"),
        ("bob", "sk-bob-rotate-0000000002"),
    ] {
        for (m, p, body) in [
            ("GET", "/v1/models", "models-list.json"),
            ("POST", "/v1/chat/completions", "chat-response.json"),
        ] {
            Mock::given(method(m))
                .and(path(p))
                .and(header("authorization", format!("Bearer {key}").as_str()))
                .respond_with(ResponseTemplate::new(200).set_body_raw(fixture(body), "application/json"))
                .named(format!("{user} {p}"))
                .mount(&mock)
                .await;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("platform");
    std::fs::write(&key_file, "sk-platform-rotate-00000").unwrap();
    let toml = format!(
        "{}\n[ai]\nrequests_per_minute = 0\n",
        providers_toml(&format!("{}/v1", mock.uri()), &key_file, 2_000)
    );
    let app = TestApp::builder(Backend::Sqlite).config(&toml).start().await;
    for (user, key) in [
        ("alice", "sk-alice-rotate-000000001"),
        ("bob", "sk-bob-rotate-0000000002"),
    ] {
        let token = app.member(user, "acme");
        app.gql(
            Some(&token),
            "mutation($k: String!) { setByokKey(provider: \"openai\", apiKey: $k) { hint } }",
            json!({"k": key}),
        )
        .await
        .data();
    }
    let identity = app.app.config.data_dir.join("byok-identity.txt");
    let before = std::fs::read_to_string(&identity).unwrap();
    let ciphertexts_before = app.app.store.all_byok_ciphertexts().await.unwrap();

    let config_file = dir.path().join("creditgate.toml");
    std::fs::write(&config_file, &app.toml).unwrap();
    let out = std::process::Command::new(plugin_dir().join("creditgate"))
        .arg("--config")
        .arg(&config_file)
        .arg("rotate-key")
        .output()
        .expect("run creditgate rotate-key (build the workspace first)");
    assert!(
        out.status.success(),
        "rotate-key failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("re-encrypted 2 key(s)"), "{stderr}");
    assert!(
        !stderr.contains("sk-alice") && !stderr.contains("AGE-SECRET-KEY"),
        "no secret printed"
    );

    let after = std::fs::read_to_string(&identity).unwrap();
    assert_ne!(before, after, "a new identity");
    assert_eq!(
        after.lines().filter(|l| l.starts_with("AGE-SECRET-KEY-")).count(),
        1,
        "only the new identity is kept"
    );
    let ciphertexts_after = app.app.store.all_byok_ciphertexts().await.unwrap();
    assert_eq!(ciphertexts_after.len(), 2);
    for (b, a) in ciphertexts_before.iter().zip(&ciphertexts_after) {
        assert_ne!(b.ciphertext, a.ciphertext, "every key re-encrypted");
    }

    // A server started with the rotated identity still sends each user's own key.
    let config = Config::from_toml(&app.toml).unwrap();
    let restarted = App::build(config, app.clock.clone() as Arc<dyn creditgate_domain::Clock>)
        .await
        .unwrap();
    for user in ["alice", "bob"] {
        let req = AiRequest {
            feature: creditgate_domain::AiFeature::Chat,
            messages: vec![AiMessage {
                role: "user".into(),
                content: "hi".into(),
            }],
            provider: Some("openai".into()),
            model: Some("gpt-4o-mini".into()),
            max_output_tokens: None,
            idempotency_key: None,
            actor: None,
        };
        let outcome = restarted.ai.run(user, &req).await.unwrap();
        assert_eq!(outcome.billing_mode, creditgate_domain::BillingMode::Byok, "{user}");
    }
    let seen: Vec<String> = mock
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/chat/completions")
        .map(|r| r.headers.get("authorization").unwrap().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        seen,
        vec!["Bearer sk-alice-rotate-000000001", "Bearer sk-bob-rotate-0000000002"]
    );
}
