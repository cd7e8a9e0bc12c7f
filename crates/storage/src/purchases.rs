//! Purchases of credit packs: created PENDING, completed (adding the pack's
//! permanent credits) or failed once, refunded as far as the credits are
//! left. Every change a payment provider's event causes is applied in one
//! transaction with the record of that event, so an event delivered twice
//! changes things once.

use chrono::{DateTime, Utc};
use creditgate_domain::{ActivityKind, Credits};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait, TryInsertResult,
};
use serde_json::{Value, json};

use crate::entities::{purchases, users, webhook_events};
use crate::error::{StoreError, StoreResult};
use crate::ops::fingerprint;
use crate::outbox::{OutgoingEvent, event_types};
use crate::store::{EntryExtras, Store};

/// Where a purchase stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurchaseStatus {
    /// Waiting for the payment.
    Pending,
    /// Paid; its credits were added.
    Completed,
    /// The payment failed or was abandoned; nothing was added.
    Failed,
    /// Fully refunded; its credits were taken back as far as they were left.
    Refunded,
}

impl PurchaseStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            PurchaseStatus::Pending => "PENDING",
            PurchaseStatus::Completed => "COMPLETED",
            PurchaseStatus::Failed => "FAILED",
            PurchaseStatus::Refunded => "REFUNDED",
        }
    }
}

impl std::str::FromStr for PurchaseStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "PENDING" => Ok(PurchaseStatus::Pending),
            "COMPLETED" => Ok(PurchaseStatus::Completed),
            "FAILED" => Ok(PurchaseStatus::Failed),
            "REFUNDED" => Ok(PurchaseStatus::Refunded),
            _ => Err(format!("`{s}` is not a purchase status")),
        }
    }
}

/// A purchase of a credit pack, with the pack as it was sold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    pub id: String,
    pub user_id: String,
    pub org_id: String,
    pub pack_id: String,
    pub pack_name: String,
    pub credits: Credits,
    pub price_cents: i64,
    pub currency: String,
    pub status: PurchaseStatus,
    /// The payment provider (`dev`, `stripe`).
    pub provider: String,
    pub provider_session_id: Option<String>,
    pub payment_intent: Option<String>,
    pub checkout_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The credits the refunds so far stand for.
    pub refunded_credits: Credits,
    /// What those refunds actually took back.
    pub credits_taken_back: Credits,
}

impl TryFrom<purchases::Model> for Purchase {
    type Error = StoreError;
    fn try_from(m: purchases::Model) -> Result<Self, StoreError> {
        Ok(Purchase {
            status: m.status.parse().map_err(StoreError::corrupt)?,
            id: m.id,
            user_id: m.user_id,
            org_id: m.org_id,
            pack_id: m.pack_id,
            pack_name: m.pack_name,
            credits: Credits::from_millis(m.credits),
            price_cents: m.price_cents,
            currency: m.currency,
            provider: m.provider,
            provider_session_id: m.provider_session_id,
            payment_intent: m.payment_intent,
            checkout_url: m.checkout_url,
            created_at: m.created_at,
            completed_at: m.completed_at,
            refunded_credits: Credits::from_millis(m.refunded_credits),
            credits_taken_back: Credits::from_millis(m.credits_taken_back),
        })
    }
}

/// A purchase to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPurchase {
    pub user_id: String,
    pub pack_id: String,
    pub pack_name: String,
    pub credits: Credits,
    pub price_cents: i64,
    pub currency: String,
    pub provider: String,
    pub idempotency_key: String,
}

/// The outcome of [`Store::create_purchase`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurchaseStart {
    Created(Purchase),
    /// The idempotency key was used before for the same pack: that purchase.
    Existing(Purchase),
}

/// A payment provider's event, recorded when it is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderEvent<'a> {
    /// The provider's event id (`evt_...`).
    pub id: &'a str,
    pub provider: &'a str,
    pub event_type: &'a str,
}

/// What applying an event (or a direct completion) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurchaseUpdate {
    /// The purchase changed (and its credits moved, if any).
    Applied(Purchase),
    /// The purchase was already past this change (another event did it);
    /// the event is recorded as processed.
    Unchanged(Purchase),
    /// This event was applied before; nothing was done.
    AlreadyProcessed,
}

/// How much of a purchase a refund covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefundShare {
    /// Refunded so far, in the payment's smallest currency unit.
    pub amount_refunded: i64,
    /// The payment's amount.
    pub amount: i64,
    /// The payment is fully refunded.
    pub fully: bool,
}

