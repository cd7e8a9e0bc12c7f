//! Cross-origin access for SPAs served from other origins: CORS for the
//! configured origins (none by default), with the headers an SPA sends and
//! reads, and the same list checked on the WebSocket upgrade, which
//! browsers do not subject to CORS.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// `[cors]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins (`https://app.example.com`) whose pages may call the API
    /// and open its WebSocket; none by default (same origin only).
    pub allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight answer, in seconds.
    pub max_age_secs: u64,
}

impl CorsConfig {
    /// Each origin must be `scheme://host[:port]`, nothing more.
    pub fn validate(&self) -> Result<(), String> {
        for origin in &self.allowed_origins {
            let parsed = url::Url::parse(origin).map_err(|_| format!("`{origin}` is not an origin"))?;
            let canonical = parsed.origin().ascii_serialization();
            if !matches!(parsed.scheme(), "http" | "https") || canonical != origin.trim_end_matches('/') {
                return Err(format!(
                    "`{origin}` is not an origin (scheme://host[:port], no path), e.g. `{canonical}`"
                ));
            }
            HeaderValue::from_str(origin).map_err(|_| format!("`{origin}` is not an origin"))?;
        }
        Ok(())
    }

    /// Whether a page of `origin` may call the API.
    pub fn allows(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o.trim_end_matches('/') == origin)
    }
}

/// Headers an SPA sends.
const REQUEST_HEADERS: [HeaderName; 6] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::ACCEPT,
    HeaderName::from_static("idempotency-key"),
    HeaderName::from_static("x-creditgate-feature"),
    HeaderName::from_static("x-request-id"),
];

/// Headers an SPA may read.
const RESPONSE_HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("x-creditgate-credits-charged"),
    HeaderName::from_static("x-creditgate-balance"),
    HeaderName::from_static("x-creditgate-billing-mode"),
];

/// The CORS layer; `None` when no origin is configured (browsers then
/// refuse every cross-origin call, which is the default).
pub fn layer(config: &CorsConfig) -> Option<CorsLayer> {
    if config.allowed_origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = config
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers(REQUEST_HEADERS)
            .expose_headers(RESPONSE_HEADERS)
            .allow_credentials(true)
            .max_age(std::time::Duration::from_secs(if config.max_age_secs == 0 {
                600
            } else {
                config.max_age_secs
            })),
    )
}

/// Whether a WebSocket upgrade may proceed: no `Origin` (not a browser),
/// the server's own origin, or a configured one.
pub fn upgrade_allowed(config: &CorsConfig, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let same_origin = url::Url::parse(origin)
        .ok()
        .and_then(|u| {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            u.host_str().map(|h| format!("{h}{port}"))
        })
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host));
    same_origin || config.allows(origin)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(origins: &[&str]) -> CorsConfig {
        CorsConfig {
            allowed_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            max_age_secs: 0,
        }
    }

    #[test]
    fn origins_are_validated() {
        assert!(
            config(&["https://app.example.com", "http://localhost:5173"])
                .validate()
                .is_ok()
        );
        assert!(config(&["https://app.example.com/path"]).validate().is_err());
        assert!(config(&["app.example.com"]).validate().is_err());
        assert!(config(&["ftp://app.example.com"]).validate().is_err());
    }

    #[test]
    fn websocket_upgrades_check_the_origin() {
        let c = config(&["https://app.example.com"]);
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(upgrade_allowed(&c, &h), "no Origin: not a browser");
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(upgrade_allowed(&c, &h), "same origin");
        h.insert(header::ORIGIN, HeaderValue::from_static("https://app.example.com"));
        assert!(upgrade_allowed(&c, &h), "configured");
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example.com"));
        assert!(!upgrade_allowed(&c, &h));
    }
}
