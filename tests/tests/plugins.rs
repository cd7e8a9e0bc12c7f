//! Plugins that misbehave, against a running server, on SQLite and
//! PostgreSQL: a plugin call that blocks holds up no other request and ends
//! its own with PROVIDER_ERROR and nothing held; a plugin that sends a
//! request to a host the operator did not allow never gets the user's key
//! there; a panicking plugin is counted and logged under its name; a
//! configured provider whose plugin is missing is the operator's problem
//! (PROVIDER_ERROR), not the caller's; a plugin that cannot be loaded stops
//! the start unless marked optional; a plugin that hangs holds no more
//! threads than its provider's cap, past which its requests fail at once.
//!
//! The hostile plugin (plugins/test-hostile) is copied into a plugin folder
//! of the test's own as `creditgate_plugin_hostile`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use creditgate_e2e::logs::{captured_logs, logged as logs};
use creditgate_e2e::{Backend, TestApp, on_both_databases, plugin_dir};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PLATFORM_KEY: &str = "sk-hostile-platform-0123456789";
const ALICE_KEY: &str = "sk-alice-SECRET-hostile-9f8e7d";
const METRICS_TOKEN: &str = "scrape-token-plugins-0123456789";

const RUN: &str = "mutation($i: AiRequestInput!) { runAi(input: $i) { id content billingMode creditsCharged } }";

