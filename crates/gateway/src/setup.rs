//! Setting up the providers: loading the plugin folder, reading each
//! provider's configuration, its key, its hosts and its time limits.
//!
//! A plugin file that cannot be loaded stops the start, with its file and
//! the reason, unless every provider it serves is marked `optional`. A
//! configured provider whose plugin is absent is logged and answered as
//! "configured but not available" (`PROVIDER_ERROR`), never as the caller's
//! unknown provider.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use creditgate_provider_sdk::{Manifest, Provider, RequestContext, Transport};
use secrecy::SecretString;

use crate::gateway::{Entry, Timeouts};
use crate::hosts::HostPolicy;
use crate::plugin_call::{CallLimit, guard};
use crate::{Gateway, GatewayError, ProviderConfig, ProvidersConfig, SkippedPlugin, executable_dir};

fn valid_provider_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn ms(value: Option<u64>, default: u64) -> Duration {
    Duration::from_millis(value.unwrap_or(default))
}

/// The plugin id serving a provider entry.
fn plugin_of(id: &str, pc: &ProviderConfig) -> String {
    pc.plugin.clone().unwrap_or_else(|| id.to_owned())
}

impl Gateway {
    /// Loads every plugin of the configured folder and sets up the providers.
    ///
    /// A plugin file that cannot be loaded is an error naming the file and
    /// the reason, unless the providers it serves are all marked `optional`
    /// (then it is skipped with a warning). Two plugins with one id, an
    /// unreadable folder or an inconsistent configuration is an error.
    pub fn load(config: &ProvidersConfig) -> Result<Self, GatewayError> {
        let dir = match &config.plugin_dir {
            Some(dir) => dir.clone(),
            None => executable_dir().map_err(GatewayError::ExecutableDir)?,
        };
        let mut pins: HashMap<String, String> = HashMap::new();
        for (id, entry) in &config.providers {
            let Some(sha) = &entry.sha256 else { continue };
            let plugin = plugin_of(id, entry);
            let sha = sha.trim().to_ascii_lowercase();
            if let Some(other) = pins.insert(plugin.clone(), sha.clone())
                && other != sha
            {
                return Err(GatewayError::Config(format!(
                    "two different sha256 values are configured for plugin {plugin:?}"
                )));
            }
        }
        let report = creditgate_plugin_host::load_dir(&creditgate_plugin_host::HostConfig {
            dir: dir.clone(),
            sha256: pins,
        })?;
        let mut skipped = Vec::new();
        for (path, err) in &report.skipped {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let plugin = creditgate_plugin_host::plugin_id_from_file_name(name).unwrap_or_default();
            let users: Vec<&ProviderConfig> = config
                .providers
                .iter()
                .filter(|(id, pc)| plugin_of(id, pc) == plugin)
                .map(|(_, pc)| pc)
                .collect();
            let optional = !users.is_empty() && users.iter().all(|pc| pc.optional || !pc.enabled);
            if !optional {
                return Err(GatewayError::PluginNotLoaded {
                    path: path.clone(),
                    reason: err.to_string(),
                });
            }
            tracing::warn!(file = %path.display(), plugin, error = %err, "optional provider plugin not loaded; starting without it");
            skipped.push(SkippedPlugin {
                path: path.clone(),
                reason: err.to_string(),
            });
        }
        tracing::info!(
            dir = %dir.display(),
            loaded = report.plugins.len(),
            skipped = skipped.len(),
            ignored = report.ignored.len(),
            "provider plugins loaded"
        );
        let plugins = report.plugins.into_iter().map(|p| p as Arc<dyn Provider>).collect();
        let mut gateway = Self::with_providers(config, plugins)?;
        for skip in &skipped {
            for (id, reason) in &mut gateway.not_served {
                let name = skip.path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                let plugin = config.providers.get(id).map(|pc| plugin_of(id, pc)).unwrap_or_default();
                if creditgate_plugin_host::plugin_id_from_file_name(name) == Some(plugin.as_str()) {
                    *reason = format!(
                        "its plugin {} could not be loaded: {}",
                        skip.path.display(),
                        skip.reason
                    );
                }
            }
        }
        gateway.skipped = skipped;
        Ok(gateway)
    }

