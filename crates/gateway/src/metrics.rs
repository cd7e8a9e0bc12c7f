//! What the gateway counts for the metrics endpoint (through the `metrics`
//! facade: nothing is recorded unless the server installs a recorder).

use std::time::Duration;

use crate::error::{ErrorKind, ProviderError};

/// Seconds a provider call took (for a stream: until its response headers).
pub const PROVIDER_LATENCY: &str = "creditgate_provider_request_duration_seconds";
/// Failed provider calls, by provider and error kind.
pub const PROVIDER_ERRORS: &str = "creditgate_provider_errors_total";
/// Plugin calls that panicked (caught), by plugin and provider.
pub const PLUGIN_PANICS: &str = "creditgate_plugin_panics_total";
/// Plugin calls over their time limit, by plugin and provider.
pub const PLUGIN_TIMEOUTS: &str = "creditgate_plugin_timeouts_total";
/// Plugin calls past their time limit whose plugin code still runs (each
/// holds a blocking thread and one of the provider's
/// `max_concurrent_plugin_calls`), by plugin and provider.
pub const PLUGIN_CALLS_STUCK: &str = "creditgate_plugin_calls_stuck";
/// Plugin calls refused because the provider's calls in flight were at
/// `max_concurrent_plugin_calls`, by plugin and provider.
pub const PLUGIN_CALLS_REFUSED: &str = "creditgate_plugin_calls_refused_total";

/// The `kind` label of a provider error.
pub fn kind_label(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::KeyInvalid => "key_invalid",
        ErrorKind::RateLimited => "rate_limited",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::ProviderError => "provider_error",
        ErrorKind::UnknownProviderOrModel => "unknown_model",
    }
}

/// Records one provider call: its latency, and its error when it failed.
pub(crate) fn record_call(provider: &str, op: &'static str, elapsed: Duration, error: Option<&ProviderError>) {
    let outcome = if error.is_some() { "error" } else { "ok" };
    metrics::histogram!(PROVIDER_LATENCY, "provider" => provider.to_owned(), "operation" => op, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
    if let Some(err) = error {
        metrics::counter!(PROVIDER_ERRORS, "provider" => provider.to_owned(), "kind" => kind_label(err.kind()))
            .increment(1);
    }
}
