//! Helpers for the translation every provider with its own wire format
//! repeats: splitting the system messages from the conversation, renaming
//! roles, building a JSON request with the key placeholder, classifying an
//! HTTP error from its status and the usual JSON error shapes, and turning a
//! streamed chunk into stream events.
//!
//! They are plain functions over the normalized types, on the plugin's side
//! of the C ABI: using them changes nothing in the protocol.

use serde_json::Value;

use crate::{
    ChatRequest, ChatResponse, ClassifiedError, ErrorClass, HttpRequest, KEY_PLACEHOLDER, KeyPlacement, Message,
    Method, PluginError, Role, StreamEvent, Usage, UsageUpdate,
};

impl ChatRequest {
    /// The system messages, in order (a feature's system prompt comes first;
    /// a caller may add more later in the conversation).
    pub fn system_messages(&self) -> impl Iterator<Item = &Message> {
        self.messages.iter().filter(|m| m.role == Role::System)
    }

    /// All system messages joined with `separator`, or `None` when there is
    /// none: for providers taking one top-level system prompt (Anthropic's
    /// `system`, Gemini's `systemInstruction`).
    pub fn system_prompt(&self, separator: &str) -> Option<String> {
        let parts: Vec<&str> = self.system_messages().map(|m| m.content.as_str()).collect();
        (!parts.is_empty()).then(|| parts.join(separator))
    }

    /// The user and assistant messages, in order, as `(role, content)` with
    /// the roles named as the provider names them (Gemini: `"user"` and
    /// `"model"`; Anthropic: `"user"` and `"assistant"`). System messages
    /// are left out: see [`ChatRequest::system_prompt`].
    pub fn turns<'a>(&'a self, user: &'a str, assistant: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.messages.iter().filter_map(move |m| match m.role {
            Role::System => None,
            Role::User => Some((user, m.content.as_str())),
            Role::Assistant => Some((assistant, m.content.as_str())),
        })
    }
}

impl KeyPlacement {
    /// A header whose whole value is the key, e.g. `x-api-key`.
    pub fn header(name: impl Into<String>) -> Self {
        KeyPlacement::Header { name: name.into() }
    }
}

impl HttpRequest {
    /// A GET request with no headers.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A POST request with this JSON body (and `content-type: application/json`).
    pub fn post_json(url: impl Into<String>, body: &Value) -> Self {
        Self::new(Method::Post, url).json_body(body)
    }

    /// Adds the header `name` whose whole value is the key placeholder
    /// (the manifest's [`KeyPlacement::Header`] with this name).
    #[must_use]
    pub fn key_header(self, name: &str) -> Self {
        self.header(name, KEY_PLACEHOLDER)
    }

    /// Adds `authorization: Bearer <key placeholder>` (the manifest's
    /// [`KeyPlacement::Bearer`]).
    #[must_use]
    pub fn bearer_key(self) -> Self {
        self.header("authorization", format!("Bearer {KEY_PLACEHOLDER}"))
    }
}

impl ErrorClass {
    /// The class an HTTP status alone says: 401 and 403 `Auth`, 402
    /// `QuotaExceeded`, 413 `ContextTooLong`, 429 `RateLimit`, other 4xx
    /// `BadRequest`, 5xx (529 included) `Overloaded`, anything else `Other`.
    /// Refine it with what the body says.
    pub fn from_status(status: u16) -> Self {
        match status {
            401 | 403 => ErrorClass::Auth,
            402 => ErrorClass::QuotaExceeded,
            413 => ErrorClass::ContextTooLong,
            429 => ErrorClass::RateLimit,
            400..=499 => ErrorClass::BadRequest,
            500..=599 => ErrorClass::Overloaded,
            _ => ErrorClass::Other,
        }
    }
}

/// The message of a JSON error body in the usual shapes: `error.message`
/// (OpenAI, Anthropic, Gemini), `error` as a string, `message`, `detail`.
/// `None` when the body is not JSON or has none of them (or an empty one).
pub fn error_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let candidates = [&v["error"]["message"], &v["error"], &v["message"], &v["detail"]];
    candidates
        .into_iter()
        .filter_map(Value::as_str)
        .map(str::trim)
        .find(|m| !m.is_empty())
        .map(str::to_owned)
}

