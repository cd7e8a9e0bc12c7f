//! Errors.

use std::path::PathBuf;
use std::time::Duration;

/// Whose key a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The platform's own key (credit-paid requests).
    Platform,
    /// The user's own key (BYOK).
    User,
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeySource::Platform => "platform",
            KeySource::User => "user's",
        })
    }
}

/// Which API error a [`ProviderError`] maps to (see [`ProviderError::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `BYOK_KEY_INVALID`: the provider refused the user's key.
    KeyInvalid,
    /// `RATE_LIMITED`: the provider is rate limiting; retry later.
    RateLimited,
    /// `PROVIDER_UNAVAILABLE`: overloaded, 5xx, timeout, connection failure,
    /// stream cut off.
    Unavailable,
    /// `PROVIDER_ERROR`: everything else the provider or plugin got wrong,
    /// including a refused *platform* key (an operator problem).
    ProviderError,
    /// The provider or model is not served.
    UnknownProviderOrModel,
}

/// A failed provider call. Its `Display` never contains a key: provider
/// messages are redacted (the key is replaced) and truncated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// No such provider is served.
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    /// The operator configured this provider but this server cannot serve
    /// it (its plugin is not loaded): not the caller's mistake.
    #[error("provider {provider} is configured but not available on this server: {reason}")]
    NotServed {
        /// Provider id.
        provider: String,
        /// Why (for the operator).
        reason: String,
    },
    /// The provider does not serve this model.
    #[error("provider {provider} has no model {model:?}")]
    UnknownModel {
        /// Provider id.
        provider: String,
        /// Model id.
        model: String,
    },
    /// The provider does not stream.
    #[error("provider {provider} does not support streaming")]
    StreamingUnsupported {
        /// Provider id.
        provider: String,
    },
    /// A credit-paid request, but no platform key is configured.
    #[error("provider {provider} has no platform key configured")]
    PlatformKeyMissing {
        /// Provider id.
        provider: String,
    },
    /// The provider refused the key (401/403 or its equivalent).
    #[error("provider {provider} refused the {key_source} key: {message}")]
    KeyRejected {
        /// Provider id.
        provider: String,
        /// Whose key.
        key_source: KeySource,
        /// The provider's message (redacted).
        message: String,
    },
    /// Rate limited (retryable).
    #[error("provider {provider} is rate limiting requests: {message}")]
    RateLimited {
        /// Provider id.
        provider: String,
        /// The provider's `retry-after`, when given.
        retry_after: Option<Duration>,
        /// The provider's message.
        message: String,
    },
    /// The account's quota or credit at the provider is exhausted (not
    /// retryable).
    #[error("provider {provider} account quota exhausted: {message}")]
    QuotaExceeded {
        /// Provider id.
        provider: String,
        /// The provider's message.
        message: String,
    },
    /// Overloaded or failing (5xx, 529, an in-stream overload error).
    #[error("provider {provider} is unavailable{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Unavailable {
        /// Provider id.
        provider: String,
        /// The HTTP status, when there was one.
        status: Option<u16>,
        /// The provider's message.
        message: String,
    },
    /// A configured timeout was hit.
    #[error("provider {provider} timed out ({what} after {after:?})")]
    Timeout {
        /// Provider id.
        provider: String,
        /// Which timeout.
        what: &'static str,
        /// Its value.
        after: Duration,
    },
    /// The connection could not be made.
    #[error("cannot connect to provider {provider}: {message}")]
    Connect {
        /// Provider id.
        provider: String,
        /// The cause.
        message: String,
    },
    /// The stream ended or broke before the provider said it was complete.
    /// What was seen so far is in the stream's meter.
    #[error("the stream from provider {provider} was cut off: {message}")]
    StreamInterrupted {
        /// Provider id.
        provider: String,
        /// The cause.
        message: String,
    },
    /// The prompt plus output cap does not fit the model's context.
    #[error("the request is too long for provider {provider}: {message}")]
    ContextTooLong {
        /// Provider id.
        provider: String,
        /// The provider's message.
        message: String,
    },
    /// The provider refused the request as malformed.
    #[error("provider {provider} refused the request (HTTP {status}): {message}")]
    BadRequest {
        /// Provider id.
        provider: String,
        /// The HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// The plugin failed (bad output, unparseable response, key placeholder
    /// out of place...).
    #[error("plugin of provider {provider} failed: {message}")]
    Plugin {
        /// Provider id.
        provider: String,
        /// What failed.
        message: String,
    },
    /// The plugin panicked (caught at the boundary; the server goes on).
    #[error("plugin of provider {provider} panicked: {message}")]
    PluginPanic {
        /// Provider id.
        provider: String,
        /// The panic message.
        message: String,
    },
    /// A plugin call exceeded its time limit (the request fails; the call's
    /// thread is left to finish).
    #[error("plugin of provider {provider} did not finish {operation} within {after:?}")]
    PluginTimeout {
        /// Provider id.
        provider: String,
        /// The plugin operation.
        operation: &'static str,
        /// The limit.
        after: Duration,
    },
    /// The provider's plugin calls in flight are at its cap
    /// (`max_concurrent_plugin_calls`), stuck calls included: the call was
    /// refused without reaching the plugin.
    #[error(
        "plugin of provider {provider} is busy: {max} calls in flight, its limit ({stuck} of them stuck past their time limit); request refused"
    )]
    PluginBusy {
        /// Provider id.
        provider: String,
        /// The cap.
        max: usize,
        /// Calls in flight past their time limit.
        stuck: usize,
    },
    /// The plugin built a request for a host outside its allowed hosts.
    #[error("plugin of provider {provider} tried to reach {host:?}, which is not an allowed host; request refused")]
    HostNotAllowed {
        /// Provider id.
        provider: String,
        /// The refused host (and scheme/port).
        host: String,
    },
    /// Anything else.
    #[error("provider {provider} failed{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Other {
        /// Provider id.
        provider: String,
        /// The HTTP status, when there was one.
        status: Option<u16>,
        /// The message.
        message: String,
    },
}

