//! A creditgate provider plugin for Google's Gemini API (`generateContent`).
use creditgate_provider_sdk::{
    ChatRequest, ChatResponse, ClassifiedError, ErrorClass, HttpRequest, KEY_PLACEHOLDER, KeyPlacement, Manifest,
    Method, ModelInfo, PluginError, Provider, RequestContext, Role, SseEvent, StreamEvent, Usage, UsageUpdate,
};
use serde_json::{Value, json};

#[derive(Debug, Default)]
pub struct Gemini;

creditgate_provider_sdk::export_provider!(Gemini);

/// Gemini's `candidatesTokenCount` excludes the thinking tokens it bills as output.
fn usage(v: &Value) -> Option<Usage> {
    let u = v.get("usageMetadata")?;
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let thoughts = n("thoughtsTokenCount");
    let usage = Usage::new(n("promptTokenCount"), n("candidatesTokenCount") + thoughts);
    Some(usage.cached_input(n("cachedContentTokenCount")).reasoning(thoughts))
}

fn text(v: &Value) -> String {
    let parts = v["candidates"][0]["content"]["parts"].as_array().into_iter().flatten();
    parts.filter(|p| p["thought"] != true).filter_map(|p| p["text"].as_str()).collect()
}

impl Provider for Gemini {
    fn manifest(&self) -> Manifest {
        Manifest::new("gemini", "Google Gemini", env!("CARGO_PKG_VERSION"))
            .model(ModelInfo::new("gemini-2.5-flash", 1_048_576).max_output_tokens(65_536))
            .allowed_host("generativelanguage.googleapis.com")
            .default_base_url("https://generativelanguage.googleapis.com/v1beta")
            .key(KeyPlacement::Header { name: "x-goog-api-key".into() })
    }

    fn build_chat_request(&self, ctx: &RequestContext, req: &ChatRequest) -> Result<HttpRequest, PluginError> {
        let part = |m: &creditgate_provider_sdk::Message| json!({ "text": m.content });
        let system: Vec<Value> = req.messages.iter().filter(|m| m.role == Role::System).map(part).collect();
        let turn = |m: &creditgate_provider_sdk::Message| {
            json!({ "role": if m.role == Role::Assistant { "model" } else { "user" }, "parts": [part(m)] })
        };
        let contents: Vec<Value> = req.messages.iter().filter(|m| m.role != Role::System).map(turn).collect();
        let mut body = json!({ "contents": contents, "generationConfig": { "maxOutputTokens": req.max_output_tokens } });
        if !system.is_empty() {
            body["systemInstruction"] = json!({ "parts": system });
        }
        let action = if req.stream { "streamGenerateContent?alt=sse" } else { "generateContent" };
        Ok(HttpRequest::new(Method::Post, ctx.url(&format!("/models/{}:{action}", req.model)))
            .header("x-goog-api-key", KEY_PLACEHOLDER)
            .json_body(&body))
    }

    fn parse_chat_response(&self, body: &str) -> Result<ChatResponse, PluginError> {
        let v: Value = serde_json::from_str(body)?;
        let model = v["modelVersion"].as_str().map(str::to_owned);
        v.get("candidates").ok_or_else(|| PluginError::parse("no candidates"))?;
        Ok(ChatResponse { text: text(&v), usage: usage(&v), model })
    }

    fn classify_error(&self, status: u16, body: &str) -> ClassifiedError {
        let v: Value = serde_json::from_str(body).unwrap_or_default();
        let message = v["error"]["message"].as_str().unwrap_or("Gemini API error").to_owned();
        let class = match status {
            401 | 403 => ErrorClass::Auth,
            400 if message.contains("API key") => ErrorClass::Auth,
            400 if message.contains("token count") => ErrorClass::ContextTooLong,
            429 => ErrorClass::RateLimit,
            400 | 404 => ErrorClass::BadRequest,
            500..=599 => ErrorClass::Overloaded,
            _ => ErrorClass::Other,
        };
        ClassifiedError::new(class, message)
    }

    fn parse_stream_event(&self, event: &SseEvent) -> Result<Vec<StreamEvent>, PluginError> {
        let v: Value = serde_json::from_str(&event.data)?;
        if let Some(code) = v.get("error").map(|e| e["code"].as_u64().unwrap_or(500)) {
            return Ok(vec![StreamEvent::Error(self.classify_error(u16::try_from(code).unwrap_or(500), &event.data))]);
        }
        let text = Some(text(&v)).filter(|t| !t.is_empty()).map(|text| StreamEvent::TextDelta { text });
        let usage = usage(&v).map(|u| StreamEvent::Usage(UsageUpdate::from(u)));
        let done = v["candidates"][0]["finishReason"].is_string().then_some(StreamEvent::Done);
        Ok([text, usage, done].into_iter().flatten().collect())
    }

    fn build_validate_key_request(&self, ctx: &RequestContext) -> Result<HttpRequest, PluginError> {
        Ok(HttpRequest::new(Method::Get, ctx.url("/models")).header("x-goog-api-key", KEY_PLACEHOLDER))
    }
}
