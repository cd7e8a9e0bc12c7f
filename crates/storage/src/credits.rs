//! The wallet, and permanent credits added or taken back, each in one
//! transaction on the locked wallet.

use creditgate_domain::{ActivityKind, Credits};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::entities::{journal_entries, wallets};
use crate::error::{StoreError, StoreResult};
use crate::model::{Entry, Wallet};
use crate::ops::fingerprint;
use crate::store::{EntryExtras, Store};

/// Permanent credits to add (or, for an ADJUSTMENT, to take back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditRequest {
    /// GRANT, PURCHASE or ADJUSTMENT.
    pub kind: ActivityKind,
    /// Positive; an ADJUSTMENT may be negative: it takes back as much as is
    /// left unreserved, never below 0.
    pub amount: Credits,
    pub description: Option<String>,
    /// What the credits came from (a purchase id, ...).
    pub reference: Option<String>,
    pub idempotency_key: Option<String>,
}

impl Store {
    // --------------------------------------------------------------- wallet

    /// The user's wallet, its billing cycle closed first if it has ended.
    pub async fn wallet(&self, user_id: &str) -> StoreResult<Wallet> {
        let row = wallets::Entity::find_by_id(user_id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "user",
                id: user_id.to_owned(),
            })?;
        if row.cycle_end > self.clock.now() {
            return Ok(Wallet::from(&row));
        }
        self.lock_existing(user_id).await?.finish(self).await
    }

    /// Adds permanent credits (grant, purchase, adjustment). With an
    /// idempotency key, a retry returns the first entry and adds nothing; the
    /// key reused for another request is IDEMPOTENCY_CONFLICT.
    pub async fn add_credits(&self, user_id: &str, req: &CreditRequest) -> StoreResult<Entry> {
        if !matches!(
            req.kind,
            ActivityKind::Grant | ActivityKind::Purchase | ActivityKind::Adjustment
        ) {
            return Err(StoreError::InvalidInput(format!("{} does not add credits", req.kind)));
        }
        // Only a correction may be negative (it takes back what is left).
        let negative_adjustment = req.kind == ActivityKind::Adjustment && req.amount.is_negative();
        if !req.amount.is_positive() && !negative_adjustment {
            return Err(StoreError::InvalidInput(format!(
                "the amount must be positive, got {}",
                req.amount
            )));
        }
        let hash = fingerprint(&[
            req.kind.as_str(),
            &req.amount.millis().to_string(),
            req.description.as_deref().unwrap_or(""),
            req.reference.as_deref().unwrap_or(""),
        ]);
        let mut locked = self.lock_existing(user_id).await?;
        if let Some(key) = &req.idempotency_key {
            let prior = journal_entries::Entity::find()
                .filter(journal_entries::Column::UserId.eq(user_id))
                .filter(journal_entries::Column::IdempotencyKey.eq(key.as_str()))
                .one(&*locked.txn)
                .await?;
            if let Some(prior) = prior {
                locked.rollback().await?;
                if prior.request_hash.as_deref() == Some(hash.as_str()) {
                    return Entry::try_from(prior);
                }
                return Err(StoreError::IdempotencyConflict);
            }
        }
        let added = match req.amount.checked_neg() {
            Some(down) if negative_adjustment => Ok(locked
                .state
                .adjust_down(down, req.description.as_deref().unwrap_or("Correction"))),
            _ => locked
                .state
                .add_permanent(req.kind, req.amount, req.description.clone()),
        };
        let posting = match added {
            Ok(p) => p,
            Err(e) => {
                locked.rollback().await?;
                return Err(e.into());
            }
        };
        locked.push(
            posting,
            EntryExtras {
                idempotency_key: req.idempotency_key.clone(),
                request_hash: Some(hash),
                reference: req.reference.clone(),
                ..EntryExtras::default()
            },
        );
        let change = locked.commit_and_publish(self).await;
        let change = match change {
            // Two first uses of one key raced past the lookup (only possible
            // without the wallet lock); the loser replays.
            Err(e) if e.is_unique_violation() => return Box::pin(self.add_credits(user_id, req)).await,
            other => other?,
        };
        change
            .entries
            .into_iter()
            .rev()
            .find(|e| e.kind == req.kind)
            .ok_or_else(|| StoreError::corrupt("credit entry missing after commit"))
    }

    /// Takes back up to `amount` permanent credits, as far as they are left
    /// (a refund). Returns the REFUND entry, possibly of 0.
    pub async fn take_back_credits(
        &self,
        user_id: &str,
        amount: Credits,
        description: Option<String>,
        reference: Option<String>,
    ) -> StoreResult<Entry> {
        let mut locked = self.lock_existing(user_id).await?;
        let posting = locked.state.take_back_permanent(amount, description);
        locked.push(
            posting,
            EntryExtras {
                reference,
                ..EntryExtras::default()
            },
        );
        let change = locked.commit_and_publish(self).await?;
        change
            .entries
            .into_iter()
            .rev()
            .find(|e| e.kind == ActivityKind::Refund)
            .ok_or_else(|| StoreError::corrupt("refund entry missing after commit"))
    }
}
