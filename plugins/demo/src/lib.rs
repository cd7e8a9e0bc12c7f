//! creditgate's offline demo provider.
//!
//! It answers deterministically from the prompt without any network, so the
//! embedded default configuration works on a machine with no provider keys
//! and no network. It is a provider of its own (id `demo`), never a fallback
//! for a real provider.
//!
//! * transport: [`Transport::Offline`]; the "server" is
//!   [`Provider::offline_exchange`], which speaks a small JSON/SSE format of
//!   its own that goes through the same parse path as real providers;
//! * the answer: `Demo answer to "<last user message>": this reply comes from
//!   the offline demo provider.`, cut to `max_output_tokens` words;
//! * usage: one token per whitespace-separated word (input: every message;
//!   output: the answer);
//! * streaming: one SSE event per word, then usage, then done;
//! * keys: none are needed or sent; key validation always succeeds.

use creditgate_provider_sdk::{
    ChatRequest, ChatResponse, ClassifiedError, ErrorClass, HttpRequest, KeyPlacement, Manifest, Method, ModelInfo,
    OfflineResponse, PluginError, Provider, RequestContext, Role, SseEvent, StreamEvent, StreamFraming, Transport,
    Usage, UsageUpdate,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The demo model's id.
pub const MODEL: &str = "demo-1";

const CHAT_URL: &str = "offline://demo/v1/chat";
const VALIDATE_URL: &str = "offline://demo/v1/validate";

/// The offline demo provider.
#[derive(Debug, Default, Clone, Copy)]
pub struct DemoProvider;

creditgate_provider_sdk::export_provider!(DemoProvider);

#[derive(Serialize, Deserialize)]
struct WireRequest {
    model: String,
    messages: Vec<WireMessage>,
    max_tokens: u32,
    stream: bool,
}

#[derive(Serialize, Deserialize)]
struct WireMessage {
    role: Role,
    content: String,
}

#[derive(Serialize, Deserialize)]
struct WireAnswer {
    model: String,
    text: String,
    usage: Usage,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    Delta { text: String },
    Usage { usage: Usage },
    Done,
}

#[derive(Deserialize)]
struct WireError {
    error: WireErrorBody,
}

#[derive(Deserialize)]
struct WireErrorBody {
    message: String,
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The deterministic answer to a request: (text, usage).
pub fn answer(messages: &[(Role, &str)], max_output_tokens: u32) -> (String, Usage) {
    let prompt = messages
        .iter()
        .rev()
        .find(|(role, _)| *role == Role::User)
        .map(|(_, content)| content.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let full = if prompt.is_empty() {
        "You sent no question: this reply comes from the offline demo provider.".to_owned()
    } else {
        format!("Demo answer to \"{prompt}\": this reply comes from the offline demo provider.")
    };
    let cap = usize::try_from(max_output_tokens).unwrap_or(usize::MAX);
    let text = full.split_whitespace().take(cap).collect::<Vec<_>>().join(" ");
    let input_tokens = messages.iter().map(|(_, c)| words(c)).sum::<u64>().max(1);
    let usage = Usage::new(input_tokens, words(&text));
    (text, usage)
}

fn error_response(status: u16, message: &str) -> OfflineResponse {
    OfflineResponse {
        status,
        body: json!({ "error": { "message": message } }).to_string(),
    }
}

impl Provider for DemoProvider {
    fn manifest(&self) -> Manifest {
        Manifest::new("demo", "Demo (offline)", env!("CARGO_PKG_VERSION"))
            .model(ModelInfo::new(MODEL, 32_768).max_output_tokens(4_096))
            .key(KeyPlacement::None)
            .streaming(StreamFraming::Sse)
            .transport(Transport::Offline)
    }

    fn build_chat_request(&self, _ctx: &RequestContext, request: &ChatRequest) -> Result<HttpRequest, PluginError> {
        let wire = WireRequest {
            model: request.model.clone(),
            messages: request
                .messages
                .iter()
                .map(|m| WireMessage {
                    role: m.role,
                    content: m.content.clone(),
                })
                .collect(),
            max_tokens: request.max_output_tokens,
            stream: request.stream,
        };
        let body = serde_json::to_value(&wire)?;
        Ok(HttpRequest::new(Method::Post, CHAT_URL).json_body(&body))
    }

    fn parse_chat_response(&self, body: &str) -> Result<ChatResponse, PluginError> {
        let answer: WireAnswer = serde_json::from_str(body)?;
        Ok(ChatResponse {
            text: answer.text,
            usage: Some(answer.usage),
            model: Some(answer.model),
        })
    }

    fn classify_error(&self, status: u16, body: &str) -> ClassifiedError {
        let message = serde_json::from_str::<WireError>(body)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| format!("demo provider answered {status}"));
        let class = match status {
            401 | 403 => ErrorClass::Auth,
            429 => ErrorClass::RateLimit,
            400 | 404 | 422 => ErrorClass::BadRequest,
            500..=599 => ErrorClass::Overloaded,
            _ => ErrorClass::Other,
        };
        ClassifiedError::new(class, message)
    }

    fn parse_stream_event(&self, event: &SseEvent) -> Result<Vec<StreamEvent>, PluginError> {
        let parsed: WireEvent = serde_json::from_str(&event.data)?;
        Ok(vec![match parsed {
            WireEvent::Delta { text } => StreamEvent::TextDelta { text },
            WireEvent::Usage { usage } => StreamEvent::Usage(UsageUpdate {
                input_tokens: Some(usage.input_tokens),
                output_tokens: Some(usage.output_tokens),
                ..UsageUpdate::default()
            }),
            WireEvent::Done => StreamEvent::Done,
        }])
    }

    fn build_validate_key_request(&self, _ctx: &RequestContext) -> Result<HttpRequest, PluginError> {
        Ok(HttpRequest::new(Method::Get, VALIDATE_URL))
    }

    fn offline_exchange(&self, request: &HttpRequest) -> Result<OfflineResponse, PluginError> {
        match (request.method, request.url.as_str()) {
            (Method::Get, VALIDATE_URL) => Ok(OfflineResponse {
                status: 200,
                body: "{}".into(),
            }),
            (Method::Post, CHAT_URL) => {
                let Ok(wire) = serde_json::from_str::<WireRequest>(request.body.as_deref().unwrap_or("")) else {
                    return Ok(error_response(400, "the request body is not a demo request"));
                };
                if wire.model != MODEL {
                    return Ok(error_response(
                        404,
                        &format!("the demo provider has no model {:?}", wire.model),
                    ));
                }
                let messages: Vec<(Role, &str)> = wire.messages.iter().map(|m| (m.role, m.content.as_str())).collect();
                let (text, usage) = answer(&messages, wire.max_tokens);
                if !wire.stream {
                    let body = serde_json::to_string(&WireAnswer {
                        model: wire.model,
                        text,
                        usage,
                    })?;
                    return Ok(OfflineResponse { status: 200, body });
                }
                let mut body = String::new();
                let mut push = |event: &WireEvent| -> Result<(), PluginError> {
                    body.push_str("data: ");
                    body.push_str(&serde_json::to_string(event)?);
                    body.push_str("\n\n");
                    Ok(())
                };
                for (i, word) in text.split(' ').enumerate() {
                    let text = if i == 0 { word.to_owned() } else { format!(" {word}") };
                    push(&WireEvent::Delta { text })?;
                }
                push(&WireEvent::Usage { usage })?;
                push(&WireEvent::Done)?;
                Ok(OfflineResponse { status: 200, body })
            }
            _ => Ok(error_response(404, "unknown demo endpoint")),
        }
    }
}
