//! OpenAI's wire format, as far as the compatible door speaks it: the
//! chat-completions request, `chat.completion` and `chat.completion.chunk`
//! objects, the usage object, the model list and the error body (the
//! shapes of fixtures/providers/openai, which the official SDKs parse).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/chat/completions`: the fields creditgate reads. The others
/// (temperature, top_p, user, ...) are accepted and not used.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<InMessage>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub max_tokens: Option<i64>,
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    #[serde(default)]
    pub n: Option<i64>,
    #[serde(default)]
    pub tools: Option<Value>,
    #[serde(default)]
    pub functions: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// One message: `content` is a string or an array of parts (read in
/// openai_compat.rs, which explains what it refuses).
#[derive(Debug, Deserialize)]
pub(crate) struct InMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Value>,
}

/// The usage object.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: PromptDetails,
    pub completion_tokens_details: CompletionDetails,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PromptDetails {
    pub cached_tokens: u64,
    pub audio_tokens: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CompletionDetails {
    pub reasoning_tokens: u64,
    pub audio_tokens: u64,
    pub accepted_prediction_tokens: u64,
    pub rejected_prediction_tokens: u64,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            prompt_tokens_details: PromptDetails {
                cached_tokens: 0,
                audio_tokens: 0,
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: 0,
                audio_tokens: 0,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 0,
            },
        }
    }
}

/// What creditgate adds to an answer: what it cost and who paid.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Billing {
    /// The journal's id of the request.
    pub request_id: String,
    pub provider: String,
    pub model: String,
    pub credits_charged: String,
    /// Available credits after the request.
    pub balance: String,
    /// CREDITS or BYOK.
    pub billing_mode: &'static str,
}

/// A `chat.completion` object.
#[derive(Debug, Serialize)]
pub(crate) struct Completion {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub model: String,
    pub choices: [Choice; 1],
    pub usage: Usage,
    pub service_tier: &'static str,
    pub system_fingerprint: Option<String>,
    pub creditgate: Billing,
}

#[derive(Debug, Serialize)]
pub(crate) struct Choice {
    pub index: u32,
    pub message: OutMessage,
    pub logprobs: Option<Value>,
    pub finish_reason: &'static str,
}

#[derive(Debug, Serialize)]
pub(crate) struct OutMessage {
    pub role: &'static str,
    pub content: String,
    pub refusal: Option<String>,
    pub annotations: [Value; 0],
}

/// A `chat.completion.chunk` object.
#[derive(Debug, Serialize)]
pub(crate) struct Chunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: i64,
    pub model: &'a str,
    pub service_tier: &'static str,
    pub system_fingerprint: Option<String>,
    pub choices: Vec<ChunkChoice>,
    pub usage: Option<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creditgate: Option<Billing>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub logprobs: Option<Value>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// `GET /v1/models`.
#[derive(Debug, Serialize)]
pub(crate) struct ModelList {
    pub object: &'static str,
    pub data: Vec<Model>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Model {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub owned_by: String,
}

/// The error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ErrorDetail<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: &'a str,
}
