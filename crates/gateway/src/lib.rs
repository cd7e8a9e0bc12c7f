//! # creditgate gateway
//!
//! Loads the provider plugins ([`creditgate_plugin_host`]) and executes
//! provider calls over HTTP: chat, streamed chat and key validation. Issue 4's
//! metering calls these; this crate does not touch credits.
//!
//! ## Decisions
//! * **Plugins only translate; the gateway does all I/O** with one shared
//!   `reqwest` client (one per distinct connect timeout; by default exactly
//!   one), so the connection pool is shared and every byte is seen here.
//! * **Keys**: the platform key of a provider is read once at start from the
//!   environment variable its configuration names; a user's key arrives as a
//!   [`SecretString`]. The plugin writes a placeholder; the gateway checks the
//!   placeholder is exactly where the manifest says and nowhere else (URL,
//!   body, other headers), then swaps in the key in a header marked
//!   sensitive. Keys are never logged and are redacted out of every error
//!   message (provider messages included) before they leave this crate.
//! * **Allowed hosts** are the operator's (see `hosts`): a request may go to
//!   the exact origin (scheme, host, port) of the provider's base URL
//!   (configured, else the plugin's default), or over `https` (port 443) to
//!   the hosts the provider's configuration lists; the plugin's manifest
//!   hosts count only with `allow_plugin_hosts`. Anything else is refused
//!   before the key is put into the request and before any connection.
//!   Redirects are never followed (a redirect could carry the key elsewhere).
//! * **Timeouts**: connect; total for a plain request; for a stream, total
//!   until the response headers, then an idle timeout between chunks and a
//!   total stream duration. Connection failures (nothing sent yet) are retried
//!   once; nothing else is retried, since a provider may already have
//!   charged for a request that failed later.
//! * **Streams** are framed here (SSE, shared with the SDK's test kit) and
//!   each event goes through the plugin. [`ChatStream`] counts what it saw in a
//!   [`StreamMeter`] that stays readable after the stream is dropped, so a
//!   stream cut off midway or cancelled still reports its text and whatever
//!   usage the provider sent. Dropping the stream drops the upstream
//!   connection.
//! * **Models**: a request for a model the provider does not list is refused
//!   ([`ProviderError::UnknownModel`]); an output cap above the model's
//!   largest is lowered to it (never raised).
//! * **No fallback**: a failing provider is never replaced by another (the
//!   demo provider included).
//! * **Plugin calls never run on the async runtime** (see `plugin_call`):
//!   each goes to the blocking pool under the provider's
//!   `plugin_call_timeout_ms`; one over it fails its request
//!   ([`ProviderError::PluginTimeout`]), and each provider caps its calls
//!   in flight, stuck ones included (`max_concurrent_plugin_calls`; one
//!   over it fails at once, [`ProviderError::PluginBusy`]), so a hanging
//!   plugin holds a bounded number of threads. Panics are caught here too (so
//!   providers added in-process with [`Gateway::with_providers`] cannot panic
//!   the caller), counted by plugin and logged under its name.
//! * **Loading** (see `setup`): a plugin file that cannot be loaded stops the
//!   start unless its providers are `optional`; a configured provider whose
//!   plugin is absent answers [`ProviderError::NotServed`].

mod config;
mod error;
mod hosts;
pub mod metrics;
mod plugin_call;
mod setup;
mod stream;
mod usage;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use creditgate_provider_sdk::{
    ChatResponse as PluginChatResponse, ClassifiedError, ErrorClass, HttpRequest, KeyPlacement, Manifest, Method,
    Provider, RequestContext, Transport, check_key_placement,
};
use secrecy::{ExposeSecret, SecretString};

pub use config::{ProviderConfig, ProvidersConfig, executable_dir};
pub use creditgate_domain::TokenUsage;
pub use creditgate_provider_sdk::{ChatRequest, Message, ModelInfo, Role, Usage};
pub use error::{ErrorKind, GatewayError, KeySource, ProviderError, SkippedPlugin};
pub use stream::{ChatStream, StreamEvent, StreamMeter, StreamSnapshot};
pub use usage::token_usage;

/// The longest response body read (16 MiB).
const MAX_BODY: usize = 16 << 20;
/// The longest provider message kept in an error.
const MAX_MESSAGE: usize = 500;

