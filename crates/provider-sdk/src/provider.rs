//! The safe trait a plugin implements.

use crate::{
    ChatRequest, ChatResponse, ClassifiedError, HttpRequest, Manifest, OfflineResponse, PluginError, RequestContext,
    SseEvent, StreamEvent,
};

/// A provider plugin: a pure translator between the normalized types and one
/// provider's wire format.
///
/// A plugin never does I/O, never sees a key and keeps no per-request state:
/// the host sends every request, injects the key where the manifest says,
/// keeps requests to the hosts the operator allows, owns timeouts, retries
/// and cancellation, and frames streams. Every method may be called
/// concurrently from many threads, on a blocking thread pool, under a time
/// limit per call (the host's `plugin_call_timeout_ms`) and a cap per
/// provider on calls in flight, stuck ones included (the host's
/// `max_concurrent_plugin_calls`).
///
/// A plugin is trusted native code inside the server process: these rules
/// bind what the host does for it, not what its own code could do (see the
/// trust model in `docs/writing-a-provider-plugin.md`).
///
/// In a stream, an `Err` from [`Provider::parse_stream_event`] ends the whole
/// stream; report a provider's own in-stream error as
/// [`crate::StreamEvent::Error`] instead.
///
/// Panics are caught at the C ABI boundary and reported to the host as a
/// [`crate::PluginErrorKind::Panic`] error, but a plugin should return errors
/// instead of panicking.
pub trait Provider: Send + Sync + 'static {
    /// The manifest. Called once when the plugin is loaded.
    fn manifest(&self) -> Manifest;

    /// Builds the provider request for a chat request. `request.stream` says
    /// whether the answer is streamed. The key goes where the manifest's
    /// [`crate::KeyPlacement`] says, written as [`crate::KEY_PLACEHOLDER`].
    fn build_chat_request(&self, ctx: &RequestContext, request: &ChatRequest) -> Result<HttpRequest, PluginError>;

    /// Parses a successful (2xx) non-streaming response body.
    fn parse_chat_response(&self, body: &str) -> Result<ChatResponse, PluginError>;

    /// Classifies a non-2xx response. Must not fail: an unknown body is
    /// classified from the status alone.
    fn classify_error(&self, status: u16, body: &str) -> ClassifiedError;

    /// Parses one Server-Sent Event into zero or more stream events.
    /// Keep-alives and unknown event types give an empty list.
    fn parse_stream_event(&self, event: &SseEvent) -> Result<Vec<StreamEvent>, PluginError>;

    /// Builds a cheap request that succeeds (2xx) exactly when the key works
    /// (the OpenAI and Anthropic plugins list models).
    fn build_validate_key_request(&self, ctx: &RequestContext) -> Result<HttpRequest, PluginError>;

    /// Answers a built request without any network, for plugins whose
    /// manifest says [`crate::Transport::Offline`]. HTTP plugins keep the
    /// default, which refuses.
    fn offline_exchange(&self, request: &HttpRequest) -> Result<OfflineResponse, PluginError> {
        let _ = request;
        Err(PluginError::unsupported("this plugin has no offline transport"))
    }
}
