//! The OpenAI-compatible door: `POST /v1/chat/completions` (plain and
//! streamed) and `GET /v1/models`, for services that speak through an
//! OpenAI SDK and only change its base URL. The SDK's api key is the
//! user's JWT. A request goes through the same metered service as runAi
//! (holds, routing, BYOK, journal, real-time events); this file only
//! translates OpenAI's wire format (wire.rs) to and from it.
//!
//! The feature is the `X-Creditgate-Feature` header (CHAT without it), the
//! model `provider/model` or a model id the pricing table knows (the
//! feature's default without one), `Idempotency-Key` the idempotency key.
//! Errors are OpenAI's error body with the status of their code (one
//! mapping, `Code::http_status`); `error.code` is creditgate's code in
//! lower case (`insufficient_credits`, ...), or `model_not_found`.

mod stream;
mod wire;

use std::borrow::Cow;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use creditgate_domain::AiFeature;
use creditgate_graphql::{ApiError, wallet_user};
use creditgate_metering::{AiMessage, AiOutcome, AiRequest, AiService};
use creditgate_storage::User;
use serde::Serialize;
use serde_json::Value;

use crate::app::App;

pub(crate) const FEATURE: HeaderName = HeaderName::from_static("x-creditgate-feature");
pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub(crate) const CREDITS_CHARGED: HeaderName = HeaderName::from_static("x-creditgate-credits-charged");
pub(crate) const BALANCE: HeaderName = HeaderName::from_static("x-creditgate-balance");
pub(crate) const BILLING_MODE: HeaderName = HeaderName::from_static("x-creditgate-billing-mode");

/// `POST /v1/chat/completions` and `GET /v1/models`.
pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
}

/// A failed request, as OpenAI's error body.
#[derive(Debug)]
pub(crate) struct CompatError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    param: Option<&'static str>,
}

impl CompatError {
    fn bad_input(param: Option<&'static str>, message: impl Into<String>) -> CompatError {
        CompatError {
            param,
            ..ApiError::bad_input(message).into()
        }
    }

    /// OpenAI's `type` for a status.
    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            402 => "insufficient_quota",
            429 => "requests",
            500.. => "server_error",
            _ => "invalid_request_error",
        }
    }

    fn body(&self) -> String {
        let body = wire::ErrorBody {
            error: wire::ErrorDetail {
                message: &self.message,
                kind: self.kind(),
                param: self.param,
                code: &self.code,
            },
        };
        serde_json::to_string(&body).unwrap_or_else(|_| "{\"error\":{\"message\":\"internal error\"}}".into())
    }
}

impl From<ApiError> for CompatError {
    fn from(e: ApiError) -> Self {
        CompatError {
            status: StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: Cow::Owned(e.code.as_str().to_ascii_lowercase()),
            message: e.message,
            param: None,
        }
    }
}

impl From<creditgate_metering::AiError> for CompatError {
    fn from(e: creditgate_metering::AiError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for CompatError {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            self.body(),
        )
            .into_response()
    }
}

/// The caller's user, from the bearer JWT (the SDK's api key).
async fn caller(app: &App, headers: &HeaderMap) -> Result<User, CompatError> {
    let id = caller_identity(app, headers)?;
    Ok(wallet_user(&app.store, &id).await?)
}

fn caller_identity(app: &App, headers: &HeaderMap) -> Result<creditgate_storage::Identity, CompatError> {
    let header = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    app.auth
        .authenticate_header(header)
        .map_err(|e| ApiError::unauthenticated(e.to_string()).into())
}

/// `GET /v1/models`: the priced models of the loaded providers, as
/// `provider/model`.
async fn models(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(e) = caller_identity(&app, &headers) {
        return e.into_response();
    }
    let data = usable_models(&app.ai)
        .map(|(provider, model)| wire::Model {
            id: format!("{provider}/{model}"),
            object: "model",
            created: 0,
            owned_by: provider.to_owned(),
        })
        .collect();
    json_response(StatusCode::OK, &wire::ModelList { object: "list", data })
}