/// A resolved key and whose it is.
#[derive(Clone)]
pub(crate) struct Key {
    secret: Option<SecretString>,
    source: KeySource,
}

impl Key {
    fn secret(&self) -> Option<&SecretString> {
        self.secret.as_ref()
    }
}

/// Which key a request uses.
#[derive(Debug, Clone)]
pub enum ApiKey {
    /// The platform's key for the provider (credit-paid requests).
    Platform,
    /// The user's own key (BYOK).
    User(SecretString),
}

/// A loaded provider, for the GraphQL `providers` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The provider id (the configuration key).
    pub id: String,
    /// Display name.
    pub name: String,
    /// The plugin serving it.
    pub plugin_id: String,
    /// The plugin's version.
    pub version: String,
    /// Models with their context windows.
    pub models: Vec<ModelInfo>,
    /// Whether `chat_stream` works.
    pub supports_streaming: bool,
    /// Whether the provider works without network (the demo).
    pub offline: bool,
    /// Whether a platform key is configured (credit-paid requests possible).
    pub has_platform_key: bool,
}

/// A non-streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatResponse {
    /// The answer.
    pub text: String,
    /// Token usage, when the provider reported it (charge the hold when not).
    pub usage: Option<Usage>,
    /// The model that answered (the provider's name, else the requested id).
    pub model: String,
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    total: Duration,
    stream_idle: Duration,
    stream_total: Duration,
    /// One plugin call.
    plugin_call: Duration,
}

struct Entry {
    id: String,
    name: String,
    plugin: Arc<dyn Provider>,
    manifest: Manifest,
    models: Vec<ModelInfo>,
    ctx: RequestContext,
    hosts: hosts::HostPolicy,
    platform_key: Option<SecretString>,
    client: reqwest::Client,
    timeouts: Timeouts,
    /// The cap on plugin calls in flight, stuck ones included.
    calls: plugin_call::CallLimit,
}

