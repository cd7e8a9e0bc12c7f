//! Provider errors: the plugin classifies a failed response, and the class
//! maps to a [`ProviderError`] (with the `Retry-After` the provider sent).

use std::time::Duration;

use creditgate_provider_sdk::{ClassifiedError, ErrorClass};

use crate::gateway::Entry;
use crate::keys::Key;
use crate::redact::truncate;
use crate::{KeySource, ProviderError, plugin_call};

/// Maps a classified provider error.
pub(crate) fn from_class(
    provider: &str,
    status: Option<u16>,
    retry_after: Option<Duration>,
    err: ClassifiedError,
    key_source: KeySource,
) -> ProviderError {
    let provider = provider.to_owned();
    let message = truncate(&err.message);
    match err.class {
        ErrorClass::Auth => ProviderError::KeyRejected {
            provider,
            key_source,
            message,
        },
        ErrorClass::RateLimit => ProviderError::RateLimited {
            provider,
            retry_after,
            message,
        },
        ErrorClass::QuotaExceeded => ProviderError::QuotaExceeded { provider, message },
        ErrorClass::ContextTooLong => ProviderError::ContextTooLong { provider, message },
        ErrorClass::Overloaded => ProviderError::Unavailable {
            provider,
            status,
            message,
        },
        ErrorClass::BadRequest => ProviderError::BadRequest {
            provider,
            status: status.unwrap_or(0),
            message,
        },
        ErrorClass::Other => ProviderError::Other {
            provider,
            status,
            message,
        },
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_millis(ms as u64));
    }
    get("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

pub(crate) async fn classified(
    entry: &Entry,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: String,
    key: &Key,
) -> ProviderError {
    let key_source = key.source;
    match plugin_call::call(entry, "classify_error", move |p| Ok(p.classify_error(status, &body))).await {
        Ok(err) => from_class(&entry.id, Some(status), retry_after(headers), err, key_source),
        Err(err) => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_headers() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "14".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(14)));
        headers.insert("retry-after-ms", "407".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(407)));
    }
}
