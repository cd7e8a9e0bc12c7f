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
//!
//! Each provider caps its plugin calls in flight
//! (`max_concurrent_plugin_calls`), the stuck ones (past their time limit,
//! still running) included: a call takes a permit before it is spawned and
//! its thread gives it back only when the plugin returns, not at the time
//! limit. A call finding no permit fails at once
//! ([`ProviderError::PluginBusy`], `PROVIDER_ERROR`) without reaching the
//! plugin, so a plugin that hangs holds at most that many blocking threads,
//! and other providers keep theirs. Stuck calls are a gauge per provider
//! (`creditgate_plugin_calls_stuck`).
//!
//! A provider configured with `inline_plugin_calls` trusts its plugin to
//! return at once: its calls run on the worker serving the request, which
//! saves two thread hand-offs per request, with panics caught the same way.
//! Its time limit is checked when the call returns: a call over it fails its
//! request as above, but nothing could stop it meanwhile, and the cap does
//! not apply (no blocking thread is held).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Instant;

use creditgate_provider_sdk::{PluginError, PluginErrorKind, Provider};
use tokio::sync::Semaphore;

use crate::ProviderError;
use crate::gateway::Entry;
use crate::redact::truncate;

/// One provider's cap on plugin calls in flight, and its stuck calls.
pub(crate) struct CallLimit {
    permits: Arc<Semaphore>,
    max: usize,
    stuck: Arc<Stuck>,
}

impl CallLimit {
    /// At most `max` calls in flight (`max` at least 1).
    pub(crate) fn new(max: usize, plugin: &str, provider: &str) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            stuck: Arc::new(Stuck {
                count: AtomicUsize::new(0),
                plugin: plugin.to_owned(),
                provider: provider.to_owned(),
            }),
        }
    }

    /// The cap.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Calls past their time limit whose plugin code is still running.
    pub(crate) fn stuck(&self) -> usize {
        self.stuck.count.load(Ordering::SeqCst)
    }
}

/// The provider's stuck calls: a count and the gauge.
struct Stuck {
    count: AtomicUsize,
    plugin: String,
    provider: String,
}

impl Stuck {
    fn gauge(&self) -> metrics::Gauge {
        metrics::gauge!(crate::metrics::PLUGIN_CALLS_STUCK, "plugin" => self.plugin.clone(), "provider" => self.provider.clone())
    }
}

const RUNNING: u8 = 0;
const TIMED_OUT: u8 = 1;
const RETURNED: u8 = 2;

/// One call's state, shared by its awaiting request and its thread: the
/// first of "timed out" and "returned" wins, so a call is counted stuck
/// exactly when its time limit passed while its plugin code still ran, and
/// uncounted when that code returns.
struct CallState {
    state: AtomicU8,
    stuck: Arc<Stuck>,
    started: Instant,
    operation: &'static str,
}

impl CallState {
    /// At the time limit: counts the call stuck unless it has returned.
    fn timed_out(&self) {
        if self
            .state
            .compare_exchange(RUNNING, TIMED_OUT, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.stuck.count.fetch_add(1, Ordering::SeqCst);
            self.stuck.gauge().increment(1.0);
        }
    }

    /// On the call's thread, once the plugin returned (or the task was
    /// dropped unrun): uncounts it when it had been counted stuck.
    fn returned(&self) {
        if self.state.swap(RETURNED, Ordering::SeqCst) == TIMED_OUT {
            self.stuck.count.fetch_sub(1, Ordering::SeqCst);
            self.stuck.gauge().decrement(1.0);
            tracing::warn!(
                plugin = %self.stuck.plugin,
                provider = %self.stuck.provider,
                operation = self.operation,
                after_ms = self.started.elapsed().as_millis() as u64,
                "a provider plugin call that exceeded its time limit has returned; its thread is free again"
            );
        }
    }
}

/// Gives the call's permit back, then marks the call returned, whenever
/// the blocking closure ends (or is dropped without running).
struct Finish {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    state: Arc<CallState>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.state.returned();
    }
}

