//! The normalized types exchanged between the host and a plugin.
//!
//! Every type here is serialized as JSON across the C ABI. The JSON shapes are
//! the plugin protocol ([`crate::PROTOCOL_VERSION`]): additions within a major
//! version are optional fields (unknown fields are ignored, missing ones take
//! their default), anything else is a new major version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The end user.
    User,
    /// The model's earlier answers.
    Assistant,
}

impl Role {
    /// The lowercase wire name (`system`, `user`, `assistant`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// Plain text content.
    pub content: String,
}

impl Message {
    /// A message with the given role.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// A provider-neutral chat request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The provider's model id (one of the manifest's models).
    pub model: String,
    /// The conversation, oldest first.
    pub messages: Vec<Message>,
    /// The cap on output tokens. The wallet holds credits for exactly this
    /// many output tokens, so plugins must always send it upstream.
    pub max_output_tokens: u32,
    /// Whether the answer is streamed.
    #[serde(default)]
    pub stream: bool,
}

/// Per-provider settings the host hands to every request-building call.
///
/// One plugin may serve several configured providers (the OpenAI plugin serves
/// OpenAI, Groq, Ollama... through different base URLs), so plugins never
/// hard-code their base URL: they use [`RequestContext::base_url`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RequestContext {
    /// The base URL without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Free-form plugin options from the provider's configuration.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl RequestContext {
    /// A context with this base URL (a trailing `/` is removed) and no options.
    pub fn new(base_url: impl Into<String>) -> Self {
        let mut base_url = base_url.into();
        while base_url.ends_with('/') {
            base_url.pop();
        }
        Self {
            base_url,
            options: BTreeMap::new(),
        }
    }

    /// The URL for `path` (which should start with `/`) under the base URL.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// An option's value, if configured.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }
}

/// An HTTP method a plugin may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
}

impl Method {
    /// The method name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// An HTTP request built by a plugin for the host to send.
///
/// The key never reaches the plugin: where the key goes, the plugin writes
/// [`crate::KEY_PLACEHOLDER`] exactly as [`crate::KeyPlacement`] in its
/// manifest says, and the host swaps in the real key just before sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// GET or POST.
    pub method: Method,
    /// The absolute URL; its host must be one of the allowed hosts.
    pub url: String,
    /// Header names and values, in order.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body (JSON for the in-tree plugins), if any.
    #[serde(default)]
    pub body: Option<String>,
}

impl HttpRequest {
    /// A request with no headers and no body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets a JSON body and `content-type: application/json`.
    #[must_use]
    pub fn json_body(mut self, body: &serde_json::Value) -> Self {
        self.headers
            .push(("content-type".to_owned(), "application/json".to_owned()));
        self.body = Some(body.to_string());
        self
    }

    /// The first header with this name (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Token counts as reported by the provider, normalized.
///
/// One shape for every provider, so each token is charged exactly once:
///
/// * `input_tokens` is ALL input: plain, read from the prompt cache and
///   written to it. `cached_input_tokens` and `cache_write_tokens` are parts
///   of it, never added to it.
///   - OpenAI: `input_tokens = prompt_tokens` (which already includes
///     `prompt_tokens_details.cached_tokens`);
///     `cached_input_tokens = prompt_tokens_details.cached_tokens`.
///   - Anthropic: `input_tokens = input_tokens + cache_read_input_tokens +
///     cache_creation_input_tokens` (Anthropic's `input_tokens` excludes
///     both); `cached_input_tokens = cache_read_input_tokens`;
///     `cache_write_tokens = cache_creation_input_tokens`.
/// * `output_tokens` is ALL output; `reasoning_tokens` is part of it (OpenAI
///   `completion_tokens_details.reasoning_tokens`, Anthropic
///   `output_tokens_details.thinking_tokens`).
///
/// The three parts were added in protocol 1.1. They are optional on the wire
/// (missing means 0, and zero values are not sent), so a 1.0 plugin's usage
/// still parses: all of its tokens are priced as plain input and output. The
/// host clamps a part larger than its total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// All input tokens billed, cache reads and writes included.
    pub input_tokens: u64,
    /// All output tokens billed, reasoning/thinking included.
    pub output_tokens: u64,
    /// Of `input_tokens`, those read from the provider's prompt cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_input_tokens: u64,
    /// Of `input_tokens`, those written to the provider's prompt cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_tokens: u64,
    /// Of `output_tokens`, those spent on reasoning.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Input and output totals with no cached, cache-written or reasoning part.
    pub const fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            output_tokens,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
        }
    }

    /// Sets the part of the input read from the prompt cache.
    #[must_use]
    pub const fn cached_input(mut self, n: u64) -> Self {
        self.cached_input_tokens = n;
        self
    }

    /// Sets the part of the input written to the prompt cache.
    #[must_use]
    pub const fn cache_write(mut self, n: u64) -> Self {
        self.cache_write_tokens = n;
        self
    }

    /// Sets the part of the output spent on reasoning.
    #[must_use]
    pub const fn reasoning(mut self, n: u64) -> Self {
        self.reasoning_tokens = n;
        self
    }
}