impl RefundShare {
    /// The credits of `credits` this share stands for (rounded down).
    fn of(&self, credits: Credits) -> Credits {
        if self.fully || self.amount <= 0 || self.amount_refunded >= self.amount {
            return credits;
        }
        let share = i128::from(credits.millis()) * i128::from(self.amount_refunded.max(0)) / i128::from(self.amount);
        Credits::from_millis(i64::try_from(share).unwrap_or(credits.millis()))
    }
}

fn request_hash(pack_id: &str) -> String {
    fingerprint(&["purchase", pack_id])
}

impl Store {
    /// Starts a PENDING purchase for an existing user. The idempotency key
    /// used before for the same pack returns that purchase; for another
    /// pack it is IDEMPOTENCY_CONFLICT.
    pub async fn create_purchase(&self, new: &NewPurchase) -> StoreResult<PurchaseStart> {
        if !new.credits.is_positive() || new.price_cents <= 0 {
            return Err(StoreError::InvalidInput(
                "a credit pack must add credits and cost something".into(),
            ));
        }
        let hash = request_hash(&new.pack_id);
        if let Some(prior) = self.purchase_by_key(&new.user_id, &new.idempotency_key).await? {
            return replay(prior, &hash);
        }
        let user = users::Entity::find_by_id(new.user_id.clone())
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "user",
                id: new.user_id.clone(),
            })?;
        let now = self.clock.now();
        let row = purchases::Model {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: new.user_id.clone(),
            org_id: user.org_id,
            pack_id: new.pack_id.clone(),
            pack_name: new.pack_name.clone(),
            credits: new.credits.millis(),
            price_cents: new.price_cents,
            currency: new.currency.clone(),
            status: PurchaseStatus::Pending.as_str().to_owned(),
            provider: new.provider.clone(),
            provider_session_id: None,
            payment_intent: None,
            idempotency_key: new.idempotency_key.clone(),
            request_hash: hash.clone(),
            checkout_url: None,
            created_at: now,
            completed_at: None,
            updated_at: now,
            refunded_credits: 0,
            credits_taken_back: 0,
        };
        let active: purchases::ActiveModel = row.clone().into();
        match purchases::Entity::insert(active).exec_without_returning(&self.db).await {
            Ok(_) => Ok(PurchaseStart::Created(Purchase::try_from(row)?)),
            Err(e) => {
                let e = StoreError::from(e);
                if !e.is_unique_violation() {
                    return Err(e);
                }
                // A concurrent first use of the key won: theirs.
                let prior = self
                    .purchase_by_key(&new.user_id, &new.idempotency_key)
                    .await?
                    .ok_or(e)?;
                replay(prior, &hash)
            }
        }
    }

    async fn purchase_by_key(&self, user_id: &str, key: &str) -> StoreResult<Option<purchases::Model>> {
        Ok(purchases::Entity::find()
            .filter(purchases::Column::UserId.eq(user_id))
            .filter(purchases::Column::IdempotencyKey.eq(key))
            .one(&self.db)
            .await?)
    }

    /// Records the provider's checkout session of a PENDING purchase (once;
    /// the same session again changes nothing).
    pub async fn attach_checkout(
        &self,
        purchase_id: &str,
        session_id: &str,
        checkout_url: &str,
    ) -> StoreResult<Purchase> {
        let updated = purchases::Entity::update_many()
            .col_expr(purchases::Column::ProviderSessionId, Expr::value(session_id))
            .col_expr(purchases::Column::CheckoutUrl, Expr::value(checkout_url))
            .col_expr(purchases::Column::UpdatedAt, Expr::value(self.clock.now()))
            .filter(purchases::Column::Id.eq(purchase_id))
            // The sweep may have failed a purchase whose checkout took too
            // long: nobody must be sent to pay for it.
            .filter(purchases::Column::Status.eq(PurchaseStatus::Pending.as_str()))
            .filter(
                Condition::any()
                    .add(purchases::Column::ProviderSessionId.is_null())
                    .add(purchases::Column::ProviderSessionId.eq(session_id)),
            )
            .exec_with_returning(&self.db)
            .await?
            .pop();
        match updated {
            Some(row) => Purchase::try_from(row),
            None => {
                let existing = self.purchase(purchase_id).await?.ok_or_else(|| StoreError::NotFound {
                    what: "purchase",
                    id: purchase_id.to_owned(),
                })?;
                if existing.status != PurchaseStatus::Pending {
                    return Err(StoreError::InvalidInput(format!(
                        "purchase `{}` is {}; start a new purchase",
                        existing.id,
                        existing.status.as_str()
                    )));
                }
                Err(StoreError::corrupt(format!(
                    "purchase `{}` already has another checkout session",
                    existing.id
                )))
            }
        }
    }

    pub async fn purchase(&self, purchase_id: &str) -> StoreResult<Option<Purchase>> {
        purchases::Entity::find_by_id(purchase_id.to_owned())
            .one(&self.db)
            .await?
            .map(Purchase::try_from)
            .transpose()
    }

    /// The purchase a provider's checkout session belongs to.
    pub async fn purchase_by_session(&self, session_id: &str) -> StoreResult<Option<Purchase>> {
        purchases::Entity::find()
            .filter(purchases::Column::ProviderSessionId.eq(session_id))
            .one(&self.db)
            .await?
            .map(Purchase::try_from)
            .transpose()
    }

    /// The purchase a provider's payment belongs to.
    pub async fn purchase_by_payment_intent(&self, payment_intent: &str) -> StoreResult<Option<Purchase>> {
        purchases::Entity::find()
            .filter(purchases::Column::PaymentIntent.eq(payment_intent))
            .order_by_asc(purchases::Column::CreatedAt)
            .one(&self.db)
            .await?
            .map(Purchase::try_from)
            .transpose()
    }

    /// A user's purchases, newest first.
    pub async fn purchases(&self, user_id: &str) -> StoreResult<Vec<Purchase>> {
        purchases::Entity::find()
            .filter(purchases::Column::UserId.eq(user_id))
            .order_by_desc(purchases::Column::CreatedAt)
            .order_by_desc(purchases::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(Purchase::try_from)
            .collect()
    }

    /// Completes a PENDING purchase and adds its pack's permanent credits
    /// (a PURCHASE entry whose reference is the purchase), recording `event`
    /// as processed, all in one transaction. A purchase that is no longer
    /// PENDING is left as it is. `session_id` is recorded when the purchase
    /// has none yet; a purchase with another session is not touched.
    pub async fn complete_purchase(
        &self,
        purchase_id: &str,
        session_id: Option<&str>,
        payment_intent: Option<&str>,
        event: Option<ProviderEvent<'_>>,
    ) -> StoreResult<PurchaseUpdate> {
        let outer = self.db.begin().await?;
        if let Some(event) = event
            && !record_event(&outer, event, purchase_id, self.clock.now()).await?
        {
            outer.rollback().await?;
            return Ok(PurchaseUpdate::AlreadyProcessed);
        }
        let now = self.clock.now();
        let mut update = purchases::Entity::update_many()
            .col_expr(
                purchases::Column::Status,
                Expr::value(PurchaseStatus::Completed.as_str()),
            )
            .col_expr(purchases::Column::CompletedAt, Expr::value(Some(now)))
            .col_expr(purchases::Column::UpdatedAt, Expr::value(now))
            .filter(purchases::Column::Id.eq(purchase_id))
            .filter(purchases::Column::Status.eq(PurchaseStatus::Pending.as_str()));
        if let Some(pi) = payment_intent {
            update = update.col_expr(purchases::Column::PaymentIntent, Expr::value(pi));
        }
        if let Some(session) = session_id {
            update = update
                .col_expr(purchases::Column::ProviderSessionId, Expr::value(session))
                .filter(
                    Condition::any()
                        .add(purchases::Column::ProviderSessionId.is_null())
                        .add(purchases::Column::ProviderSessionId.eq(session)),
                );
        }
        let Some(row) = update.exec_with_returning(&outer).await?.pop() else {
            return self.unchanged(outer, purchase_id).await;
        };
        let purchase = Purchase::try_from(row)?;
        let Some(mut locked) = self.lock_wallet_on(&outer, &purchase.user_id, false).await? else {
            outer.rollback().await?;
            return Err(StoreError::corrupt(format!(
                "purchase `{}` names a user without a wallet",
                purchase.id
            )));
        };
        let description = format!(
            "Credit pack {} ({}), purchase {}",
            purchase.pack_name, purchase.pack_id, purchase.id
        );
        let posting = match locked
            .state
            .add_permanent(ActivityKind::Purchase, purchase.credits, Some(description))
        {
            Ok(p) => p,
            Err(e) => {
                locked.rollback().await?;
                outer.rollback().await?;
                return Err(e.into());
            }
        };
        locked.push(
            posting,
            EntryExtras {
                // The journal's own key: a purchase credits once, whatever path.
                idempotency_key: Some(format!("purchase:{}", purchase.id)),
                request_hash: Some(fingerprint(&[
                    "purchase-credit",
                    &purchase.id,
                    &purchase.credits.millis().to_string(),
                ])),
                reference: Some(purchase.id.clone()),
                ..EntryExtras::default()
            },
        );
        let change = locked.commit_notifying(self.notify_channel.as_deref()).await?;
        let event = purchase_event(event_types::PURCHASE_COMPLETED, &purchase, json!({}));
        self.enqueue_event(&outer, &event).await?;
        outer.commit().await?;
        self.publish(&change);
        Ok(PurchaseUpdate::Applied(purchase))
    }

    /// Marks a PENDING purchase FAILED (its session expired, its payment
    /// failed, the provider refused it), recording `event` as processed.
    /// Nothing else changes; a purchase past PENDING is left as it is.
    pub async fn fail_purchase(
        &self,
        purchase_id: &str,
        event: Option<ProviderEvent<'_>>,
    ) -> StoreResult<PurchaseUpdate> {
        let outer = self.db.begin().await?;
        if let Some(event) = event
            && !record_event(&outer, event, purchase_id, self.clock.now()).await?
        {
            outer.rollback().await?;
            return Ok(PurchaseUpdate::AlreadyProcessed);
        }
        let updated = purchases::Entity::update_many()
            .col_expr(purchases::Column::Status, Expr::value(PurchaseStatus::Failed.as_str()))
            .col_expr(purchases::Column::UpdatedAt, Expr::value(self.clock.now()))
            .filter(purchases::Column::Id.eq(purchase_id))
            .filter(purchases::Column::Status.eq(PurchaseStatus::Pending.as_str()))
            .exec_with_returning(&outer)
            .await?
            .pop();
        let Some(row) = updated else {
            return self.unchanged(outer, purchase_id).await;
        };
        let purchase = Purchase::try_from(row)?;
        outer.commit().await?;
        Ok(PurchaseUpdate::Applied(purchase))
    }

    /// Applies a refund of a COMPLETED purchase: takes back the credits
    /// `share` stands for and earlier refunds did not, as far as they are
    /// left unspent (a REFUND entry, never below 0); a full refund makes the
    /// purchase REFUNDED. Records `event` as processed; one transaction.
    pub async fn refund_purchase(
        &self,
        purchase_id: &str,
        share: RefundShare,
        event: Option<ProviderEvent<'_>>,
    ) -> StoreResult<PurchaseUpdate> {
        let outer = self.db.begin().await?;
        let now = self.clock.now();
        if let Some(event) = event
            && !record_event(&outer, event, purchase_id, now).await?
        {
            outer.rollback().await?;
            return Ok(PurchaseUpdate::AlreadyProcessed);
        }
        // Lock the purchase (refunds of one purchase take turns).
        let locked_row = purchases::Entity::update_many()
            .col_expr(purchases::Column::UpdatedAt, Expr::value(now))
            .filter(purchases::Column::Id.eq(purchase_id))
            .filter(purchases::Column::Status.eq(PurchaseStatus::Completed.as_str()))
            .exec_with_returning(&outer)
            .await?
            .pop();
        let Some(row) = locked_row else {
            return self.unchanged(outer, purchase_id).await;
        };
        let purchase = Purchase::try_from(row)?;
        let target = share.of(purchase.credits);
        let due = target.millis() - purchase.refunded_credits.millis();
        if due <= 0 && !share.fully {
            outer.commit().await?;
            return Ok(PurchaseUpdate::Unchanged(purchase));
        }
        let Some(mut locked) = self.lock_wallet_on(&outer, &purchase.user_id, false).await? else {
            outer.rollback().await?;
            return Err(StoreError::corrupt(format!(
                "purchase `{}` names a user without a wallet",
                purchase.id
            )));
        };
        let description = format!(
            "Refund of credit pack {} ({}), purchase {}",
            purchase.pack_name, purchase.pack_id, purchase.id
        );
        let posting = locked
            .state
            .take_back_permanent(Credits::from_millis(due.max(0)), Some(description));
        let taken = -posting.permanent_delta.millis();
        let status = if share.fully {
            PurchaseStatus::Refunded
        } else {
            PurchaseStatus::Completed
        };
        let updated = purchases::Entity::update_many()
            .col_expr(purchases::Column::RefundedCredits, Expr::value(target.millis()))
            .col_expr(
                purchases::Column::CreditsTakenBack,
                Expr::value(purchase.credits_taken_back.millis() + taken),
            )
            .col_expr(purchases::Column::Status, Expr::value(status.as_str()))
            .filter(purchases::Column::Id.eq(purchase_id))
            .exec_with_returning(&*locked.txn)
            .await;
        let updated = match updated {
            Ok(mut rows) => rows.pop(),
            Err(e) => {
                locked.rollback().await?;
                outer.rollback().await?;
                return Err(e.into());
            }
        };
        let Some(updated) = updated else {
            locked.rollback().await?;
            outer.rollback().await?;
            return Err(StoreError::corrupt("purchase vanished under its lock"));
        };
        locked.push(
            posting,
            EntryExtras {
                reference: Some(purchase.id.clone()),
                ..EntryExtras::default()
            },
        );
        let change = locked.commit_notifying(self.notify_channel.as_deref()).await?;
        let updated = Purchase::try_from(updated)?;
        let event = purchase_event(
            event_types::PURCHASE_REFUNDED,
            &updated,
            json!({
                "refundedCredits": updated.refunded_credits.to_string(),
                "creditsTakenBack": Credits::from_millis(taken).to_string(),
                "totalCreditsTakenBack": updated.credits_taken_back.to_string(),
                "fully": share.fully,
            }),
        );
        self.enqueue_event(&outer, &event).await?;
        outer.commit().await?;
        self.publish(&change);
        Ok(PurchaseUpdate::Applied(updated))
    }

    /// Ends a transaction that found the purchase past the change asked
    /// for: keeps the event's record.
    async fn unchanged(&self, outer: DatabaseTransaction, purchase_id: &str) -> StoreResult<PurchaseUpdate> {
        let existing = purchases::Entity::find_by_id(purchase_id.to_owned())
            .one(&outer)
            .await?;
        let Some(existing) = existing else {
            outer.rollback().await?;
            return Err(StoreError::NotFound {
                what: "purchase",
                id: purchase_id.to_owned(),
            });
        };
        outer.commit().await?;
        Ok(PurchaseUpdate::Unchanged(Purchase::try_from(existing)?))
    }
}

