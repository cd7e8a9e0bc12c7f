//! The conformance kit: checks every plugin author runs against their plugin.
//!
//! ```ignore
//! use creditgate_provider_sdk::testkit::ConformanceKit;
//! let provider = MyProvider::default();
//! ConformanceKit::new(&provider)
//!     .expected_request("chat", request, include_str!("fixtures/chat-request.json"))
//!     .response("chat", include_str!("fixtures/chat-response.json"), "Hello.", Some(usage))
//!     .stream("stream", include_str!("fixtures/chat-stream.sse"), "Hello.", Some(usage))
//!     .error("401", 401, include_str!("fixtures/error-401.json"), ErrorClass::Auth)
//!     .run()
//!     .into_result()
//!     .unwrap();
//! ```
//!
//! What it checks:
//! * the manifest is sane ([`Manifest::validate`], a parseable HTTPS default
//!   base URL on an allowed host);
//! * requests are well formed for every model, streamed or not, and for the
//!   key-validation request: an absolute URL under the configured base URL on
//!   an allowed host, valid headers, a JSON body carrying the model, the
//!   prompt and the output cap, the same output for the same input, and the
//!   key placeholder exactly where the manifest says and nowhere else;
//! * recorded requests match the plugin's output (as JSON values);
//! * recorded responses and streams parse to the expected text and usage;
//! * recorded errors are classified as expected, and bodies that are not
//!   JSON are classified from the status (401 auth, 429 rate limit, 503
//!   overloaded);
//! * garbage never panics;
//! * offline plugins answer, stream the same text as they answer, and report
//!   usage.
//!
//! It takes a `&dyn Provider`, so the host's loaded plugins (through the C
//! ABI) run the same checks as the plugin's own Rust type.

mod checks;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use checks::{check_chat_body, check_http_request, check_manifest, sample_request};

use crate::sse::SseParser;
use crate::{
    ChatRequest, ClassifiedError, ErrorClass, Manifest, Provider, RequestContext, StreamEvent, Transport, Usage,
    UsageUpdate,
};

/// The result of replaying a recorded stream through a plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamOutcome {
    /// All text deltas joined.
    pub text: String,
    /// The last value of each usage field.
    pub usage: UsageUpdate,
    /// Whether the plugin said the stream is complete.
    pub done: bool,
    /// The error reported inside the stream, if any.
    pub error: Option<ClassifiedError>,
}

impl StreamOutcome {
    /// The usage, when both totals were reported.
    pub fn complete_usage(&self) -> Option<Usage> {
        self.usage.complete()
    }
}

/// Frames a recorded SSE body and feeds every event to the plugin.
pub fn replay_stream(provider: &dyn Provider, sse: &str) -> Result<StreamOutcome, String> {
    let events = SseParser::parse_all(sse).map_err(|e| e.to_string())?;
    let mut outcome = StreamOutcome::default();
    for event in events {
        let parsed = provider
            .parse_stream_event(&event)
            .map_err(|e| format!("event {:?} failed to parse: {e}", event.event))?;
        for item in parsed {
            match item {
                StreamEvent::TextDelta { text } => outcome.text.push_str(&text),
                StreamEvent::Usage(update) => outcome.usage.apply(&update),
                StreamEvent::Model { .. } => {}
                StreamEvent::Done => outcome.done = true,
                StreamEvent::Error(err) => outcome.error = Some(err),
            }
        }
    }
    Ok(outcome)
}

#[derive(Debug, Clone)]
struct RecordedResponse {
    name: String,
    body: String,
    text: String,
    usage: Option<Usage>,
}

#[derive(Debug, Clone)]
struct RecordedStream {
    name: String,
    sse: String,
    text: String,
    usage: Option<Usage>,
    error: Option<ErrorClass>,
}

#[derive(Debug, Clone)]
struct RecordedError {
    name: String,
    status: u16,
    body: String,
    class: ErrorClass,
}