/// A parsed non-streaming answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The answer's text.
    pub text: String,
    /// The usage, when the provider reported it.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// The model that answered, as the provider named it.
    #[serde(default)]
    pub model: Option<String>,
}

/// One Server-Sent Event as framed by the host.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SseEvent {
    /// The `event:` field, if any.
    #[serde(default)]
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Usage seen in a stream: each given field replaces the running value.
///
/// Providers report usage cumulatively (Anthropic repeats totals in
/// `message_delta`), so the host keeps the last value of each field. The
/// fields mean what [`Usage`]'s do (totals, and parts of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsageUpdate {
    /// Input tokens so far, if this event says.
    #[serde(default)]
    pub input_tokens: Option<u64>,
    /// Output tokens so far, if this event says.
    #[serde(default)]
    pub output_tokens: Option<u64>,
    /// Of the input, tokens read from the prompt cache (protocol 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_tokens: Option<u64>,
    /// Of the input, tokens written to the prompt cache (protocol 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
    /// Of the output, reasoning tokens (protocol 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
}

impl From<Usage> for UsageUpdate {
    /// An update giving every field of a complete usage (totals and parts).
    fn from(usage: Usage) -> Self {
        Self {
            input_tokens: Some(usage.input_tokens),
            output_tokens: Some(usage.output_tokens),
            cached_input_tokens: Some(usage.cached_input_tokens),
            cache_write_tokens: Some(usage.cache_write_tokens),
            reasoning_tokens: Some(usage.reasoning_tokens),
        }
    }
}

impl UsageUpdate {
    /// Replaces each field this update gives.
    pub fn apply(&mut self, update: &UsageUpdate) {
        let keep = |running: &mut Option<u64>, new: Option<u64>| {
            if new.is_some() {
                *running = new;
            }
        };
        keep(&mut self.input_tokens, update.input_tokens);
        keep(&mut self.output_tokens, update.output_tokens);
        keep(&mut self.cached_input_tokens, update.cached_input_tokens);
        keep(&mut self.cache_write_tokens, update.cache_write_tokens);
        keep(&mut self.reasoning_tokens, update.reasoning_tokens);
    }

    /// The usage, when both totals are known (a missing part is 0).
    pub fn complete(&self) -> Option<Usage> {
        Some(Usage {
            input_tokens: self.input_tokens?,
            output_tokens: self.output_tokens?,
            cached_input_tokens: self.cached_input_tokens.unwrap_or(0),
            cache_write_tokens: self.cache_write_tokens.unwrap_or(0),
            reasoning_tokens: self.reasoning_tokens.unwrap_or(0),
        })
    }
}

/// What one streamed event meant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// More answer text.
    TextDelta {
        /// The text to append.
        text: String,
    },
    /// Usage figures (replace, do not add).
    Usage(UsageUpdate),
    /// The model that answers, when the stream says.
    Model {
        /// Provider's model name.
        model: String,
    },
    /// The provider says the answer is complete.
    Done,
    /// The provider reported an error inside the stream.
    Error(ClassifiedError),
}