    /// Sets up the providers from plugins given in-process (tests, embedding)
    /// instead of a plugin folder. Same rules as [`Gateway::load`].
    pub fn with_providers(config: &ProvidersConfig, plugins: Vec<Arc<dyn Provider>>) -> Result<Self, GatewayError> {
        let mut by_id: BTreeMap<String, (Arc<dyn Provider>, Manifest)> = BTreeMap::new();
        for plugin in plugins {
            let manifest = guard(|| plugin.manifest())
                .map_err(|e| GatewayError::Config(format!("a provider's manifest failed: {}", e.message)))?;
            if let Err(problems) = manifest.validate() {
                return Err(GatewayError::Config(format!(
                    "plugin {:?} has an invalid manifest: {}",
                    manifest.id,
                    problems.join("; ")
                )));
            }
            if by_id.contains_key(&manifest.id) {
                return Err(GatewayError::Config(format!("two plugins with id {:?}", manifest.id)));
            }
            by_id.insert(manifest.id.clone(), (plugin, manifest));
        }
        let mut entries: Vec<(String, ProviderConfig)> =
            config.providers.iter().map(|(id, c)| (id.clone(), c.clone())).collect();
        for id in by_id.keys() {
            if !config.providers.contains_key(id) {
                entries.push((id.clone(), ProviderConfig::default()));
            }
        }
        let mut clients: HashMap<Duration, reqwest::Client> = HashMap::new();
        let mut providers = BTreeMap::new();
        let mut not_served = BTreeMap::new();
        for (id, pc) in entries {
            if !valid_provider_id(&id) {
                return Err(GatewayError::Config(format!(
                    "provider id {id:?} must be 1-64 characters of a-z, 0-9, '_' or '-'"
                )));
            }
            if !pc.enabled {
                tracing::info!(provider = %id, "provider disabled by configuration");
                continue;
            }
            let plugin_id = plugin_of(&id, &pc);
            let Some((plugin, manifest)) = by_id.get(&plugin_id) else {
                let expected = creditgate_plugin_host::expected_file_name(&plugin_id);
                tracing::warn!(
                    provider = %id,
                    plugin = %plugin_id,
                    expected_file = %expected,
                    "provider configured but not served: its plugin is not loaded; its requests fail with PROVIDER_ERROR"
                );
                not_served.insert(
                    id,
                    format!("its plugin {plugin_id:?} is not loaded (no {expected} in the plugin folder)"),
                );
                continue;
            };
            let entry = entry(&id, &pc, config, plugin, manifest, &mut clients)?;
            tracing::info!(
                provider = %id,
                plugin = %plugin_id,
                base_url = %entry.ctx.base_url,
                allowed = ?entry.hosts.describe(),
                plugin_hosts_not_allowed = ?entry.hosts.unused_plugin_hosts(manifest),
                plugin_call_timeout_ms = entry.timeouts.plugin_call.as_millis() as u64,
                max_concurrent_plugin_calls = entry.calls.max(),
                "provider ready"
            );
            providers.insert(id, Arc::new(entry));
        }
        Ok(Self {
            providers,
            skipped: Vec::new(),
            not_served,
        })
    }
}

/// One provider's entry.
fn entry(
    id: &str,
    pc: &ProviderConfig,
    config: &ProvidersConfig,
    plugin: &Arc<dyn Provider>,
    manifest: &Manifest,
    clients: &mut HashMap<Duration, reqwest::Client>,
) -> Result<Entry, GatewayError> {
    let base_url = pc
        .base_url
        .clone()
        .or_else(|| manifest.default_base_url.clone())
        .unwrap_or_default();
    let ctx = RequestContext {
        options: pc.options.clone(),
        ..RequestContext::new(base_url.clone())
    };
    let base = match manifest.transport {
        Transport::Http => {
            let parsed = url::Url::parse(&base_url)
                .map_err(|e| GatewayError::Config(format!("provider {id}: base_url {base_url:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(GatewayError::Config(format!(
                    "provider {id}: base_url {base_url:?} must be an http(s) URL with a host"
                )));
            }
            Some(parsed)
        }
        Transport::Offline => None,
    };
    let hosts = HostPolicy::new(id, base.as_ref(), &pc.allowed_hosts, manifest, pc.allow_plugin_hosts)
        .map_err(GatewayError::Config)?;
    let platform_key = match (&pc.api_key_env, &pc.api_key_file) {
        (_, Some(path)) => match std::fs::read_to_string(path) {
            Ok(value) if !value.trim().is_empty() => Some(SecretString::from(value.trim().to_owned())),
            _ => {
                return Err(GatewayError::Config(format!(
                    "provider {id}: api_key_file {} cannot be read or is empty",
                    path.display()
                )));
            }
        },
        (Some(var), None) => match std::env::var(var) {
            Ok(value) if !value.trim().is_empty() => Some(SecretString::from(value.trim().to_owned())),
            _ => {
                tracing::warn!(provider = %id, env = %var, "platform key variable is not set; credit-paid requests to this provider will fail");
                None
            }
        },
        (None, None) => None,
    };
    let connect = ms(pc.connect_timeout_ms, config.connect_timeout_ms);
    let client = match clients.get(&connect) {
        Some(client) => client.clone(),
        None => {
            let client = reqwest::Client::builder()
                .connect_timeout(connect)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("creditgate/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| GatewayError::Client(e.to_string()))?;
            clients.insert(connect, client.clone());
            client
        }
    };
    let models = pc.models.clone().unwrap_or_else(|| manifest.models.clone());
    if models.is_empty() {
        return Err(GatewayError::Config(format!("provider {id} has no models")));
    }
    let plugin_call = ms(pc.plugin_call_timeout_ms, config.plugin_call_timeout_ms);
    if plugin_call.is_zero() {
        return Err(GatewayError::Config(format!(
            "provider {id}: plugin_call_timeout_ms must be at least 1"
        )));
    }
    let max_calls = pc
        .max_concurrent_plugin_calls
        .unwrap_or(config.max_concurrent_plugin_calls);
    if max_calls == 0 {
        return Err(GatewayError::Config(format!(
            "provider {id}: max_concurrent_plugin_calls must be at least 1"
        )));
    }
    Ok(Entry {
        calls: CallLimit::new(max_calls as usize, &manifest.id, id),
        inline_calls: pc.inline_plugin_calls,
        last_url: crate::gateway::LastUrl::default(),
        id: id.to_owned(),
        name: pc.name.clone().unwrap_or_else(|| manifest.name.clone()),
        plugin: Arc::clone(plugin),
        manifest: manifest.clone(),
        models,
        ctx,
        hosts,
        platform_key,
        client,
        timeouts: Timeouts {
            total: ms(pc.timeout_ms, config.timeout_ms),
            stream_idle: ms(pc.stream_idle_timeout_ms, config.stream_idle_timeout_ms),
            stream_total: ms(pc.stream_timeout_ms, config.stream_timeout_ms),
            plugin_call,
        },
    })
}
