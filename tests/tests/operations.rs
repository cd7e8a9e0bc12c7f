//! Operations end to end: the Prometheus endpoint, request ids, OpenTelemetry
//! traces, and the payment housekeeping of the periodic sweep.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::Duration;
use creditgate_e2e::{Backend, TestApp, on_both_databases, providers_toml};
use creditgate_server::housekeeping::Housekeeping;
use creditgate_storage::entities::webhook_events;
use creditgate_storage::{NewPurchase, ProviderEvent, PurchaseStart, PurchaseUpdate};
use sea_orm::{EntityTrait, PaginatorTrait};
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

    // SQLite: a settle or release whose wallet and hold the process wrote
    // last takes them from its mirror instead of reading them.
    let taken = after.get("creditgate_ledger_mirror_total", &[("outcome", "taken")]);
    if backend == Backend::Sqlite {
        assert!(after.grew(&before, "creditgate_ledger_mirror_total", &[("outcome", "taken")]) >= 2.0);
        assert_eq!(
            after.get("creditgate_ledger_mirror_total", &[("outcome", "stale")]),
            None
        );
    } else {
        assert_eq!(taken, None, "PostgreSQL has no mirror");
    }

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

struct LogWriter(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// On a single-threaded runtime a thread's subscriber sees everything the
/// server does.
#[tokio::test]
async fn log_lines_of_a_request_carry_its_id() {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || LogWriter(writer.clone()))
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = TestApp::new(Backend::Sqlite).await;
    let resp = app
        .http
        .post(app.url("/graphql"))
        .header("x-request-id", "log-line-req-7")
        .json(&json!({"query": "query Logged { wallet { available } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "log-line-req-7");
    resp.text().await.unwrap();
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("processing request")).collect();
    assert!(lines.len() >= 2, "{logs}");
    for line in lines {
        assert!(line.contains("request_id=log-line-req-7"), "{line}");
    }
}

// ------------------------------------------------------------------- traces

async fn collector() -> MockServer {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&mock)
        .await;
    mock
}

async fn bodies(mock: &MockServer) -> Vec<Vec<u8>> {
    mock.received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/v1/traces")
        .map(|r| r.body)
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn spans_reach_the_otlp_collector_when_configured() {
    use tracing_subscriber::layer::SubscriberExt;
    let mock = collector().await;
    let config = creditgate_server::Config::from_toml(&format!(
        "[telemetry]\notlp_endpoint = {:?}\nservice_name = \"creditgate-ops-test\"\n",
        mock.uri()
    ))
    .unwrap();
    let (layer, export) = creditgate_server::telemetry::otel_layer(&config.telemetry).unwrap();
    assert!(layer.is_some() && export.exporting());
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let app = TestApp::new(Backend::Sqlite).await;
    let resp = app
        .http
        .post(app.url("/graphql"))
        .header("x-request-id", "otlp-req-7f3a")
        .json(&json!({"query": "query Traced { wallet { available } }"}))
        .send()
        .await
        .unwrap();
    resp.text().await.unwrap();
    let export = Arc::new(export);
    let mut seen = false;
    for _ in 0..50 {
        let flushing = export.clone();
        tokio::task::spawn_blocking(move || flushing.flush()).await.unwrap();
        let sent = bodies(&mock).await;
        if sent.iter().any(|b| contains(b, "otlp-req-7f3a")) {
            assert!(sent.iter().any(|b| contains(b, "creditgate-ops-test")));
            assert!(sent.iter().any(|b| contains(b, "POST /graphql")));
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen, "the collector never received the request's span");
}

#[tokio::test]
async fn nothing_is_exported_without_an_endpoint() {
    let config = creditgate_server::Config::from_toml("").unwrap();
    let (layer, export) =
        creditgate_server::telemetry::otel_layer::<tracing_subscriber::Registry>(&config.telemetry).unwrap();
    assert!(layer.is_none());
    assert!(!export.exporting());
}

// -------------------------------------------------------------- housekeeping

/// A PENDING purchase of the starter pack made through the store (as
/// purchaseCredits does before it calls the payment provider).
async fn pending(app: &TestApp, user: &str, key: &str) -> String {
    match app
        .app
        .store
        .create_purchase(&NewPurchase {
            user_id: user.into(),
            pack_id: "starter".into(),
            pack_name: "Starter".into(),
            credits: "500".parse().unwrap(),
            price_cents: 500,
            currency: "USD".into(),
            provider: "stripe".into(),
            idempotency_key: key.into(),
        })
        .await
        .unwrap()
    {
        PurchaseStart::Created(p) => p.id,
        PurchaseStart::Existing(p) => panic!("{p:?} existed"),
    }
}

async fn event_count(app: &TestApp) -> u64 {
    webhook_events::Entity::find()
        .count(app.app.store.connection())
        .await
        .unwrap()
}

async fn processed_webhook_events_are_pruned_after_their_retention(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[payments]\nwebhook_event_retention_days = 30\n")
        .start()
        .await;
    let alice = app.member("alice", "acme");
    app.wallet(&alice).await;
    let sweep = Housekeeping::from_config(&app.app.config);
    let event = |id| ProviderEvent {
        id,
        provider: "stripe",
        event_type: "checkout.session.completed",
    };
    let old = pending(&app, "alice", "buy-old").await;
    let applied = app
        .app
        .store
        .complete_purchase(&old, None, None, Some(event("evt_old")))
        .await
        .unwrap();
    assert!(matches!(applied, PurchaseUpdate::Applied(_)));
    app.clock.advance(Duration::days(20));
    let recent = pending(&app, "alice", "buy-recent").await;
    app.app
        .store
        .complete_purchase(&recent, None, None, Some(event("evt_recent")))
        .await
        .unwrap();
    assert_eq!(event_count(&app).await, 2);

    // Day 29 for the old one: kept.
    app.clock.advance(Duration::days(9));
    sweep.run(&app.app.store, 500).await;
    assert_eq!(event_count(&app).await, 2);
    // Day 31: the old one goes, the recent one (day 11) stays.
    app.clock.advance(Duration::days(2));
    let replica = app.replica("").await;
    tokio::join!(sweep.run(&app.app.store, 500), sweep.run(&replica.app.store, 500));
    assert_eq!(event_count(&app).await, 1);
    assert!(
        webhook_events::Entity::find_by_id("evt_recent".to_owned())
            .one(app.app.store.connection())
            .await
            .unwrap()
            .is_some()
    );

    // A late redelivery of the forgotten event changes nothing: the
    // purchase is no longer PENDING, and the credits were added once.
    let again = app
        .app
        .store
        .complete_purchase(&old, None, None, Some(event("evt_old")))
        .await
        .unwrap();
    assert!(matches!(again, PurchaseUpdate::Unchanged(_)), "{again:?}");
    assert_eq!(app.wallet(&alice).await["permanentBalance"], "1000");
    assert_eq!(app.app.store.reconcile().await.unwrap(), vec![]);
}

const PURCHASES: &str = "{ purchases { id status } }";

async fn status_of(app: &TestApp, token: &str, id: &str) -> String {
    let r = app.gql(Some(token), PURCHASES, json!({})).await;
    r.data()["purchases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .map(|p| p["status"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no purchase {id}"))
}

async fn purchases_that_never_reached_the_provider_fail_after_an_hour(backend: Backend) {
    // Stripe is down for the first purchase, up for the second.
    let stripe = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({"error": {"type": "api_error"}})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "cs_reached", "object": "checkout.session",
            "url": "https://checkout.stripe.test/c/cs_reached", "payment_intent": null,
        })))
        .with_priority(2)
        .mount(&stripe)
        .await;
    let app = TestApp::builder(backend)
        .config(&format!(
            r#"
[payments]
provider = "stripe"
abandoned_purchase_secs = 3600
[payments.stripe]
api_base = "{}"
secret_key = "sk_test_creditgate"
webhook_secret = "whsec_test"
success_url = "https://app.example.com/credits"
cancel_url = "https://app.example.com/credits"
"#,
            stripe.uri()
        ))
        .start()
        .await;
    let alice = app.member("alice", "acme");
    let buy = "mutation($k: String!) { purchaseCredits(packId: \"starter\", idempotencyKey: $k) { id status } }";
    let failed = app.gql(Some(&alice), buy, json!({"k": "buy-1"})).await;
    assert!(failed.0["errors"].is_array(), "{}", failed.0);
    let stranded = app.app.store.purchases("alice").await.unwrap()[0].clone();
    assert_eq!(stranded.provider_session_id, None);
    let reached = app.gql(Some(&alice), buy, json!({"k": "buy-2"})).await;
    let reached = reached.data()["purchaseCredits"]["id"].as_str().unwrap().to_owned();

    let sweep = Housekeeping::from_config(&app.app.config);
    app.clock.advance(Duration::minutes(59));
    sweep.run(&app.app.store, 500).await;
    assert_eq!(status_of(&app, &alice, &stranded.id).await, "PENDING");

    app.clock.advance(Duration::minutes(2));
    // Every replica sweeps at once: the purchase fails once.
    let replica = app.replica("").await;
    let before = app.app.store.now() - Duration::hours(1);
    let (a, b) = tokio::join!(
        app.app.store.fail_abandoned_purchases(before, 500),
        replica.app.store.fail_abandoned_purchases(before, 500)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    sweep.run(&app.app.store, 500).await;
    assert_eq!(status_of(&app, &alice, &stranded.id).await, "FAILED");
    // A checkout that comes back after the sweep is not attached: nobody
    // is sent to pay for a FAILED purchase.
    let late = app
        .app
        .store
        .attach_checkout(&stranded.id, "cs_late", "https://checkout.stripe.test/c/cs_late")
        .await;
    assert!(late.is_err(), "{late:?}");
    assert_eq!(status_of(&app, &alice, &stranded.id).await, "FAILED");
    // One that reached Stripe is left for Stripe's webhook.
    assert_eq!(status_of(&app, &alice, &reached).await, "PENDING");
    // A retry with the first key returns the failed purchase; no new checkout.
    let retried = app.gql(Some(&alice), buy, json!({"k": "buy-1"})).await;
    assert_eq!(retried.data()["purchaseCredits"]["status"], "FAILED");
    assert_eq!(app.wallet(&alice).await["permanentBalance"], "0");
}

on_both_databases!(
    scrape_shows_requests_credits_and_provider_calls,
    metrics_need_the_token,
    metrics_are_absent_unless_configured,
    metrics_on_their_own_listener,
    every_response_carries_a_request_id,
    processed_webhook_events_are_pruned_after_their_retention,
    purchases_that_never_reached_the_provider_fail_after_an_hour,
);