/// Parses a provider's JSON answer, refusing a body without `field` with a
/// parse error naming it: JSON that is not the provider's answer (an empty
/// object, a proxy's error page in JSON) must not pass for an empty answer.
pub fn json_with_field(body: &str, field: &str) -> Result<Value, PluginError> {
    let value: Value = serde_json::from_str(body)?;
    match value.get(field) {
        Some(_) => Ok(value),
        None => Err(PluginError::parse(format!("the answer has no {field:?}"))),
    }
}

/// When a JSON value (typically a streamed event) is an error object in
/// the shape of an HTTP error body, `{"error": {...}}`, the HTTP status it
/// carries (`error.code`, else `error.status`, when a number from 100 to
/// 599), else 500; `None` when it has no `error`. Classify it with the
/// plugin's own `classify_error(status, data)`.
pub fn json_error_status(value: &Value) -> Option<u16> {
    let error = value.get("error").filter(|e| !e.is_null())?;
    let status = [&error["code"], &error["status"]]
        .into_iter()
        .filter_map(Value::as_u64)
        .find_map(|n| u16::try_from(n).ok().filter(|s| (100..=599).contains(s)));
    Some(status.unwrap_or(500))
}

impl ClassifiedError {
    /// An HTTP error classified from its status alone
    /// ([`ErrorClass::from_status`]), with the body's message
    /// ([`error_message`]), else `provider answered HTTP <status>`. Never
    /// fails, whatever the body.
    pub fn from_http(status: u16, body: &str) -> Self {
        let message = error_message(body).unwrap_or_else(|| format!("provider answered HTTP {status}"));
        Self::new(ErrorClass::from_status(status), message)
    }

    /// The same error in another class.
    #[must_use]
    pub fn with_class(self, class: ErrorClass) -> Self {
        Self { class, ..self }
    }
}

impl ChatResponse {
    /// An answer: its text, its usage when reported, the model that answered
    /// when the provider names it.
    pub fn new(text: impl Into<String>, usage: Option<Usage>, model: Option<&str>) -> Self {
        Self {
            text: text.into(),
            usage,
            model: model.map(str::to_owned),
        }
    }
}

impl From<Usage> for StreamEvent {
    /// A usage event giving every figure (totals and parts).
    fn from(usage: Usage) -> Self {
        StreamEvent::Usage(UsageUpdate::from(usage))
    }
}

