//! The web console: a build-free single-page app (plain HTML, CSS and ES
//! modules in `crates/server/console/`), embedded in the binary and served
//! at `/` (the page) and `/console/...` (its files). It speaks only the
//! public GraphQL API. Every answer carries a strict Content-Security-Policy
//! (scripts and styles from this origin only, nothing inline), an ETag and
//! `Cache-Control: no-cache`, so a new binary's files are picked up at once
//! while unchanged ones are answered with 304.
//!
//! The page is told how the user signs in through one `<meta>` element:
//! `development` (the console offers "sign in as", minted by
//! [`crate::dev_token`]) or `host` (the host application hands the token
//! over), and which origins may hand it over by `postMessage` (the
//! configured CORS origins).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::App;
use crate::config::Config;

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console; `index.html` is the page at `/`.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("main.js", JS),
    asset!("api.js", JS),
    asset!("realtime.js", JS),
    asset!("dom.js", JS),
    asset!("format.js", JS),
    asset!("session.js", JS),
    asset!("store.js", JS),
    asset!("views/signin.js", JS),
    asset!("views/wallet.js", JS),
    asset!("views/buy.js", JS),
    asset!("views/byok.js", JS),
    asset!("views/activity.js", JS),
    asset!("views/usage.js", JS),
    asset!("views/try.js", JS),
];

/// The placeholders of `index.html` filled in at start.
const SIGN_IN_PLACEHOLDER: &str = "__CREDITGATE_SIGN_IN__";
const HOST_ORIGINS_PLACEHOLDER: &str = "__CREDITGATE_HOST_ORIGINS__";

/// A file ready to serve.
struct Prepared {
    content_type: &'static str,
    body: Vec<u8>,
    etag: HeaderValue,
}

/// The console's files, with the page filled in for this configuration.
struct Console {
    files: Vec<(&'static str, Prepared)>,
    csp: HeaderValue,
}

impl Console {
    fn new(config: &Config) -> Console {
        let sign_in = if config.environment == "development" {
            "development"
        } else {
            "host"
        };
        let origins = config
            .cors
            .allowed_origins
            .iter()
            .map(|o| escape_attr(o.trim_end_matches('/')))
            .collect::<Vec<_>>()
            .join(" ");
        let files = ASSETS
            .iter()
            .map(|a| {
                let body = if a.path == "index.html" {
                    String::from_utf8_lossy(a.body)
                        .replace(SIGN_IN_PLACEHOLDER, sign_in)
                        .replace(HOST_ORIGINS_PLACEHOLDER, &origins)
                        .into_bytes()
                } else {
                    a.body.to_vec()
                };
                let mut hasher = DefaultHasher::new();
                body.hash(&mut hasher);
                let etag = HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
                    .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
                (
                    a.path,
                    Prepared {
                        content_type: a.content_type,
                        body,
                        etag,
                    },
                )
            })
            .collect();
        Console {
            files,
            csp: content_security_policy(config),
        }
    }

    fn serve(&self, path: &str, request: &HeaderMap) -> Response {
        let Some((_, file)) = self.files.iter().find(|(p, _)| *p == path) else {
            return (StatusCode::NOT_FOUND, "no such file").into_response();
        };
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|t| t.trim().as_bytes() == file.etag.as_bytes()));
        let mut response = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut r = Response::new(Body::from(file.body.clone()));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(file.content_type));
            r
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, file.etag.clone());
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        response
    }
}

/// Scripts, styles, images and connections from this origin only; nothing
/// inline, no plugins, no forms elsewhere. The page may be framed by this
/// origin and by the configured CORS origins (a host application that hands
/// the token over by `postMessage`).
fn content_security_policy(config: &Config) -> HeaderValue {
    let mut ancestors = vec!["'self'".to_owned()];
    ancestors.extend(
        config
            .cors
            .allowed_origins
            .iter()
            .map(|o| o.trim_end_matches('/').to_owned()),
    );
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors {}",
        ancestors.join(" ")
    );
    // Origins were validated at start (scheme://host[:port]); should one
    // not be a header value, the page may only be framed by itself.
    HeaderValue::from_str(&policy).unwrap_or_else(|_| {
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'self'",
        )
    })
}

/// The few characters that would end an HTML attribute value.
fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `GET /` (the page) and `GET /console/{*path}` (its files).
pub(crate) fn routes(config: &Config) -> Router<App> {
    let console = Arc::new(Console::new(config));
    let page = console.clone();
    Router::new()
        .route(
            "/",
            get(move |headers: HeaderMap| async move { page.serve("index.html", &headers) }),
        )
        .route(
            "/console/{*path}",
            get(move |Path(path): Path<String>, headers: HeaderMap| async move {
                // The page itself is only served at `/`.
                if path == "index.html" {
                    return (StatusCode::NOT_FOUND, "no such file").into_response();
                }
                console.serve(&path, &headers)
            }),
        )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_module_the_console_imports_is_embedded() {
        let embedded: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let spec = line.rsplit_once(" from ").map_or(line, |(_, s)| s);
                let spec = spec
                    .trim()
                    .trim_end_matches(';')
                    .trim_matches(|c| c == '"' || c == '\'');
                let base = a.path.rsplit_once('/').map_or("", |(dir, _)| dir);
                let mut parts: Vec<&str> = if base.is_empty() {
                    vec![]
                } else {
                    base.split('/').collect()
                };
                for seg in spec.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let resolved = parts.join("/");
                assert!(
                    embedded.contains(&resolved.as_str()),
                    "{} imports {spec} ({resolved}), which is not embedded",
                    a.path
                );
            }
        }
    }

    #[test]
    fn the_page_is_filled_in_for_the_configuration() {
        let config = Config::from_toml("[cors]\nallowed_origins = [\"https://app.example.com\"]").unwrap();
        let console = Console::new(&config);
        let page = &console.files.iter().find(|(p, _)| *p == "index.html").unwrap().1;
        let text = String::from_utf8(page.body.clone()).unwrap();
        assert!(text.contains("content=\"development\""));
        assert!(text.contains("content=\"https://app.example.com\""));
        assert!(!text.contains("__CREDITGATE"));
        assert!(
            console
                .csp
                .to_str()
                .unwrap()
                .ends_with("frame-ancestors 'self' https://app.example.com")
        );
    }
}
