//! creditgate provider plugin for the Anthropic Messages API.
//!
//! * chat: `POST {base}/messages` with `anthropic-version` (option
//!   `anthropic_version`, default `2026-10-21`); system messages go to the
//!   top-level `system`; no sampling parameters are sent (the 2026-10-21
//!   version refuses them);
//! * key: `x-api-key` (the README of the fixtures: both `x-api-key` and a
//!   bearer token are accepted; we send one, `x-api-key`);
//! * streaming: named SSE events; input usage from `message_start`, cumulative
//!   usage from `message_delta` (replacing, not adding), `message_stop` ends,
//!   `ping` and unknown events are skipped, `error` events are classified;
//! * usage: input = `input_tokens + cache_creation_input_tokens +
//!   cache_read_input_tokens` (Anthropic's `input_tokens` excludes both),
//!   of which `cache_read_input_tokens` are cached input and
//!   `cache_creation_input_tokens` cache writes; output = `output_tokens`,
//!   of which `output_tokens_details.thinking_tokens` are reasoning;
//! * key validation: `GET {base}/models`;
//! * errors: `error.type`, and the `prompt is too long` message for context.

use creditgate_provider_sdk::{
    ChatRequest, ChatResponse, ClassifiedError, ErrorClass, HttpRequest, KeyPlacement, Manifest, ModelInfo,
    PluginError, Provider, RequestContext, SseEvent, StreamEvent, StreamFraming, UsageUpdate,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// The API version sent unless the `anthropic_version` option says otherwise.
pub const DEFAULT_API_VERSION: &str = "2026-10-21";

/// The Anthropic Messages plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct AnthropicProvider;

creditgate_provider_sdk::export_provider!(AnthropicProvider);

#[derive(Deserialize)]
struct MessageBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<Block>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct OutputDetails {
    #[serde(default)]
    thinking_tokens: Option<u64>,
}

impl WireUsage {
    /// Total input, when `input_tokens` is present.
    fn total_input(&self) -> Option<u64> {
        self.input_tokens.map(|input| {
            input
                .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
                .saturating_add(self.cache_read_input_tokens.unwrap_or(0))
        })
    }

    /// The input figures, normalized: the total and its cache parts, given
    /// only together (a part without its total could not be checked).
    fn input_update(&self) -> UsageUpdate {
        match self.total_input() {
            Some(total) => UsageUpdate {
                input_tokens: Some(total),
                cached_input_tokens: Some(self.cache_read_input_tokens.unwrap_or(0)),
                cache_write_tokens: Some(self.cache_creation_input_tokens.unwrap_or(0)),
                ..UsageUpdate::default()
            },
            None => UsageUpdate::default(),
        }
    }

    fn thinking_tokens(&self) -> Option<u64> {
        self.output_tokens_details.and_then(|d| d.thinking_tokens)
    }

    /// Input and output figures of a `message_delta` (cumulative).
    fn update(&self) -> UsageUpdate {
        UsageUpdate {
            output_tokens: self.output_tokens,
            reasoning_tokens: self.output_tokens.map(|_| self.thinking_tokens().unwrap_or(0)),
            ..self.input_update()
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: WireError,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: MessageBody,
    },
    ContentBlockDelta {
        delta: WireDelta,
    },
    MessageDelta {
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: WireError,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

fn classify(status: u16, error: Option<&WireError>) -> ClassifiedError {
    let kind = error.and_then(|e| e.kind.as_deref()).unwrap_or_default();
    let message = error
        .and_then(|e| e.message.clone())
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| format!("provider answered HTTP {status}"));
    let class = match kind {
        "authentication_error" | "permission_error" => ErrorClass::Auth,
        "rate_limit_error" => ErrorClass::RateLimit,
        "billing_error" => ErrorClass::QuotaExceeded,
        "overloaded_error" | "api_error" => ErrorClass::Overloaded,
        "request_too_large" => ErrorClass::ContextTooLong,
        "invalid_request_error" if message.starts_with("prompt is too long") => ErrorClass::ContextTooLong,
        "invalid_request_error" | "not_found_error" => ErrorClass::BadRequest,
        _ => ErrorClass::from_status(status),
    };
    ClassifiedError::new(class, message)
}

fn headers(ctx: &RequestContext, req: HttpRequest) -> HttpRequest {
    req.key_header("x-api-key").header(
        "anthropic-version",
        ctx.option("anthropic_version").unwrap_or(DEFAULT_API_VERSION),
    )
}

impl Provider for AnthropicProvider {
    fn manifest(&self) -> Manifest {
        Manifest::new("anthropic", "Anthropic", env!("CARGO_PKG_VERSION"))
            .model(ModelInfo::new("claude-sonnet-4-6", 200_000).max_output_tokens(64_000))
            .model(ModelInfo::new("claude-haiku-4-5-20251001", 200_000).max_output_tokens(64_000))
            .allowed_host("api.anthropic.com")
            .default_base_url("https://api.anthropic.com/v1")
            .key(KeyPlacement::header("x-api-key"))
            .streaming(StreamFraming::Sse)
    }

    fn build_chat_request(&self, ctx: &RequestContext, request: &ChatRequest) -> Result<HttpRequest, PluginError> {
        let messages: Vec<Value> = request
            .turns("user", "assistant")
            .map(|(role, content)| json!({ "role": role, "content": content }))
            .collect();
        if messages.is_empty() {
            return Err(PluginError::unsupported(
                "Anthropic needs at least one user or assistant message",
            ));
        }
        let mut body = serde_json::Map::new();
        body.insert("model".into(), json!(request.model));
        body.insert("max_tokens".into(), json!(request.max_output_tokens));
        if let Some(system) = request.system_prompt("\n\n") {
            body.insert("system".into(), json!(system));
        }
        body.insert("messages".into(), Value::Array(messages));
        if request.stream {
            body.insert("stream".into(), json!(true));
        }
        Ok(headers(
            ctx,
            HttpRequest::post_json(ctx.url("/messages"), &Value::Object(body)),
        ))
    }

    fn parse_chat_response(&self, body: &str) -> Result<ChatResponse, PluginError> {
        let message: MessageBody = serde_json::from_str(body)?;
        let text = message
            .content
            .iter()
            .filter(|b| b.kind == "text")
            .filter_map(|b| b.text.as_deref())
            .collect::<String>();
        let usage = message.usage.and_then(|u| u.update().complete());
        Ok(ChatResponse::new(text, usage, message.model.as_deref()))
    }

    fn classify_error(&self, status: u16, body: &str) -> ClassifiedError {
        let parsed = serde_json::from_str::<ErrorBody>(body).ok();
        classify(status, parsed.as_ref().map(|b| &b.error))
    }

    fn parse_stream_event(&self, event: &SseEvent) -> Result<Vec<StreamEvent>, PluginError> {
        if event.data.trim().is_empty() {
            return Ok(Vec::new());
        }
        let parsed: WireEvent = serde_json::from_str(&event.data)?;
        Ok(match parsed {
            WireEvent::MessageStart { message } => {
                let mut events = Vec::new();
                if let Some(model) = message.model {
                    events.push(StreamEvent::Model { model });
                }
                // output_tokens here is a placeholder; the real count comes
                // in message_delta.
                if let Some(update) = message.usage.map(|u| u.input_update())
                    && update.input_tokens.is_some()
                {
                    events.push(StreamEvent::Usage(update));
                }
                events
            }
            WireEvent::ContentBlockDelta { delta } => match delta.text {
                Some(text) if delta.kind == "text_delta" && !text.is_empty() => {
                    vec![StreamEvent::TextDelta { text }]
                }
                _ => Vec::new(),
            },
            WireEvent::MessageDelta { usage: Some(usage) } => {
                vec![StreamEvent::Usage(usage.update())]
            }
            WireEvent::MessageDelta { usage: None } | WireEvent::Other => Vec::new(),
            WireEvent::MessageStop => vec![StreamEvent::Done],
            WireEvent::Error { error } => vec![StreamEvent::Error(classify(200, Some(&error)))],
        })
    }

    fn build_validate_key_request(&self, ctx: &RequestContext) -> Result<HttpRequest, PluginError> {
        Ok(headers(ctx, HttpRequest::get(ctx.url("/models?limit=1"))))
    }
}
