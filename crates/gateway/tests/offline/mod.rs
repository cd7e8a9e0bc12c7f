//! An offline in-process provider for tests of how plugin calls are run:
//! its `build_chat_request` runs a test's hook (wait at a gate, note its
//! thread, sleep, panic), then refuses with "the plugin answered".

use std::sync::Arc;

use creditgate_gateway::{ApiKey, ChatRequest, Message};
use creditgate_provider_sdk::{
    ChatResponse, ClassifiedError, ErrorClass, HttpRequest, Manifest, ModelInfo, PluginError, Provider, RequestContext,
    SseEvent, StreamEvent, Transport,
};
use secrecy::SecretString;

/// What `build_chat_request` runs before it refuses.
pub type Hook = Arc<dyn Fn() + Send + Sync>;

/// An offline provider serving model `m`.
pub struct Offline {
    id: &'static str,
    hook: Hook,
}

impl Offline {
    /// A provider whose `build_chat_request` runs `hook` first.
    pub fn with_hook(id: &'static str, hook: impl Fn() + Send + Sync + 'static) -> Arc<dyn Provider> {
        Arc::new(Self {
            id,
            hook: Arc::new(hook),
        })
    }
}

impl Provider for Offline {
    fn manifest(&self) -> Manifest {
        Manifest::new(self.id, self.id, "0.0.1")
            .model(ModelInfo::new("m", 1_000))
            .transport(Transport::Offline)
            .key(creditgate_provider_sdk::KeyPlacement::None)
    }

    fn build_chat_request(&self, _: &RequestContext, _: &ChatRequest) -> Result<HttpRequest, PluginError> {
        (self.hook)();
        Err(PluginError::unsupported("the plugin answered"))
    }

    fn parse_chat_response(&self, _: &str) -> Result<ChatResponse, PluginError> {
        Err(PluginError::parse("unused"))
    }

    fn classify_error(&self, _: u16, _: &str) -> ClassifiedError {
        ClassifiedError::new(ErrorClass::Other, "unused")
    }

    fn parse_stream_event(&self, _: &SseEvent) -> Result<Vec<StreamEvent>, PluginError> {
        Ok(Vec::new())
    }

    fn build_validate_key_request(&self, _: &RequestContext) -> Result<HttpRequest, PluginError> {
        Err(PluginError::unsupported("unused"))
    }
}

/// A request for model `m`.
pub fn request() -> ChatRequest {
    ChatRequest {
        model: "m".into(),
        messages: vec![Message::user("hi")],
        max_output_tokens: 10,
        stream: false,
    }
}

/// A user's key (unused by the offline provider).
pub fn key() -> ApiKey {
    ApiKey::User(SecretString::from("sk-test".to_owned()))
}
