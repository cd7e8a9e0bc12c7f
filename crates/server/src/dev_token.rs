//! `POST /dev/token`: development sign-in. With `environment =
//! "development"` the console signs in as any user, organization and role
//! through this route, which mints a token exactly as `creditgate token`
//! does (the server's HS256 secret). With `environment = "production"` the
//! route does not exist (404): there the host application hands the console
//! a token.
//!
//! Body: `{"sub", "org", "role": "member" | "admin" | "service", "name"?,
//! "email"?, "team"?, "org_name"?}` as `application/json` (a browser cannot
//! send that cross-origin without a preflight, which no origin passes
//! unless configured). Answer: `{"token", "expiresAt"}`; a refused body gets
//! 400 with `{"error": {"code": "BAD_USER_INPUT", "message"}}`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use creditgate_domain::Role;
use creditgate_graphql::Code;
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::auth::TokenRequest;
use crate::config::Config;

/// How long a development token lives.
const TTL_HOURS: i64 = 12;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    sub: String,
    org: String,
    role: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    org_name: Option<String>,
}

/// The route, in development only.
pub(crate) fn routes(config: &Config) -> Router<App> {
    if config.environment == "development" {
        Router::new().route("/dev/token", post(mint))
    } else {
        Router::new()
    }
}

fn refused(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": Code::BadUserInput.as_str(), "message": message}})),
    )
        .into_response()
}

async fn mint(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json_body {
        return refused(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the body as application/json");
    }
    let body: Body = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(_) => {
            return refused(
                StatusCode::BAD_REQUEST,
                "expected {\"sub\", \"org\", \"role\", \"name\"?, \"email\"?, \"team\"?, \"org_name\"?}",
            );
        }
    };
    for (field, value) in [("sub", &body.sub), ("org", &body.org)] {
        if let Err(e) = creditgate_domain::check_id(field, value) {
            return refused(StatusCode::BAD_REQUEST, &e.to_string());
        }
    }
    let Ok(role) = body.role.parse::<Role>() else {
        return refused(StatusCode::BAD_REQUEST, "role must be member, admin or service");
    };
    let blank_to_none = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let ttl = chrono::Duration::hours(TTL_HOURS);
    let request = TokenRequest {
        sub: body.sub,
        org: body.org,
        role,
        name: blank_to_none(body.name),
        email: blank_to_none(body.email),
        team: blank_to_none(body.team),
        org_name: blank_to_none(body.org_name),
        ttl,
    };
    match app.auth.issue(&request) {
        Ok(token) => (
            StatusCode::OK,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(json!({"token": token, "expiresAt": (chrono::Utc::now() + ttl).to_rfc3339()})),
        )
            .into_response(),
        // Only an HS256 secret signs; with a public key there is nothing to sign with.
        Err(e) => refused(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}
