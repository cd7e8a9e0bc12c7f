//! The JSON payloads of each C ABI operation, and both sides' codecs.
//!
//! The plugin side ([`handle_op`]) is used by [`crate::abi::dispatch`]. The
//! host side ([`encode_input`], [`decode_output`]) is safe code used by the
//! plugin host around its raw `call`.

use std::any::Any;
use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::abi::{op, status};
use crate::{ChatRequest, HttpRequest, PluginError, PluginErrorKind, Provider, RequestContext, SseEvent};

/// Input of [`op::BUILD_CHAT_REQUEST`].
#[derive(Debug, Serialize, Deserialize)]
pub struct BuildChatInput<'a> {
    /// The provider's settings.
    pub ctx: Cow<'a, RequestContext>,
    /// The normalized request.
    pub request: Cow<'a, ChatRequest>,
}

/// Input of [`op::PARSE_CHAT_RESPONSE`].
#[derive(Debug, Serialize, Deserialize)]
pub struct ParseChatInput<'a> {
    /// The 2xx response body.
    pub body: Cow<'a, str>,
}

/// Input of [`op::CLASSIFY_ERROR`].
#[derive(Debug, Serialize, Deserialize)]
pub struct ClassifyInput<'a> {
    /// The HTTP status.
    pub status: u16,
    /// The response body.
    pub body: Cow<'a, str>,
}

/// Input of [`op::BUILD_VALIDATE_KEY_REQUEST`].
#[derive(Debug, Serialize, Deserialize)]
pub struct ValidateKeyInput<'a> {
    /// The provider's settings.
    pub ctx: Cow<'a, RequestContext>,
}

fn run<I, O>(input: &[u8], f: impl FnOnce(I) -> Result<O, PluginError>) -> (u32, Vec<u8>)
where
    I: DeserializeOwned,
    O: Serialize,
{
    let parsed: I = match serde_json::from_slice(input) {
        Ok(parsed) => parsed,
        Err(err) => {
            return error_output(&PluginError::new(
                PluginErrorKind::InvalidInput,
                format!("host sent invalid input: {err}"),
            ));
        }
    };
    match f(parsed) {
        Ok(out) => match serde_json::to_vec(&out) {
            Ok(bytes) => (status::OK, bytes),
            Err(err) => error_output(&PluginError::new(
                PluginErrorKind::Other,
                format!("plugin output could not be serialized: {err}"),
            )),
        },
        Err(err) => error_output(&err),
    }
}

fn error_output(err: &PluginError) -> (u32, Vec<u8>) {
    let bytes = serde_json::to_vec(err).unwrap_or_else(|_| b"{}".to_vec());
    (status::ERROR, bytes)
}

/// Runs one operation on the plugin side: JSON in, `(status, bytes)` out.
pub fn handle_op(provider: &dyn Provider, code: u32, input: &[u8]) -> (u32, Vec<u8>) {
    match code {
        op::MANIFEST => run(b"null", |(): ()| Ok(provider.manifest())),
        op::BUILD_CHAT_REQUEST => run(input, |i: BuildChatInput<'static>| {
            provider.build_chat_request(&i.ctx, &i.request)
        }),
        op::PARSE_CHAT_RESPONSE => run(input, |i: ParseChatInput<'static>| {
            provider.parse_chat_response(&i.body)
        }),
        op::CLASSIFY_ERROR => run(input, |i: ClassifyInput<'static>| {
            Ok(provider.classify_error(i.status, &i.body))
        }),
        op::PARSE_STREAM_EVENT => run(input, |i: SseEvent| provider.parse_stream_event(&i)),
        op::BUILD_VALIDATE_KEY_REQUEST => run(input, |i: ValidateKeyInput<'static>| {
            provider.build_validate_key_request(&i.ctx)
        }),
        op::OFFLINE_EXCHANGE => run(input, |i: HttpRequest| provider.offline_exchange(&i)),
        _ => (status::UNKNOWN_OP, Vec::new()),
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Serializes an operation's input on the host side.
pub fn encode_input<T: Serialize + ?Sized>(input: &T) -> Result<Vec<u8>, PluginError> {
    serde_json::to_vec(input).map_err(|err| {
        PluginError::new(
            PluginErrorKind::Protocol,
            format!("input could not be serialized: {err}"),
        )
    })
}

/// Interprets a `call`'s status and output bytes on the host side.
pub fn decode_output<T: DeserializeOwned>(code: u32, output: &[u8]) -> Result<T, PluginError> {
    match code {
        status::OK => serde_json::from_slice(output).map_err(|err| {
            PluginError::new(
                PluginErrorKind::Protocol,
                format!("plugin returned invalid JSON: {err}"),
            )
        }),
        status::ERROR => Err(serde_json::from_slice::<PluginError>(output)
            .unwrap_or_else(|_| PluginError::new(PluginErrorKind::Protocol, "plugin returned an unreadable error"))),
        status::PANIC => Err(PluginError::new(
            PluginErrorKind::Panic,
            format!(
                "plugin panicked: {}",
                String::from_utf8_lossy(output).chars().take(500).collect::<String>()
            ),
        )),
        status::UNKNOWN_OP => Err(PluginError::new(
            PluginErrorKind::Protocol,
            "plugin does not know this operation",
        )),
        other => Err(PluginError::new(
            PluginErrorKind::Protocol,
            format!("plugin returned unknown status {other}"),
        )),
    }
}
