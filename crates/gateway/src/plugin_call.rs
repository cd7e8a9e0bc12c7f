//! Running plugin code: on the blocking thread pool, never on the async
//! runtime's workers, with a time limit, panics caught, and a failing
//! plugin counted and logged under its name.
//!
//! A plugin is native code that may loop or block; a call on a runtime
//! worker would stall every other request served by that worker. Each call
//! goes to `spawn_blocking` and is awaited under the provider's
//! `plugin_call_timeout_ms`. A call over the limit fails its request
//! ([`ProviderError::PluginTimeout`], `PROVIDER_ERROR`); its thread cannot be
//! stopped and is left to finish, its result dropped.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use creditgate_provider_sdk::{PluginError, PluginErrorKind, Provider};

use crate::{Entry, ProviderError, truncate};

/// Runs `f` with the provider's plugin on the blocking pool, under the
/// provider's plugin time limit.
pub(crate) async fn call<T, F>(entry: &Entry, operation: &'static str, f: F) -> Result<T, ProviderError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Provider) -> Result<T, PluginError> + Send + 'static,
{
    let plugin = Arc::clone(&entry.plugin);
    let task = tokio::task::spawn_blocking(move || guard(|| f(plugin.as_ref())));
    match tokio::time::timeout(entry.timeouts.plugin_call, task).await {
        Ok(Ok(Ok(Ok(value)))) => Ok(value),
        Ok(Ok(Ok(Err(err)) | Err(err))) => Err(plugin_error(entry, operation, err)),
        Ok(Err(join)) => Err(ProviderError::Plugin {
            provider: entry.id.clone(),
            message: format!("the plugin call {operation} ended abnormally: {join}"),
        }),
        Err(_) => Err(timed_out(entry, operation)),
    }
}

/// The error of a plugin call over the time limit, counted and logged.
pub(crate) fn timed_out(entry: &Entry, operation: &'static str) -> ProviderError {
    metrics::counter!(crate::metrics::PLUGIN_TIMEOUTS, "plugin" => entry.manifest.id.clone(), "provider" => entry.id.clone())
        .increment(1);
    tracing::error!(
        plugin = %entry.manifest.id,
        provider = %entry.id,
        operation,
        limit_ms = entry.timeouts.plugin_call.as_millis() as u64,
        "provider plugin call exceeded its time limit; the request failed (the call's thread is left to finish)"
    );
    ProviderError::PluginTimeout {
        provider: entry.id.clone(),
        operation,
        after: entry.timeouts.plugin_call,
    }
}

/// Runs `f` with panics caught (in-process providers; loaded plugins catch
/// theirs at the C boundary).
pub(crate) fn guard<T>(f: impl FnOnce() -> T) -> Result<T, PluginError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        PluginError::new(
            PluginErrorKind::Panic,
            creditgate_provider_sdk::protocol::panic_message(payload.as_ref()),
        )
    })
}

/// Maps a plugin's error. A panic is counted
/// (`creditgate_plugin_panics_total{plugin,provider}`) and logged at error
/// level naming the plugin: the upstream call it followed may have been
/// billed by the provider. The panic message is not logged (it may quote a
/// provider's response).
pub(crate) fn plugin_error(entry: &Entry, operation: &'static str, err: PluginError) -> ProviderError {
    let message = truncate(&err.message);
    if err.kind == PluginErrorKind::Panic {
        metrics::counter!(crate::metrics::PLUGIN_PANICS, "plugin" => entry.manifest.id.clone(), "provider" => entry.id.clone())
            .increment(1);
        tracing::error!(
            plugin = %entry.manifest.id,
            plugin_version = %entry.manifest.version,
            provider = %entry.id,
            operation,
            "provider plugin panicked; the request failed, and an upstream call it followed may have been billed by the provider"
        );
        ProviderError::PluginPanic {
            provider: entry.id.clone(),
            message,
        }
    } else {
        ProviderError::Plugin {
            provider: entry.id.clone(),
            message,
        }
    }
}
