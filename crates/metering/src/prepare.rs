//! A request validated, routed and priced, ready to hold and send.

use creditgate_domain::{AiFeature, BillingMode, check_id, check_key, max_prompt_tokens};
use creditgate_gateway::{ApiKey, Message, Role as MsgRole};
use creditgate_storage::fingerprint;

use crate::error::AiError;
use crate::routing::{RouteInput, route};
use crate::service::{AiService, short};
use crate::types::AiRequest;

/// Which key a request goes out with.
#[derive(Clone)]
pub(crate) enum KeySource {
    /// The platform's key: the request is paid with credits.
    Platform,
    /// The user's own key, as read with the routing decision (encrypted).
    User { ciphertext: String },
}

/// A request, routed and priced, ready to hold and send.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub(crate) feature: AiFeature,
    pub(crate) provider: String,
    pub(crate) model: String,
    pub(crate) mode: BillingMode,
    pub(crate) key: KeySource,
    pub(crate) messages: Vec<Message>,
    pub(crate) input_estimate: u64,
    pub(crate) output_budget: u32,
    pub(crate) min_output: u32,
    /// The request's fingerprint, kept with its hold to tell a retry from
    /// another request under the same idempotency key; only when it has one.
    pub(crate) request_hash: Option<String>,
    /// Who made the request for the paying user, if not themselves.
    pub(crate) actor: Option<String>,
}

impl Prepared {
    /// The same request through credits, with the platform's key (a BYOK
    /// fallback).
    pub(crate) fn through_credits(mut self) -> Prepared {
        self.mode = BillingMode::Credits;
        self.key = KeySource::Platform;
        self
    }
}

/// What identifies a request for idempotency: what the client sent, not
/// how it was routed (so a replay matches whatever changed since).
pub(crate) fn request_hash(req: &AiRequest) -> String {
    fingerprint(&[
        req.feature.as_str(),
        req.provider.as_deref().unwrap_or(""),
        req.model.as_deref().unwrap_or(""),
        &req.max_output_tokens.map(|n| n.to_string()).unwrap_or_default(),
        &serde_json::to_string(&req.messages).unwrap_or_default(),
    ])
}

impl AiService {
    /// The key a prepared request goes out with, decrypted only now, for
    /// its owner's request.
    pub(crate) fn api_key(&self, p: &Prepared) -> Result<ApiKey, AiError> {
        match &p.key {
            KeySource::Platform => Ok(ApiKey::Platform),
            KeySource::User { ciphertext } => self
                .0
                .vault
                .decrypt(ciphertext)
                .map(ApiKey::User)
                .map_err(|e| AiError::from_vault(e, &p.provider)),
        }
    }

    /// Checks what the client sent, without reading anything stored.
    pub(crate) fn check_request(&self, req: &AiRequest) -> Result<(), AiError> {
        let inner = &self.0;
        if req.messages.is_empty() {
            return Err(AiError::BadInput("messages must not be empty".into()));
        }
        if req.messages.len() > inner.max_messages {
            return Err(AiError::BadInput(format!("at most {} messages", inner.max_messages)));
        }
        let total: usize = req.messages.iter().map(|m| m.content.len()).sum();
        if total > inner.max_prompt_bytes {
            return Err(AiError::BadInput(format!(
                "messages are longer than {} bytes",
                inner.max_prompt_bytes
            )));
        }
        for m in &req.messages {
            creditgate_domain::check_text("content", &m.content)?;
        }
        if let Some(key) = &req.idempotency_key {
            check_key("idempotencyKey", key)?;
        }
        if let Some(p) = &req.provider {
            check_id("provider", p)?;
        }
        if let Some(m) = &req.model {
            check_id("model", m)?;
        }
        Ok(())
    }

