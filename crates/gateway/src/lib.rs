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
//! * **Plugin calls run off the async runtime** (see `plugin_call`),
//!   unless an operator trusts a provider's plugin with
//!   `inline_plugin_calls`: each goes to the blocking pool under the provider's
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
//!
//! [`SecretString`]: secrecy::SecretString

mod chat;
mod classify;
mod config;
mod error;
mod gateway;
mod hosts;
mod http;
mod keys;
pub mod metrics;
mod plugin_call;
mod redact;
mod setup;
mod stream;
mod usage;

pub use chat::ChatResponse;
pub use config::{ProviderConfig, ProvidersConfig, executable_dir};
pub use creditgate_domain::TokenUsage;
pub use creditgate_provider_sdk::{ChatRequest, Message, ModelInfo, Role, Usage};
pub use error::{ErrorKind, GatewayError, KeySource, ProviderError, SkippedPlugin};
pub use gateway::{Gateway, ProviderInfo};
pub use keys::ApiKey;
pub use stream::{ChatStream, StreamEvent, StreamMeter, StreamSnapshot};
pub use usage::token_usage;
