//! HTTP I/O for a provider call: the host check, the key injected, the
//! timeouts, one retry of a failed connection, bounded body reads; and the
//! offline exchange for providers without network.

use std::time::{Duration, Instant};

use creditgate_provider_sdk::{HttpRequest, Method};

use crate::gateway::Entry;
use crate::keys::{Key, inject_key};
use crate::redact::error_chain;
use crate::{ProviderError, hosts, plugin_call};

/// The longest response body read (16 MiB).
const MAX_BODY: usize = 16 << 20;

pub(crate) async fn offline(
    entry: &Entry,
    mut request: HttpRequest,
    key: &Key,
) -> Result<(u16, String), ProviderError> {
    inject_key(entry, &mut request, key)?;
    let response = plugin_call::call(entry, "offline_exchange", move |p| p.offline_exchange(&request)).await?;
    Ok((response.status, response.body))
}

/// Sends a plugin-built request: checks the host the operator allows
/// (before the key is anywhere in the request) and the key placement,
/// injects the key, applies the timeouts, retries a failed connection once.
pub(crate) async fn send(
    entry: &Entry,
    mut request: HttpRequest,
    key: &Key,
    total: Option<Duration>,
) -> Result<reqwest::Response, ProviderError> {
    let url = entry.last_url.parse(&request.url).map_err(|e| ProviderError::Plugin {
        provider: entry.id.clone(),
        message: format!("the plugin built an invalid URL: {e}"),
    })?;
    if !entry.hosts.allows(&url) {
        let host = hosts::Origin::of(&url).to_string();
        tracing::warn!(provider = %entry.id, plugin = %entry.manifest.id, %host, "plugin request to a host the operator did not allow refused; no key was sent");
        return Err(ProviderError::HostNotAllowed {
            provider: entry.id.clone(),
            host,
        });
    }
    let key_index = inject_key(entry, &mut request, key)?;
    let mut headers = reqwest::header::HeaderMap::new();
    for (index, (name, value)) in request.headers.iter().enumerate() {
        let header_name =
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| ProviderError::Plugin {
                provider: entry.id.clone(),
                message: format!("invalid header name {name:?}"),
            })?;
        if matches!(
            header_name.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection"
        ) {
            return Err(ProviderError::Plugin {
                provider: entry.id.clone(),
                message: format!("the plugin may not set header {name:?}"),
            });
        }
        let is_key = Some(index) == key_index;
        let mut header_value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
            if is_key {
                ProviderError::KeyRejected {
                    provider: entry.id.clone(),
                    key_source: key.source,
                    message: "the key contains characters that cannot be sent in an HTTP header".into(),
                }
            } else {
                ProviderError::Plugin {
                    provider: entry.id.clone(),
                    message: format!("invalid value for header {name:?}"),
                }
            }
        })?;
        header_value.set_sensitive(is_key);
        headers.append(header_name, header_value);
    }
    let method = match request.method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
    };
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut builder = entry
            .client
            .request(method.clone(), url.clone())
            .headers(headers.clone());
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let remaining = total.map(|t| t.saturating_sub(started.elapsed()));
        let sent = match remaining {
            Some(remaining) => builder.timeout(remaining).send().await,
            None => match tokio::time::timeout(entry.timeouts.total, builder.send()).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(ProviderError::Timeout {
                        provider: entry.id.clone(),
                        what: "waiting for the response",
                        after: entry.timeouts.total,
                    });
                }
            },
        };
        match sent {
            Ok(response) => return Ok(response),
            Err(err) if err.is_connect() && attempt < 2 => {
                tracing::debug!(provider = %entry.id, "connection failed; retrying once");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => return Err(transport_error(entry, &err, total)),
        }
    }
}

fn transport_error(entry: &Entry, err: &reqwest::Error, total: Option<Duration>) -> ProviderError {
    if err.is_timeout() {
        ProviderError::Timeout {
            provider: entry.id.clone(),
            what: "total request time",
            after: total.unwrap_or(entry.timeouts.total),
        }
    } else if err.is_connect() {
        ProviderError::Connect {
            provider: entry.id.clone(),
            message: error_chain(err),
        }
    } else {
        ProviderError::Unavailable {
            provider: entry.id.clone(),
            status: None,
            message: error_chain(err),
        }
    }
}
pub(crate) async fn read_body(entry: &Entry, mut response: reqwest::Response) -> Result<String, ProviderError> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(ProviderError::Other {
                        provider: entry.id.clone(),
                        status: None,
                        message: format!("response body larger than {MAX_BODY} bytes"),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(err) => return Err(transport_error(entry, &err, Some(entry.timeouts.total))),
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}
