//! Provider configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use creditgate_provider_sdk::ModelInfo;
use serde::{Deserialize, Serialize};

/// Where the plugins are and how each provider is reached.
///
/// In the server's configuration this is the `[providers]` table; each
/// provider is `[providers.providers.<id>]`.
///
/// ```toml
/// [providers]
/// # plugin_dir = "/usr/lib/creditgate/plugins"   # default: the executable's folder
/// connect_timeout_ms = 10000
///
/// [providers.providers.openai]
/// api_key_env = "OPENAI_API_KEY"
///
/// [providers.providers.groq]       # a second provider served by the openai plugin
/// plugin = "openai"
/// base_url = "https://api.groq.com/openai/v1"
/// api_key_env = "GROQ_API_KEY"
/// models = [{ id = "llama-3.3-70b-versatile", context_window = 131072 }]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    /// The plugin folder. Default: the folder of the running executable, so
    /// `cargo build --release && target/release/creditgate` finds the
    /// in-tree plugins next to the binary. Only this folder is read.
    pub plugin_dir: Option<PathBuf>,
    /// Default TCP/TLS connect timeout.
    pub connect_timeout_ms: u64,
    /// Default total timeout of a non-streamed request, and of a streamed
    /// request until its response headers arrive.
    pub timeout_ms: u64,
    /// Default longest silence inside a stream.
    pub stream_idle_timeout_ms: u64,
    /// Default longest duration of a whole stream.
    pub stream_timeout_ms: u64,
    /// Default time limit of one plugin call (building a request, parsing an
    /// answer, a batch of stream events...). Plugin calls run on a blocking
    /// thread pool, never on the async runtime; a call over the limit fails
    /// its request with `PROVIDER_ERROR` (its thread is left to finish).
    pub plugin_call_timeout_ms: u64,
    /// Default cap on one provider's plugin calls in flight, counting the
    /// calls past their time limit whose plugin code still runs (each holds
    /// a blocking thread until the plugin returns). A call over the cap
    /// fails at once with `PROVIDER_ERROR` and its hold is released; other
    /// providers are not affected.
    pub max_concurrent_plugin_calls: u32,
    /// Providers by provider id. A loaded plugin that no entry names is
    /// served as a provider of its own id with default settings (and no
    /// platform key); an entry with `enabled = false` hides it.
    pub providers: BTreeMap<String, ProviderConfig>,
}

/// One provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// The plugin id serving it (default: the provider id).
    pub plugin: Option<String>,
    /// Whether the provider is served.
    pub enabled: bool,
    /// Display name (default: the plugin's).
    pub name: Option<String>,
    /// Base URL (default: the plugin's). Requests may always go to its
    /// origin (scheme, host and port), so it may be plain `http` for a local
    /// server.
    pub base_url: Option<String>,
    /// More hosts requests (and the key) may go to, over HTTPS (port 443),
    /// besides the base URL's origin. The operator's list: the plugin's own
    /// manifest list is not used unless `allow_plugin_hosts` is set.
    pub allowed_hosts: Vec<String>,
    /// Also allow the hosts the plugin's manifest lists (shown at load).
    pub allow_plugin_hosts: bool,
    /// When the plugin cannot be loaded, start anyway without this provider
    /// (default: a plugin that fails to load stops the start).
    pub optional: bool,
    /// Name of the environment variable holding the platform's own key, used
    /// for credit-paid requests. Read once at start; never logged.
    pub api_key_env: Option<String>,
    /// Or a file holding it (a mounted secret). Read once at start.
    pub api_key_file: Option<PathBuf>,
    /// Connect timeout override.
    pub connect_timeout_ms: Option<u64>,
    /// Total timeout override.
    pub timeout_ms: Option<u64>,
    /// Stream idle timeout override.
    pub stream_idle_timeout_ms: Option<u64>,
    /// Stream duration override.
    pub stream_timeout_ms: Option<u64>,
    /// Plugin call time limit override.
    pub plugin_call_timeout_ms: Option<u64>,
    /// Cap on plugin calls in flight override.
    pub max_concurrent_plugin_calls: Option<u32>,
    /// Run this provider's plugin calls inline, on the async runtime's
    /// worker that serves the request, instead of on the blocking thread
    /// pool (default `false`). It saves two thread hand-offs per request
    /// (building the request, reading the answer). Only for a plugin you
    /// trust to return at once (the in-tree ones do): while a call runs,
    /// its worker serves nothing else, so a plugin that blocks stalls
    /// other requests. Panics are still caught; the time limit is checked
    /// when the call returns (a call over it still fails its request), and
    /// `max_concurrent_plugin_calls` does not apply (no thread is held).
    pub inline_plugin_calls: bool,
    /// Expected SHA-256 (hex) of the plugin file, checked before it is opened.
    pub sha256: Option<String>,
    /// Models served (default: the plugin's), for compatible servers.
    pub models: Option<Vec<ModelInfo>>,
    /// Free-form plugin options (e.g. `max_tokens_field` for the openai
    /// plugin, `anthropic_version` for the anthropic plugin).
    pub options: BTreeMap<String, String>,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            plugin: None,
            enabled: true,
            name: None,
            base_url: None,
            allowed_hosts: Vec::new(),
            allow_plugin_hosts: false,
            optional: false,
            api_key_env: None,
            api_key_file: None,
            connect_timeout_ms: None,
            timeout_ms: None,
            stream_idle_timeout_ms: None,
            stream_timeout_ms: None,
            plugin_call_timeout_ms: None,
            max_concurrent_plugin_calls: None,
            inline_plugin_calls: false,
            sha256: None,
            models: None,
            options: BTreeMap::new(),
        }
    }
}

impl ProviderConfig {
    /// An entry whose platform key is in `env`.
    pub fn with_key_env(env: &str) -> Self {
        Self {
            api_key_env: Some(env.to_owned()),
            ..Self::default()
        }
    }
}

impl Default for ProvidersConfig {
    /// The embedded default: plugins next to the executable; `openai` with
    /// `OPENAI_API_KEY`, `anthropic` with `ANTHROPIC_API_KEY`, and the offline
    /// `demo`.
    fn default() -> Self {
        let mut providers = BTreeMap::new();
        providers.insert("openai".to_owned(), ProviderConfig::with_key_env("OPENAI_API_KEY"));
        providers.insert(
            "anthropic".to_owned(),
            ProviderConfig::with_key_env("ANTHROPIC_API_KEY"),
        );
        providers.insert("demo".to_owned(), ProviderConfig::default());
        Self {
            plugin_dir: None,
            connect_timeout_ms: 10_000,
            timeout_ms: 120_000,
            stream_idle_timeout_ms: 60_000,
            stream_timeout_ms: 600_000,
            plugin_call_timeout_ms: 5_000,
            max_concurrent_plugin_calls: 64,
            providers,
        }
    }
}

/// The folder of the running executable (the default plugin folder).
pub fn executable_dir() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .map(std::path::Path::to_path_buf)
        .ok_or_else(|| std::io::Error::other("the executable has no parent folder"))
}
