//! `/metrics`: Prometheus text exposition of what the libraries count
//! through the `metrics` facade (requests, credits charged, provider calls),
//! plus gauges read at scrape time (open holds from the database, this
//! replica's connection pool and WebSocket subscribers).
//!
//! The recorder is process-wide (the facade has one); it is installed the
//! first time an [`App`](crate::App) with metrics configured is built.
//! Served on its own listener (`metrics.listen`) or on the public one
//! behind a bearer token (`metrics.token`); off when neither is set.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use secrecy::{ExposeSecret, SecretString};

use crate::App;
use crate::config::MetricsConfig;

/// Open holds, across every replica (from the database).
pub const HOLDS_OPEN: &str = "creditgate_holds_open";
/// Database connections of this replica, by `state` (`in_use`, `idle`).
pub const DB_CONNECTIONS: &str = "creditgate_db_pool_connections";
/// The most connections this replica's pool opens.
pub const DB_MAX_CONNECTIONS: &str = "creditgate_db_pool_max_connections";
/// Open WebSocket connections of this replica.
pub const WS_CONNECTIONS: &str = "creditgate_realtime_connections";
/// Live subscriptions of this replica.
pub const WS_SUBSCRIPTIONS: &str = "creditgate_realtime_subscriptions";
/// Users with at least one subscriber on this replica.
pub const WS_USERS: &str = "creditgate_realtime_subscribed_users";

/// Latency buckets of provider calls, in seconds.
const SECONDS_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Buckets of operations per group commit.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot install the metrics recorder: {0}")]
    Install(#[from] metrics_exporter_prometheus::BuildError),
    #[error("cannot start the metrics upkeep thread: {0}")]
    Upkeep(std::io::Error),
}

static RECORDER: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// The process's recorder, installed on first use, with its upkeep thread.
fn recorder() -> Result<PrometheusHandle, MetricsError> {
    let mut slot = RECORDER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = slot.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(creditgate_storage::metrics::BATCH_SIZE.into()),
            BATCH_BUCKETS,
        )?
        .install_recorder()?;
    describe();
    let upkeep = handle.clone();
    // Drains histogram samples between scrapes so that memory stays flat
    // when nobody scrapes.
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        })
        .map_err(MetricsError::Upkeep)?;
    *slot = Some(handle.clone());
    Ok(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        creditgate_graphql::metrics::REQUESTS,
        "Requests by GraphQL operation name (or HTTP route) and outcome: OK or the error's extensions.code."
    );
    describe_counter!(
        creditgate_storage::metrics::CREDITS_CHARGED,
        "Credits charged, in milli-credits, by billing mode."
    );
    describe_gauge!(
        creditgate_storage::metrics::SQLITE_WAL_PAGES,
        "SQLite only: pages of the write-ahead log not yet copied into the database file, as of the last background checkpoint."
    );
    describe_counter!(
        creditgate_storage::metrics::LEDGER_MIRROR,
        "SQLite only: ledger batches whose wallets were taken from the process's mirror, read from the database, or taken and found stale (run again, reading)."
    );
    describe_histogram!(
        creditgate_storage::metrics::BATCH_SIZE,
        "Holds and settles committed together by one ledger writer's transaction (group commit)."
    );
    describe_histogram!(
        creditgate_gateway::metrics::PROVIDER_LATENCY,
        Unit::Seconds,
        "Duration of provider calls (streams: until the response headers)."
    );
    describe_counter!(
        creditgate_gateway::metrics::PROVIDER_ERRORS,
        "Failed provider calls by provider and error kind."
    );
    describe_counter!(
        creditgate_gateway::metrics::PLUGIN_PANICS,
        "Provider plugin calls that panicked (caught; the request failed), by plugin and provider."
    );
    describe_counter!(
        creditgate_gateway::metrics::PLUGIN_TIMEOUTS,
        "Provider plugin calls over their time limit (the request failed), by plugin and provider."
    );
    describe_gauge!(
        creditgate_gateway::metrics::PLUGIN_CALLS_STUCK,
        "Provider plugin calls past their time limit that have not returned yet, by plugin and provider."
    );
    describe_counter!(
        creditgate_gateway::metrics::PLUGIN_CALLS_REFUSED,
        "Provider plugin calls refused at once because the provider's calls in flight were at its cap."
    );
    describe_gauge!(
        HOLDS_OPEN,
        "Open holds (credit reservations of AI calls in flight), all replicas."
    );
    describe_gauge!(
        DB_CONNECTIONS,
        "Database connections of this replica by state (in_use, idle)."
    );
    describe_gauge!(
        DB_MAX_CONNECTIONS,
        "The most database connections this replica's pool opens."
    );
    describe_gauge!(WS_CONNECTIONS, "Open WebSocket connections of this replica.");
    describe_gauge!(WS_SUBSCRIPTIONS, "Live GraphQL subscriptions of this replica.");
    describe_gauge!(WS_USERS, "Users with at least one subscriber on this replica.");
}