/// A purchase event: the purchase as it now stands, plus `extra`.
fn purchase_event(event_type: &str, p: &Purchase, extra: Value) -> OutgoingEvent {
    let mut data = json!({
        "purchaseId": p.id,
        "userId": p.user_id,
        "orgId": p.org_id,
        "packId": p.pack_id,
        "packName": p.pack_name,
        "credits": p.credits.to_string(),
        "priceCents": p.price_cents,
        "currency": p.currency,
        "status": p.status.as_str(),
        "provider": p.provider,
        "completedAt": p.completed_at,
    });
    if let (Some(data), Value::Object(extra)) = (data.as_object_mut(), extra) {
        data.extend(extra);
    }
    OutgoingEvent::new(event_type, data)
}

fn replay(prior: purchases::Model, hash: &str) -> StoreResult<PurchaseStart> {
    if prior.request_hash != hash {
        return Err(StoreError::IdempotencyConflict);
    }
    Ok(PurchaseStart::Existing(Purchase::try_from(prior)?))
}

/// Records an event as processed; `false` when it was already (a
/// concurrent delivery waits here for the first one's commit).
async fn record_event(
    txn: &DatabaseTransaction,
    event: ProviderEvent<'_>,
    purchase_id: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let row = webhook_events::ActiveModel {
        id: Set(event.id.to_owned()),
        provider: Set(event.provider.to_owned()),
        event_type: Set(event.event_type.to_owned()),
        purchase_id: Set(Some(purchase_id.to_owned())),
        processed_at: Set(now),
    };
    let inserted = webhook_events::Entity::insert(row)
        .on_conflict_do_nothing_on([webhook_events::Column::Id])
        .exec_without_returning(txn)
        .await?;
    Ok(matches!(inserted, TryInsertResult::Inserted(n) if n > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refund_shares_round_down_and_full_is_all() {
        let c = Credits::from_millis(500_000);
        let share = |r, a, f| {
            RefundShare {
                amount_refunded: r,
                amount: a,
                fully: f,
            }
            .of(c)
        };
        assert_eq!(share(250, 500, false), Credits::from_millis(250_000));
        assert_eq!(share(1, 3, false), Credits::from_millis(166_666));
        assert_eq!(share(0, 500, false), Credits::ZERO);
        assert_eq!(share(500, 500, false), c);
        assert_eq!(share(10, 500, true), c);
    }
}
