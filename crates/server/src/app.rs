//! The server: HTTP routes over the GraphQL schema, and the sweeps.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::GraphQLProtocol;
use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use creditgate_domain::Clock;
use creditgate_graphql::{ApiLimits, ApiSchema, Auth, QueryLimits, Services, build_schema};
use creditgate_realtime::Hub;
use creditgate_realtime::ws::{CLOSE_FORBIDDEN, CLOSE_TOO_MANY_CONNECTIONS, InitOutcome, WsSettings};
use creditgate_storage::{Store, StoreError, StoreOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use creditgate_gateway::Gateway;
use creditgate_metering::{AiService, KeyVault};

use crate::auth::{AuthError, Authenticator};
use crate::config::{Config, ConfigError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("providers: {0}")]
    Gateway(#[from] creditgate_gateway::GatewayError),
    #[error("BYOK keys: {0}")]
    Vault(#[from] creditgate_metering::VaultError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error(transparent)]
    Webhooks(#[from] crate::outbound::OutboundError),
}

/// The deepest bracket nesting a query may be configured to allow.
const MAX_QUERY_NESTING: usize = 256;

/// Everything a running server shares. Cheap to clone: the router clones
/// it for every request (each route and middleware that takes it as state),
/// so it is one shared allocation.
#[derive(Clone)]
pub struct App(Arc<AppParts>);

/// What an [`App`] holds.
pub struct AppParts {
    pub config: Arc<Config>,
    pub store: Store,
    pub schema: ApiSchema,
    pub auth: Arc<Authenticator>,
    /// Buying credits: the packs and the payment provider.
    pub payments: creditgate_payments::Payments,
    /// Starting purchases and applying payment events.
    pub purchases: creditgate_payments::PurchaseService,
    /// Real-time wallet events of this replica.
    pub realtime: Hub,
    /// Metered AI requests.
    pub ai: AiService,
    /// The metrics endpoint; `None` when it is off.
    pub metrics: Option<crate::metrics::Metrics>,
    /// Cancelled when the server begins to shut down: WebSockets close (1001).
    pub shutdown: CancellationToken,
    /// The delivery of outgoing webhooks (see [`App::spawn_webhooks`]).
    pub outbound: Arc<crate::outbound::Outbound>,
}

impl std::ops::Deref for App {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Connects to the database and runs pending migrations.
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> Result<App, AppError> {
        if config.is_sqlite() && config.database_url.is_none() {
            config.ensure_data_dir()?;
        }
        let auth = Arc::new(Authenticator::from_config(&config)?);
        let metrics = crate::metrics::Metrics::from_config(&config.metrics)?;
        let plans = Arc::new(config.plan_catalog()?);
        let mut options = StoreOptions::new(config.database_url());
        options.max_connections = config.database_max_connections;
        options.ledger_writers = config.ledger_writers;
        options.hold_ttl = chrono::Duration::seconds(i64::try_from(config.sweep.hold_ttl_secs).unwrap_or(600));
        config.realtime.validate().map_err(|(key, message)| ConfigError::Key {
            key,
            message: message.into(),
        })?;
        options.notify_channel = config.realtime.notify_channel_for(&config.database_url());
        options.alert_thresholds = config.alerts.thresholds()?;
        if config.limits.query_nesting == 0 || config.limits.query_nesting > MAX_QUERY_NESTING {
            // Deeper than this, the GraphQL parser's recursion could exhaust a worker's stack.
            return Err(ConfigError::Key {
                key: "limits.query_nesting",
                message: format!("must be 1 to {MAX_QUERY_NESTING}"),
            }
            .into());
        }
        let store = Store::connect(&options, clock, plans)
            .await?
            .with_webhook_routes(config.webhooks.routes());
        store.migrate().await?;
        // Before anything takes a copy of the store: every commit must reach the hub.
        let (store, realtime) = Hub::start(store, &config.realtime, &config.database_url());
        let ai = ai_service(&config, &store)?;
        let payments = crate::webhooks::payments_from_config(&config)?;
        let purchases = creditgate_payments::PurchaseService::new(store.clone(), payments.clone());
        let outbound = Arc::new(crate::outbound::Outbound::new(store.clone(), &config.webhooks)?);
        let services = Services {
            store: store.clone(),
            limits: ApiLimits {
                max_page_size: config.limits.max_page_size,
                ..ApiLimits::default()
            },
        };
        let schema = build_schema(
            services,
            QueryLimits {
                depth: config.limits.query_depth,
                complexity: config.limits.query_complexity,
                document: creditgate_graphql::DocumentLimits {
                    nesting: config.limits.query_nesting,
                    fragments: config.limits.query_fragments,
                },
            },
            // Each capability adds its own data here, one `.data(...)` each.
            |builder| {
                builder
                    .data(payments.clone())
                    .data(purchases.clone())
                    .data(realtime.clone())
                    .data(ai.clone())
            },
        );
        Ok(App(Arc::new(AppParts {
            config: Arc::new(config),
            store,
            schema,
            auth,
            payments,
            purchases,
            ai,
            realtime,
            metrics,
            shutdown: CancellationToken::new(),
            outbound,
        })))
    }

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        let router = Router::new()
            .route(
                "/graphql",
                get(crate::graphql_http::get).post(crate::graphql_http::post),
            )
            .route("/graphql/ws", get(graphql_ws))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/webhooks/stripe", axum::routing::post(crate::webhooks::stripe_webhook))
            .merge(crate::openai_compat::routes())
            .merge(crate::exports::routes())
            .merge(crate::console::routes(&self.config))
            .merge(crate::dev_token::routes(&self.config))
            .merge(self.public_metrics_route())
            .layer(RequestBodyLimitLayer::new(self.config.limits.body_bytes))
            .layer(CatchPanicLayer::new())
            .layer(axum::middleware::from_fn(crate::metrics::count_http))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(crate::request_id::span)
                    .on_response(crate::request_id::on_response),
            )
            .layer(PropagateRequestIdLayer::new(crate::request_id::REQUEST_ID))
            .layer(SetRequestIdLayer::new(crate::request_id::REQUEST_ID, MakeRequestUuid))
            .layer(axum::middleware::map_request(crate::request_id::drop_insane));
        // Outermost: a preflight is answered before anything else runs.
        match crate::cors::layer(&self.config.cors) {
            Some(cors) => router.layer(cors),
            None => router,
        }
        .with_state(self.clone())
    }

    /// `/metrics` on the public listener, when it is served there (behind
    /// its token).
    fn public_metrics_route(&self) -> Router<App> {
        match &self.metrics {
            Some(m) if m.on_public_listener() => Router::new().route("/metrics", get(crate::metrics::scrape)),
            _ => Router::new(),
        }
    }

    /// The routes of the separate metrics listener (`metrics.listen`).
    pub fn metrics_router(&self) -> Router {
        Router::new()
            .route("/metrics", get(crate::metrics::scrape))
            .with_state(self.clone())
    }

    /// Serves `/metrics` on its own listener until `shutdown` resolves.
    pub async fn serve_metrics(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.metrics_router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // WebSockets are not requests in flight: they are told to go away
        // (1001) as soon as shutdown begins.
        let sockets = self.shutdown.clone();
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move {
                shutdown.await;
                sockets.cancel();
            })
            .await
    }

    /// Runs the periodic sweeps until cancelled: open holds past their
    /// deadline are released, ended billing cycles are closed, old webhook
    /// events are forgotten and purchases that never reached the payment
    /// provider are failed. Safe on every replica at once.
    pub fn spawn_sweeper(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let every = self.config.sweep.interval_secs;
        let batch = self.config.sweep.batch;
        let housekeeping = crate::housekeeping::Housekeeping::from_config(&self.config);
        tokio::spawn(async move {
            if every == 0 {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_secs(every));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match store.expire_holds(batch).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(released = n, "released holds past their deadline"),
                    Err(e) => tracing::warn!(error = %e, "hold sweep failed"),
                }
                match store.close_ended_cycles(batch).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(closed = n, "closed ended billing cycles"),
                    Err(e) => tracing::warn!(error = %e, "cycle sweep failed"),
                }
                housekeeping.run(&store, batch).await;
            }
        })
    }

    /// Delivers outgoing webhooks until cancelled (every replica runs it;
    /// a row is delivered by one at a time). Does nothing without endpoints.
    pub fn spawn_webhooks(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        self.outbound.clone().spawn(cancel)
    }

    pub(crate) fn auth_from(&self, header: Option<&str>) -> Auth {
        match self.auth.authenticate_header(header) {
            Ok(id) => Auth::Caller(id),
            Err(AuthError::Missing) => Auth::Missing,
            Err(e) => Auth::Refused(e.to_string()),
        }
    }
}