/// The provider gateway.
pub struct Gateway {
    providers: BTreeMap<String, Arc<Entry>>,
    skipped: Vec<SkippedPlugin>,
    /// Configured providers that cannot be served, with the reason.
    not_served: BTreeMap<String, String>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl Gateway {
    /// The providers served, by id.
    pub fn providers(&self) -> Vec<ProviderInfo> {
        self.providers.values().map(|e| info(e)).collect()
    }

    /// One provider.
    pub fn provider(&self, id: &str) -> Option<ProviderInfo> {
        self.providers.get(id).map(|e| info(e))
    }

    /// Plugin files that were refused at load.
    pub fn skipped_plugins(&self) -> &[SkippedPlugin] {
        &self.skipped
    }

    /// Why a configured provider is not served (its plugin is not loaded),
    /// when it is configured but not served.
    pub fn not_served(&self, id: &str) -> Option<&str> {
        self.not_served.get(id).map(String::as_str)
    }

    /// A served provider's plugin calls past their time limit whose plugin
    /// code still runs (each holds a blocking thread and one of its
    /// `max_concurrent_plugin_calls`).
    pub fn stuck_plugin_calls(&self, id: &str) -> Option<usize> {
        self.providers.get(id).map(|e| e.calls.stuck())
    }

    fn entry(&self, id: &str) -> Result<&Arc<Entry>, ProviderError> {
        self.providers.get(id).ok_or_else(|| match self.not_served.get(id) {
            Some(reason) => ProviderError::NotServed {
                provider: id.to_owned(),
                reason: reason.clone(),
            },
            None => ProviderError::UnknownProvider(id.to_owned()),
        })
    }

    /// Sends a chat request and waits for the whole answer.
    pub async fn chat(
        &self,
        provider_id: &str,
        request: ChatRequest,
        key: ApiKey,
    ) -> Result<ChatResponse, ProviderError> {
        let entry = self.entry(provider_id)?;
        let (request, key) = prepare(entry, request, key, false)?;
        let started = Instant::now();
        let result = async {
            let built = build_chat(entry, &request).await?;
            let (status, body) = match entry.manifest.transport {
                Transport::Offline => offline(entry, built, &key).await?,
                Transport::Http => {
                    let response = send(entry, built, &key, Some(entry.timeouts.total)).await?;
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    let body = read_body(entry, response).await?;
                    if !(200..300).contains(&status) {
                        return Err(classified(entry, status, &headers, body, &key).await);
                    }
                    (status, body)
                }
            };
            if !(200..300).contains(&status) {
                return Err(classified(entry, status, &reqwest::header::HeaderMap::new(), body, &key).await);
            }
            let parsed: PluginChatResponse =
                plugin_call::call(entry, "parse_chat_response", move |p| p.parse_chat_response(&body)).await?;
            Ok(ChatResponse {
                text: parsed.text,
                usage: parsed.usage,
                model: parsed.model.unwrap_or_else(|| request.model.clone()),
            })
        }
        .await;
        log_outcome(entry, "chat", &request.model, started, result.as_ref().err());
        result.map_err(|e| redact_error(e, key.secret()))
    }

    /// Sends a streamed chat request. The returned stream yields text deltas
    /// then [`StreamEvent::Finished`]; its [`ChatStream::meter`] keeps what was
    /// seen even after an error or after the stream is dropped (dropping it
    /// drops the upstream connection).
    pub async fn chat_stream(
        &self,
        provider_id: &str,
        request: ChatRequest,
        key: ApiKey,
    ) -> Result<ChatStream, ProviderError> {
        let entry = self.entry(provider_id)?;
        if !entry.manifest.supports_streaming() {
            return Err(ProviderError::StreamingUnsupported {
                provider: entry.id.clone(),
            });
        }
        let (request, key) = prepare(entry, request, key, true)?;
        let started = Instant::now();
        let result = async {
            let built = build_chat(entry, &request).await?;
            let source: stream::ByteSource = match entry.manifest.transport {
                Transport::Offline => {
                    let (status, body) = offline(entry, built, &key).await?;
                    if !(200..300).contains(&status) {
                        return Err(classified(entry, status, &reqwest::header::HeaderMap::new(), body, &key).await);
                    }
                    Box::pin(futures::stream::once(async move { Ok(bytes::Bytes::from(body)) }))
                }
                Transport::Http => {
                    let response = send(entry, built, &key, None).await?;
                    let status = response.status().as_u16();
                    if !(200..300).contains(&status) {
                        let headers = response.headers().clone();
                        let body = read_body(entry, response).await?;
                        return Err(classified(entry, status, &headers, body, &key).await);
                    }
                    stream::http_source(entry.id.clone(), response)
                }
            };
            Ok(ChatStream::new(
                Arc::clone(entry),
                source,
                request.model.clone(),
                key.clone(),
            ))
        }
        .await;
        log_outcome(entry, "chat_stream", &request.model, started, result.as_ref().err());
        result.map_err(|e| redact_error(e, key.secret()))
    }

    /// Checks a user's key with the provider: `Ok` when it works,
    /// [`ProviderError::KeyRejected`] when the provider refuses it, another
    /// error when the provider could not say.
    pub async fn validate_key(&self, provider_id: &str, key: &SecretString) -> Result<(), ProviderError> {
        let entry = self.entry(provider_id)?;
        let key = Key {
            secret: match entry.manifest.key {
                KeyPlacement::None => None,
                _ => Some(key.clone()),
            },
            source: KeySource::User,
        };
        let started = Instant::now();
        let result = async {
            let ctx = entry.ctx.clone();
            let built = plugin_call::call(entry, "build_validate_key_request", move |p| {
                p.build_validate_key_request(&ctx)
            })
            .await?;
            let (status, headers, body) = match entry.manifest.transport {
                Transport::Offline => {
                    let (status, body) = offline(entry, built, &key).await?;
                    (status, reqwest::header::HeaderMap::new(), body)
                }
                Transport::Http => {
                    let response = send(entry, built, &key, Some(entry.timeouts.total)).await?;
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    (status, headers, read_body(entry, response).await?)
                }
            };
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(classified(entry, status, &headers, body, &key).await)
            }
        }
        .await;
        log_outcome(entry, "validate_key", "", started, result.as_ref().err());
        result.map_err(|e| redact_error(e, key.secret()))
    }
}

fn info(entry: &Entry) -> ProviderInfo {
    ProviderInfo {
        id: entry.id.clone(),
        name: entry.name.clone(),
        plugin_id: entry.manifest.id.clone(),
        version: entry.manifest.version.clone(),
        models: entry.models.clone(),
        supports_streaming: entry.manifest.supports_streaming(),
        offline: entry.manifest.transport == Transport::Offline,
        has_platform_key: entry.platform_key.is_some(),
    }
}