#[derive(Debug, Clone)]
struct ExpectedRequest {
    name: String,
    request: ChatRequest,
    body: String,
}

/// A set of conformance checks for one plugin.
pub struct ConformanceKit<'p> {
    provider: &'p dyn Provider,
    ctx: Option<RequestContext>,
    requests: Vec<ExpectedRequest>,
    responses: Vec<RecordedResponse>,
    streams: Vec<RecordedStream>,
    errors: Vec<RecordedError>,
}

impl fmt::Debug for ConformanceKit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConformanceKit")
            .field("ctx", &self.ctx)
            .field("requests", &self.requests.len())
            .field("responses", &self.responses.len())
            .field("streams", &self.streams.len())
            .field("errors", &self.errors.len())
            .finish()
    }
}

/// What a run found.
#[derive(Debug, Clone, Default)]
pub struct ConformanceReport {
    /// Names of the checks that passed.
    pub passed: Vec<String>,
    /// Every failure, with the check's name.
    pub failures: Vec<String>,
}

/// A failed conformance run. Its `Display` and its `Debug` (what
/// `.unwrap()` prints) list every failure with how to fix it.
#[derive(Clone, thiserror::Error)]
#[error("{} conformance check(s) failed:\n  - {}\n", .0.failures.len(), .0.failures.join("\n  - "))]
pub struct ConformanceFailure(pub ConformanceReport);

impl fmt::Debug for ConformanceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\n{self}")
    }
}

/// How to fix a failed check, by the check's name.
fn hint(name: &str) -> &'static str {
    if name.starts_with("manifest") {
        "fix manifest(): an id of a-z, 0-9 and _, a name, a version, at least one model with a context window, an https default_base_url whose host is in allowed_host(...)"
    } else if name.starts_with("request") || name.starts_with("validate-key") {
        "build every URL with ctx.url(\"/path\") (operators change the base URL), put KEY_PLACEHOLDER exactly where the manifest's key() says and nowhere else, send the model (in the URL or the body), every message and max_output_tokens, and set no host/content-length/connection header"
    } else if name.starts_with("recorded request") {
        "make build_chat_request produce the recorded body (compare the two JSON values printed above)"
    } else if name.starts_with("response") {
        "parse_chat_response must return the answer's text and the usage as the provider bills it (input_tokens = all input, output_tokens = all output)"
    } else if name.starts_with("stream") {
        "parse_stream_event must turn each event into TextDelta, Usage (each given field replaces the running value) and finally Done; keep-alives and unknown events give an empty list; an Err ends the whole stream"
    } else if name.starts_with("error") || name.starts_with("status-only") {
        "classify_error must not fail: read the provider's error body when it is JSON, else classify from the status (401/403 Auth, 429 RateLimit, 5xx Overloaded)"
    } else if name.starts_with("garbage") {
        "return Err(PluginError::parse(...)) for bodies that are not the provider's JSON; never unwrap or index into untrusted JSON"
    } else {
        "see docs/writing-a-provider-plugin.md"
    }
}

impl ConformanceReport {
    /// `Ok(self)` when nothing failed.
    pub fn into_result(self) -> Result<Self, ConformanceFailure> {
        if self.failures.is_empty() {
            Ok(self)
        } else {
            Err(ConformanceFailure(self))
        }
    }

    fn check(&mut self, name: impl Into<String>, result: Result<(), String>) {
        let name = name.into();
        match result {
            Ok(()) => self.passed.push(name),
            Err(problem) => self
                .failures
                .push(format!("{name}: {problem}\n      fix: {}", hint(&name))),
        }
    }
}

fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|payload| format!("{what} panicked: {}", crate::protocol::panic_message(payload.as_ref())))
}

const SAMPLE_PROMPT: &str = "conformance prompt: name three colours";
const SAMPLE_SYSTEM: &str = "conformance system prompt";
const SAMPLE_CAP: u32 = 77;
const OTHER_BASE_URL: &str = "http://127.0.0.1:9/conformance/v1";

