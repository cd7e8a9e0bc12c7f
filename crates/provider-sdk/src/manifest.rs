//! The manifest: what a plugin is and how the host talks to its provider.

use serde::{Deserialize, Serialize};

use crate::{PROTOCOL_VERSION, SDK_VERSION};

/// One model a provider serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The provider's model id, as sent upstream.
    pub id: String,
    /// The context window in tokens (input plus output).
    pub context_window: u32,
    /// The largest output cap the model accepts, when known.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
}

impl ModelInfo {
    /// A model with a context window and no known output limit.
    pub fn new(id: impl Into<String>, context_window: u32) -> Self {
        Self {
            id: id.into(),
            context_window,
            max_output_tokens: None,
        }
    }

    /// Sets the largest output cap.
    #[must_use]
    pub fn max_output_tokens(mut self, max: u32) -> Self {
        self.max_output_tokens = Some(max);
        self
    }
}

/// Where the host puts the key.
///
/// The plugin writes [`crate::KEY_PLACEHOLDER`] at exactly that place and
/// nowhere else; the host refuses any request where the placeholder is
/// elsewhere (URL, body, another header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyPlacement {
    /// No key (offline plugins). The placeholder must not appear at all.
    None,
    /// `Authorization: Bearer <key>`: the plugin sends
    /// `authorization: Bearer {KEY_PLACEHOLDER}`.
    Bearer,
    /// A header whose whole value is the key (e.g. `x-api-key`).
    Header {
        /// The header name.
        name: String,
    },
}

/// How streamed answers are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamFraming {
    /// The plugin does not stream.
    None,
    /// Server-Sent Events; the host frames them and hands each to
    /// [`crate::Provider::parse_stream_event`].
    Sse,
}

/// How the host exchanges a built request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Over HTTP(S) by the host's client (every real provider).
    #[default]
    Http,
    /// Answered in-process by [`crate::Provider::offline_exchange`] (the
    /// demo provider): no network at all.
    Offline,
}

/// What a plugin declares about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The plugin id: lowercase ASCII letters, digits and `_`, starting with a
    /// letter, at most 64 characters. The library file must be named
    /// `creditgate_plugin_<id>` (with the platform's `lib` prefix and suffix).
    pub id: String,
    /// The display name.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// The plugin protocol version the plugin was built for (set by
    /// [`Manifest::new`]).
    pub protocol_version: String,
    /// The SDK version the plugin was built with (set by [`Manifest::new`]).
    #[serde(default)]
    pub sdk_version: String,
    /// The models served by default (configuration may replace the list for
    /// compatible servers).
    pub models: Vec<ModelInfo>,
    /// Host names the plugin asks requests to go to over HTTPS. Shown to the
    /// operator at load; the host uses them only when the operator allows
    /// it (`allow_plugin_hosts`). Requests may always go to the provider's
    /// base URL origin. Must include the default base URL's host.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The default base URL, e.g. `https://api.openai.com/v1`.
    #[serde(default)]
    pub default_base_url: Option<String>,
    /// Where the key goes.
    pub key: KeyPlacement,
    /// How streams are framed.
    pub streaming: StreamFraming,
    /// HTTP or offline.
    #[serde(default)]
    pub transport: Transport,
}

impl Manifest {
    /// A manifest with the current protocol and SDK versions, no models, no
    /// allowed hosts, a bearer key and SSE streaming.
    pub fn new(id: impl Into<String>, name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            version: version.into(),
            protocol_version: PROTOCOL_VERSION.to_owned(),
            sdk_version: SDK_VERSION.to_owned(),
            models: Vec::new(),
            allowed_hosts: Vec::new(),
            default_base_url: None,
            key: KeyPlacement::Bearer,
            streaming: StreamFraming::Sse,
            transport: Transport::Http,
        }
    }

    /// Adds a model.
    #[must_use]
    pub fn model(mut self, model: ModelInfo) -> Self {
        self.models.push(model);
        self
    }

    /// Adds an allowed host.
    #[must_use]
    pub fn allowed_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(host.into());
        self
    }

    /// Sets the default base URL.
    #[must_use]
    pub fn default_base_url(mut self, url: impl Into<String>) -> Self {
        self.default_base_url = Some(url.into());
        self
    }

    /// Sets where the key goes.
    #[must_use]
    pub fn key(mut self, key: KeyPlacement) -> Self {
        self.key = key;
        self
    }

    /// Sets the stream framing.
    #[must_use]
    pub fn streaming(mut self, streaming: StreamFraming) -> Self {
        self.streaming = streaming;
        self
    }

    /// Sets the transport.
    #[must_use]
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Whether the plugin streams.
    pub fn supports_streaming(&self) -> bool {
        self.streaming != StreamFraming::None
    }

    /// The model with this id.
    pub fn find_model(&self, id: &str) -> Option<&ModelInfo> {
        self.models.iter().find(|m| m.id == id)
    }

    /// Checks what the host relies on; every problem found is listed.
    ///
    /// The host refuses a plugin whose manifest fails this check, and the
    /// conformance kit reports the same problems.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if !is_valid_plugin_id(&self.id) {
            problems.push(format!(
                "id {:?} must be 1-64 lowercase ASCII letters, digits or '_', starting with a letter",
                self.id
            ));
        }
        if self.name.trim().is_empty() {
            problems.push("name is empty".to_owned());
        }
        if self.version.trim().is_empty() {
            problems.push("version is empty".to_owned());
        }
        match crate::abi::parse_protocol_version(&self.protocol_version) {
            Some((major, _)) if major == crate::PROTOCOL_MAJOR => {}
            _ => problems.push(format!(
                "protocol_version {:?} is not compatible with {}",
                self.protocol_version,
                crate::PROTOCOL_VERSION
            )),
        }
        if self.models.is_empty() {
            problems.push("no models".to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        for model in &self.models {
            if model.id.trim().is_empty() {
                problems.push("a model has an empty id".to_owned());
            }
            if !seen.insert(model.id.as_str()) {
                problems.push(format!("model {:?} is listed twice", model.id));
            }
            if model.context_window == 0 {
                problems.push(format!("model {:?} has a zero context window", model.id));
            }
            if model.max_output_tokens == Some(0) {
                problems.push(format!("model {:?} has a zero output limit", model.id));
            }
        }
        for host in &self.allowed_hosts {
            if !is_valid_host_name(host) {
                problems.push(format!("allowed host {host:?} is not a plain host name"));
            }
        }
        match self.transport {
            Transport::Http => {
                if self.allowed_hosts.is_empty() {
                    problems.push("an HTTP plugin must list its allowed hosts".to_owned());
                }
                if self.default_base_url.is_none() {
                    problems.push("an HTTP plugin must give a default base URL".to_owned());
                }
            }
            Transport::Offline => {
                if !self.allowed_hosts.is_empty() {
                    problems.push("an offline plugin must not list allowed hosts".to_owned());
                }
            }
        }
        if let KeyPlacement::Header { name } = &self.key {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                problems.push(format!("key header name {name:?} is not a valid header name"));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

/// Whether `id` is a valid plugin id (`[a-z][a-z0-9_]{0,63}`).
pub fn is_valid_plugin_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && id.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `host` is a plain DNS host name or IP literal (no scheme, port or path).
pub fn is_valid_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !host.starts_with('.')
        && !host.ends_with('.')
}
