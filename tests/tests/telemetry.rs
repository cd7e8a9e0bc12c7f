//! Telemetry end to end: the lines the server logs about a request carry
//! its id, and its spans reach an OpenTelemetry collector when one is
//! configured (and nothing is exported otherwise).
//!
//! A test binary of its own: each test here sees the server through a
//! subscriber of its own thread (`tracing::subscriber::set_default`), and
//! `tracing` keeps per callsite whether any subscriber wants it. While such
//! a subscriber is the only one registered, a callsite first reached on a
//! thread without one (another test's server) is kept as wanted by nobody,
//! for every thread, and the test's lines go missing. Here every test that
//! serves requests has a subscriber of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use creditgate_e2e::{Backend, TestApp};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

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