/// The priced models whose provider is loaded.
fn usable_models(ai: &AiService) -> impl Iterator<Item = (&str, &str)> {
    let loaded: Vec<String> = ai.gateway().providers().into_iter().map(|p| p.id).collect();
    ai.pricing()
        .models()
        .filter(move |(p, _)| loaded.iter().any(|l| l == p))
}

/// `POST /v1/chat/completions`.
async fn chat_completions(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    match chat(&app, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn chat(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<Response, CompatError> {
    let user = caller(app, headers).await?;
    let req: wire::ChatRequest = serde_json::from_slice(body).map_err(|e| {
        CompatError::bad_input(
            None,
            format!(
                "the body is not a chat completion request: {} (line {}, column {})",
                match e.classify() {
                    serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "invalid JSON",
                    _ => "expected {\"model\": String, \"messages\": [{\"role\", \"content\"}]}",
                },
                e.line(),
                e.column()
            ),
        )
    })?;
    let stream = req.stream.unwrap_or(false);
    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let translated = translate(&app.ai, headers, req)?;
    if stream {
        let items = app.ai.run_stream(&user.id, &translated.request).await?;
        Ok(stream::streamed(items, translated.label, include_usage))
    } else {
        let outcome = app.ai.run(&user.id, &translated.request).await?;
        answered(outcome)
    }
}

/// A chat request in metering's terms, and the model name its chunks show.
struct Translated {
    request: AiRequest,
    label: String,
}

fn translate(ai: &AiService, headers: &HeaderMap, req: wire::ChatRequest) -> Result<Translated, CompatError> {
    let feature = feature_of(headers)?;
    if req.n.is_some_and(|n| n != 1) {
        return Err(CompatError::bad_input(Some("n"), "only n = 1 is supported"));
    }
    for (param, v) in [("tools", &req.tools), ("functions", &req.functions)] {
        if v.as_ref()
            .is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))
        {
            return Err(CompatError::bad_input(
                Some(param),
                "tools and function calling are not supported",
            ));
        }
    }
    let (provider, model) = resolve_model(ai, feature, req.model.as_deref())?;
    let label = match (&provider, &model) {
        (Some(p), Some(m)) => format!("{p}/{m}"),
        _ => ai
            .pricing()
            .feature(feature)
            .map(|f| format!("{}/{}", f.default_provider, f.default_model))
            .unwrap_or_default(),
    };
    let messages = req
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| -> Result<AiMessage, CompatError> {
            Ok(AiMessage {
                role: match m.role.as_str() {
                    // What newer SDKs call the system message.
                    "developer" => "system".to_owned(),
                    _ => m.role,
                },
                content: content_text(i, m.content)?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let idempotency_key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| CompatError::bad_input(None, "the Idempotency-Key header must be visible ASCII"))?
                .to_owned(),
        ),
    };
    Ok(Translated {
        request: AiRequest {
            feature,
            messages,
            provider,
            model,
            max_output_tokens: req.max_completion_tokens.or(req.max_tokens),
            idempotency_key,
            actor: None,
        },
        label,
    })
}

/// The feature of `X-Creditgate-Feature` (CHAT without it); `chat` and
/// `executive-analysis` are read as CHAT and EXECUTIVE_ANALYSIS.
fn feature_of(headers: &HeaderMap) -> Result<AiFeature, CompatError> {
    let Some(value) = headers.get(FEATURE) else {
        return Ok(AiFeature::Chat);
    };
    let text = value
        .to_str()
        .unwrap_or("")
        .trim()
        .to_ascii_uppercase()
        .replace('-', "_");
    text.parse().map_err(|_| {
        let known: Vec<&str> = AiFeature::ALL.iter().map(|f| f.as_str()).collect();
        CompatError::bad_input(
            None,
            format!(
                "unknown feature `{}` in X-Creditgate-Feature; one of {}",
                text.chars().take(64).collect::<String>(),
                known.join(", ")
            ),
        )
    })
}

/// `provider/model`, or a model id that exactly one loaded provider prices
/// (the feature's default provider when several do); `None` routes as
/// runAi does without a model.
type ModelChoice = (Option<String>, Option<String>);

fn resolve_model(ai: &AiService, feature: AiFeature, model: Option<&str>) -> Result<ModelChoice, CompatError> {
    let Some(name) = model.map(str::trim).filter(|m| !m.is_empty()) else {
        return Ok((None, None));
    };
    let pick = |p: &str, m: &str| Ok((Some(p.to_owned()), Some(m.to_owned())));
    let bare: Vec<&str> = usable_models(ai).filter(|(_, m)| *m == name).map(|(p, _)| p).collect();
    match bare.as_slice() {
        [p] => return pick(p, name),
        [] => {}
        several => {
            let default = ai.pricing().feature(feature).map(|f| f.default_provider.as_str()).ok();
            return match several.iter().find(|p| Some(**p) == default) {
                Some(p) => pick(p, name),
                None => Err(CompatError::bad_input(
                    Some("model"),
                    format!(
                        "model `{}` is served by several providers ({}); name one as provider/model",
                        short(name),
                        several.join(", ")
                    ),
                )),
            };
        }
    }
    if let Some((p, m)) = name.split_once('/')
        && usable_models(ai).any(|(up, um)| up == p && um == m)
    {
        return pick(p, m);
    }
    Err(CompatError {
        status: StatusCode::NOT_FOUND,
        code: Cow::Borrowed("model_not_found"),
        message: format!(
            "the model `{}` does not exist or has no price; GET /v1/models lists the models",
            short(name)
        ),
        param: Some("model"),
    })
}

/// A message's text: a string, or an array of text parts (joined by new
/// lines). Other parts (images, audio, files) are refused.
fn content_text(i: usize, content: Option<Value>) -> Result<String, CompatError> {
    let bad = |m: String| CompatError::bad_input(Some("messages"), m);
    match content {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(t))) => texts.push(t.as_str()),
                    (Some("text"), _) => return Err(bad(format!("messages[{i}].content[{j}] has no text"))),
                    (Some(other), _) => {
                        return Err(bad(format!(
                            "messages[{i}].content[{j}] is of type `{}`; only text parts are supported",
                            short(other)
                        )));
                    }
                    (None, _) => return Err(bad(format!("messages[{i}].content[{j}] has no type"))),
                }
            }
            Ok(texts.join("\n"))
        }
        None | Some(Value::Null) => Err(bad(format!("messages[{i}] has no content"))),
        Some(_) => Err(bad(format!(
            "messages[{i}].content must be a string or an array of text parts"
        ))),
    }
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