/// What the metrics endpoint of one server needs.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    token: Option<SecretString>,
    /// Served on its own listener rather than the public one.
    separate: bool,
    holds_cache: Duration,
    holds: Arc<Mutex<Option<(Instant, u64)>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("separate", &self.separate)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// `None` when metrics are off.
    pub fn from_config(config: &MetricsConfig) -> Result<Option<Metrics>, MetricsError> {
        if !config.enabled() {
            return Ok(None);
        }
        Ok(Some(Metrics {
            handle: recorder()?,
            token: config.token.clone(),
            separate: config.listen.is_some(),
            holds_cache: Duration::from_secs(config.holds_cache_secs),
            holds: Arc::new(Mutex::new(None)),
        }))
    }

    /// Whether `/metrics` is on the public listener.
    pub fn on_public_listener(&self) -> bool {
        !self.separate
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else { return true };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(given.as_bytes(), token.expose_secret().as_bytes())
    }

    /// The open-holds count, reused for `holds_cache`.
    async fn holds_open(&self, app: &App) -> Option<u64> {
        let cached = *self.holds.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, n)) = cached
            && at.elapsed() < self.holds_cache
        {
            return Some(n);
        }
        match app.store.count_open_holds().await {
            Ok(n) => {
                *self.holds.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), n));
                Some(n)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot count open holds");
                None
            }
        }
    }

    /// The exposition text, with the scrape-time gauges set.
    pub async fn render(&self, app: &App) -> String {
        if let Some(n) = self.holds_open(app).await {
            metrics::gauge!(HOLDS_OPEN).set(n as f64);
        }
        let pool = app.store.pool_stats();
        metrics::gauge!(DB_CONNECTIONS, "state" => "in_use").set(f64::from(pool.in_use()));
        metrics::gauge!(DB_CONNECTIONS, "state" => "idle").set(f64::from(pool.idle));
        metrics::gauge!(DB_MAX_CONNECTIONS).set(f64::from(pool.max));
        metrics::gauge!(WS_CONNECTIONS).set(app.realtime.open_connections() as f64);
        metrics::gauge!(WS_SUBSCRIPTIONS).set(app.realtime.live_subscriptions() as f64);
        metrics::gauge!(WS_USERS).set(app.realtime.subscribed_users() as f64);
        self.handle.render()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /metrics`.
pub(crate) async fn scrape(State(app): State<App>, headers: HeaderMap) -> Response {
    let Some(metrics) = app.metrics.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !metrics.authorized(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a valid metrics token is required",
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics.render(&app).await,
    )
        .into_response()
}

/// Counts HTTP requests other than GraphQL over HTTP (which the GraphQL
/// extension counts by operation; a request refused at the edge, before
/// the schema, is not counted): by `METHOD route` and `OK` or
/// `HTTP_<status>`.
pub(crate) async fn count_http(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    let Some(route) = route else { return response };
    if route == "/graphql" {
        return response;
    }
    let status = response.status();
    let code = if status.is_client_error() || status.is_server_error() {
        format!("HTTP_{}", status.as_u16())
    } else {
        "OK".to_owned()
    };
    metrics::counter!(creditgate_graphql::metrics::REQUESTS, "operation" => format!("{method} {route}"), "code" => code)
        .increment(1);
    response
}