fn log_outcome(entry: &Entry, op: &'static str, model: &str, started: Instant, error: Option<&ProviderError>) {
    metrics::record_call(&entry.id, op, started.elapsed(), error);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match error {
        None => tracing::debug!(provider = %entry.id, op, model, elapsed_ms, "provider call done"),
        // Messages are redacted by the caller before they leave; here only
        // the error class is logged, never a message that might carry a key.
        Some(err) => {
            tracing::info!(provider = %entry.id, op, model, elapsed_ms, kind = ?err.kind(), "provider call failed")
        }
    }
}

/// Checks the model and output cap and resolves the key.
fn prepare(
    entry: &Entry,
    mut request: ChatRequest,
    key: ApiKey,
    stream: bool,
) -> Result<(ChatRequest, Key), ProviderError> {
    let Some(model) = entry.models.iter().find(|m| m.id == request.model) else {
        return Err(ProviderError::UnknownModel {
            provider: entry.id.clone(),
            model: request.model,
        });
    };
    if request.max_output_tokens == 0 {
        return Err(ProviderError::BadRequest {
            provider: entry.id.clone(),
            status: 0,
            message: "the output cap must be at least one token".into(),
        });
    }
    if let Some(max) = model.max_output_tokens {
        request.max_output_tokens = request.max_output_tokens.min(max);
    }
    request.stream = stream;
    let source = match key {
        ApiKey::Platform => KeySource::Platform,
        ApiKey::User(_) => KeySource::User,
    };
    let secret = match (&entry.manifest.key, key) {
        (KeyPlacement::None, _) => None,
        (_, ApiKey::User(key)) => Some(key),
        (_, ApiKey::Platform) => Some(
            entry
                .platform_key
                .clone()
                .ok_or_else(|| ProviderError::PlatformKeyMissing {
                    provider: entry.id.clone(),
                })?,
        ),
    };
    let key = Key { secret, source };
    Ok((request, key))
}

/// The plugin builds the provider request (on the blocking pool).
async fn build_chat(entry: &Entry, request: &ChatRequest) -> Result<HttpRequest, ProviderError> {
    let ctx = entry.ctx.clone();
    let request = request.clone();
    plugin_call::call(entry, "build_chat_request", move |p| {
        p.build_chat_request(&ctx, &request)
    })
    .await
}

fn truncate(message: &str) -> String {
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

fn redact_error(err: ProviderError, key: Option<&SecretString>) -> ProviderError {
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

async fn classified(
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

/// Checks the key placement and injects the key into a copy of the headers.
fn inject_key(entry: &Entry, request: &mut HttpRequest, key: &Key) -> Result<Option<usize>, ProviderError> {
    let index = check_key_placement(&entry.manifest.key, request).map_err(|message| ProviderError::Plugin {
        provider: entry.id.clone(),
        message: format!("refused request: {message}"),
    })?;
    if let (Some(index), Some(key)) = (index, key.secret())
        && let Some((_, value)) = request.headers.get_mut(index)
    {
        *value = match entry.manifest.key {
            KeyPlacement::Bearer => format!("Bearer {}", key.expose_secret()),
            _ => key.expose_secret().to_owned(),
        };
    }
    Ok(index)
}

async fn offline(entry: &Entry, mut request: HttpRequest, key: &Key) -> Result<(u16, String), ProviderError> {
    inject_key(entry, &mut request, key)?;
    let response = plugin_call::call(entry, "offline_exchange", move |p| p.offline_exchange(&request)).await?;
    Ok((response.status, response.body))
}

/// Sends a plugin-built request: checks the host the operator allows
/// (before the key is anywhere in the request) and the key placement,
/// injects the key, applies the timeouts, retries a failed connection once.
async fn send(
    entry: &Entry,
    mut request: HttpRequest,
    key: &Key,
    total: Option<Duration>,
) -> Result<reqwest::Response, ProviderError> {
    let url = url::Url::parse(&request.url).map_err(|e| ProviderError::Plugin {
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

async fn read_body(entry: &Entry, mut response: reqwest::Response) -> Result<String, ProviderError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn retry_after_headers() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "14".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(14)));
        headers.insert("retry-after-ms", "407".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(407)));
    }

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