    /// Validates, routes and prices a request, and picks its key, from one
    /// read of the user's keys.
    pub(crate) async fn prepare(&self, user_id: &str, req: &AiRequest) -> Result<Prepared, AiError> {
        let inner = &self.0;
        self.check_request(req)?;
        let feature = inner.pricing.feature(req.feature)?;
        let stored = inner.store.byok_routes(user_id).await?;
        let routes: Vec<_> = stored
            .iter()
            .filter(|k| inner.gateway.provider(&k.provider).is_some())
            .collect();
        let providers: Vec<String> = routes.iter().map(|k| k.provider.clone()).collect();
        let settings = if providers.len() > 1 {
            inner.store.ai_settings(user_id).await?
        } else {
            Default::default()
        };
        let r = route(RouteInput {
            default_provider: &feature.default_provider,
            provider: req.provider.as_deref(),
            model: req.model.as_deref(),
            user_keys: &providers,
            preferred: settings.preferred_provider.as_deref(),
        });
        let key = match r.mode {
            BillingMode::Credits => KeySource::Platform,
            BillingMode::Byok => {
                let ciphertext = routes
                    .into_iter()
                    .find(|k| k.provider == r.provider)
                    .map(|k| k.ciphertext.clone())
                    .ok_or_else(|| AiError::Internal("routing chose a key it was not given".into()))?;
                KeySource::User { ciphertext }
            }
        };
        self.complete(req, r.provider, r.model, r.mode, key)
    }

    fn complete(
        &self,
        req: &AiRequest,
        provider: String,
        model: Option<String>,
        mode: BillingMode,
        key: KeySource,
    ) -> Result<Prepared, AiError> {
        let inner = &self.0;
        let info = match inner.gateway.provider(&provider) {
            Some(info) => info,
            // Configured by the operator but not served here: not the
            // caller's mistake.
            None => match inner.gateway.not_served(&provider) {
                Some(reason) => {
                    return Err(AiError::Provider(format!(
                        "provider `{provider}` is configured but not available on this server: {reason}"
                    )));
                }
                None => return Err(AiError::BadInput(format!("unknown provider `{}`", short(&provider)))),
            },
        };
        let model = match model {
            Some(m) => m,
            None => inner
                .pricing
                .default_model(&provider, req.feature)
                .ok_or_else(|| AiError::BadInput(format!("provider `{provider}` has no priced model")))?,
        };
        let price = *inner.pricing.price(&provider, &model)?;
        let served = info.models.iter().find(|m| m.id == model).ok_or_else(|| {
            AiError::BadInput(format!(
                "provider `{provider}` does not serve model `{}`",
                short(&model)
            ))
        })?;
        let feature = inner.pricing.feature(req.feature)?;
        let model_cap = served
            .max_output_tokens
            .unwrap_or(u32::MAX)
            .min(price.max_output_tokens);
        let output_budget = match req.max_output_tokens {
            None => feature.default_output_tokens.min(model_cap),
            Some(n) if n < 1 => return Err(AiError::BadInput("maxOutputTokens must be at least 1".into())),
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX).min(model_cap),
        };
        let min_output = feature.min_output_tokens.min(output_budget);
        let mut messages = Vec::with_capacity(req.messages.len() + 1);
        if !feature.system_prompt.is_empty() {
            messages.push(Message {
                role: MsgRole::System,
                content: feature.system_prompt.clone(),
            });
        }
        for m in &req.messages {
            let role = match m.role.as_str() {
                "system" => MsgRole::System,
                "user" => MsgRole::User,
                "assistant" => MsgRole::Assistant,
                other => {
                    return Err(AiError::BadInput(format!(
                        "message role `{}` is not system, user or assistant",
                        short(other)
                    )));
                }
            };
            messages.push(Message {
                role,
                content: m.content.clone(),
            });
        }
        let input_estimate = max_prompt_tokens(messages.iter().map(|m| m.content.as_str()));
        if input_estimate + u64::from(min_output) > u64::from(served.context_window) {
            return Err(AiError::BadInput(format!(
                "the messages are too long for model `{model}` ({} tokens of context)",
                served.context_window
            )));
        }
        Ok(Prepared {
            feature: req.feature,
            provider,
            model,
            mode,
            key,
            messages,
            input_estimate,
            output_budget,
            min_output,
            request_hash: req.idempotency_key.as_ref().map(|_| request_hash(req)),
            actor: req.actor.clone(),
        })
    }
}
