//! A creditgate provider plugin for Google's Gemini API (`generateContent`).
use creditgate_provider_sdk::{
    ChatRequest, ChatResponse, ClassifiedError, ErrorClass, HttpRequest, KeyPlacement, Manifest, ModelInfo,
    PluginError, Provider, RequestContext, SseEvent, StreamEvent, Usage, json_error_status, json_with_field,
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

/// The answer's text: the first candidate's parts that are not thoughts.
fn text(v: &Value) -> String {
    let parts = v["candidates"][0]["content"]["parts"].as_array().into_iter().flatten();
    let answer = parts.filter(|p| p["thought"] != true);
    answer.filter_map(|p| p["text"].as_str()).collect()
}

impl Provider for Gemini {
    fn manifest(&self) -> Manifest {
        Manifest::new("gemini", "Google Gemini", env!("CARGO_PKG_VERSION"))
            .model(ModelInfo::new("gemini-2.5-flash", 1_048_576).max_output_tokens(65_536))
            .allowed_host("generativelanguage.googleapis.com")
            .default_base_url("https://generativelanguage.googleapis.com/v1beta")
            .key(KeyPlacement::header("x-goog-api-key"))
    }

    fn build_chat_request(&self, ctx: &RequestContext, req: &ChatRequest) -> Result<HttpRequest, PluginError> {
        let turn = |(role, text)| json!({ "role": role, "parts": [{ "text": text }] });
        let contents: Vec<Value> = req.turns("user", "model").map(turn).collect();
        let config = json!({ "maxOutputTokens": req.max_output_tokens });
        let mut body = json!({ "contents": contents, "generationConfig": config });
        if let Some(system) = req.system_prompt("\n\n") {
            body["systemInstruction"] = json!({ "parts": [{ "text": system }] });
        }
        let url = match req.stream {
            false => ctx.url(&format!("/models/{}:generateContent", req.model)),
            true => ctx.url(&format!("/models/{}:streamGenerateContent?alt=sse", req.model)),
        };
        Ok(HttpRequest::post_json(url, &body).key_header("x-goog-api-key"))
    }

    fn parse_chat_response(&self, body: &str) -> Result<ChatResponse, PluginError> {
        let v = json_with_field(body, "candidates")?;
        Ok(ChatResponse::new(text(&v), usage(&v), v["modelVersion"].as_str()))
    }

    fn classify_error(&self, status: u16, body: &str) -> ClassifiedError {
        let error = ClassifiedError::from_http(status, body);
        match status {
            400 if error.message.contains("API key") => error.with_class(ErrorClass::Auth),
            400 if error.message.contains("token count") => error.with_class(ErrorClass::ContextTooLong),
            _ => error,
        }
    }

    fn parse_stream_event(&self, event: &SseEvent) -> Result<Vec<StreamEvent>, PluginError> {
        let v: Value = serde_json::from_str(&event.data)?;
        if let Some(status) = json_error_status(&v) {
            return Ok(vec![StreamEvent::Error(self.classify_error(status, &event.data))]);
        }
        let finished = v["candidates"][0]["finishReason"].is_string();
        Ok(StreamEvent::chunk(text(&v), usage(&v), finished))
    }

    fn build_validate_key_request(&self, ctx: &RequestContext) -> Result<HttpRequest, PluginError> {
        Ok(HttpRequest::get(ctx.url("/models")).key_header("x-goog-api-key"))
    }
}
