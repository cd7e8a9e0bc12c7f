//! CSV exports, with the same bearer token as the API:
//! `GET /export/activity.csv?from=&to=` (the caller's own activity log)
//! and `GET /export/org-usage.csv?from=&to=&granularity=` (ADMIN: the
//! organization's usage per bucket and member). The body is streamed as
//! the usage service reads it page by page. Errors before the first byte
//! are JSON, `{"error": {"code", "message"}}`, with the status of their
//! code.

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use creditgate_graphql::{ApiError, CsvChunk, Granularity, UsageService, wallet_user};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::app::App;

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/export/activity.csv", get(activity))
        .route("/export/org-usage.csv", get(org_usage))
}

/// An export refused before it started.
struct ExportError(ApiError);

impl From<ApiError> for ExportError {
    fn from(e: ApiError) -> Self {
        ExportError(e)
    }
}

impl IntoResponse for ExportError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({"error": {"code": self.0.code.as_str(), "message": self.0.message}});
        (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body.to_string(),
        )
            .into_response()
    }
}

fn identity(app: &App, headers: &HeaderMap) -> Result<creditgate_storage::Identity, ExportError> {
    let header = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    app.auth
        .authenticate_header(header)
        .map_err(|e| ApiError::unauthenticated(e.to_string()).into())
}

fn time(params: &HashMap<String, String>, name: &str) -> Result<Option<DateTime<Utc>>, ExportError> {
    match params.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => DateTime::parse_from_rfc3339(v)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| ApiError::bad_input(format!("`{name}` must be an RFC 3339 time")).into()),
    }
}

fn required_time(params: &HashMap<String, String>, name: &str) -> Result<DateTime<Utc>, ExportError> {
    time(params, name)?.ok_or_else(|| ApiError::bad_input(format!("`{name}` is required")).into())
}

fn granularity(params: &HashMap<String, String>) -> Result<Option<Granularity>, ExportError> {
    match params.get("granularity").map(|g| g.to_ascii_uppercase()).as_deref() {
        None | Some("") => Ok(None),
        Some("DAY") => Ok(Some(Granularity::Day)),
        Some("WEEK") => Ok(Some(Granularity::Week)),
        Some("MONTH") => Ok(Some(Granularity::Month)),
        Some(_) => Err(ApiError::bad_input("`granularity` must be DAY, WEEK or MONTH").into()),
    }
}

fn csv_response(name: &str, chunks: BoxStream<'static, CsvChunk>) -> Response {
    let body = Body::from_stream(chunks.map(|c| {
        c.map_err(|e| {
            tracing::warn!(code = e.code.as_str(), "a CSV export stopped: {}", e.message);
            std::io::Error::other(e.message)
        })
    }));
    let disposition = format!("attachment; filename=\"{name}\"");
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// `GET /export/activity.csv`: the caller's activity log, newest first.
async fn activity(
    State(app): State<App>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ExportError> {
    let id = identity(&app, &headers)?;
    let (from, to) = (time(&params, "from")?, time(&params, "to")?);
    let user = wallet_user(&app.store, &id).await?;
    let chunks = UsageService::new(app.store.clone()).activity_csv(user.id, from, to)?;
    Ok(csv_response("activity.csv", chunks))
}

/// `GET /export/org-usage.csv`: ADMIN only, the organization's usage per
/// bucket and member.
async fn org_usage(
    State(app): State<App>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ExportError> {
    let id = identity(&app, &headers)?;
    let range = UsageService::org_range(
        &id,
        required_time(&params, "from")?,
        required_time(&params, "to")?,
        granularity(&params)?,
    )?;
    let chunks = UsageService::new(app.store.clone()).org_usage_csv(range);
    Ok(csv_response("org-usage.csv", chunks))
}
