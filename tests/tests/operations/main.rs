//! Operations end to end: the Prometheus endpoint and request ids (here),
//! and the payment housekeeping of the periodic sweep (`housekeeping.rs`).
//! Log lines and traces have a test binary of their own (`telemetry.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod housekeeping;

use std::collections::BTreeMap;

use creditgate_e2e::{Backend, TestApp, on_both_databases, providers_toml};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const METRICS_TOKEN: &str = "scrape-token-0123456789abcdef";

/// The metrics recorder is one per process: tests that read counters run
/// one at a time and compare a scrape before with one after.
static COUNTERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ------------------------------------------------------------------ metrics

/// One scrape: `(name, labels) -> value`.
#[derive(Debug, Default)]
struct Scrape(BTreeMap<(String, BTreeMap<String, String>), f64>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut out = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            out.insert((name.to_owned(), labels), value.parse().unwrap());
        }
        Scrape(out)
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.0.get(&(name.to_owned(), labels)).copied()
    }

    /// How much a series grew since `before` (a series first seen now grew
    /// from 0).
    fn grew(&self, before: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in the scrape"))
            - before.get(name, labels).unwrap_or(0.0)
    }
}

async fn scrape(app: &TestApp) -> Scrape {
    let resp = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        resp.headers()
    );
    Scrape::parse(&resp.text().await.unwrap())
}

/// The demo provider, and an "openai" whose every chat answers 503.
async fn app_with_metrics(backend: Backend) -> (TestApp, MockServer, tempfile::TempDir) {
    let openai = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(503).set_body_string("overloaded"))
        .mount(&openai)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("openai-key");
    std::fs::write(&key_file, "sk-platform-0123456789abcdef").unwrap();
    let toml = format!(
        "{}\n[ai]\nrequests_per_minute = 0\n[metrics]\ntoken = {METRICS_TOKEN:?}\n",
        providers_toml(&format!("{}/v1", openai.uri()), &key_file, 1_500)
    );
    let app = TestApp::builder(backend).config(&toml).start().await;
    (app, openai, dir)
}

const RUN: &str = "mutation OpsRun($i: AiRequestInput!) { runAi(input: $i) { creditsCharged billingMode } }";