fn lib_file(name: &str) -> String {
    format!("{}{name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
}

/// A plugin folder with the demo plugin and `extra` (built library, file
/// name in the folder) copied in.
fn plugin_folder(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let built = plugin_dir();
    let dir = tempfile::tempdir().unwrap();
    let demo = lib_file("creditgate_plugin_demo");
    std::fs::copy(built.join(&demo), dir.path().join(&demo)).unwrap();
    for (lib, name) in extra {
        let from = built.join(lib_file(lib));
        assert!(
            from.is_file(),
            "{} is not built: run `cargo build --workspace` first",
            from.display()
        );
        std::fs::copy(from, dir.path().join(lib_file(name))).unwrap();
    }
    dir
}

fn lines(file: &Path) -> usize {
    std::fs::read_to_string(file).map(|s| s.lines().count()).unwrap_or(0)
}

/// Waits (bounded; generous, never the assertion itself) until `file` has
/// at least `n` lines.
async fn until_lines(file: &Path, n: usize) {
    for _ in 0..3_000 {
        if lines(file) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} never reached {n} lines", file.display());
}

/// The pricing table: the shipped defaults' models and the hostile ones.
const PRICING: &str = r#"
[[ai.pricing.models]]
provider = "demo"
model = "demo-1"
input_per_1k = "0.5"
output_per_1k = "1.5"
max_output_tokens = 4096
[[ai.pricing.models]]
provider = "openai"
model = "gpt-4o-mini"
input_per_1k = "0.15"
output_per_1k = "0.6"
max_output_tokens = 16384
[[ai.pricing.models]]
provider = "anthropic"
model = "claude-haiku-4-5-20251001"
input_per_1k = "1"
output_per_1k = "5"
max_output_tokens = 64000
[[ai.pricing.models]]
provider = "hostile"
model = "block"
input_per_1k = "0.1"
output_per_1k = "0.1"
max_output_tokens = 1000
[[ai.pricing.models]]
provider = "hostile"
model = "stream"
input_per_1k = "0.1"
output_per_1k = "0.1"
max_output_tokens = 1000
[[ai.pricing.models]]
provider = "hostile"
model = "elsewhere"
input_per_1k = "0.1"
output_per_1k = "0.1"
max_output_tokens = 1000
[[ai.pricing.models]]
provider = "hostile"
model = "panic"
input_per_1k = "0.1"
output_per_1k = "0.1"
max_output_tokens = 1000
"#;

struct Env {
    app: TestApp,
    /// The provider's base URL's server.
    upstream: MockServer,
    /// Another server, on another host name and port.
    elsewhere: MockServer,
    dir: tempfile::TempDir,
    _plugins: tempfile::TempDir,
}

impl Env {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The mock provider: answers the hostile format for the platform key and
/// Alice's key, validates both on /v1/models, streams a first event that
/// blocks the plugin until `release-stream` exists.
async fn upstream(dir: &Path) -> MockServer {
    let mock = MockServer::start().await;
    let release = dir.join("release-stream").display().to_string();
    let stream = format!(
        "data: {}\n\ndata: {{\"text\":\"Hi\"}}\n\ndata: {{\"done\":true,\"in\":3,\"out\":1}}\n\n",
        json!({ "block_until": release })
    );
    for key in [PLATFORM_KEY, ALICE_KEY] {
        let bearer = format!("Bearer {key}");
        Mock::given(method("POST"))
            .and(path("/v1/chat"))
            .and(header("authorization", bearer.as_str()))
            .and(wiremock::matchers::body_partial_json(json!({"stream": true})))
            .respond_with(ResponseTemplate::new(200).set_body_raw(stream.clone(), "text/event-stream"))
            .with_priority(1)
            .mount(&mock)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/chat"))
            .and(header("authorization", bearer.as_str()))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw(r#"{"text":"Hello","in":3,"out":1}"#, "application/json"),
            )
            .with_priority(2)
            .mount(&mock)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/models"))
            .and(header("authorization", bearer.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_raw("{}", "application/json"))
            .mount(&mock)
            .await;
    }
    mock
}

/// `limit_ms`: the hostile provider's plugin call time limit.
async fn env(backend: Backend, limit_ms: u64, extra: &str) -> Env {
    env_with(backend, limit_ms, "", extra).await
}

/// `hostile`: more settings of the hostile provider's block.
async fn env_with(backend: Backend, limit_ms: u64, hostile: &str, extra: &str) -> Env {
    captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let upstream = upstream(dir.path()).await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(r#"{"text":"stolen","in":1,"out":1}"#, "application/json"),
        )
        .mount(&elsewhere)
        .await;
    let plugins = plugin_folder(&[("creditgate_testlib_hostile", "creditgate_plugin_hostile")]);
    let key_file = dir.path().join("platform-key");
    std::fs::write(&key_file, PLATFORM_KEY).unwrap();
    let file = |n: &str| dir.path().join(n).display().to_string();
    // The elsewhere server under another host name (localhost, which the
    // plugin's manifest lists) and port.
    let elsewhere_url = format!("http://localhost:{}", elsewhere.address().port());
    let toml = format!(
        r#"
[providers]
plugin_dir = {plugins:?}
[providers.providers.demo]
[providers.providers.hostile]
base_url = "{upstream}/v1"
api_key_file = {key_file:?}
plugin_call_timeout_ms = {limit_ms}
{hostile}
[providers.providers.hostile.options]
release_file = {release:?}
entered_file = {entered:?}
left_file = {left:?}
elsewhere_url = {elsewhere_url:?}
[ai]
requests_per_minute = 0
[metrics]
token = {METRICS_TOKEN:?}
{PRICING}
{extra}
"#,
        plugins = plugins.path().display().to_string(),
        upstream = upstream.uri(),
        key_file = key_file.display().to_string(),
        release = file("release"),
        entered = file("entered"),
        left = file("left"),
    );
    let app = TestApp::builder(backend).config(&toml).start().await;
    Env {
        app,
        upstream,
        elsewhere,
        dir,
        _plugins: plugins,
    }
}

fn input(model: &str) -> Value {
    json!({
        "feature": "CHAT",
        "provider": "hostile",
        "model": model,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    })
}

async fn a_blocked_plugin_call_holds_up_no_other_request(backend: Backend) {
    let env = env(backend, 1_000, "").await;
    let app = &env.app;
    let alice = app.member("alice", "acme");
    assert_eq!(app.wallet(&alice).await["available"], "100");
    // More blocked plugin calls than the runtime has worker threads (2).
    let mut calls = Vec::new();
    for _ in 0..4 {
        let (http, url, token) = (app.http.clone(), app.url("/graphql"), alice.clone());
        calls.push(tokio::spawn(async move {
            let resp = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"query": RUN, "variables": {"i": input("block")}}))
                .send()
                .await
                .unwrap();
            resp.json::<Value>().await.unwrap()
        }));
    }
    until_lines(&env.file("entered"), 2).await;
    // An unrelated query answers while the plugin calls are still blocked:
    // the plugin is released only after it has answered.
    let me = app.gql(Some(&alice), "{ me { id } }", json!({})).await;
    assert_eq!(me.data()["me"]["id"], "alice");
    assert_eq!(
        lines(&env.file("left")),
        0,
        "the plugin calls were released before `me` answered"
    );
    // Each blocked call ends at its time limit: PROVIDER_ERROR, nothing held.
    for call in calls {
        let body = call.await.unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "PROVIDER_ERROR", "{body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("did not finish"),
            "{body}"
        );
    }
    let wallet = app.wallet(&alice).await;
    assert_eq!(
        (wallet["held"].as_str(), wallet["available"].as_str()),
        (Some("0"), Some("100"))
    );
    std::fs::write(env.file("release"), "").unwrap();
    until_lines(&env.file("left"), 4).await;
    assert!(logs().contains("exceeded its time limit"));
    assert_eq!(app.app.store.reconcile().await.unwrap(), vec![]);
}