/// The gateway (every plugin of the configured folder), the BYOK vault and
/// the pricing table.
fn ai_service(config: &Config, store: &Store) -> Result<AiService, AppError> {
    let gateway = Gateway::load(&config.providers)?;
    for skipped in gateway.skipped_plugins() {
        tracing::warn!(?skipped, "plugin skipped");
    }
    let providers: Vec<String> = gateway.providers().into_iter().map(|p| p.id).collect();
    tracing::info!(?providers, "providers loaded");
    let vault = vault(config)?;
    let pricing = config.ai.pricing.table().map_err(|e| ConfigError::Key {
        key: "ai.pricing",
        message: e.to_string(),
    })?;
    Ok(AiService::new(
        store.clone(),
        Arc::new(gateway),
        pricing,
        vault,
        &config.ai,
    ))
}

/// The identity that decrypts BYOK keys: from the configured environment
/// variable, else the configured file, else `<data_dir>/byok-identity.txt`
/// (generated on first start, mode 0600).
pub fn vault(config: &Config) -> Result<KeyVault, AppError> {
    if let Some(var) = &config.ai.identity_env {
        return Ok(KeyVault::from_env(var)?);
    }
    let path = identity_path(config)?;
    if config.environment == "production" {
        return KeyVault::load(&path).map_err(|e| {
            ConfigError::Key {
                key: "ai.identity_file",
                message: e.to_string(),
            }
            .into()
        });
    }
    Ok(KeyVault::load_or_create(&path)?)
}