async fn scrape_shows_requests_credits_and_provider_calls(backend: Backend) {
    let _one_at_a_time = COUNTERS.lock().await;
    let (app, _openai, _dir) = app_with_metrics(backend).await;
    let alice = app.member("alice", "acme");
    let before = scrape(&app).await;

    let ran = app
        .gql(
            Some(&alice),
            RUN,
            json!({"i": {"feature": "CHAT", "messages": [{"role": "user", "content": "Hello"}]}}),
        )
        .await;
    let ran = &ran.data()["runAi"];
    assert_eq!(ran["billingMode"], "CREDITS");
    let charged: f64 = ran["creditsCharged"].as_str().unwrap().parse().unwrap();
    assert!(charged > 0.0, "{ran}");

    let refused = app
        .gql(None, "query OpsNoToken { wallet { available } }", json!({}))
        .await;
    assert_eq!(refused.code(), "UNAUTHENTICATED");
    let down = app
        .gql(
            Some(&alice),
            "mutation OpsProviderDown($i: AiRequestInput!) { runAi(input: $i) { creditsCharged } }",
            json!({"i": {"feature": "CHAT", "provider": "openai", "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}}),
        )
        .await;
    assert_eq!(down.code(), "PROVIDER_UNAVAILABLE");
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let after = scrape(&app).await;
    let requests = "creditgate_requests_total";
    assert_eq!(
        after.grew(&before, requests, &[("operation", "OpsRun"), ("code", "OK")]),
        1.0
    );
    assert_eq!(
        after.grew(
            &before,
            requests,
            &[("operation", "OpsNoToken"), ("code", "UNAUTHENTICATED")]
        ),
        1.0
    );
    assert_eq!(
        after.grew(
            &before,
            requests,
            &[("operation", "OpsProviderDown"), ("code", "PROVIDER_UNAVAILABLE")]
        ),
        1.0
    );
    assert_eq!(
        after.grew(&before, requests, &[("operation", "GET /healthz"), ("code", "OK")]),
        1.0
    );
    // Exactly what the wallet was charged, in milli-credits; the failed call charged nothing.
    assert_eq!(
        after.grew(
            &before,
            "creditgate_credits_charged_millicredits_total",
            &[("billing_mode", "CREDITS")]
        ),
        (charged * 1000.0).round()
    );
    let demo_ok = [("provider", "demo"), ("operation", "chat"), ("outcome", "ok")];
    assert_eq!(
        after.grew(&before, "creditgate_provider_request_duration_seconds_count", &demo_ok),
        1.0
    );
    assert!(
        after
            .get(
                "creditgate_provider_request_duration_seconds_bucket",
                &[
                    ("provider", "demo"),
                    ("operation", "chat"),
                    ("outcome", "ok"),
                    ("le", "+Inf")
                ]
            )
            .is_some()
    );
    assert_eq!(
        after.grew(
            &before,
            "creditgate_provider_errors_total",
            &[("provider", "openai"), ("kind", "unavailable")]
        ),
        1.0
    );
    assert_eq!(
        after.get(
            "creditgate_provider_errors_total",
            &[("provider", "demo"), ("kind", "unavailable")]
        ),
        None
    );

    // Every hold, settle and release is counted with how many operations
    // shared its commit (the two runs: two holds, a settle and a release).
    assert!(after.grew(&before, "creditgate_ledger_batch_size_count", &[]) >= 4.0);
    assert!(
        after
            .get("creditgate_ledger_batch_size_bucket", &[("le", "1")])
            .is_some_and(|ones| ones >= 4.0)
    );

    // A settle or release whose wallet and hold the process wrote last
    // takes them from its mirror instead of reading them; nothing else
    // writes these wallets, so nothing it takes is stale. On PostgreSQL
    // the mirror is on only once the replica's LISTEN connection is up,
    // which these first requests may come before (its batches are then
    // counted as read; `crates/storage/tests/mirror.rs` proves it there).
    let mirror = |outcome| {
        let labels = [("outcome", outcome)];
        let count = |s: &Scrape| s.get("creditgate_ledger_mirror_total", &labels).unwrap_or(0.0);
        count(&after) - count(&before)
    };
    if backend == Backend::Sqlite {
        assert!(mirror("taken") >= 2.0);
    } else {
        assert!(mirror("taken") + mirror("read") >= 4.0);
    }
    assert_eq!(
        after.get("creditgate_ledger_mirror_total", &[("outcome", "stale")]),
        None
    );

    // Gauges read at scrape time.
    assert_eq!(after.get("creditgate_holds_open", &[]), Some(0.0));
    let max = after.get("creditgate_db_pool_max_connections", &[]).unwrap();
    assert_eq!(max, if backend == Backend::Sqlite { 1.0 } else { 16.0 });
    assert!(
        after
            .get("creditgate_db_pool_connections", &[("state", "idle")])
            .is_some()
    );
    assert!(
        after
            .get("creditgate_db_pool_connections", &[("state", "in_use")])
            .is_some()
    );
    assert_eq!(after.get("creditgate_realtime_connections", &[]), Some(0.0));
    assert_eq!(after.get("creditgate_realtime_subscriptions", &[]), Some(0.0));

    // SQLite's log, as its background checkpoints (every 20 ms) leave it.
    if backend == Backend::Sqlite {
        let mut pages = None;
        for _ in 0..100 {
            pages = scrape(&app).await.get("creditgate_sqlite_wal_pages", &[]);
            if pages.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(pages.is_some_and(|p| p >= 0.0), "{pages:?}");
    }
}

async fn metrics_need_the_token(backend: Backend) {
    let (app, _openai, _dir) = app_with_metrics(backend).await;
    let url = app.url("/metrics");
    let none = app.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let body = none.text().await.unwrap();
    assert!(!body.contains("creditgate_"), "{body}");
    let wrong = app
        .http
        .get(&url)
        .bearer_auth("scrape-token-0123456789abcdeX")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = app.http.get(&url).bearer_auth(METRICS_TOKEN).send().await.unwrap();
    assert_eq!(right.status(), 200);
}

async fn metrics_are_absent_unless_configured(backend: Backend) {
    let app = TestApp::new(backend).await;
    let resp = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(app.app.metrics.is_none());
}

/// With `metrics.listen`, /metrics is served there and not on the public listener.
async fn metrics_on_their_own_listener(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[metrics]\nlisten = \"127.0.0.1:1\"\n")
        .start()
        .await;
    let public = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let (served, signal) = (app.app.clone(), stop.clone());
    tokio::spawn(async move {
        served
            .serve_metrics(listener, async move { signal.cancelled().await })
            .await
    });
    let resp = app.http.get(format!("http://{addr}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("creditgate_holds_open"), "{text}");
    stop.cancel();
}

// -------------------------------------------------------------- request ids

async fn every_response_carries_a_request_id(backend: Backend) {
    let app = TestApp::new(backend).await;
    let id_of = |resp: &reqwest::Response| {
        resp.headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    // Made when the caller sends none: a UUID, different each time.
    let a = app.http.get(app.url("/healthz")).send().await.unwrap();
    let b = app
        .http
        .post(app.url("/graphql"))
        .json(&json!({"query": "{ wallet { available } }"}))
        .send()
        .await
        .unwrap();
    let (a, b) = (id_of(&a), id_of(&b));
    assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a:?}");
    assert!(uuid::Uuid::parse_str(&b).is_ok(), "{b:?}");
    assert_ne!(a, b);
    // The caller's own, echoed.
    let echoed = app
        .http
        .post(app.url("/graphql"))
        .header("x-request-id", "client-req_42:a.b")
        .json(&json!({"query": "{ wallet { available } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(id_of(&echoed), "client-req_42:a.b");
    // Not sane (too long, or odd characters): replaced.
    for insane in ["x".repeat(200), "has space".to_owned(), "semi;colon".to_owned()] {
        let resp = app
            .http
            .get(app.url("/healthz"))
            .header("x-request-id", &insane)
            .send()
            .await
            .unwrap();
        let id = id_of(&resp);
        assert_ne!(id, insane);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id:?}");
    }
}

on_both_databases!(
    scrape_shows_requests_credits_and_provider_calls,
    metrics_need_the_token,
    metrics_are_absent_unless_configured,
    metrics_on_their_own_listener,
    every_response_carries_a_request_id,
);
