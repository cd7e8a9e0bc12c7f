//! Metered AI requests: estimate and hold, call, settle or release, log.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use creditgate_domain::{
    AiFeature, AiRequestStatus, BillingMode, Credits, HoldStatus, PricingError, PricingTable, approx_tokens,
    max_prompt_tokens,
};
use creditgate_gateway::{
    ApiKey, ChatRequest, ErrorKind, Gateway, Message, ProviderError, Role as MsgRole, StreamEvent, StreamMeter,
};
use creditgate_storage::{ByokKeyRecord, HoldRequest, Placement, Store, StoreError, UsageDetails, Wallet, fingerprint};
use futures::StreamExt;
use futures::stream::BoxStream;
use governor::{DefaultKeyedRateLimiter, Quota};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::AiConfig;
use crate::routing::{RouteInput, route};
use crate::vault::{KeyVault, VaultError, hint};

/// Why an AI request failed; each maps to one API code.
#[derive(Debug, thiserror::Error)]
pub enum AiError {
    #[error("{0}")]
    BadInput(String),
    #[error("insufficient credits: {needed} needed for the shortest useful answer, {available} available")]
    InsufficientCredits { needed: Credits, available: Credits },
    #[error("this idempotency key was already used for a different request")]
    IdempotencyConflict,
    #[error("{0}")]
    KeyInvalid(String),
    #[error("{0}")]
    Provider(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    RateLimited(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl From<PricingError> for AiError {
    fn from(e: PricingError) -> Self {
        match e {
            PricingError::UnknownModel { .. } => AiError::BadInput(e.to_string()),
            _ => AiError::Internal(e.to_string()),
        }
    }
}

impl From<VaultError> for AiError {
    fn from(e: VaultError) -> Self {
        AiError::Internal(e.to_string())
    }
}

fn provider_error(e: &ProviderError) -> AiError {
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::KeyInvalid => AiError::KeyInvalid(msg),
        ErrorKind::RateLimited => AiError::RateLimited(msg),
        ErrorKind::Unavailable => AiError::Unavailable(msg),
        ErrorKind::ProviderError => AiError::Provider(msg),
        ErrorKind::UnknownProviderOrModel => AiError::BadInput(msg),
    }
}

/// One message of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AiMessage {
    /// system, user or assistant
    pub role: String,
    pub content: String,
}

/// An AI request as the API receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiRequest {
    pub feature: AiFeature,
    pub messages: Vec<AiMessage>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub max_output_tokens: Option<i64>,
    pub idempotency_key: Option<String>,
}

/// The result of a request (also kept with its hold for idempotent retries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiOutcome {
    pub id: String,
    pub content: String,
    pub billing_mode: BillingMode,
    pub provider: String,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub credits_charged: Credits,
    #[serde(skip)]
    pub wallet: Option<Wallet>,
}

/// What a request would hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    pub max_credits: Credits,
    pub billing_mode: BillingMode,
}

/// One item of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    Delta(String),
    Done(Box<AiOutcome>),
}

/// A feature as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureInfo {
    pub feature: AiFeature,
    pub description: String,
    pub default_provider: String,
    pub default_model: String,
}

/// A request, routed and priced, ready to hold and send.
struct Prepared {
    feature: AiFeature,
    provider: String,
    model: String,
    mode: BillingMode,
    key: ApiKey,
    messages: Vec<Message>,
    input_estimate: u64,
    output_budget: u32,
    min_output: u32,
    request_hash: String,
}

struct Inner {
    store: Store,
    gateway: Arc<Gateway>,
    pricing: PricingTable,
    vault: KeyVault,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    max_prompt_bytes: usize,
    max_messages: usize,
}

/// The metered AI service. Cheap to clone.
#[derive(Clone)]
pub struct AiService(Arc<Inner>);

impl std::fmt::Debug for AiService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AiService")
            .field("pricing", &self.0.pricing.version())
            .finish_non_exhaustive()
    }
}

const MAX_KEY_LEN: usize = 200;
const MAX_API_KEY_LEN: usize = 512;
/// How long a retry waits for the first request with its key to finish.
const REPLAY_WAIT: Duration = Duration::from_secs(30);