impl ProviderError {
    /// The API error this maps to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProviderError::UnknownProvider(_) | ProviderError::UnknownModel { .. } => ErrorKind::UnknownProviderOrModel,
            ProviderError::KeyRejected {
                key_source: KeySource::User,
                ..
            } => ErrorKind::KeyInvalid,
            ProviderError::RateLimited { .. } => ErrorKind::RateLimited,
            ProviderError::Unavailable { .. }
            | ProviderError::Timeout { .. }
            | ProviderError::Connect { .. }
            | ProviderError::StreamInterrupted { .. } => ErrorKind::Unavailable,
            ProviderError::StreamingUnsupported { .. }
            | ProviderError::PlatformKeyMissing { .. }
            | ProviderError::KeyRejected { .. }
            | ProviderError::QuotaExceeded { .. }
            | ProviderError::ContextTooLong { .. }
            | ProviderError::BadRequest { .. }
            | ProviderError::Plugin { .. }
            | ProviderError::PluginPanic { .. }
            | ProviderError::PluginTimeout { .. }
            | ProviderError::PluginBusy { .. }
            | ProviderError::NotServed { .. }
            | ProviderError::HostNotAllowed { .. }
            | ProviderError::Other { .. } => ErrorKind::ProviderError,
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind(), ErrorKind::RateLimited | ErrorKind::Unavailable)
    }

    /// The provider id, when the error concerns one.
    pub fn provider(&self) -> &str {
        match self {
            ProviderError::UnknownProvider(provider)
            | ProviderError::UnknownModel { provider, .. }
            | ProviderError::StreamingUnsupported { provider }
            | ProviderError::PlatformKeyMissing { provider }
            | ProviderError::KeyRejected { provider, .. }
            | ProviderError::RateLimited { provider, .. }
            | ProviderError::QuotaExceeded { provider, .. }
            | ProviderError::Unavailable { provider, .. }
            | ProviderError::Timeout { provider, .. }
            | ProviderError::Connect { provider, .. }
            | ProviderError::StreamInterrupted { provider, .. }
            | ProviderError::ContextTooLong { provider, .. }
            | ProviderError::BadRequest { provider, .. }
            | ProviderError::Plugin { provider, .. }
            | ProviderError::PluginPanic { provider, .. }
            | ProviderError::PluginTimeout { provider, .. }
            | ProviderError::PluginBusy { provider, .. }
            | ProviderError::NotServed { provider, .. }
            | ProviderError::HostNotAllowed { provider, .. }
            | ProviderError::Other { provider, .. } => provider,
        }
    }
}

/// An error that stops the gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The plugin folder could not be determined or read, or two plugins
    /// share an id.
    #[error(transparent)]
    Host(#[from] creditgate_plugin_host::HostError),
    /// The executable's folder (the default plugin folder) is unknown.
    #[error("cannot find the executable's folder for the default plugin folder: {0}")]
    ExecutableDir(std::io::Error),
    /// The configuration is inconsistent.
    #[error("invalid provider configuration: {0}")]
    Config(String),
    /// A plugin file could not be loaded and no provider using it is marked
    /// `optional`.
    #[error(
        "cannot load the provider plugin {path}: {reason} (fix or remove the file, or set `optional = true` on the providers it serves to start without it)"
    )]
    PluginNotLoaded {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// A plugin file that was not loaded (also logged as a warning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedPlugin {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn error_kinds() {
        let p = || "p".to_owned();
        assert_eq!(
            ProviderError::KeyRejected {
                provider: p(),
                key_source: KeySource::User,
                message: String::new()
            }
            .kind(),
            ErrorKind::KeyInvalid
        );
        assert_eq!(
            ProviderError::KeyRejected {
                provider: p(),
                key_source: KeySource::Platform,
                message: String::new()
            }
            .kind(),
            ErrorKind::ProviderError
        );
        assert!(
            ProviderError::Timeout {
                provider: p(),
                what: "x",
                after: Duration::ZERO
            }
            .is_retryable()
        );
        assert_eq!(
            ProviderError::UnknownProvider(p()).kind(),
            ErrorKind::UnknownProviderOrModel
        );
    }
}
