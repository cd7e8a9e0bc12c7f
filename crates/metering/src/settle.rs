//! Ending a request: charge what it used (settle), or charge nothing
//! (release), writing its journal entry. What is charged is the domain's
//! charging policy (`creditgate_domain::charging`); this applies it.

use creditgate_domain::{AiRequestStatus, BillingMode, TokenUsage, UsageSource, charge_for, partial_usage};
use creditgate_gateway::{StreamSnapshot, Usage, token_usage};
use creditgate_storage::UsageDetails;

use crate::error::AiError;
use crate::hold::Held;
use crate::prepare::Prepared;
use crate::service::AiService;
use crate::types::AiOutcome;

/// How a request ended, with what is known of its tokens.
#[derive(Debug, Clone)]
pub(crate) struct Ended {
    /// Every kind of token, as the provider bills them.
    pub(crate) tokens: TokenUsage,
    pub(crate) source: UsageSource,
    pub(crate) content: String,
    pub(crate) status: AiRequestStatus,
}

impl Ended {
    /// The provider answered in full (with its usage, or without).
    pub(crate) fn answered(usage: Option<Usage>, content: String, p: &Prepared, held: &Held) -> Ended {
        let (tokens, source) = match usage {
            Some(u) => (token_usage(&u), UsageSource::Reported),
            None => (
                TokenUsage::plain(p.input_estimate, u64::from(held.output_cap)),
                UsageSource::Unknown,
            ),
        };
        Ended {
            tokens,
            source,
            content,
            status: AiRequestStatus::Succeeded,
        }
    }

    /// A stream that ended before its usage (broken or cancelled): what it
    /// produced until then.
    pub(crate) fn cut_off(snap: StreamSnapshot, p: &Prepared, status: AiRequestStatus) -> Ended {
        let (input, output) = partial_usage(
            snap.input_tokens,
            snap.output_tokens,
            p.messages.iter().map(|m| m.content.as_str()),
            &snap.text,
        );
        Ended {
            tokens: snap.token_usage_or(input, output),
            source: UsageSource::Estimated,
            content: snap.text,
            status,
        }
    }
}

/// The journal's words for a request that was charged without a full answer.
fn settle_description(ended: &Ended) -> Option<String> {
    match (ended.source, ended.status) {
        (UsageSource::Unknown, _) => Some("The provider reported no usage; charged the hold".into()),
        (_, AiRequestStatus::Cancelled) => Some("Cancelled midway; charged for what was produced".into()),
        (_, AiRequestStatus::Failed) => Some("Cut off midway; charged for what was produced".into()),
        _ => None,
    }
}

impl AiService {
    fn usage_details(&self, p: &Prepared, status: AiRequestStatus) -> UsageDetails {
        UsageDetails {
            feature: Some(p.feature),
            billing_mode: Some(p.mode),
            status: Some(status),
            provider: Some(p.provider.clone()),
            model: Some(p.model.clone()),
            pricing_version: Some(self.0.pricing.version().to_owned()),
            actor: p.actor.clone(),
            ..UsageDetails::default()
        }
    }

    /// Charges what the request used (never more than its hold), frees the
    /// rest and writes its AI_USAGE entry, keeping the result for replays.
    pub(crate) async fn settle(
        &self,
        user_id: &str,
        held: &Held,
        p: &Prepared,
        ended: Ended,
    ) -> Result<AiOutcome, AiError> {
        let cost = self
            .0
            .pricing
            .cost_of(p.feature, &p.provider, &p.model, &ended.tokens)?;
        let charge = charge_for(p.mode, held.amount, cost, ended.source);
        let usage = UsageDetails {
            credits_avoided: charge.avoided,
            description: settle_description(&ended),
            ..self.usage_details(p, ended.status)
        }
        .with_tokens(&ended.tokens);
        let mut outcome = AiOutcome {
            id: held.id.clone(),
            content: ended.content,
            billing_mode: p.mode,
            provider: p.provider.clone(),
            model: p.model.clone(),
            input_tokens: ended.tokens.input(),
            output_tokens: ended.tokens.output(),
            credits_charged: charge.charged,
            wallet: None,
        };
        let result = serde_json::to_string(&outcome).map_err(|e| AiError::Internal(e.to_string()))?;
        let res = self
            .0
            .store
            .settle_hold_with_result(user_id, &held.id, charge.charged, usage, result)
            .await?;
        outcome.credits_charged = res.charged;
        outcome.wallet = Some(res.wallet);
        if p.mode == BillingMode::Byok
            && let Err(e) = self.0.store.touch_byok_key(user_id, &p.provider).await
        {
            tracing::warn!(error = %e, "could not record the key's last use");
        }
        Ok(outcome)
    }

    /// Releases the hold of a request that failed: nothing charged, the
    /// entry says why, and the idempotency key is free for a retry.
    pub(crate) async fn release_failed(
        &self,
        user_id: &str,
        hold_id: &str,
        p: &Prepared,
        err: &AiError,
    ) -> Result<(), AiError> {
        let usage = UsageDetails {
            description: Some(err.failure_description()),
            ..self.usage_details(p, AiRequestStatus::Failed)
        };
        if p.mode == BillingMode::Byok && matches!(err, AiError::KeyInvalid(_)) {
            // The user's own key was refused: their integrator hears of it
            // (`byok.key_failed`), in the transaction that records the failure.
            self.0
                .store
                .release_refused_key_hold(user_id, hold_id, usage, &p.provider, "the provider refused the key")
                .await?;
        } else {
            self.0.store.release_failed_hold(user_id, hold_id, usage).await?;
        }
        Ok(())
    }

    /// Releases the hold of a request whose client went away before the
    /// provider had answered: nothing charged (CANCELLED).
    pub(crate) async fn release_cancelled(
        &self,
        user_id: &str,
        hold_id: &str,
        p: &Prepared,
        why: &str,
    ) -> Result<(), AiError> {
        let usage = UsageDetails {
            description: Some(format!("Cancelled: {why}; nothing was charged")),
            ..self.usage_details(p, AiRequestStatus::Cancelled)
        };
        self.0.store.release_failed_hold(user_id, hold_id, usage).await?;
        Ok(())
    }
}
