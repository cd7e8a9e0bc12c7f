//! The server: HTTP routes over the GraphQL schema, and the sweeps.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use creditgate_domain::Clock;
use creditgate_graphql::{ApiLimits, ApiSchema, Auth, CallerUser, QueryLimits, Services, build_schema};
use creditgate_storage::{Store, StoreError, StoreOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::auth::{AuthError, Authenticator};
use crate::config::{Config, ConfigError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// Everything a running server shares.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub store: Store,
    pub schema: ApiSchema,
    pub auth: Arc<Authenticator>,
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
        let plans = Arc::new(config.plan_catalog()?);
        let mut options = StoreOptions::new(config.database_url());
        options.max_connections = config.database_max_connections;
        options.hold_ttl = chrono::Duration::seconds(i64::try_from(config.sweep.hold_ttl_secs).unwrap_or(600));
        let store = Store::connect(&options, clock, plans).await?;
        store.migrate().await?;
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
            },
            |builder| {
                // Each capability adds its own data here, one line each.
                builder
            },
        );
        Ok(App {
            config: Arc::new(config),
            store,
            schema,
            auth,
        })
    }

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/graphql", get(graphiql).post(graphql))
            .route("/graphql/ws", get(graphql_ws))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .layer(RequestBodyLimitLayer::new(self.config.limits.body_bytes))
            .layer(CatchPanicLayer::new())
            .layer(TraceLayer::new_for_http())
            .with_state(self.clone())
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Runs the periodic sweeps until cancelled: open holds past their
    /// deadline are released, ended billing cycles are closed. Safe on every
    /// replica at once.
    pub fn spawn_sweeper(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let every = self.config.sweep.interval_secs;
        let batch = self.config.sweep.batch;
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
            }
        })
    }

    fn auth_from(&self, header: Option<&str>) -> Auth {
        match self.auth.authenticate_header(header) {
            Ok(id) => Auth::Caller(id),
            Err(AuthError::Missing) => Auth::Missing,
            Err(e) => Auth::Refused(e.to_string()),
        }
    }
}

async fn graphql(State(app): State<App>, headers: HeaderMap, req: GraphQLRequest) -> GraphQLResponse {
    let header = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let req = req.into_inner().data(app.auth_from(header)).data(CallerUser::default());
    app.schema.execute(req).await.into()
}

async fn graphiql() -> impl IntoResponse {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .finish(),
    )
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

async fn graphql_ws(State(app): State<App>, protocol: GraphQLProtocol, upgrade: WebSocketUpgrade) -> Response {
    let schema = app.schema.clone();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| {
                    let app = app.clone();
                    async move { connection_init(&app, payload) }
                })
                .keepalive_timeout(Duration::from_secs(30))
                .serve()
        })
        .into_response()
}

/// A WebSocket is authenticated once, by its `connection_init` payload
/// `{"Authorization": "Bearer <JWT>"}`; a refused token closes it.
fn connection_init(app: &App, payload: serde_json::Value) -> async_graphql::Result<Data> {
    let header = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"))
        .and_then(|v| v.as_str());
    let auth = match app.auth.authenticate_header(header) {
        Ok(id) => Auth::Caller(id),
        Err(e) => return Err(async_graphql::Error::new(e.to_string())),
    };
    let mut data = Data::default();
    data.insert(auth);
    Ok(data)
}
