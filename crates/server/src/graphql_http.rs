//! GraphQL over HTTP: `POST /graphql` (one operation or a batch, JSON) and
//! `GET /graphql?query=...` (queries only), answered as the GraphQL over
//! HTTP convention says: a body that is not a GraphQL request gets a JSON
//! error with `extensions.code` BAD_USER_INPUT (never a plain-text debug
//! string), in `application/graphql-response+json` when the client accepts
//! it and `application/json` otherwise. A GET without a query from a client
//! that does not ask for JSON (a browser) gets GraphiQL.

use async_graphql::http::GraphiQLSource;
use async_graphql::{BatchRequest, BatchResponse, Request, ServerError};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use creditgate_graphql::{CallerUser, Code, HttpGet};

use crate::app::App;

/// The media type of GraphQL over HTTP responses.
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
/// Operations one batch may hold.
pub const MAX_BATCH: usize = 20;

/// Which media type the client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    GraphqlResponse,
    Json,
}

impl Flavor {
    fn of(headers: &HeaderMap) -> Flavor {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        if accept.contains(GRAPHQL_RESPONSE) {
            Flavor::GraphqlResponse
        } else {
            Flavor::Json
        }
    }

    fn content_type(self) -> HeaderValue {
        match self {
            Flavor::GraphqlResponse => HeaderValue::from_static(GRAPHQL_RESPONSE),
            Flavor::Json => HeaderValue::from_static("application/json"),
        }
    }
}

/// A request error: no operation ran. 400 with a GraphQL error body.
fn request_error(flavor: Flavor, status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": Code::BadUserInput.as_str() } }]
    });
    (
        status,
        [(header::CONTENT_TYPE, flavor.content_type())],
        body.to_string(),
    )
        .into_response()
}

fn respond(flavor: Flavor, response: &BatchResponse) -> Response {
    match serde_json::to_string(response) {
        Ok(body) => {
            let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, flavor.content_type())], body).into_response();
            resp.headers_mut().extend(response.http_headers());
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "a GraphQL response did not serialize");
            let err = ServerError::new("internal error; it has been logged", None);
            let body = serde_json::json!({
                "errors": [{ "message": err.message, "extensions": { "code": Code::Internal.as_str() } }]
            });
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, flavor.content_type())],
                body.to_string(),
            )
                .into_response()
        }
    }
}

/// Why a body is not a GraphQL request, in words for the client (serde's
/// message names the position, never the content).
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<BatchRequest, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media != "application/json" && media != "application/graphql-response+json" {
        return Err(format!(
            "the body must be application/json (a GraphQL request), not `{}`",
            media.chars().take(64).collect::<String>()
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("the body is empty; send {\"query\": \"...\"}".into());
    }
    let explain = |e: serde_json::Error| {
        if e.to_string().contains("recursion limit") {
            "the body nests JSON too deeply".to_owned()
        } else {
            format!(
                "the body is not a GraphQL request: {} (line {}, column {})",
                match e.classify() {
                    serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "invalid JSON",
                    _ => "expected {\"query\": String, \"variables\"?: Object, \"operationName\"?: String}",
                },
                e.line(),
                e.column()
            )
        }
    };
    // An object is one operation, an array a batch (serde would also read
    // an array as an object's fields in order: decide by the first byte).
    let batch = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => BatchRequest::Batch(serde_json::from_slice(body).map_err(explain)?),
        Some(b'{') => BatchRequest::Single(serde_json::from_slice(body).map_err(explain)?),
        _ => return Err("the body is not a GraphQL request: expected a JSON object (or an array, a batch)".into()),
    };
    let no_query = |r: &Request| r.query.trim().is_empty() && !r.extensions.contains_key("persistedQuery");
    match &batch {
        BatchRequest::Single(r) if no_query(r) => return Err("the request has no `query`".into()),
        BatchRequest::Batch(list) if list.iter().any(no_query) => {
            return Err("an operation of the batch has no `query`".into());
        }
        _ => {}
    }
    if let BatchRequest::Batch(list) = &batch {
        if list.is_empty() {
            return Err("a batch must hold at least one operation".into());
        }
        if list.len() > MAX_BATCH {
            return Err(format!("a batch may hold at most {MAX_BATCH} operations"));
        }
    }
    Ok(batch)
}

fn with_caller(app: &App, headers: &HeaderMap, req: Request) -> Request {
    let header = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    req.data(app.auth_from(header)).data(CallerUser::default())
}

/// `POST /graphql`.
pub(crate) async fn post(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let flavor = Flavor::of(&headers);
    let batch = match parse_body(&headers, &body) {
        Ok(b) => b,
        Err(message) => return request_error(flavor, StatusCode::BAD_REQUEST, &message),
    };
    let response = match batch {
        BatchRequest::Single(req) => BatchResponse::Single(app.schema.execute(with_caller(&app, &headers, req)).await),
        BatchRequest::Batch(list) => {
            let mut responses = Vec::with_capacity(list.len());
            for req in list {
                responses.push(app.schema.execute(with_caller(&app, &headers, req)).await);
            }
            BatchResponse::Batch(responses)
        }
    };
    respond(flavor, &response)
}

/// `GET /graphql`: a query in the URL (GraphQL over HTTP), or GraphiQL for
/// a browser that asks for a page.
pub(crate) async fn get(State(app): State<App>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    // A client that reads JSON gets a GraphQL answer; anyone else (a
    // browser) asking without a query gets the page.
    let wants_html = !headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("json"));
    let query = query.unwrap_or_default();
    if query.is_empty() && wants_html {
        return Html(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql/ws")
                .finish(),
        )
        .into_response();
    }
    let flavor = Flavor::of(&headers);
    let req = match async_graphql::http::parse_query_string(&query) {
        Ok(r) => r,
        Err(_) => {
            return request_error(
                flavor,
                StatusCode::BAD_REQUEST,
                "the URL does not hold a GraphQL request: ?query=...&variables=<JSON>&operationName=...",
            );
        }
    };
    let req = with_caller(&app, &headers, req).data(HttpGet);
    respond(flavor, &BatchResponse::Single(app.schema.execute(req).await))
}