impl AiService {
    pub fn new(store: Store, gateway: Arc<Gateway>, pricing: PricingTable, vault: KeyVault, config: &AiConfig) -> Self {
        let limiter = NonZeroU32::new(config.requests_per_minute).map(|rpm| {
            let burst = NonZeroU32::new(config.burst.max(1)).unwrap_or(NonZeroU32::MIN);
            DefaultKeyedRateLimiter::keyed(Quota::per_minute(rpm).allow_burst(burst))
        });
        AiService(Arc::new(Inner {
            store,
            gateway,
            pricing,
            vault,
            limiter,
            max_prompt_bytes: config.max_prompt_bytes,
            max_messages: config.max_messages,
        }))
    }

    pub fn gateway(&self) -> &Gateway {
        &self.0.gateway
    }

    pub fn pricing(&self) -> &PricingTable {
        &self.0.pricing
    }

    pub fn features(&self) -> Vec<FeatureInfo> {
        AiFeature::ALL
            .iter()
            .filter_map(|f| {
                self.0.pricing.feature(*f).ok().map(|p| FeatureInfo {
                    feature: *f,
                    description: p.description.clone(),
                    default_provider: p.default_provider.clone(),
                    default_model: p.default_model.clone(),
                })
            })
            .collect()
    }

    // ------------------------------------------------------------ BYOK keys

