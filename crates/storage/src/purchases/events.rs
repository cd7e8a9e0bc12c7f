//! A payment provider's events applied to purchases: completed (adding the
//! pack's permanent credits), failed, refunded as far as the credits are
//! left; each change in one transaction with the record of its event.

use chrono::{DateTime, Utc};
use creditgate_domain::{ActivityKind, Credits};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter, TransactionTrait,
    TryInsertResult,
};
use serde_json::{Value, json};

use crate::entities::{purchases, webhook_events};
use crate::error::{StoreError, StoreResult};
use crate::ops::fingerprint;
use crate::outbox::{OutgoingEvent, event_types};
use crate::store::{EntryExtras, LockedWallet, Store};

use super::{ProviderEvent, Purchase, PurchaseStatus, PurchaseUpdate, RefundShare};

impl Store {
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
        let Some(outer) = self.begin_event(event, purchase_id).await? else {
            return Ok(PurchaseUpdate::AlreadyProcessed);
        };
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
        let mut locked = self.purchase_wallet(&outer, &purchase).await?;
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
        let Some(outer) = self.begin_event(event, purchase_id).await? else {
            return Ok(PurchaseUpdate::AlreadyProcessed);
        };
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
        let Some(outer) = self.begin_event(event, purchase_id).await? else {
            return Ok(PurchaseUpdate::AlreadyProcessed);
        };
        let now = self.clock.now();
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
        let mut locked = self.purchase_wallet(&outer, &purchase).await?;
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

    /// Begins the transaction that applies a provider's `event` (or a
    /// direct change, `None`) to purchase `purchase_id`, the event recorded
    /// in it; `None` when the event was applied before.
    async fn begin_event(
        &self,
        event: Option<ProviderEvent<'_>>,
        purchase_id: &str,
    ) -> StoreResult<Option<DatabaseTransaction>> {
        let outer = self.db.begin().await?;
        if let Some(event) = event
            && !record_event(&outer, event, purchase_id, self.clock.now()).await?
        {
            outer.rollback().await?;
            return Ok(None);
        }
        Ok(Some(outer))
    }

    /// The wallet of `purchase`'s user, locked within `outer` (an error
    /// rolls `outer` back as it is dropped); a purchase's user has one.
    async fn purchase_wallet(&self, outer: &DatabaseTransaction, purchase: &Purchase) -> StoreResult<LockedWallet> {
        self.lock_wallet_on(outer, &purchase.user_id, false)
            .await?
            .ok_or_else(|| StoreError::corrupt(format!("purchase `{}` names a user without a wallet", purchase.id)))
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
