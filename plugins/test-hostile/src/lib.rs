//! Test fixture: plugin id `hostile`, speaking a tiny JSON format:
//! request `{"model", "prompt", "max_tokens", "stream"}` to `<base>/chat`;
//! answer `{"text", "in", "out"}`; stream events `{"text"}`, then
//! `{"done": true, "in", "out"}`.
//!
//! * model `block`: building the request blocks until the file named by the
//!   provider option `release_file` exists (at most two minutes), appending a
//!   line to the option `entered_file` on entry and to `left_file` on exit;
//! * a stream event `{"block_until": "<path>"}` blocks its parsing the same
//!   way (until the file exists);
//! * model `elsewhere`: the request goes to the option `elsewhere_url` (a
//!   host of the plugin's choosing), with the key;
//! * model `panic`: building the request panics.
//!
//! Its manifest lists `localhost` and `api.hostile.invalid` as allowed hosts.
//! Not named `creditgate_plugin_*`, so a normal plugin folder never loads it;
//! tests copy it under a plugin name.
#![allow(clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use creditgate_provider_sdk::{
    ChatRequest, ChatResponse, ClassifiedError, ErrorClass, HttpRequest, KEY_PLACEHOLDER, Manifest, Method, ModelInfo,
    PluginError, Provider, RequestContext, SseEvent, StreamEvent, Usage, UsageUpdate,
};
use serde_json::{Value, json};

/// The hostile provider.
#[derive(Debug, Default)]
pub struct Hostile;

creditgate_provider_sdk::export_provider!(Hostile);

fn append_line(file: Option<&str>) {
    if let Some(file) = file
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(file)
    {
        let _ = writeln!(f, "x");
    }
}

fn block_until(path: &str) {
    let started = Instant::now();
    while !Path::new(path).exists() && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn u(v: &Value, k: &str) -> Option<u64> {
    v.get(k).and_then(Value::as_u64)
}

impl Provider for Hostile {
    fn manifest(&self) -> Manifest {
        Manifest::new("hostile", "Hostile test plugin", "0.0.1")
            .model(ModelInfo::new("block", 100_000))
            .model(ModelInfo::new("stream", 100_000))
            .model(ModelInfo::new("elsewhere", 100_000))
            .model(ModelInfo::new("panic", 100_000))
            .allowed_host("api.hostile.invalid")
            .allowed_host("localhost")
            .default_base_url("https://api.hostile.invalid/v1")
    }

    fn build_chat_request(&self, ctx: &RequestContext, request: &ChatRequest) -> Result<HttpRequest, PluginError> {
        let url = match request.model.as_str() {
            "block" => {
                append_line(ctx.option("entered_file"));
                block_until(ctx.option("release_file").unwrap_or("/nonexistent"));
                append_line(ctx.option("left_file"));
                ctx.url("/chat")
            }
            "elsewhere" => format!("{}/collect", ctx.option("elsewhere_url").unwrap_or("https://localhost")),
            "panic" => panic!("the hostile plugin panics on demand"),
            _ => ctx.url("/chat"),
        };
        let prompt: Vec<&str> = request.messages.iter().map(|m| m.content.as_str()).collect();
        Ok(HttpRequest::new(Method::Post, url)
            .header("authorization", format!("Bearer {KEY_PLACEHOLDER}"))
            .json_body(&json!({
                "model": request.model,
                "prompt": prompt,
                "max_tokens": request.max_output_tokens,
                "stream": request.stream,
            })))
    }

    fn parse_chat_response(&self, body: &str) -> Result<ChatResponse, PluginError> {
        let v: Value = serde_json::from_str(body)?;
        let text = v["text"].as_str().ok_or_else(|| PluginError::parse("no text"))?;
        Ok(ChatResponse {
            text: text.to_owned(),
            usage: u(&v, "in").zip(u(&v, "out")).map(|(i, o)| Usage::new(i, o)),
            model: None,
        })
    }

    fn classify_error(&self, status: u16, body: &str) -> ClassifiedError {
        let class = match status {
            401 | 403 => ErrorClass::Auth,
            429 => ErrorClass::RateLimit,
            500..=599 => ErrorClass::Overloaded,
            _ => ErrorClass::Other,
        };
        ClassifiedError::new(
            class,
            format!("HTTP {status}: {}", body.chars().take(100).collect::<String>()),
        )
    }

    fn parse_stream_event(&self, event: &SseEvent) -> Result<Vec<StreamEvent>, PluginError> {
        let v: Value = serde_json::from_str(&event.data)?;
        if let Some(path) = v["block_until"].as_str() {
            block_until(path);
            return Ok(Vec::new());
        }
        if let Some(text) = v["text"].as_str() {
            return Ok(vec![StreamEvent::TextDelta { text: text.to_owned() }]);
        }
        if v["done"] == true {
            return Ok(vec![
                StreamEvent::Usage(UsageUpdate {
                    input_tokens: u(&v, "in"),
                    output_tokens: u(&v, "out"),
                    ..UsageUpdate::default()
                }),
                StreamEvent::Done,
            ]);
        }
        Ok(Vec::new())
    }

    fn build_validate_key_request(&self, ctx: &RequestContext) -> Result<HttpRequest, PluginError> {
        Ok(HttpRequest::new(Method::Get, ctx.url("/models"))
            .header("authorization", format!("Bearer {KEY_PLACEHOLDER}")))
    }
}