/// What kind of failure a provider error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The key is missing, invalid, revoked or lacks permission.
    Auth,
    /// Too many requests or tokens for now; retry later.
    RateLimit,
    /// The account's quota or credit is exhausted; retrying will not help.
    QuotaExceeded,
    /// The prompt plus output cap does not fit the model's context.
    ContextTooLong,
    /// The provider is overloaded or failing (5xx, 529).
    Overloaded,
    /// The request was refused as malformed (unknown model, bad field...).
    BadRequest,
    /// Anything else.
    Other,
}

/// A classified provider error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassifiedError {
    /// The class the host maps to an API error.
    pub class: ErrorClass,
    /// The provider's message (the host redacts secrets and truncates it).
    pub message: String,
}

impl ClassifiedError {
    /// A classified error.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }
}

/// The answer of an offline plugin's built-in "server"
/// (see [`crate::Transport::Offline`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineResponse {
    /// The HTTP-like status.
    pub status: u16,
    /// The body: a JSON answer, or the whole SSE stream for a streamed request.
    pub body: String,
}

/// What went wrong inside a plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginErrorKind {
    /// The plugin cannot build this request (unsupported model or feature).
    Unsupported,
    /// The provider's response could not be understood.
    Parse,
    /// The input from the host was invalid.
    InvalidInput,
    /// The plugin panicked (set by the boundary, never by plugin code).
    Panic,
    /// The C ABI exchange itself failed (set by the host).
    Protocol,
    /// Anything else.
    Other,
}

/// An error returned by a plugin call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct PluginError {
    /// The kind.
    pub kind: PluginErrorKind,
    /// A human-readable description (never include secrets).
    pub message: String,
}

impl PluginError {
    /// An error of this kind.
    pub fn new(kind: PluginErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A response that could not be parsed.
    pub fn parse(message: impl Into<String>) -> Self {
        Self::new(PluginErrorKind::Parse, message)
    }

    /// Something this plugin does not support.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(PluginErrorKind::Unsupported, message)
    }
}

impl From<serde_json::Error> for PluginError {
    fn from(err: serde_json::Error) -> Self {
        Self::parse(format!("invalid JSON: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_of_a_protocol_1_0_plugin_still_parses() {
        let old: Usage = serde_json::from_str(r#"{"input_tokens":27,"output_tokens":7}"#).unwrap();
        assert_eq!(old, Usage::new(27, 7));
        let update: UsageUpdate = serde_json::from_str(r#"{"input_tokens":24,"output_tokens":null}"#).unwrap();
        assert_eq!(update.cached_input_tokens, None);
        // Without parts, a 1.1 plugin sends exactly what a 1.0 plugin sent.
        assert_eq!(
            serde_json::to_string(&Usage::new(27, 7)).unwrap(),
            r#"{"input_tokens":27,"output_tokens":7}"#
        );
        let with_parts = Usage::new(2075, 10).cached_input(2051).reasoning(4);
        let json = serde_json::to_string(&with_parts).unwrap();
        assert_eq!(serde_json::from_str::<Usage>(&json).unwrap(), with_parts);
    }

    #[test]
    fn stream_updates_replace_only_the_fields_they_give() {
        let mut running = UsageUpdate::default();
        running.apply(&UsageUpdate {
            input_tokens: Some(30),
            cached_input_tokens: Some(20),
            cache_write_tokens: Some(5),
            output_tokens: Some(1),
            ..UsageUpdate::default()
        });
        running.apply(&UsageUpdate {
            output_tokens: Some(10),
            reasoning_tokens: Some(3),
            ..UsageUpdate::default()
        });
        assert_eq!(
            running.complete(),
            Some(Usage::new(30, 10).cached_input(20).cache_write(5).reasoning(3))
        );
        assert_eq!(
            UsageUpdate {
                input_tokens: Some(1),
                ..UsageUpdate::default()
            }
            .complete(),
            None
        );
    }
}
