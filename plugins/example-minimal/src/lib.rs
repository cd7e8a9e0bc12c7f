//! A minimal creditgate provider plugin (see
//! docs/writing-a-provider-plugin.md): the "Echo" API, an imaginary provider
//! with a tiny wire format.
//!
//! * `POST {base}/generate` with `{"model","prompt","max_tokens","stream"}`
//!   and `Authorization: Bearer <key>`;
//! * answer: `{"output": "...", "tokens_in": N, "tokens_out": M}`;
//! * stream: `data: {"delta": "..."}` events, then
//!   `data: {"done": true, "tokens_in": N, "tokens_out": M}`;
//! * errors: `{"error": "..."}` with the HTTP status saying what happened;
//! * key check: `GET {base}/me`.

use creditgate_provider_sdk::{
    ChatRequest, ChatResponse, ClassifiedError, ErrorClass, HttpRequest, KEY_PLACEHOLDER, KeyPlacement, Manifest,
    Method, ModelInfo, PluginError, Provider, RequestContext, SseEvent, StreamEvent, Usage, UsageUpdate,
};
use serde::Deserialize;

/// The Echo provider.
#[derive(Debug, Default)]
pub struct EchoProvider;

// The one line that turns the type into a plugin library.
creditgate_provider_sdk::export_provider!(EchoProvider);

#[derive(Deserialize)]
struct Answer {
    output: String,
    tokens_in: u64,
    tokens_out: u64,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    delta: Option<String>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    tokens_in: Option<u64>,
    #[serde(default)]
    tokens_out: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

impl Provider for EchoProvider {
    fn manifest(&self) -> Manifest {
        Manifest::new("echo", "Echo", env!("CARGO_PKG_VERSION"))
            .model(ModelInfo::new("echo-small", 8_192))
            .allowed_host("api.echo.example")
            .default_base_url("https://api.echo.example/v1")
            .key(KeyPlacement::Bearer)
    }

    fn build_chat_request(&self, ctx: &RequestContext, request: &ChatRequest) -> Result<HttpRequest, PluginError> {
        let prompt = request
            .messages
            .iter()
            .map(|m| format!("{}: {}", m.role.as_str(), m.content))
            .collect::<Vec<_>>()
            .join("\n");
        let body = serde_json::json!({
            "model": request.model,
            "prompt": prompt,
            "max_tokens": request.max_output_tokens,
            "stream": request.stream,
        });
        Ok(HttpRequest::new(Method::Post, ctx.url("/generate"))
            .header("authorization", format!("Bearer {KEY_PLACEHOLDER}"))
            .json_body(&body))
    }

    fn parse_chat_response(&self, body: &str) -> Result<ChatResponse, PluginError> {
        let answer: Answer = serde_json::from_str(body)?;
        Ok(ChatResponse {
            text: answer.output,
            usage: Some(Usage::new(answer.tokens_in, answer.tokens_out)),
            model: None,
        })
    }

    fn classify_error(&self, status: u16, body: &str) -> ClassifiedError {
        let message = serde_json::from_str::<ErrorBody>(body)
            .map(|e| e.error)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        let class = match status {
            401 | 403 => ErrorClass::Auth,
            429 => ErrorClass::RateLimit,
            413 => ErrorClass::ContextTooLong,
            400..=499 => ErrorClass::BadRequest,
            500..=599 => ErrorClass::Overloaded,
            _ => ErrorClass::Other,
        };
        ClassifiedError::new(class, message)
    }

    fn parse_stream_event(&self, event: &SseEvent) -> Result<Vec<StreamEvent>, PluginError> {
        let chunk: Chunk = serde_json::from_str(&event.data)?;
        let mut events = Vec::new();
        if let Some(text) = chunk.delta {
            events.push(StreamEvent::TextDelta { text });
        }
        if chunk.tokens_in.is_some() || chunk.tokens_out.is_some() {
            events.push(StreamEvent::Usage(UsageUpdate {
                input_tokens: chunk.tokens_in,
                output_tokens: chunk.tokens_out,
                ..UsageUpdate::default()
            }));
        }
        if chunk.done {
            events.push(StreamEvent::Done);
        }
        Ok(events)
    }

    fn build_validate_key_request(&self, ctx: &RequestContext) -> Result<HttpRequest, PluginError> {
        Ok(HttpRequest::new(Method::Get, ctx.url("/me")).header("authorization", format!("Bearer {KEY_PLACEHOLDER}")))
    }
}
