//! Purchases of credit packs: created PENDING, completed (adding the pack's
//! permanent credits) or failed once, refunded as far as the credits are
//! left. Every change a payment provider's event causes is applied in one
//! transaction with the record of that event, so an event delivered twice
//! changes things once.

mod events;

pub use creditgate_domain::RefundShare;

use chrono::{DateTime, Utc};
use creditgate_domain::Credits;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder};

use crate::entities::{purchases, users};
use crate::error::{StoreError, StoreResult};
use crate::ops::fingerprint;
use crate::store::Store;

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
}

fn replay(prior: purchases::Model, hash: &str) -> StoreResult<PurchaseStart> {
    if prior.request_hash != hash {
        return Err(StoreError::IdempotencyConflict);
    }
    Ok(PurchaseStart::Existing(Purchase::try_from(prior)?))
}
