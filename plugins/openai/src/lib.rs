//! creditgate provider plugin for the OpenAI Chat Completions API.
//!
//! The base URL comes from the provider's configuration, so the same plugin
//! serves OpenAI and compatible servers (Ollama, vLLM, OpenRouter, Groq...):
//! configure `base_url`, and the models those servers offer.
//!
//! * chat: `POST {base}/chat/completions`, `max_completion_tokens` (option
//!   `max_tokens_field = "max_tokens"` for servers that only know the older
//!   field);
//! * streaming: SSE `data:` chunks, `stream_options.include_usage` so the last
//!   chunk (with `choices: []`) carries the usage, then `data: [DONE]`;
//! * key validation: `GET {base}/models`;
//! * usage: `prompt_tokens` (cached tokens included) and `completion_tokens`
//!   (reasoning tokens included), with `cached_tokens`, `cache_write_tokens`
//!   and `reasoning_tokens` from the `*_tokens_details` objects as their parts;
//! * errors: the HTTP status plus `error.code` (`invalid_api_key`,
//!   `rate_limit_exceeded`, `insufficient_quota`, `context_length_exceeded`).

use creditgate_provider_sdk::{
    ChatRequest, ChatResponse, ClassifiedError, ErrorClass, HttpRequest, KeyPlacement, Manifest, ModelInfo,
    PluginError, Provider, RequestContext, SseEvent, StreamEvent, StreamFraming, Usage,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// The OpenAI Chat Completions plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenAiProvider;

creditgate_provider_sdk::export_provider!(OpenAiProvider);

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    model: Option<String>,
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

/// `usage`: `prompt_tokens` includes `prompt_tokens_details.cached_tokens`
/// (and `cache_write_tokens`); `completion_tokens` includes
/// `completion_tokens_details.reasoning_tokens`. Both details objects are
/// optional and may be null.
#[derive(Deserialize, Clone, Copy)]
struct WireUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize, Clone, Copy)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_write_tokens: Option<u64>,
}

#[derive(Deserialize, Clone, Copy)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl WireUsage {
    fn usage(&self) -> Usage {
        let prompt = self.prompt_tokens_details;
        Usage::new(self.prompt_tokens, self.completion_tokens)
            .cached_input(prompt.and_then(|d| d.cached_tokens).unwrap_or(0))
            .cache_write(prompt.and_then(|d| d.cache_write_tokens).unwrap_or(0))
            .reasoning(
                self.completion_tokens_details
                    .and_then(|d| d.reasoning_tokens)
                    .unwrap_or(0),
            )
    }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<Delta>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: WireError,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<Value>,
}

fn classify(status: u16, error: Option<&WireError>) -> ClassifiedError {
    let code = error
        .and_then(|e| e.code.as_ref())
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = error.and_then(|e| e.kind.as_deref()).unwrap_or_default();
    let class = if code == "insufficient_quota" || kind == "insufficient_quota" {
        ErrorClass::QuotaExceeded
    } else if code == "context_length_exceeded" {
        ErrorClass::ContextTooLong
    } else if code == "invalid_api_key" || status == 401 {
        ErrorClass::Auth
    } else if code == "rate_limit_exceeded" || status == 429 {
        ErrorClass::RateLimit
    } else if status >= 500 || kind == "server_error" {
        ErrorClass::Overloaded
    } else if matches!(status, 400 | 404 | 409 | 413 | 422) {
        ErrorClass::BadRequest
    } else {
        ErrorClass::Other
    };
    let message = error
        .and_then(|e| e.message.clone())
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| format!("provider answered HTTP {status}"));
    ClassifiedError::new(class, message)
}

impl Provider for OpenAiProvider {
    fn manifest(&self) -> Manifest {
        Manifest::new("openai", "OpenAI", env!("CARGO_PKG_VERSION"))
            .model(ModelInfo::new("gpt-4o-mini", 128_000).max_output_tokens(16_384))
            .model(ModelInfo::new("gpt-4o", 128_000).max_output_tokens(16_384))
            .model(ModelInfo::new("gpt-4.1", 1_047_576).max_output_tokens(32_768))
            .model(ModelInfo::new("gpt-5", 400_000).max_output_tokens(128_000))
            .allowed_host("api.openai.com")
            .default_base_url("https://api.openai.com/v1")
            .key(KeyPlacement::Bearer)
            .streaming(StreamFraming::Sse)
    }

    fn build_chat_request(&self, ctx: &RequestContext, request: &ChatRequest) -> Result<HttpRequest, PluginError> {
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| json!({ "role": m.role.as_str(), "content": m.content }))
            .collect();
        let cap_field = match ctx.option("max_tokens_field") {
            None | Some("max_completion_tokens") => "max_completion_tokens",
            Some("max_tokens") => "max_tokens",
            Some(other) => {
                return Err(PluginError::unsupported(format!(
                    "option max_tokens_field must be max_completion_tokens or max_tokens, not {other:?}"
                )));
            }
        };
        let mut body = serde_json::Map::new();
        body.insert("model".into(), json!(request.model));
        body.insert("messages".into(), Value::Array(messages));
        body.insert(cap_field.into(), json!(request.max_output_tokens));
        body.insert("stream".into(), json!(request.stream));
        if request.stream {
            body.insert("stream_options".into(), json!({ "include_usage": true }));
        }
        Ok(HttpRequest::post_json(ctx.url("/chat/completions"), &Value::Object(body)).bearer_key())
    }

    fn parse_chat_response(&self, body: &str) -> Result<ChatResponse, PluginError> {
        let completion: Completion = serde_json::from_str(body)?;
        let choice = completion
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| PluginError::parse("the completion has no choices"))?;
        let text = choice.message.content.or(choice.message.refusal).unwrap_or_default();
        let usage = completion.usage.as_ref().map(WireUsage::usage);
        Ok(ChatResponse::new(text, usage, completion.model.as_deref()))
    }

    fn classify_error(&self, status: u16, body: &str) -> ClassifiedError {
        let parsed = serde_json::from_str::<ErrorBody>(body).ok();
        classify(status, parsed.as_ref().map(|b| &b.error))
    }

    fn parse_stream_event(&self, event: &SseEvent) -> Result<Vec<StreamEvent>, PluginError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return Ok(vec![StreamEvent::Done]);
        }
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let chunk: Chunk = serde_json::from_str(data)?;
        let mut events = Vec::new();
        if let Some(error) = &chunk.error {
            events.push(StreamEvent::Error(classify(200, Some(error))));
            return Ok(events);
        }
        if let Some(model) = chunk.model {
            events.push(StreamEvent::Model { model });
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta
                && let Some(text) = delta.content.or(delta.refusal).filter(|t| !t.is_empty())
            {
                events.push(StreamEvent::TextDelta { text });
            }
        }
        if let Some(usage) = chunk.usage.as_ref().map(WireUsage::usage) {
            // The last chunk carries the whole request's usage.
            events.push(StreamEvent::from(usage));
        }
        Ok(events)
    }

    fn build_validate_key_request(&self, ctx: &RequestContext) -> Result<HttpRequest, PluginError> {
        Ok(HttpRequest::get(ctx.url("/models")).bearer_key())
    }
}