/// What an outcome cost, for the `creditgate` object and the headers.
fn billing(outcome: &AiOutcome) -> Result<wire::Billing, CompatError> {
    let wallet = outcome
        .wallet
        .as_ref()
        .ok_or_else(|| ApiError::internal(&"an AI result without a wallet"))?;
    Ok(wire::Billing {
        request_id: outcome.id.clone(),
        provider: outcome.provider.clone(),
        model: outcome.model.clone(),
        credits_charged: outcome.credits_charged.to_string(),
        balance: wallet.available().to_string(),
        billing_mode: outcome.billing_mode.as_str(),
    })
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A plain answer: one `chat.completion`, with the X-Creditgate headers.
fn answered(outcome: AiOutcome) -> Result<Response, CompatError> {
    let billing = billing(&outcome)?;
    let headers = [
        (CREDITS_CHARGED, billing.credits_charged.clone()),
        (BALANCE, billing.balance.clone()),
        (BILLING_MODE, billing.billing_mode.to_owned()),
    ];
    let completion = wire::Completion {
        id: format!("chatcmpl-{}", outcome.id),
        object: "chat.completion",
        created: now(),
        model: format!("{}/{}", outcome.provider, outcome.model),
        choices: [wire::Choice {
            index: 0,
            message: wire::OutMessage {
                role: "assistant",
                content: outcome.content,
                refusal: None,
                annotations: [],
            },
            logprobs: None,
            finish_reason: "stop",
        }],
        usage: wire::Usage::new(outcome.input_tokens, outcome.output_tokens),
        service_tier: "default",
        system_fingerprint: None,
        creditgate: billing,
    };
    let mut resp = json_response(StatusCode::OK, &completion);
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::try_from(value) {
            resp.headers_mut().insert(name, v);
        }
    }
    Ok(resp)
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body,
        )
            .into_response(),
        Err(e) => CompatError::from(ApiError::internal(&e)).into_response(),
    }
}
