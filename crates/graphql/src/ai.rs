//! Metered AI: providers, features, BYOK keys, estimates, runAi and aiStream.

use async_graphql::{Context, InputObject, Object, SimpleObject, Subscription};
use creditgate_metering::{AiMessage, AiOutcome, AiRequest, AiService, StreamItem};
use creditgate_storage::{AiSettings as StoredSettings, ByokKeyRecord};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::context::{caller_user, identity, services};
use crate::error::{ApiError, ApiResult};
use crate::scalars::CreditsScalar;
use crate::types::{AiFeature, BillingMode, Wallet};

fn ai<'a>(ctx: &Context<'a>) -> ApiResult<&'a AiService> {
    ctx.data_opt::<AiService>()
        .ok_or_else(|| ApiError::internal(&"the AI service is not configured on this server"))
}

#[derive(SimpleObject, Clone, Debug)]
pub struct Provider {
    pub id: String,
    pub name: String,
    pub version: String,
    pub models: Vec<String>,
    pub supports_streaming: bool,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct ByokKey {
    pub provider: String,
    /// A few characters of the key, enough to recognise it, never the key.
    pub hint: String,
    pub created_at: crate::scalars::Timestamp,
    pub last_used_at: Option<crate::scalars::Timestamp>,
}

impl From<ByokKeyRecord> for ByokKey {
    fn from(k: ByokKeyRecord) -> Self {
        ByokKey {
            provider: k.provider,
            hint: k.hint,
            created_at: k.created_at.into(),
            last_used_at: k.last_used_at.map(Into::into),
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct AiFeatureInfo {
    pub feature: AiFeature,
    pub description: String,
    pub default_provider: String,
    pub default_model: String,
}

/// How the caller's BYOK keys are used.
#[derive(SimpleObject, Clone, Debug)]
pub struct AiSettings {
    /// The provider whose key serves features whose default provider the
    /// user has no key for, when they have several keys.
    pub preferred_provider: Option<String>,
    /// Whether a failing BYOK request may fall back to credits (off by default).
    pub fallback_to_credits: bool,
}

impl From<StoredSettings> for AiSettings {
    fn from(s: StoredSettings) -> Self {
        AiSettings {
            preferred_provider: s.preferred_provider,
            fallback_to_credits: s.fallback_to_credits,
        }
    }
}

#[derive(InputObject, Clone, Debug)]
pub struct AiMessageInput {
    /// system, user or assistant
    pub role: String,
    pub content: String,
}

#[derive(InputObject, Clone, Debug)]
pub struct AiRequestInput {
    pub feature: AiFeature,
    pub messages: Vec<AiMessageInput>,
    /// A provider id; the feature's default when absent.
    pub provider: Option<String>,
    /// A model of that provider; the feature's default when absent.
    pub model: Option<String>,
    pub max_output_tokens: Option<i32>,
    /// The same key never charges twice; a retry returns the first result.
    pub idempotency_key: Option<String>,
    /// SERVICE only: the user who pays and whose keys serve; the caller otherwise.
    pub user_id: Option<async_graphql::ID>,
}

impl From<AiRequestInput> for AiRequest {
    fn from(i: AiRequestInput) -> Self {
        AiRequest {
            feature: i.feature.into(),
            messages: i
                .messages
                .into_iter()
                .map(|m| AiMessage {
                    role: m.role,
                    content: m.content,
                })
                .collect(),
            provider: i.provider,
            model: i.model,
            max_output_tokens: i.max_output_tokens.map(i64::from),
            idempotency_key: i.idempotency_key,
            actor: None,
        }
    }
}

/// Who pays for a request (the caller, or with a SERVICE token the user it
/// names), as a request ready for metering: the entry records the service
/// as its actor. Any other role naming another user is FORBIDDEN.
async fn payer(ctx: &Context<'_>, input: AiRequestInput) -> ApiResult<(String, AiRequest)> {
    let who = identity(ctx)?;
    let target = input.user_id.clone();
    let mut req = AiRequest::from(input);
    if who.role == creditgate_domain::Role::Service {
        // A service has no wallet: it always names the user who pays.
        let id = target.ok_or_else(|| ApiError::bad_input("a SERVICE token must name the user who pays (userId)"))?;
        creditgate_domain::check_id("userId", &id)?;
        let user = services(ctx)
            .store
            .user(&id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("user `{}` not found", id.as_str())))?;
        req.actor = Some(who.user_id.clone());
        return Ok((user.id, req));
    }
    let caller = caller_user(ctx).await?;
    match target {
        Some(id) if id.as_str() != caller.id => Err(ApiError::forbidden(
            "only a SERVICE token may run a request for another user (userId)",
        )),
        _ => Ok((caller.id, req)),
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct AiResult {
    pub id: async_graphql::ID,
    pub content: String,
    pub billing_mode: BillingMode,
    pub provider: String,
    pub model: String,
    pub input_tokens: i32,
    pub output_tokens: i32,
    pub credits_charged: CreditsScalar,
    pub wallet: Wallet,
}

fn result(outcome: AiOutcome) -> ApiResult<AiResult> {
    let wallet = outcome
        .wallet
        .ok_or_else(|| ApiError::internal(&"result without a wallet"))?;
    let tokens = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
    Ok(AiResult {
        id: async_graphql::ID(outcome.id),
        content: outcome.content,
        billing_mode: outcome.billing_mode.into(),
        provider: outcome.provider,
        model: outcome.model,
        input_tokens: tokens(outcome.input_tokens),
        output_tokens: tokens(outcome.output_tokens),
        credits_charged: outcome.credits_charged.into(),
        wallet: Wallet::from(wallet),
    })
}

#[derive(SimpleObject, Clone, Debug)]
pub struct CostEstimate {
    /// The most this request can cost; this much is held while it runs (0 through BYOK).
    pub max_credits: CreditsScalar,
    pub billing_mode: BillingMode,
    /// What the request would cost at most if paid with credits, whoever pays.
    pub credits_if_paid: CreditsScalar,
}

/// One event of a streamed AI response: text deltas, then one final result.
#[derive(SimpleObject, Clone, Debug)]
pub struct AiStreamEvent {
    pub delta: Option<String>,
    pub result: Option<AiResult>,
}

#[derive(Default)]
pub struct AiQuery;

#[Object]
impl AiQuery {
    /// The loaded provider plugins.
    async fn providers(&self, ctx: &Context<'_>) -> ApiResult<Vec<Provider>> {
        identity(ctx)?;
        Ok(ai(ctx)?
            .gateway()
            .providers()
            .into_iter()
            .map(|p| Provider {
                id: p.id,
                name: p.name,
                version: p.version,
                models: p.models.into_iter().map(|m| m.id).collect(),
                supports_streaming: p.supports_streaming,
            })
            .collect())
    }

    /// The caller's BYOK keys: hints and dates, never the keys.
    async fn byok_keys(&self, ctx: &Context<'_>) -> ApiResult<Vec<ByokKey>> {
        let user = caller_user(ctx).await?;
        Ok(ai(ctx)?.keys(&user.id).await?.into_iter().map(ByokKey::from).collect())
    }

    /// The caller's BYOK settings.
    async fn ai_settings(&self, ctx: &Context<'_>) -> ApiResult<AiSettings> {
        let user = caller_user(ctx).await?;
        Ok(services(ctx).store.ai_settings(&user.id).await?.into())
    }

    /// The AI features, with their default provider and model.
    async fn ai_features(&self, ctx: &Context<'_>) -> ApiResult<Vec<AiFeatureInfo>> {
        identity(ctx)?;
        Ok(ai(ctx)?
            .features()
            .into_iter()
            .map(|f| AiFeatureInfo {
                feature: f.feature.into(),
                description: f.description,
                default_provider: f.default_provider,
                default_model: f.default_model,
            })
            .collect())
    }

    /// The most a request can cost (what it holds while it runs), and who pays.
    async fn estimate_cost(&self, ctx: &Context<'_>, input: AiRequestInput) -> ApiResult<CostEstimate> {
        let (user_id, req) = payer(ctx, input).await?;
        let e = ai(ctx)?.estimate(&user_id, &req).await?;
        Ok(CostEstimate {
            max_credits: e.max_credits.into(),
            billing_mode: e.billing_mode.into(),
            credits_if_paid: e.credits_if_paid.into(),
        })
    }
}

#[derive(Default)]
pub struct AiMutation;

#[Object]
impl AiMutation {
    /// Stores the caller's key for a provider, after the provider accepted
    /// it; only its ciphertext is kept. Replaces an earlier key.
    async fn set_byok_key(&self, ctx: &Context<'_>, provider: String, api_key: String) -> ApiResult<ByokKey> {
        let user = caller_user(ctx).await?;
        Ok(ai(ctx)?.set_key(&user.id, &provider, &api_key).await?.into())
    }

    /// Removes the caller's key for a provider: back to credits.
    async fn remove_byok_key(&self, ctx: &Context<'_>, provider: String) -> ApiResult<bool> {
        let user = caller_user(ctx).await?;
        Ok(ai(ctx)?.remove_key(&user.id, &provider).await?)
    }

    /// Sets how the caller's keys are used.
    async fn set_ai_settings(
        &self,
        ctx: &Context<'_>,
        preferred_provider: Option<String>,
        fallback_to_credits: bool,
    ) -> ApiResult<AiSettings> {
        let user = caller_user(ctx).await?;
        if let Some(p) = &preferred_provider
            && ai(ctx)?.gateway().provider(p).is_none()
        {
            return Err(ApiError::bad_input(format!(
                "unknown provider `{}`",
                p.chars().take(64).collect::<String>()
            )));
        }
        let settings = StoredSettings {
            preferred_provider,
            fallback_to_credits,
        };
        Ok(services(ctx).store.set_ai_settings(&user.id, &settings).await?.into())
    }

    /// Runs an AI request: holds its maximum cost, calls the provider,
    /// charges what it used (0 through BYOK) and logs it.
    async fn run_ai(&self, ctx: &Context<'_>, input: AiRequestInput) -> ApiResult<AiResult> {
        let (user_id, req) = payer(ctx, input).await?;
        result(ai(ctx)?.run(&user_id, &req).await?)
    }
}

#[derive(Default)]
pub struct AiSubscription;

#[Subscription]
impl AiSubscription {
    /// Runs an AI request and streams its answer. Unsubscribing cancels the
    /// request; what it produced until then is charged.
    async fn ai_stream(
        &self,
        ctx: &Context<'_>,
        input: AiRequestInput,
    ) -> async_graphql::Result<BoxStream<'static, async_graphql::Result<AiStreamEvent>>> {
        let (user_id, req) = payer(ctx, input).await?;
        let stream = ai(ctx)?.run_stream(&user_id, &req).await.map_err(ApiError::from)?;
        Ok(stream
            .map(|item| match item {
                Ok(StreamItem::Delta(text)) => Ok(AiStreamEvent {
                    delta: Some(text),
                    result: None,
                }),
                Ok(StreamItem::Done(outcome)) => result(*outcome)
                    .map(|r| AiStreamEvent {
                        delta: None,
                        result: Some(r),
                    })
                    .map_err(Into::into),
                Err(e) => Err(ApiError::from(e).into()),
            })
            .boxed())
    }
}
