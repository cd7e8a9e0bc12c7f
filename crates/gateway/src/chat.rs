//! The calling paths: chat, streamed chat and key validation, each
//! preparing the request, letting the plugin build it, sending it and
//! logging its outcome.

use std::sync::Arc;
use std::time::Instant;

use creditgate_provider_sdk::{ChatResponse as PluginChatResponse, HttpRequest, KeyPlacement, Transport};
use secrecy::SecretString;

use crate::classify::classified;
use crate::gateway::Entry;
use crate::http::{offline, read_body, send};
use crate::keys::Key;
use crate::redact::redact_error;
use crate::{ApiKey, ChatRequest, ChatStream, Gateway, KeySource, ProviderError, Usage, metrics, plugin_call, stream};

/// A non-streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatResponse {
    /// The answer.
    pub text: String,
    /// Token usage, when the provider reported it (charge the hold when not).
    pub usage: Option<Usage>,
    /// The model that answered (the provider's name, else the requested id).
    pub model: String,
}

impl Gateway {
    /// Sends a chat request and waits for the whole answer.
    pub async fn chat(
        &self,
        provider_id: &str,
        request: ChatRequest,
        key: ApiKey,
    ) -> Result<ChatResponse, ProviderError> {
        let entry = self.entry(provider_id)?;
        let (request, key) = prepare(entry, request, key, false)?;
        let started = Instant::now();
        let result = async {
            let built = build_chat(entry, &request).await?;
            let (status, body) = match entry.manifest.transport {
                Transport::Offline => offline(entry, built, &key).await?,
                Transport::Http => {
                    let response = send(entry, built, &key, Some(entry.timeouts.total)).await?;
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    let body = read_body(entry, response).await?;
                    if !(200..300).contains(&status) {
                        return Err(classified(entry, status, &headers, body, &key).await);
                    }
                    (status, body)
                }
            };
            if !(200..300).contains(&status) {
                return Err(classified(entry, status, &reqwest::header::HeaderMap::new(), body, &key).await);
            }
            let parsed: PluginChatResponse =
                plugin_call::call(entry, "parse_chat_response", move |p| p.parse_chat_response(&body)).await?;
            Ok(ChatResponse {
                text: parsed.text,
                usage: parsed.usage,
                model: parsed.model.unwrap_or_else(|| request.model.clone()),
            })
        }
        .await;
        log_outcome(entry, "chat", &request.model, started, result.as_ref().err());
        result.map_err(|e| redact_error(e, key.secret()))
    }

    /// Sends a streamed chat request. The returned stream yields text deltas
    /// then [`StreamEvent::Finished`]; its [`ChatStream::meter`] keeps what was
    /// seen even after an error or after the stream is dropped (dropping it
    /// drops the upstream connection).
    ///
    /// [`StreamEvent::Finished`]: crate::StreamEvent::Finished
    pub async fn chat_stream(
        &self,
        provider_id: &str,
        request: ChatRequest,
        key: ApiKey,
    ) -> Result<ChatStream, ProviderError> {
        let entry = self.entry(provider_id)?;
        if !entry.manifest.supports_streaming() {
            return Err(ProviderError::StreamingUnsupported {
                provider: entry.id.clone(),
            });
        }
        let (request, key) = prepare(entry, request, key, true)?;
        let started = Instant::now();
        let result = async {
            let built = build_chat(entry, &request).await?;
            let source: stream::ByteSource = match entry.manifest.transport {
                Transport::Offline => {
                    let (status, body) = offline(entry, built, &key).await?;
                    if !(200..300).contains(&status) {
                        return Err(classified(entry, status, &reqwest::header::HeaderMap::new(), body, &key).await);
                    }
                    Box::pin(futures::stream::once(async move { Ok(bytes::Bytes::from(body)) }))
                }
                Transport::Http => {
                    let response = send(entry, built, &key, None).await?;
                    let status = response.status().as_u16();
                    if !(200..300).contains(&status) {
                        let headers = response.headers().clone();
                        let body = read_body(entry, response).await?;
                        return Err(classified(entry, status, &headers, body, &key).await);
                    }
                    stream::http_source(entry.id.clone(), response)
                }
            };
            Ok(ChatStream::new(
                Arc::clone(entry),
                source,
                request.model.clone(),
                key.clone(),
            ))
        }
        .await;
        log_outcome(entry, "chat_stream", &request.model, started, result.as_ref().err());
        result.map_err(|e| redact_error(e, key.secret()))
    }