impl<'p> ConformanceKit<'p> {
    /// A kit for this provider, using the manifest's default base URL.
    pub fn new(provider: &'p dyn Provider) -> Self {
        Self {
            provider,
            ctx: None,
            requests: Vec::new(),
            responses: Vec::new(),
            streams: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Uses this context instead of the manifest's default base URL.
    #[must_use]
    pub fn context(mut self, ctx: RequestContext) -> Self {
        self.ctx = Some(ctx);
        self
    }

    /// Checks that `request` builds a body equal (as JSON) to `body`.
    #[must_use]
    pub fn expected_request(mut self, name: impl Into<String>, request: ChatRequest, body: impl Into<String>) -> Self {
        self.requests.push(ExpectedRequest {
            name: name.into(),
            request,
            body: body.into(),
        });
        self
    }

    /// Checks that a recorded 2xx body parses to `text` and `usage`.
    #[must_use]
    pub fn response(
        mut self,
        name: impl Into<String>,
        body: impl Into<String>,
        text: impl Into<String>,
        usage: Option<Usage>,
    ) -> Self {
        self.responses.push(RecordedResponse {
            name: name.into(),
            body: body.into(),
            text: text.into(),
            usage,
        });
        self
    }

    /// Checks that a recorded SSE body streams `text` and `usage` and ends
    /// with the plugin's `Done`.
    #[must_use]
    pub fn stream(
        mut self,
        name: impl Into<String>,
        sse: impl Into<String>,
        text: impl Into<String>,
        usage: Option<Usage>,
    ) -> Self {
        self.streams.push(RecordedStream {
            name: name.into(),
            sse: sse.into(),
            text: text.into(),
            usage,
            error: None,
        });
        self
    }

    /// Checks that a recorded SSE body streams `text` and then reports an
    /// error of class `class` inside the stream.
    #[must_use]
    pub fn stream_error(
        mut self,
        name: impl Into<String>,
        sse: impl Into<String>,
        text: impl Into<String>,
        class: ErrorClass,
    ) -> Self {
        self.streams.push(RecordedStream {
            name: name.into(),
            sse: sse.into(),
            text: text.into(),
            usage: None,
            error: Some(class),
        });
        self
    }

    /// Checks that a recorded error response is classified as `class`.
    #[must_use]
    pub fn error(mut self, name: impl Into<String>, status: u16, body: impl Into<String>, class: ErrorClass) -> Self {
        self.errors.push(RecordedError {
            name: name.into(),
            status,
            body: body.into(),
            class,
        });
        self
    }

    /// Runs every check.
    pub fn run(&self) -> ConformanceReport {
        let mut report = ConformanceReport::default();
        let manifest = match guarded("manifest", || self.provider.manifest()) {
            Ok(manifest) => manifest,
            Err(problem) => {
                report.check("manifest", Err(problem));
                return report;
            }
        };
        report.check("manifest", check_manifest(&manifest));
        let ctx = self
            .ctx
            .clone()
            .unwrap_or_else(|| RequestContext::new(manifest.default_base_url.clone().unwrap_or_default()));
        self.check_requests(&manifest, &ctx, &mut report);
        self.check_recorded(&mut report);
        self.check_garbage(&mut report);
        if manifest.transport == Transport::Offline {
            self.check_offline(&manifest, &ctx, &mut report);
        }
        report
    }

    fn check_requests(&self, manifest: &Manifest, ctx: &RequestContext, report: &mut ConformanceReport) {
        let other = RequestContext::new(OTHER_BASE_URL);
        let streams: &[bool] = if manifest.supports_streaming() {
            &[false, true]
        } else {
            &[false]
        };
        for model in &manifest.models {
            for &stream in streams {
                let request = sample_request(&model.id, stream);
                let name = format!("request {}{}", model.id, if stream { " (stream)" } else { "" });
                let result = guarded("build_chat_request", || {
                    let first = self.provider.build_chat_request(ctx, &request);
                    let second = self.provider.build_chat_request(ctx, &request);
                    let moved = self.provider.build_chat_request(&other, &request);
                    (first, second, moved)
                })
                .and_then(|(first, second, moved)| {
                    let first = first.map_err(|e| format!("failed: {e}"))?;
                    let second = second.map_err(|e| format!("failed: {e}"))?;
                    if first != second {
                        return Err("the same input built two different requests".to_owned());
                    }
                    check_http_request(manifest, ctx, &first)?;
                    check_chat_body(&first, &request)?;
                    if manifest.transport == Transport::Http {
                        let moved = moved.map_err(|e| format!("failed with another base URL: {e}"))?;
                        check_http_request(manifest, &other, &moved)
                            .map_err(|e| format!("with base URL {OTHER_BASE_URL}: {e}"))?;
                    }
                    Ok(())
                });
                report.check(name, result);
            }
        }
        let result = guarded("build_validate_key_request", || {
            (
                self.provider.build_validate_key_request(ctx),
                self.provider.build_validate_key_request(&other),
            )
        })
        .and_then(|(req, moved)| {
            let req = req.map_err(|e| format!("failed: {e}"))?;
            check_http_request(manifest, ctx, &req)?;
            if manifest.transport == Transport::Http {
                let moved = moved.map_err(|e| format!("failed with another base URL: {e}"))?;
                check_http_request(manifest, &other, &moved)
                    .map_err(|e| format!("with base URL {OTHER_BASE_URL}: {e}"))?;
            }
            Ok(())
        });
        report.check("validate-key request", result);
        for expected in &self.requests {
            let result = guarded("build_chat_request", || {
                self.provider.build_chat_request(ctx, &expected.request)
            })
            .and_then(|built| {
                let built = built.map_err(|e| format!("failed: {e}"))?;
                let want: serde_json::Value = serde_json::from_str(&expected.body)
                    .map_err(|e| format!("the recorded request is not JSON: {e}"))?;
                let got: serde_json::Value = serde_json::from_str(built.body.as_deref().unwrap_or(""))
                    .map_err(|e| format!("the built body is not JSON: {e}"))?;
                if want == got {
                    Ok(())
                } else {
                    Err(format!("built body {got} differs from the recorded {want}"))
                }
            });
            report.check(format!("recorded request {}", expected.name), result);
        }
    }

    fn check_recorded(&self, report: &mut ConformanceReport) {
        for rec in &self.responses {
            let result =
                guarded("parse_chat_response", || self.provider.parse_chat_response(&rec.body)).and_then(|parsed| {
                    let parsed = parsed.map_err(|e| format!("failed: {e}"))?;
                    if parsed.text != rec.text {
                        return Err(format!("text {:?}, expected {:?}", parsed.text, rec.text));
                    }
                    if parsed.usage != rec.usage {
                        return Err(format!("usage {:?}, expected {:?}", parsed.usage, rec.usage));
                    }
                    Ok(())
                });
            report.check(format!("response {}", rec.name), result);
        }
        for rec in &self.streams {
            let result = guarded("parse_stream_event", || replay_stream(self.provider, &rec.sse)).and_then(|outcome| {
                let outcome = outcome?;
                if outcome.text != rec.text {
                    return Err(format!("text {:?}, expected {:?}", outcome.text, rec.text));
                }
                match rec.error {
                    None => {
                        if let Some(err) = &outcome.error {
                            return Err(format!("unexpected stream error {err:?}"));
                        }
                        if !outcome.done {
                            return Err("the stream never reported Done".to_owned());
                        }
                        if outcome.complete_usage() != rec.usage {
                            return Err(format!("usage {:?}, expected {:?}", outcome.usage, rec.usage));
                        }
                    }
                    Some(class) => match &outcome.error {
                        Some(err) if err.class == class => {}
                        other => return Err(format!("stream error {other:?}, expected {class:?}")),
                    },
                }
                Ok(())
            });
            report.check(format!("stream {}", rec.name), result);
        }
        for rec in &self.errors {
            let result =
                guarded("classify_error", || self.provider.classify_error(rec.status, &rec.body)).and_then(|err| {
                    if err.class != rec.class {
                        return Err(format!("class {:?}, expected {:?}", err.class, rec.class));
                    }
                    if err.message.trim().is_empty() {
                        return Err("empty message".to_owned());
                    }
                    Ok(())
                });
            report.check(format!("error {}", rec.name), result);
        }
    }

    fn check_garbage(&self, report: &mut ConformanceReport) {
        let result = guarded("parse_chat_response", || {
            (
                self.provider.parse_chat_response("this is not JSON"),
                self.provider.parse_chat_response("{}"),
                self.provider.parse_chat_response(""),
            )
        })
        .and_then(|(garbage, _, empty)| {
            if garbage.is_ok() || empty.is_ok() {
                return Err("a body that is not JSON parsed as a response".to_owned());
            }
            Ok(())
        });
        report.check("garbage response is an error", result);
        for (status, class) in [
            (401, ErrorClass::Auth),
            (429, ErrorClass::RateLimit),
            (503, ErrorClass::Overloaded),
        ] {
            let result = guarded("classify_error", || {
                self.provider.classify_error(status, "<html>upstream says no</html>")
            })
            .and_then(|err| {
                if err.class == class {
                    Ok(())
                } else {
                    Err(format!("class {:?}, expected {class:?}", err.class))
                }
            });
            report.check(format!("status-only classification {status}"), result);
        }
        let result = guarded("parse_stream_event", || {
            for data in ["not json", "{}", "[1,2]", ""] {
                for event in [None, Some("message_start"), Some("error")] {
                    let _ = self.provider.parse_stream_event(&crate::SseEvent {
                        event: event.map(str::to_owned),
                        data: data.to_owned(),
                    });
                }
            }
        });
        report.check("garbage stream events do not panic", result);
    }

    fn check_offline(&self, manifest: &Manifest, ctx: &RequestContext, report: &mut ConformanceReport) {
        let Some(model) = manifest.models.first() else {
            return;
        };
        let result = guarded("offline_exchange", || {
            let plain = self
                .provider
                .build_chat_request(ctx, &sample_request(&model.id, false))
                .and_then(|r| self.provider.offline_exchange(&r))
                .and_then(|r| {
                    if (200..300).contains(&r.status) {
                        self.provider.parse_chat_response(&r.body)
                    } else {
                        Err(crate::PluginError::parse(format!("status {}", r.status)))
                    }
                });
            let streamed = if manifest.supports_streaming() {
                Some(
                    self.provider
                        .build_chat_request(ctx, &sample_request(&model.id, true))
                        .and_then(|r| self.provider.offline_exchange(&r)),
                )
            } else {
                None
            };
            let validate = self
                .provider
                .build_validate_key_request(ctx)
                .and_then(|r| self.provider.offline_exchange(&r));
            (plain, streamed, validate)
        })
        .and_then(|(plain, streamed, validate)| {
            let plain = plain.map_err(|e| format!("offline answer failed: {e}"))?;
            if plain.text.is_empty() {
                return Err("offline answer is empty".to_owned());
            }
            let Some(usage) = plain.usage else {
                return Err("offline answer has no usage".to_owned());
            };
            if let Some(streamed) = streamed {
                let streamed = streamed.map_err(|e| format!("offline stream failed: {e}"))?;
                let outcome = replay_stream(self.provider, &streamed.body)?;
                if !outcome.done || outcome.text != plain.text || outcome.complete_usage() != Some(usage) {
                    return Err(format!("offline stream {outcome:?} differs from the answer {plain:?}"));
                }
            }
            let validate = validate.map_err(|e| format!("offline key validation failed: {e}"))?;
            if !(200..300).contains(&validate.status) {
                return Err(format!("offline key validation answered {}", validate.status));
            }
            Ok(())
        });
        report.check("offline exchange", result);
    }
}
