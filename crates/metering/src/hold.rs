//! Holding the most a request can cost, and finding a finished request by
//! its idempotency key.

use std::time::Duration;

use creditgate_domain::{BillingMode, Credits, HoldStatus};
use creditgate_storage::{HoldRequest, Placement, StoreError, UsageDetails};

use crate::error::AiError;
use crate::prepare::{Prepared, request_hash};
use crate::service::AiService;
use crate::types::{AiOutcome, AiRequest};

/// How long a retry waits for the first request with its key to finish.
const REPLAY_WAIT: Duration = Duration::from_secs(30);
const REPLAY_POLL: Duration = Duration::from_millis(100);

/// A hold placed for a request.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) id: String,
    /// What was reserved (may be less than the request's most, when the
    /// wallet affords less: its output is then capped).
    pub(crate) amount: Credits,
    pub(crate) output_cap: u32,
}

pub(crate) enum Placed {
    New(Held),
    Replay(Box<AiOutcome>),
}

impl AiService {
    /// The stored result of a finished request with this idempotency key,
    /// before anything else is read: a retry gets it whatever changed since
    /// (a key removed, a setting changed). A request with the key that is
    /// still running is waited for; a key used for another request is
    /// IDEMPOTENCY_CONFLICT. `None`: no request holds the key.
    pub(crate) async fn replay(&self, user_id: &str, req: &AiRequest) -> Result<Option<AiOutcome>, AiError> {
        let Some(key) = &req.idempotency_key else {
            return Ok(None);
        };
        let key = creditgate_domain::check_key("idempotencyKey", key)?;
        let hash = request_hash(req);
        let started = tokio::time::Instant::now();
        loop {
            let Some(prior) = self.0.store.keyed_hold(user_id, key).await? else {
                return Ok(None);
            };
            if prior.request_hash.as_deref() != Some(hash.as_str()) {
                return Err(AiError::IdempotencyConflict);
            }
            match (prior.status, prior.result) {
                (HoldStatus::Settled, Some(result)) => {
                    let mut outcome: AiOutcome = serde_json::from_str(&result)
                        .map_err(|e| AiError::Internal(format!("stored result of hold {}: {e}", prior.id)))?;
                    outcome.wallet = Some(self.0.store.wallet(user_id).await?);
                    return Ok(Some(outcome));
                }
                (HoldStatus::Open, _) if started.elapsed() < REPLAY_WAIT => tokio::time::sleep(REPLAY_POLL).await,
                _ => {
                    return Err(AiError::Unavailable(
                        "a request with this idempotency key has not finished; retry later".into(),
                    ));
                }
            }
        }
    }

    /// Holds the most the request can cost (0 for BYOK), capping its output
    /// to what the wallet and the spend limits that apply afford (the store
    /// checks both in one step). A request with the same key that got
    /// there first is replayed.
    pub(crate) async fn hold(&self, user_id: &str, req: &AiRequest, p: &Prepared) -> Result<Placed, AiError> {
        let pricing = &self.0.pricing;
        // The dearest price per token: a hold covers whatever kinds the provider bills.
        let cost =
            |output: u32| pricing.max_cost(p.feature, &p.provider, &p.model, p.input_estimate, u64::from(output));
        let (amount, minimum) = match p.mode {
            BillingMode::Byok => (Credits::ZERO, None),
            BillingMode::Credits => (cost(p.output_budget)?, Some(cost(p.min_output)?)),
        };
        let request = HoldRequest {
            amount,
            minimum,
            idempotency_key: req.idempotency_key.as_deref().map(str::trim).map(str::to_owned),
            request_hash: p.request_hash.clone(),
            details: Some(UsageDetails {
                feature: Some(p.feature),
                billing_mode: Some(p.mode),
                status: None,
                provider: Some(p.provider.clone()),
                model: Some(p.model.clone()),
                pricing_version: Some(pricing.version().to_owned()),
                ..UsageDetails::default()
            }),
            ttl: None,
        };
        loop {
            let placed = match self.0.store.place_hold(user_id, &request).await {
                Ok(placed) => placed,
                Err(StoreError::InsufficientCredits { requested, available }) => {
                    return Err(AiError::InsufficientCredits {
                        needed: requested,
                        available,
                    });
                }
                Err(StoreError::SpendLimitReached { requested, left }) => {
                    return Err(AiError::SpendLimitReached {
                        needed: requested,
                        left,
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
                    return Ok(Placed::New(Held {
                        id: hold.id,
                        amount: hold.amount,
                        output_cap: cap.max(1),
                    }));
                }
                // Another request with this key got there first: its result.
                Placement::Existing { .. } => {
                    if let Some(outcome) = self.replay(user_id, req).await? {
                        return Ok(Placed::Replay(Box::new(outcome)));
                    }
                    // It failed and freed the key meanwhile: try again.
                }
            }
        }
    }
}