    /// Checks a user's key with the provider: `Ok` when it works,
    /// [`ProviderError::KeyRejected`] when the provider refuses it, another
    /// error when the provider could not say.
    pub async fn validate_key(&self, provider_id: &str, key: &SecretString) -> Result<(), ProviderError> {
        let entry = self.entry(provider_id)?;
        let key = Key {
            secret: match entry.manifest.key {
                KeyPlacement::None => None,
                _ => Some(key.clone()),
            },
            source: KeySource::User,
        };
        let started = Instant::now();
        let result = async {
            let ctx = entry.ctx.clone();
            let built = plugin_call::call(entry, "build_validate_key_request", move |p| {
                p.build_validate_key_request(&ctx)
            })
            .await?;
            let (status, headers, body) = match entry.manifest.transport {
                Transport::Offline => {
                    let (status, body) = offline(entry, built, &key).await?;
                    (status, reqwest::header::HeaderMap::new(), body)
                }
                Transport::Http => {
                    let response = send(entry, built, &key, Some(entry.timeouts.total)).await?;
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    (status, headers, read_body(entry, response).await?)
                }
            };
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(classified(entry, status, &headers, body, &key).await)
            }
        }
        .await;
        log_outcome(entry, "validate_key", "", started, result.as_ref().err());
        result.map_err(|e| redact_error(e, key.secret()))
    }
}

fn log_outcome(entry: &Entry, op: &'static str, model: &str, started: Instant, error: Option<&ProviderError>) {
    metrics::record_call(&entry.id, op, started.elapsed(), error);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match error {
        None => tracing::debug!(provider = %entry.id, op, model, elapsed_ms, "provider call done"),
        // Messages are redacted by the caller before they leave; here only
        // the error class is logged, never a message that might carry a key.
        Some(err) => {
            tracing::info!(provider = %entry.id, op, model, elapsed_ms, kind = ?err.kind(), "provider call failed")
        }
    }
}

/// Checks the model and output cap and resolves the key.
fn prepare(
    entry: &Entry,
    mut request: ChatRequest,
    key: ApiKey,
    stream: bool,
) -> Result<(ChatRequest, Key), ProviderError> {
    let Some(model) = entry.models.iter().find(|m| m.id == request.model) else {
        return Err(ProviderError::UnknownModel {
            provider: entry.id.clone(),
            model: request.model,
        });
    };
    if request.max_output_tokens == 0 {
        return Err(ProviderError::BadRequest {
            provider: entry.id.clone(),
            status: 0,
            message: "the output cap must be at least one token".into(),
        });
    }
    if let Some(max) = model.max_output_tokens {
        request.max_output_tokens = request.max_output_tokens.min(max);
    }
    request.stream = stream;
    let source = match key {
        ApiKey::Platform => KeySource::Platform,
        ApiKey::User(_) => KeySource::User,
    };
    let secret = match (&entry.manifest.key, key) {
        (KeyPlacement::None, _) => None,
        (_, ApiKey::User(key)) => Some(key),
        (_, ApiKey::Platform) => Some(
            entry
                .platform_key
                .clone()
                .ok_or_else(|| ProviderError::PlatformKeyMissing {
                    provider: entry.id.clone(),
                })?,
        ),
    };
    let key = Key { secret, source };
    Ok((request, key))
}

/// The plugin builds the provider request (on the blocking pool).
async fn build_chat(entry: &Entry, request: &ChatRequest) -> Result<HttpRequest, ProviderError> {
    let ctx = entry.ctx.clone();
    let request = request.clone();
    plugin_call::call(entry, "build_chat_request", move |p| {
        p.build_chat_request(&ctx, &request)
    })
    .await
}