impl StreamEvent {
    /// The events of one streamed chunk in the common shape (some text,
    /// perhaps the usage so far, perhaps a finish reason): the text when not
    /// empty, the usage when given, then `Done` when `finished`.
    pub fn chunk(text: impl Into<String>, usage: Option<Usage>, finished: bool) -> Vec<Self> {
        let text = text.into();
        let text = (!text.is_empty()).then_some(StreamEvent::TextDelta { text });
        let done = finished.then_some(StreamEvent::Done);
        [text, usage.map(StreamEvent::from), done]
            .into_iter()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check_key_placement;

    fn request() -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![
                Message::system("Be brief."),
                Message::user("Hi"),
                Message::assistant("Hello"),
                Message::system("Answer in French."),
                Message::user("Capital of France?"),
            ],
            max_output_tokens: 10,
            stream: false,
        }
    }

    #[test]
    fn system_messages_are_split_from_the_turns() {
        let req = request();
        assert_eq!(req.system_messages().count(), 2);
        assert_eq!(
            req.system_prompt("\n\n").as_deref(),
            Some("Be brief.\n\nAnswer in French.")
        );
        let turns: Vec<_> = req.turns("user", "model").collect();
        assert_eq!(
            turns,
            vec![("user", "Hi"), ("model", "Hello"), ("user", "Capital of France?")]
        );
        let no_system = ChatRequest {
            messages: vec![Message::user("Hi")],
            ..req
        };
        assert_eq!(no_system.system_prompt("\n"), None);
    }

    #[test]
    fn requests_carry_the_key_placeholder_where_the_manifest_says() {
        let header = KeyPlacement::header("x-goog-api-key");
        let post = HttpRequest::post_json("https://api.example.com/v1/chat", &serde_json::json!({"a": 1}))
            .key_header("x-goog-api-key");
        assert_eq!(post.method, Method::Post);
        assert_eq!(post.header_value("content-type"), Some("application/json"));
        assert_eq!(post.body.as_deref(), Some(r#"{"a":1}"#));
        assert!(check_key_placement(&header, &post).is_ok());
        assert!(check_key_placement(&KeyPlacement::Bearer, &post).is_err());
        let get = HttpRequest::get("https://api.example.com/v1/models").bearer_key();
        assert_eq!(get.method, Method::Get);
        assert_eq!(get.body, None);
        assert!(check_key_placement(&KeyPlacement::Bearer, &get).is_ok());
    }

    #[test]
    fn errors_are_classified_from_status_and_the_usual_bodies() {
        let cases = [
            (401, ErrorClass::Auth),
            (403, ErrorClass::Auth),
            (402, ErrorClass::QuotaExceeded),
            (413, ErrorClass::ContextTooLong),
            (429, ErrorClass::RateLimit),
            (404, ErrorClass::BadRequest),
            (500, ErrorClass::Overloaded),
            (529, ErrorClass::Overloaded),
            (302, ErrorClass::Other),
        ];
        for (status, class) in cases {
            assert_eq!(ErrorClass::from_status(status), class, "{status}");
        }
        let gemini = r#"{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(error_message(gemini).as_deref(), Some("API key not valid."));
        assert_eq!(error_message(r#"{"error":"bad model"}"#).as_deref(), Some("bad model"));
        assert_eq!(
            error_message(r#"{"message":"slow down"}"#).as_deref(),
            Some("slow down")
        );
        assert_eq!(error_message(r#"{"detail":"nope"}"#).as_deref(), Some("nope"));
        assert_eq!(error_message(r#"{"error":{"message":"  "}}"#), None);
        assert_eq!(error_message("<html>502</html>"), None);
        let err = ClassifiedError::from_http(502, "<html>502</html>");
        assert_eq!(
            err,
            ClassifiedError::new(ErrorClass::Overloaded, "provider answered HTTP 502")
        );
        let err = ClassifiedError::from_http(400, gemini).with_class(ErrorClass::Auth);
        assert_eq!(err, ClassifiedError::new(ErrorClass::Auth, "API key not valid."));
    }

    #[test]
    fn an_answer_without_its_field_is_a_parse_error() {
        let v = json_with_field(r#"{"candidates":[],"modelVersion":"x"}"#, "candidates").unwrap();
        assert_eq!(v["modelVersion"], "x");
        let err = json_with_field("{}", "candidates").unwrap_err();
        assert_eq!(err.kind, crate::PluginErrorKind::Parse);
        assert!(err.message.contains("candidates"), "{err}");
        assert_eq!(
            json_with_field("not json", "candidates").unwrap_err().kind,
            crate::PluginErrorKind::Parse
        );
    }

    #[test]
    fn an_error_inside_a_stream_gives_its_status() {
        let status = |data: &str| json_error_status(&serde_json::from_str(data).unwrap());
        assert_eq!(
            status(r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}"#),
            Some(429)
        );
        assert_eq!(
            status(r#"{"error":{"code":"rate_limit_exceeded","status":503}}"#),
            Some(503)
        );
        assert_eq!(status(r#"{"error":{"code":70000,"message":"?"}}"#), Some(500));
        assert_eq!(status(r#"{"error":"overloaded"}"#), Some(500));
        assert_eq!(status(r#"{"error":null,"candidates":[]}"#), None);
        assert_eq!(status(r#"{"candidates":[]}"#), None);
    }

    #[test]
    fn a_chunk_gives_its_text_usage_and_end_in_order() {
        let usage = Usage::new(14, 26).reasoning(18);
        assert_eq!(
            StreamEvent::chunk("Paris.", Some(usage), true),
            vec![
                StreamEvent::TextDelta { text: "Paris.".into() },
                StreamEvent::Usage(UsageUpdate::from(usage)),
                StreamEvent::Done,
            ]
        );
        assert_eq!(StreamEvent::chunk("", None, false), vec![]);
        assert_eq!(StreamEvent::from(usage), StreamEvent::Usage(UsageUpdate::from(usage)));
        let answer = ChatResponse::new("Paris.", Some(usage), Some("gemini-2.5-flash"));
        assert_eq!(answer.model.as_deref(), Some("gemini-2.5-flash"));
    }
}