    /// Validates a key with its provider, then stores it encrypted.
    pub async fn set_key(&self, user_id: &str, provider: &str, api_key: &str) -> Result<ByokKeyRecord, AiError> {
        let api_key = api_key.trim();
        if api_key.is_empty() || api_key.len() > MAX_API_KEY_LEN || api_key.chars().any(char::is_control) {
            return Err(AiError::BadInput(format!(
                "apiKey must have 1 to {MAX_API_KEY_LEN} printable characters"
            )));
        }
        if self.0.gateway.provider(provider).is_none() {
            return Err(AiError::BadInput(format!("unknown provider `{}`", short(provider))));
        }
        let secret = SecretString::from(api_key.to_owned());
        match self.0.gateway.validate_key(provider, &secret).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::KeyInvalid => {
                return Err(AiError::KeyInvalid(format!("{provider} refused this key")));
            }
            Err(e) => return Err(provider_error(&e)),
        }
        let ciphertext = self.0.vault.encrypt(&secret)?;
        Ok(self
            .0
            .store
            .put_byok_key(user_id, provider, ciphertext, hint(api_key))
            .await?)
    }

    pub async fn remove_key(&self, user_id: &str, provider: &str) -> Result<bool, AiError> {
        Ok(self.0.store.remove_byok_key(user_id, provider).await?)
    }

    pub async fn keys(&self, user_id: &str) -> Result<Vec<ByokKeyRecord>, AiError> {
        Ok(self.0.store.byok_keys(user_id).await?)
    }

    /// How the user's AI requests are paid for by default.
    pub async fn billing_mode(&self, user_id: &str) -> Result<BillingMode, AiError> {
        let keys = self.0.store.byok_keys(user_id).await?;
        Ok(if keys.iter().any(|k| self.0.gateway.provider(&k.provider).is_some()) {
            BillingMode::Byok
        } else {
            BillingMode::Credits
        })
    }

    // -------------------------------------------------------------- running

    /// What a request would hold, and who would pay.
    pub async fn estimate(&self, user_id: &str, req: &AiRequest) -> Result<Estimate, AiError> {
        let p = self.prepare(user_id, req).await?;
        let max_credits = self.0.pricing.cost(
            p.feature,
            &p.provider,
            &p.model,
            p.input_estimate,
            u64::from(p.output_budget),
        )?;
        Ok(Estimate {
            max_credits,
            billing_mode: p.mode,
        })
    }

    /// Runs a request to its end: hold, call, settle (or release), log.
    pub async fn run(&self, user_id: &str, req: &AiRequest) -> Result<AiOutcome, AiError> {
        self.check_rate(user_id)?;
        let prepared = self.prepare(user_id, req).await?;
        match self.run_prepared(user_id, req, prepared).await {
            Err(Fallback(prepared, err)) => {
                // The user's key failed and they allow credits to take over.
                tracing::info!(user_id, provider = %prepared.provider, "BYOK request failed; falling back to credits");
                let credits = credits_route(prepared);
                match self.run_prepared(user_id, req, credits).await {
                    Ok(outcome) => Ok(outcome),
                    Err(Fallback(_, _)) => Err(err),
                    Err(Failed(e)) => Err(e),
                }
            }
            Err(Failed(e)) => Err(e),
            Ok(outcome) => Ok(outcome),
        }
    }

    async fn run_prepared(&self, user_id: &str, req: &AiRequest, p: Prepared) -> Result<AiOutcome, RunError> {
        let (hold_id, output_cap, held) = match self.hold(user_id, req, &p).await.map_err(Failed)? {
            Held::New(hold, cap, held) => (hold, cap, held),
            Held::Replay(outcome) => return Ok(*outcome),
        };
        let chat = ChatRequest {
            model: p.model.clone(),
            messages: p.messages.clone(),
            max_output_tokens: output_cap,
            stream: false,
        };
        match self.0.gateway.chat(&p.provider, chat, p.key.clone()).await {
            Ok(resp) => {
                let (input, output, reported) = match resp.usage {
                    Some(u) => (u.input_tokens, u.output_tokens, true),
                    None => (p.input_estimate, u64::from(output_cap), false),
                };
                self.settle(
                    user_id,
                    &hold_id,
                    held,
                    &p,
                    input,
                    output,
                    resp.text,
                    AiRequestStatus::Succeeded,
                    reported,
                )
                .await
                .map_err(Failed)
            }
            Err(e) => {
                let err = provider_error(&e);
                tracing::warn!(user_id, provider = %p.provider, error = %e, "AI request failed");
                self.record_failure(user_id, &hold_id, &p, &err).await.map_err(Failed)?;
                if p.mode == BillingMode::Byok && self.fallback_allowed(user_id, &err).await {
                    return Err(Fallback(p, err));
                }
                Err(Failed(err))
            }
        }
    }

    /// Runs a request and streams its answer: text deltas, then the result.
    /// Dropping the stream cancels the upstream call; what was produced
    /// until then is charged (CANCELLED).
    pub async fn run_stream(
        &self,
        user_id: &str,
        req: &AiRequest,
    ) -> Result<BoxStream<'static, Result<StreamItem, AiError>>, AiError> {
        self.check_rate(user_id)?;
        let p = self.prepare(user_id, req).await?;
        let (hold_id, output_cap, held) = match self.hold(user_id, req, &p).await? {
            Held::New(h, cap, held) => (h, cap, held),
            Held::Replay(outcome) => {
                return Ok(futures::stream::once(async move { Ok(StreamItem::Done(outcome)) }).boxed());
            }
        };
        let chat = ChatRequest {
            model: p.model.clone(),
            messages: p.messages.clone(),
            max_output_tokens: output_cap,
            stream: true,
        };
        let upstream = match self.0.gateway.chat_stream(&p.provider, chat, p.key.clone()).await {
            Ok(s) => s,
            Err(e) => {
                let err = provider_error(&e);
                self.record_failure(user_id, &hold_id, &p, &err).await?;
                return Err(err);
            }
        };
        let guard = StreamGuard {
            service: self.clone(),
            user_id: user_id.to_owned(),
            hold_id,
            held,
            meter: upstream.meter(),
            prepared: Some(p),
            output_cap,
        };
        let state = (upstream, guard);
        Ok(futures::stream::unfold(Some(state), |state| async move {
            let (mut upstream, mut guard) = state?;
            match upstream.next().await {
                Some(Ok(StreamEvent::TextDelta(text))) => Some((Ok(StreamItem::Delta(text)), Some((upstream, guard)))),
                Some(Ok(StreamEvent::Finished { usage, .. })) => {
                    let p = guard.prepared.take()?;
                    let snap = guard.meter.snapshot();
                    let (input, output, reported) = match usage {
                        Some(u) => (u.input_tokens, u.output_tokens, true),
                        None => (p.input_estimate, u64::from(guard.output_cap), false),
                    };
                    let done = guard
                        .service
                        .settle(
                            &guard.user_id,
                            &guard.hold_id,
                            guard.held,
                            &p,
                            input,
                            output,
                            snap.text,
                            AiRequestStatus::Succeeded,
                            reported,
                        )
                        .await
                        .map(|o| StreamItem::Done(Box::new(o)));
                    Some((done, None))
                }
                Some(Err(e)) => {
                    let p = guard.prepared.take()?;
                    let err = provider_error(&e);
                    let snap = guard.meter.snapshot();
                    // A stream cut off midway: what it produced is charged.
                    let result = if snap.text.is_empty() {
                        guard
                            .service
                            .record_failure(&guard.user_id, &guard.hold_id, &p, &err)
                            .await
                            .map(|_| ())
                    } else {
                        guard
                            .service
                            .settle_partial(
                                &guard.user_id,
                                &guard.hold_id,
                                guard.held,
                                &p,
                                &snap,
                                AiRequestStatus::Failed,
                            )
                            .await
                            .map(|_| ())
                    };
                    if let Err(store_err) = result {
                        tracing::error!(error = %store_err, "could not settle a failed stream");
                    }
                    Some((Err(err), None))
                }
                None => {
                    let p = guard.prepared.take()?;
                    let snap = guard.meter.snapshot();
                    let done = guard
                        .service
                        .settle_partial(
                            &guard.user_id,
                            &guard.hold_id,
                            guard.held,
                            &p,
                            &snap,
                            AiRequestStatus::Failed,
                        )
                        .await;
                    Some((
                        done.and(Err(AiError::Unavailable("the provider ended the stream early".into()))),
                        None,
                    ))
                }
            }
        })
        .boxed())
    }

    // ------------------------------------------------------------ internals

    fn check_rate(&self, user_id: &str) -> Result<(), AiError> {
        if let Some(l) = &self.0.limiter
            && l.check_key(&user_id.to_owned()).is_err()
        {
            return Err(AiError::RateLimited(
                "too many AI requests; slow down and retry shortly".into(),
            ));
        }
        Ok(())
    }

    async fn fallback_allowed(&self, user_id: &str, err: &AiError) -> bool {
        if !matches!(
            err,
            AiError::KeyInvalid(_) | AiError::Provider(_) | AiError::Unavailable(_) | AiError::RateLimited(_)
        ) {
            return false;
        }
        self.0
            .store
            .ai_settings(user_id)
            .await
            .map(|s| s.fallback_to_credits)
            .unwrap_or(false)
    }

    /// Validates, routes and prices a request, and picks its key.
    async fn prepare(&self, user_id: &str, req: &AiRequest) -> Result<Prepared, AiError> {
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
        if let Some(key) = &req.idempotency_key
            && (key.trim().is_empty() || key.len() > MAX_KEY_LEN)
        {
            return Err(AiError::BadInput(format!(
                "idempotencyKey must have 1 to {MAX_KEY_LEN} characters"
            )));
        }
        let feature = inner.pricing.feature(req.feature)?;
        let keys: Vec<String> = inner
            .store
            .byok_keys(user_id)
            .await?
            .into_iter()
            .map(|k| k.provider)
            .filter(|p| inner.gateway.provider(p).is_some())
            .collect();
        let settings = if keys.len() > 1 {
            inner.store.ai_settings(user_id).await?
        } else {
            Default::default()
        };
        let r = route(RouteInput {
            default_provider: &feature.default_provider,
            provider: req.provider.as_deref(),
            model: req.model.as_deref(),
            user_keys: &keys,
            preferred: settings.preferred_provider.as_deref(),
        });
        self.complete(user_id, req, r.provider, r.model, r.mode).await
    }

    async fn complete(
        &self,
        user_id: &str,
        req: &AiRequest,
        provider: String,
        model: Option<String>,
        mode: BillingMode,
    ) -> Result<Prepared, AiError> {
        let inner = &self.0;
        let info = inner
            .gateway
            .provider(&provider)
            .ok_or_else(|| AiError::BadInput(format!("unknown provider `{}`", short(&provider))))?;
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
        let key = match mode {
            BillingMode::Credits => ApiKey::Platform,
            BillingMode::Byok => {
                let stored = inner
                    .store
                    .byok_ciphertext(user_id, &provider)
                    .await?
                    .ok_or_else(|| AiError::Internal("the routed key vanished".into()))?;
                ApiKey::User(inner.vault.decrypt(&stored)?)
            }
        };
        let request_hash = fingerprint(&[
            req.feature.as_str(),
            req.provider.as_deref().unwrap_or(""),
            req.model.as_deref().unwrap_or(""),
            &req.max_output_tokens.map(|n| n.to_string()).unwrap_or_default(),
            &serde_json::to_string(&req.messages).unwrap_or_default(),
        ]);
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
            request_hash,
        })
    }

    /// Holds the most the request can cost (0 for BYOK), capping its output
    /// to what the wallet affords. A retry of a finished request replays it.
    async fn hold(&self, user_id: &str, req: &AiRequest, p: &Prepared) -> Result<Held, AiError> {
        let pricing = &self.0.pricing;
        let (amount, minimum) = match p.mode {
            BillingMode::Byok => (Credits::ZERO, None),
            BillingMode::Credits => (
                pricing.cost(
                    p.feature,
                    &p.provider,
                    &p.model,
                    p.input_estimate,
                    u64::from(p.output_budget),
                )?,
                Some(pricing.cost(
                    p.feature,
                    &p.provider,
                    &p.model,
                    p.input_estimate,
                    u64::from(p.min_output),
                )?),
            ),
        };
        let details = UsageDetails {
            feature: Some(p.feature),
            billing_mode: Some(p.mode),
            status: None,
            provider: Some(p.provider.clone()),
            model: Some(p.model.clone()),
            pricing_version: Some(pricing.version().to_owned()),
            ..UsageDetails::default()
        };
        let request = HoldRequest {
            amount,
            minimum,
            idempotency_key: req.idempotency_key.clone(),
            request_hash: Some(p.request_hash.clone()),
            details: Some(details),
            ttl: None,
        };
        let started = tokio::time::Instant::now();
        loop {
            let placed = match self.0.store.place_hold(user_id, &request).await {
                Ok(p) => p,
                Err(StoreError::InsufficientCredits { requested, available }) => {
                    return Err(AiError::InsufficientCredits {
                        needed: requested,
                        available,
                    });
                }
                Err(StoreError::IdempotencyConflict) => return Err(AiError::IdempotencyConflict),
                Err(e) => return Err(e.into()),
            };
            match placed {
                Placement::Placed { hold, .. } => {
                    let cap = if hold.amount >= amount {
                        p.output_budget
                    } else {
                        pricing.affordable_output_tokens(
                            p.feature,
                            &p.provider,
                            &p.model,
                            p.input_estimate,
                            hold.amount,
                            p.output_budget,
                        )?
                    };
                    return Ok(Held::New(hold.id, cap.max(1), hold.amount));
                }
                Placement::Existing {
                    status: HoldStatus::Settled,
                    result: Some(result),
                    hold,
                    ..
                } => {
                    let mut outcome: AiOutcome = serde_json::from_str(&result)
                        .map_err(|e| AiError::Internal(format!("stored result of hold {}: {e}", hold.id)))?;
                    outcome.wallet = Some(self.0.store.wallet(user_id).await?);
                    return Ok(Held::Replay(Box::new(outcome)));
                }
                Placement::Existing {
                    status: HoldStatus::Open,
                    ..
                } if started.elapsed() < REPLAY_WAIT => {
                    // The first request with this key is still running.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Placement::Existing { .. } => {
                    return Err(AiError::Unavailable(
                        "a request with this idempotency key has not finished; retry later".into(),
                    ));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn settle(
        &self,
        user_id: &str,
        hold_id: &str,
        held: Credits,
        p: &Prepared,
        input_tokens: u64,
        output_tokens: u64,
        content: String,
        status: AiRequestStatus,
        usage_reported: bool,
    ) -> Result<AiOutcome, AiError> {
        let cost = self
            .0
            .pricing
            .cost(p.feature, &p.provider, &p.model, input_tokens, output_tokens)?;
        let (charge, avoided) = match p.mode {
            BillingMode::Credits => (cost, Credits::ZERO),
            BillingMode::Byok => (Credits::ZERO, cost),
        };
        let usage = UsageDetails {
            feature: Some(p.feature),
            billing_mode: Some(p.mode),
            status: Some(status),
            provider: Some(p.provider.clone()),
            model: Some(p.model.clone()),
            input_tokens: Some(i64::try_from(input_tokens).unwrap_or(i64::MAX)),
            output_tokens: Some(i64::try_from(output_tokens).unwrap_or(i64::MAX)),
            pricing_version: Some(self.0.pricing.version().to_owned()),
            credits_avoided: avoided,
            description: (!usage_reported).then(|| "The provider reported no usage; charged the hold".to_owned()),
            ..UsageDetails::default()
        };
        // Without reported usage, charge the whole hold (never more).
        let charge = if usage_reported || p.mode == BillingMode::Byok {
            charge
        } else {
            held
        };
        let mut outcome = AiOutcome {
            id: hold_id.to_owned(),
            content,
            billing_mode: p.mode,
            provider: p.provider.clone(),
            model: p.model.clone(),
            input_tokens,
            output_tokens,
            credits_charged: charge.min(held),
            wallet: None,
        };
        let result = serde_json::to_string(&outcome).map_err(|e| AiError::Internal(e.to_string()))?;
        let res = self
            .0
            .store
            .settle_hold_with_result(user_id, hold_id, charge, usage, result)
            .await?;
        debug_assert_eq!(res.charged, outcome.credits_charged);
        outcome.credits_charged = res.charged;
        outcome.wallet = Some(res.wallet);
        if p.mode == BillingMode::Byok
            && let Err(e) = self.0.store.touch_byok_key(user_id, &p.provider).await
        {
            tracing::warn!(error = %e, "could not record the key's last use");
        }
        Ok(outcome)
    }

    /// Settles a stream that ended before its usage: what it produced.
    async fn settle_partial(
        &self,
        user_id: &str,
        hold_id: &str,
        held: Credits,
        p: &Prepared,
        snap: &creditgate_gateway::StreamSnapshot,
        status: AiRequestStatus,
    ) -> Result<AiOutcome, AiError> {
        let input = snap
            .input_tokens
            .unwrap_or_else(|| p.messages.iter().map(|m| approx_tokens(&m.content)).sum::<u64>());
        let output = snap.output_tokens.unwrap_or_else(|| approx_tokens(&snap.text));
        self.settle(
            user_id,
            hold_id,
            held,
            p,
            input,
            output,
            snap.text.clone(),
            status,
            true,
        )
        .await
    }

    async fn record_failure(&self, user_id: &str, hold_id: &str, p: &Prepared, err: &AiError) -> Result<(), AiError> {
        let usage = UsageDetails {
            feature: Some(p.feature),
            billing_mode: Some(p.mode),
            status: Some(AiRequestStatus::Failed),
            provider: Some(p.provider.clone()),
            model: Some(p.model.clone()),
            pricing_version: Some(self.0.pricing.version().to_owned()),
            description: Some(failure_description(err)),
            ..UsageDetails::default()
        };
        self.0.store.release_failed_hold(user_id, hold_id, usage).await?;
        Ok(())
    }
}

/// The same request through credits, with the platform's key (a BYOK fallback).
fn credits_route(mut p: Prepared) -> Prepared {
    p.mode = BillingMode::Credits;
    p.key = ApiKey::Platform;
    p
}

fn failure_description(err: &AiError) -> String {
    let what = match err {
        AiError::KeyInvalid(_) => "the provider refused the key",
        AiError::RateLimited(_) => "the provider is rate limiting",
        AiError::Unavailable(_) => "the provider is unavailable",
        _ => "the provider returned an error",
    };
    format!("Failed: {what}; nothing was charged")
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

enum Held {
    /// hold id, output cap, amount held
    New(String, u32, Credits),
    Replay(Box<AiOutcome>),
}

enum RunError {
    Failed(AiError),
    Fallback(Prepared, AiError),
}
use RunError::{Failed, Fallback};

/// Settles a stream that its subscriber dropped: the upstream connection
/// closes with the stream, and what it produced is charged (CANCELLED).
struct StreamGuard {
    service: AiService,
    user_id: String,
    hold_id: String,
    held: Credits,
    meter: StreamMeter,
    prepared: Option<Prepared>,
    output_cap: u32,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let Some(p) = self.prepared.take() else { return };
        let service = self.service.clone();
        let user_id = std::mem::take(&mut self.user_id);
        let hold_id = std::mem::take(&mut self.hold_id);
        let meter = self.meter.clone();
        let held = self.held;
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                hold_id,
                "stream dropped outside a runtime; the sweep will release its hold"
            );
            return;
        };
        handle.spawn(async move {
            let snap = meter.snapshot();
            let res = if snap.text.is_empty() && snap.output_tokens.unwrap_or(0) == 0 {
                let usage = UsageDetails {
                    feature: Some(p.feature),
                    billing_mode: Some(p.mode),
                    status: Some(AiRequestStatus::Cancelled),
                    provider: Some(p.provider.clone()),
                    model: Some(p.model.clone()),
                    pricing_version: Some(service.0.pricing.version().to_owned()),
                    description: Some("Cancelled before any output; nothing was charged".into()),
                    ..UsageDetails::default()
                };
                service
                    .0
                    .store
                    .release_failed_hold(&user_id, &hold_id, usage)
                    .await
                    .map(|_| ())
                    .map_err(AiError::from)
            } else {
                service
                    .settle_partial(&user_id, &hold_id, held, &p, &snap, AiRequestStatus::Cancelled)
                    .await
                    .map(|_| ())
            };
            if let Err(e) = res {
                tracing::error!(hold_id, error = %e, "could not settle a cancelled stream; the sweep will release it");
            }
        });
    }
}
