//! Request ids: every response carries `x-request-id`, the caller's own
//! when it is sane (1 to 128 characters of letters, digits and `-_.:`),
//! else a new UUID; every log line of the request carries it through the
//! request's span.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderName;
use tracing::Span;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Whether a caller's request id is kept.
pub fn is_sane(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Drops an incoming `x-request-id` that is not sane (so that a new one is
/// made for the request).
pub(crate) async fn drop_insane(mut request: Request) -> Request {
    let insane = request
        .headers()
        .get_all(&REQUEST_ID)
        .iter()
        .enumerate()
        .any(|(i, v)| i > 0 || !is_sane(v.as_bytes()));
    if insane {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

/// The span every log line of a request is in: method, route (never the
/// query string) and request id. With OpenTelemetry on, it is the
/// request's server span.
pub(crate) fn span(request: &Request) -> Span {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path(), |p| p.as_str());
    let method = request.method().as_str();
    tracing::info_span!(
        "request",
        %method,
        %route,
        request_id = %id,
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.response.status_code = tracing::field::Empty,
    )
}

/// Records the status on the request's span and logs the response (at
/// debug level, as tower-http does by default).
pub(crate) fn on_response<B>(response: &axum::http::Response<B>, latency: std::time::Duration, span: &Span) {
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    tracing::debug!(
        status,
        latency_ms = latency.as_millis() as u64,
        "finished processing request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_short_and_plain() {
        assert!(is_sane(b"3f1c-9a:req_1.2"));
        assert!(!is_sane(b""));
        assert!(!is_sane(b"has space"));
        assert!(!is_sane(b"line\nbreak"));
        assert!(!is_sane(&[b'a'; 129]));
    }
}
