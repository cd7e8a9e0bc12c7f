//! The [`Gateway`] type and its provider registry: the providers served,
//! those refused at load, and the lookup every call starts with.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use creditgate_provider_sdk::{Manifest, ModelInfo, Provider, RequestContext, Transport};
use secrecy::SecretString;

use crate::{ProviderError, SkippedPlugin, hosts, plugin_call};

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

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) total: Duration,
    pub(crate) stream_idle: Duration,
    pub(crate) stream_total: Duration,
    /// One plugin call.
    pub(crate) plugin_call: Duration,
}

pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) plugin: Arc<dyn Provider>,
    pub(crate) manifest: Manifest,
    pub(crate) models: Vec<ModelInfo>,
    pub(crate) ctx: RequestContext,
    pub(crate) hosts: hosts::HostPolicy,
    pub(crate) platform_key: Option<SecretString>,
    pub(crate) client: reqwest::Client,
    pub(crate) timeouts: Timeouts,
    /// The cap on plugin calls in flight, stuck ones included.
    pub(crate) calls: plugin_call::CallLimit,
    /// Plugin calls run on the calling worker (`inline_plugin_calls`).
    pub(crate) inline_calls: bool,
    /// The last URL its plugin built, parsed.
    pub(crate) last_url: LastUrl,
}

/// The last URL a provider's plugin built, parsed. A plugin builds the
/// same few URLs again and again: parsing the same one again (1.4% of the
/// server's CPU per runAi) is then a compare and a copy.
#[derive(Debug, Default)]
pub(crate) struct LastUrl(std::sync::Mutex<Option<url::Url>>);

impl LastUrl {
    /// `text` parsed.
    pub(crate) fn parse(&self, text: &str) -> Result<url::Url, url::ParseError> {
        let mut last = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A URL's text (`as_str`) parses back to that URL.
        if let Some(url) = last.as_ref().filter(|u| u.as_str() == text) {
            return Ok(url.clone());
        }
        let url = url::Url::parse(text)?;
        *last = Some(url.clone());
        Ok(url)
    }
}

/// The provider gateway.
pub struct Gateway {
    pub(crate) providers: BTreeMap<String, Arc<Entry>>,
    pub(crate) skipped: Vec<SkippedPlugin>,
    /// Configured providers that cannot be served, with the reason.
    pub(crate) not_served: BTreeMap<String, String>,
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

    pub(crate) fn entry(&self, id: &str) -> Result<&Arc<Entry>, ProviderError> {
        self.providers.get(id).ok_or_else(|| match self.not_served.get(id) {
            Some(reason) => ProviderError::NotServed {
                provider: id.to_owned(),
                reason: reason.clone(),
            },
            None => ProviderError::UnknownProvider(id.to_owned()),
        })
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

#[cfg(test)]
mod tests {
    use super::LastUrl;

    #[test]
    fn a_url_parsed_again_or_after_another_is_what_parsing_it_gives() {
        let last = LastUrl::default();
        let texts = [
            "https://api.openai.com/v1/chat/completions",
            "https://api.openai.com/v1/chat/completions",
            "https://api.openai.com/v1/models",
            "HTTPS://API.openai.com:443/v1/../v1/models",
            "https://api.openai.com/v1/chat/completions",
        ];
        for text in texts {
            assert_eq!(last.parse(text), url::Url::parse(text), "{text}");
        }
        assert!(last.parse("not a url").is_err());
        assert_eq!(
            last.parse(texts[2]).map(String::from),
            Ok("https://api.openai.com/v1/models".to_owned())
        );
    }
}