/// Runs `f` with the provider's plugin on the blocking pool, under the
/// provider's plugin time limit and its cap on calls in flight.
pub(crate) async fn call<T, F>(entry: &Entry, operation: &'static str, f: F) -> Result<T, ProviderError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Provider) -> Result<T, PluginError> + Send + 'static,
{
    if entry.inline_calls {
        return inline(entry, operation, f);
    }
    let Ok(permit) = Arc::clone(&entry.calls.permits).try_acquire_owned() else {
        return Err(busy(entry, operation));
    };
    let state = Arc::new(CallState {
        state: AtomicU8::new(RUNNING),
        stuck: Arc::clone(&entry.calls.stuck),
        started: Instant::now(),
        operation,
    });
    let finish = Finish {
        permit: Some(permit),
        state: Arc::clone(&state),
    };
    let plugin = Arc::clone(&entry.plugin);
    let task = tokio::task::spawn_blocking(move || {
        let result = guard(|| f(plugin.as_ref()));
        drop(finish);
        result
    });
    match tokio::time::timeout(entry.timeouts.plugin_call, task).await {
        Ok(Ok(Ok(Ok(value)))) => Ok(value),
        Ok(Ok(Ok(Err(err)) | Err(err))) => Err(plugin_error(entry, operation, err)),
        Ok(Err(join)) => Err(ProviderError::Plugin {
            provider: entry.id.clone(),
            message: format!("the plugin call {operation} ended abnormally: {join}"),
        }),
        Err(_) => {
            state.timed_out();
            Err(timed_out(entry, operation, None))
        }
    }
}

/// Runs `f` with the provider's plugin on the calling worker (a provider
/// with `inline_plugin_calls`): panics caught, the time limit checked once
/// the plugin has returned.
fn inline<T, F>(entry: &Entry, operation: &'static str, f: F) -> Result<T, ProviderError>
where
    F: FnOnce(&dyn Provider) -> Result<T, PluginError>,
{
    let started = Instant::now();
    let result = guard(|| f(entry.plugin.as_ref()));
    let took = started.elapsed();
    if took > entry.timeouts.plugin_call {
        return Err(timed_out(entry, operation, Some(took)));
    }
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) | Err(err) => Err(plugin_error(entry, operation, err)),
    }
}

/// The error of a call refused because the provider's calls in flight are
/// at its cap, counted and logged naming the plugin.
fn busy(entry: &Entry, operation: &'static str) -> ProviderError {
    let stuck = entry.calls.stuck();
    metrics::counter!(crate::metrics::PLUGIN_CALLS_REFUSED, "plugin" => entry.manifest.id.clone(), "provider" => entry.id.clone())
        .increment(1);
    tracing::error!(
        plugin = %entry.manifest.id,
        provider = %entry.id,
        operation,
        max_concurrent_plugin_calls = entry.calls.max(),
        stuck,
        "provider plugin call refused: the provider's plugin calls in flight are at their cap (stuck calls included); the request failed"
    );
    ProviderError::PluginBusy {
        provider: entry.id.clone(),
        max: entry.calls.max(),
        stuck,
    }
}

/// The error of a plugin call over the time limit, counted and logged:
/// `inline_took` is how long an inline call took (it has returned), `None`
/// a call on the blocking pool (still running, its thread left to finish).
fn timed_out(entry: &Entry, operation: &'static str, inline_took: Option<std::time::Duration>) -> ProviderError {
    metrics::counter!(crate::metrics::PLUGIN_TIMEOUTS, "plugin" => entry.manifest.id.clone(), "provider" => entry.id.clone())
        .increment(1);
    let limit_ms = entry.timeouts.plugin_call.as_millis() as u64;
    match inline_took {
        Some(took) => tracing::error!(
            plugin = %entry.manifest.id,
            provider = %entry.id,
            operation,
            limit_ms,
            took_ms = took.as_millis() as u64,
            "provider plugin call, run inline (inline_plugin_calls), exceeded its time limit; the request failed, and the runtime worker it ran on served nothing else meanwhile"
        ),
        None => tracing::error!(
            plugin = %entry.manifest.id,
            provider = %entry.id,
            operation,
            limit_ms,
            stuck = entry.calls.stuck(),
            max_concurrent_plugin_calls = entry.calls.max(),
            "provider plugin call exceeded its time limit; the request failed (the call's thread is left to finish and keeps its slot until then)"
        ),
    }
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
