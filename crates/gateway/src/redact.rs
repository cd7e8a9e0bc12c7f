//! What leaves the crate in an error message: provider messages truncated,
//! and the key redacted out of every message.

use secrecy::{ExposeSecret, SecretString};

use crate::ProviderError;

/// The longest provider message kept in an error.
const MAX_MESSAGE: usize = 500;

pub(crate) fn truncate(message: &str) -> String {
    if message.chars().count() <= MAX_MESSAGE {
        message.to_owned()
    } else {
        let mut cut: String = message.chars().take(MAX_MESSAGE).collect();
        cut.push('…');
        cut
    }
}

/// Replaces every occurrence of the key in `text`.
fn redact(text: &str, key: Option<&SecretString>) -> String {
    match key.map(ExposeSecret::expose_secret) {
        Some(secret) if secret.len() >= 4 && text.contains(secret) => text.replace(secret, "[REDACTED]"),
        _ => text.to_owned(),
    }
}

pub(crate) fn redact_error(err: ProviderError, key: Option<&SecretString>) -> ProviderError {
    let Some(key) = key else { return err };
    let r = |m: String| redact(&m, Some(key));
    match err {
        ProviderError::KeyRejected {
            provider,
            key_source,
            message,
        } => ProviderError::KeyRejected {
            provider,
            key_source,
            message: r(message),
        },
        ProviderError::RateLimited {
            provider,
            retry_after,
            message,
        } => ProviderError::RateLimited {
            provider,
            retry_after,
            message: r(message),
        },
        ProviderError::QuotaExceeded { provider, message } => ProviderError::QuotaExceeded {
            provider,
            message: r(message),
        },
        ProviderError::Unavailable {
            provider,
            status,
            message,
        } => ProviderError::Unavailable {
            provider,
            status,
            message: r(message),
        },
        ProviderError::Connect { provider, message } => ProviderError::Connect {
            provider,
            message: r(message),
        },
        ProviderError::StreamInterrupted { provider, message } => ProviderError::StreamInterrupted {
            provider,
            message: r(message),
        },
        ProviderError::ContextTooLong { provider, message } => ProviderError::ContextTooLong {
            provider,
            message: r(message),
        },
        ProviderError::BadRequest {
            provider,
            status,
            message,
        } => ProviderError::BadRequest {
            provider,
            status,
            message: r(message),
        },
        ProviderError::Plugin { provider, message } => ProviderError::Plugin {
            provider,
            message: r(message),
        },
        ProviderError::PluginPanic { provider, message } => ProviderError::PluginPanic {
            provider,
            message: r(message),
        },
        ProviderError::Other {
            provider,
            status,
            message,
        } => ProviderError::Other {
            provider,
            status,
            message: r(message),
        },
        other => other,
    }
}

pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    truncate(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeySource;

    #[test]
    fn redaction_removes_the_key() {
        let key = SecretString::from("sk-test-0123456789".to_owned());
        let err = ProviderError::KeyRejected {
            provider: "openai".into(),
            key_source: KeySource::User,
            message: "Incorrect API key provided: sk-test-0123456789".into(),
        };
        let text = redact_error(err, Some(&key)).to_string();
        assert!(!text.contains("sk-test-0123456789"), "{text}");
        assert!(text.contains("[REDACTED]"));
    }
}