pub fn identity_path(config: &Config) -> Result<std::path::PathBuf, AppError> {
    match &config.ai.identity_file {
        Some(path) => Ok(path.clone()),
        None => {
            config.ensure_data_dir()?;
            Ok(config.data_dir.join("byok-identity.txt"))
        }
    }
}

async fn readyz(State(app): State<App>) -> Response {
    match app.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "database not reachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

async fn graphql_ws(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    _protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Browsers do not apply CORS to WebSockets: the origin is checked here.
    if !crate::cors::upgrade_allowed(&app.config.cors, &headers) {
        return (StatusCode::FORBIDDEN, "this origin may not open a WebSocket here").into_response();
    }
    // The replica's connection limit, before the upgrade.
    let Some(permit) = app.realtime.try_connection() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections; try another replica or later",
        )
            .into_response();
    };
    let schema = app.schema.clone();
    let shutdown = app.shutdown.clone();
    let settings = WsSettings::from_config(&app.config.realtime);
    // Small per-connection buffers: subscription traffic is small messages,
    // and ten thousand idle sockets should not hold 128 KiB each.
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(256 * 1024)
        .on_upgrade(move |socket| async move {
            let on_init = {
                let app = app.clone();
                move |payload| async move { connection_init(&app, payload) }
            };
            creditgate_realtime::ws::serve(socket, schema, settings, permit, on_init, shutdown).await;
        })
        .into_response()
}

/// A WebSocket is authenticated once, by its `connection_init` payload
/// `{"Authorization": "Bearer <JWT>"}`: a refused token closes it with 4403
/// (Forbidden), a user over their connection limit with 4429. The
/// connection closes (4403) when the token expires.
fn connection_init(app: &App, payload: serde_json::Value) -> InitOutcome {
    let header = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"))
        .and_then(|v| v.as_str());
    let id = match app.auth.authenticate_header(header) {
        Ok(id) => id,
        Err(e) => {
            return InitOutcome::Refused {
                code: CLOSE_FORBIDDEN,
                reason: format!("Forbidden: {e}"),
            };
        }
    };
    let Some(user_permit) = app.realtime.try_user_connection(&id.user_id) else {
        return InitOutcome::Refused {
            code: CLOSE_TOO_MANY_CONNECTIONS,
            reason: "too many connections for this user".into(),
        };
    };
    // The expiry of the token just verified, with the leeway verification allows.
    let leeway = chrono::Duration::seconds(i64::try_from(app.config.jwt.leeway_secs).unwrap_or(0));
    let expires_at = id.expires_at.map(|exp| exp + leeway);
    let mut data = Data::default();
    data.insert(Auth::Caller(id));
    InitOutcome::Accepted {
        data,
        expires_at,
        permit: Some(user_permit),
    }
}
