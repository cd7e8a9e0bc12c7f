//! The metered AI service: what the API calls. A request is validated,
//! routed and priced (prepare.rs), holds its most (hold.rs), calls the
//! provider (run.rs, stream.rs) and settles or releases (settle.rs). BYOK
//! keys are in keys.rs.

use std::num::NonZeroU32;
use std::sync::Arc;

use creditgate_domain::{AiFeature, PricingTable};
use creditgate_gateway::Gateway;
use creditgate_storage::Store;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::AiConfig;
use crate::error::AiError;
use crate::types::{AiRequest, Estimate, FeatureInfo};
use crate::vault::KeyVault;

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) pricing: PricingTable,
    pub(crate) vault: KeyVault,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    pub(crate) max_prompt_bytes: usize,
    pub(crate) max_messages: usize,
}

/// The metered AI service. Cheap to clone.
#[derive(Clone)]
pub struct AiService(pub(crate) Arc<Inner>);

impl std::fmt::Debug for AiService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AiService")
            .field("pricing", &self.0.pricing.version())
            .finish_non_exhaustive()
    }
}

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

    /// What a request would hold (0 through the user's own key), and what
    /// it would cost paid with credits. Reads no key.
    pub async fn estimate(&self, user_id: &str, req: &AiRequest) -> Result<Estimate, AiError> {
        let p = self.prepare(user_id, req).await?;
        let credits_if_paid = self.0.pricing.max_cost(
            p.feature,
            &p.provider,
            &p.model,
            p.input_estimate,
            u64::from(p.output_budget),
        )?;
        Ok(Estimate {
            max_credits: match p.mode {
                creditgate_domain::BillingMode::Credits => credits_if_paid,
                creditgate_domain::BillingMode::Byok => creditgate_domain::Credits::ZERO,
            },
            credits_if_paid,
            billing_mode: p.mode,
        })
    }

    pub(crate) fn check_rate(&self, user_id: &str) -> Result<(), AiError> {
        if let Some(l) = &self.0.limiter
            && l.check_key(&user_id.to_owned()).is_err()
        {
            return Err(AiError::RateLimited(
                "too many AI requests; slow down and retry shortly".into(),
            ));
        }
        Ok(())
    }

    /// Whether a failing BYOK request may be retried with credits.
    pub(crate) async fn fallback_allowed(&self, user_id: &str, err: &AiError) -> bool {
        if !err.allows_fallback() {
            return false;
        }
        self.0
            .store
            .ai_settings(user_id)
            .await
            .map(|s| s.fallback_to_credits)
            .unwrap_or(false)
    }
}

/// At most 64 characters of client text, for messages.
pub(crate) fn short(s: &str) -> String {
    s.chars().take(64).collect()
}