async fn scrape(app: &TestApp) -> String {
    app.http
        .get(app.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the first sample of `metric` labelled plugin="hostile".
fn hostile_sample(scrape: &str, metric: &str) -> f64 {
    let line = scrape
        .lines()
        .find(|l| l.starts_with(&format!("{metric}{{")) && l.contains("plugin=\"hostile\""))
        .unwrap_or_else(|| panic!("no {metric} for the hostile plugin in:\n{scrape}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn spawn_run(app: &TestApp, token: &str, input: Value) -> tokio::task::JoinHandle<Value> {
    let (http, url, token) = (app.http.clone(), app.url("/graphql"), token.to_owned());
    tokio::spawn(async move {
        let resp = http
            .post(url)
            .bearer_auth(token)
            .json(&json!({"query": RUN, "variables": {"i": input}}))
            .send()
            .await
            .unwrap();
        resp.json::<Value>().await.unwrap()
    })
}

async fn a_hanging_plugin_holds_no_more_threads_than_its_cap(backend: Backend) {
    let env = env_with(backend, 1_000, "max_concurrent_plugin_calls = 2", "").await;
    let app = &env.app;
    let alice = app.member("alice", "acme");
    let gateway = app.app.ai.gateway();
    // Two calls hang in the plugin: the provider's cap.
    let calls = [
        spawn_run(app, &alice, input("block")),
        spawn_run(app, &alice, input("block")),
    ];
    until_lines(&env.file("entered"), 2).await;
    // The next fails at once, without reaching the plugin.
    let r = app.gql(Some(&alice), RUN, json!({"i": input("block")})).await;
    assert_eq!(r.code(), "PROVIDER_ERROR", "{}", r.0);
    assert!(r.message().contains("busy"), "{}", r.message());
    assert_eq!(lines(&env.file("entered")), 2, "the refused call reached the plugin");
    // Another provider and `me` still answer.
    let demo = json!({
        "feature": "CHAT",
        "provider": "demo",
        "model": "demo-1",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    });
    let r = app.gql(Some(&alice), RUN, json!({"i": demo})).await;
    assert!(!r.data()["runAi"]["content"].as_str().unwrap().is_empty());
    let me = app.gql(Some(&alice), "{ me { id } }", json!({})).await;
    assert_eq!(me.data()["me"]["id"], "alice");
    // The hanging calls fail at their time limit but keep their slots
    // until the plugin returns: counted stuck, and still refusing.
    for call in calls {
        let body = call.await.unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "PROVIDER_ERROR", "{body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("did not finish"),
            "{body}"
        );
    }
    assert_eq!(gateway.stuck_plugin_calls("hostile"), Some(2));
    let metrics = scrape(app).await;
    // The metrics are the test process's, shared with the other tests: at
    // least this test's stuck calls and its refusal.
    assert!(hostile_sample(&metrics, "creditgate_plugin_calls_stuck") >= 2.0);
    assert!(hostile_sample(&metrics, "creditgate_plugin_calls_refused_total") >= 1.0);
    let r = app.gql(Some(&alice), RUN, json!({"i": input("block")})).await;
    assert_eq!(r.code(), "PROVIDER_ERROR", "{}", r.0);
    assert!(r.message().contains("2 of them stuck"), "{}", r.message());
    assert_eq!(lines(&env.file("entered")), 2);
    let refused = logs();
    let refused = refused
        .lines()
        .find(|l| l.contains("provider plugin call refused"))
        .expect("a log line for the refused call");
    assert!(refused.contains("plugin=hostile"), "{refused}");
    let wallet = app.wallet(&alice).await;
    assert_eq!(wallet["held"], "0");
    // Once the plugin returns, its slots are free again.
    std::fs::write(env.file("release"), "").unwrap();
    until_lines(&env.file("left"), 2).await;
    for _ in 0..3_000 {
        if gateway.stuck_plugin_calls("hostile") == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gateway.stuck_plugin_calls("hostile"), Some(0));
    let r = app.gql(Some(&alice), RUN, json!({"i": input("block")})).await;
    assert_eq!(r.data()["runAi"]["content"], "Hello");
    assert_eq!(app.app.store.reconcile().await.unwrap(), vec![]);
}

async fn a_stream_whose_plugin_blocks_fails_and_releases_its_hold(backend: Backend) {
    use creditgate_metering::{AiError, AiMessage, AiRequest, StreamItem};
    use futures::StreamExt;
    let env = env(backend, 1_000, "").await;
    let app = &env.app;
    let bob = app.member("bob", "acme");
    assert_eq!(app.wallet(&bob).await["available"], "100");
    let req = AiRequest {
        feature: creditgate_domain::AiFeature::Chat,
        messages: vec![AiMessage {
            role: "user".into(),
            content: "hi".into(),
        }],
        provider: Some("hostile".into()),
        model: Some("stream".into()),
        max_output_tokens: None,
        idempotency_key: None,
        actor: None,
    };
    let mut stream = app.app.ai.run_stream("bob", &req).await.unwrap();
    // The first event blocks the plugin; the stream fails at the time limit.
    let me = app.gql(Some(&bob), "{ me { id } }", json!({})).await;
    assert_eq!(me.data()["me"]["id"], "bob");
    let first = stream.next().await.unwrap();
    assert!(
        matches!(&first, Err(AiError::Provider(m)) if m.contains("did not finish")),
        "{first:?}"
    );
    assert!(!matches!(first, Ok(StreamItem::Delta(_))));
    drop(stream);
    std::fs::write(env.file("release-stream"), "").unwrap();
    let wallet = app.wallet(&bob).await;
    assert_eq!(
        (wallet["held"].as_str(), wallet["available"].as_str()),
        (Some("0"), Some("100"))
    );
}

async fn a_plugin_sending_elsewhere_never_carries_the_key_there(backend: Backend) {
    let env = env(backend, 30_000, "").await;
    let app = &env.app;
    let alice = app.member("alice", "acme");
    let set = app
        .gql(
            Some(&alice),
            "mutation($k: String!) { setByokKey(provider: \"hostile\", apiKey: $k) { hint } }",
            json!({"k": ALICE_KEY}),
        )
        .await;
    set.data();
    // BYOK: the plugin sends Alice's request to a host of its choosing,
    // which its own manifest lists; the operator did not allow it.
    let r = app.gql(Some(&alice), RUN, json!({"i": input("elsewhere")})).await;
    assert_eq!(r.code(), "PROVIDER_ERROR", "{}", r.0);
    assert!(r.message().contains("not an allowed host"), "{}", r.message());
    assert!(!r.message().contains(ALICE_KEY));
    assert!(
        env.elsewhere.received_requests().await.unwrap().is_empty(),
        "the other host was reached"
    );
    // Only the key's validation went out, to the configured base URL.
    for req in env.upstream.received_requests().await.unwrap() {
        assert_eq!(req.url.path(), "/v1/models", "{req:?}");
    }
    // The same with credits: the platform key does not go there either.
    let bob = app.member("bob", "acme");
    let r = app.gql(Some(&bob), RUN, json!({"i": input("elsewhere")})).await;
    assert_eq!(r.code(), "PROVIDER_ERROR");
    assert!(env.elsewhere.received_requests().await.unwrap().is_empty());
    assert_eq!(app.wallet(&bob).await["held"], "0");
    assert_eq!(app.wallet(&alice).await["held"], "0");
    // The load log shows the plugin's hosts the operator did not allow.
    let logs = logs();
    assert!(logs.contains("plugin_hosts_not_allowed"), "no load line");
    assert!(logs.contains("localhost"));
    assert!(!logs.contains(ALICE_KEY) && !logs.contains(PLATFORM_KEY));
}

async fn a_panicking_plugin_is_counted_and_logged_by_name(backend: Backend) {
    // A panic's backtrace may take a while to print: a generous limit.
    let env = env(backend, 30_000, "").await;
    let app = &env.app;
    let carol = app.member("carol", "acme");
    let r = app.gql(Some(&carol), RUN, json!({"i": input("panic")})).await;
    assert_eq!(r.code(), "PROVIDER_ERROR", "{}", r.0);
    assert_eq!(app.wallet(&carol).await["held"], "0");
    let scrape = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = scrape
        .lines()
        .find(|l| l.starts_with("creditgate_plugin_panics_total{") && l.contains("plugin=\"hostile\""))
        .unwrap_or_else(|| panic!("no panic counter in:\n{scrape}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1.0, "{line}");
    let logs = logs();
    let logged = logs
        .lines()
        .find(|l| l.contains("provider plugin panicked"))
        .expect("an error line for the panic");
    assert!(
        logged.contains("ERROR") && logged.contains("plugin=hostile"),
        "{logged}"
    );
}

async fn a_configured_provider_without_its_plugin_is_not_the_callers_mistake(backend: Backend) {
    let env = env(backend, 30_000, "[providers.providers.ghost]\n").await;
    let app = &env.app;
    let dave = app.member("dave", "acme");
    let mut i = input("ghost-1");
    i["provider"] = json!("ghost");
    let r = app.gql(Some(&dave), RUN, json!({"i": i})).await;
    assert_eq!(r.code(), "PROVIDER_ERROR", "{}", r.0);
    assert!(r.message().contains("configured but not available"), "{}", r.message());
    // A provider nobody configured is still the caller's mistake.
    i["provider"] = json!("nosuch");
    let r = app.gql(Some(&dave), RUN, json!({"i": i})).await;
    assert_eq!(r.code(), "BAD_USER_INPUT", "{}", r.0);
}

async fn a_plugin_that_cannot_load_stops_the_start_unless_optional(backend: Backend) {
    let plugins = plugin_folder(&[("creditgate_testlib_no_handshake", "creditgate_plugin_broken")]);
    let db = creditgate_storage::testing::TestDb::new(backend).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let toml = |extra: &str| {
        format!(
            "data_dir = {:?}\ndatabase_url = {:?}\njwt_secret = {:?}\n[sweep]\ninterval_secs = 0\n[providers]\nplugin_dir = {:?}\n{extra}",
            data.path().display().to_string(),
            db.url,
            creditgate_e2e::TEST_SECRET,
            plugins.path().display().to_string(),
        )
    };
    let clock = Arc::new(creditgate_domain::ManualClock::new(chrono::Utc::now()));
    let config = creditgate_server::Config::from_toml(&toml("")).unwrap();
    let err = match creditgate_server::App::build(config, clock.clone()).await {
        Ok(_) => panic!("the server started with a plugin it cannot load"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains(&lib_file("creditgate_plugin_broken")), "{err}");
    assert!(err.contains("creditgate_plugin_handshake"), "{err}");
    assert!(err.contains("optional = true"), "{err}");
    // Marked optional, the server starts without it.
    let config =
        creditgate_server::Config::from_toml(&toml("[providers.providers.broken]\noptional = true\n")).unwrap();
    let app = creditgate_server::App::build(config, clock).await.unwrap();
    assert!(app.ai.gateway().provider("broken").is_none());
    assert!(app.ai.gateway().not_served("broken").unwrap().contains("handshake"));
}

on_both_databases!(
    a_blocked_plugin_call_holds_up_no_other_request,
    a_hanging_plugin_holds_no_more_threads_than_its_cap,
    a_stream_whose_plugin_blocks_fails_and_releases_its_hold,
    a_plugin_sending_elsewhere_never_carries_the_key_there,
    a_panicking_plugin_is_counted_and_logged_by_name,
    a_configured_provider_without_its_plugin_is_not_the_callers_mistake,
    a_plugin_that_cannot_load_stops_the_start_unless_optional,
);
