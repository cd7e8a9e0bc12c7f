//! Housekeeping the periodic sweep runs: forgetting old processed payment
//! webhook events and failing purchases that never reached the payment
//! provider. Both are safe on every replica at once: each row is claimed by
//! a guarded statement, so a row is handled once whoever gets there first.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entities::{purchases, webhook_events};
use crate::error::StoreResult;
use crate::purchases::PurchaseStatus;
use crate::store::Store;

impl Store {
    /// Deletes up to `limit` processed webhook events recorded before
    /// `before`. Returns how many it deleted.
    ///
    /// An event is kept only so that a redelivery is recognised; providers
    /// stop redelivering after a few days (Stripe: three), and a purchase
    /// moves only from PENDING, so an event seen again after its record is
    /// gone changes nothing that it did not already change.
    pub async fn prune_webhook_events(&self, before: DateTime<Utc>, limit: u64) -> StoreResult<u64> {
        let ids: Vec<String> = webhook_events::Entity::find()
            .select_only()
            .column(webhook_events::Column::Id)
            .filter(webhook_events::Column::ProcessedAt.lt(before))
            .order_by_asc(webhook_events::Column::ProcessedAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let deleted = webhook_events::Entity::delete_many()
            .filter(webhook_events::Column::Id.is_in(ids))
            .filter(webhook_events::Column::ProcessedAt.lt(before))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected)
    }

    /// Marks FAILED up to `limit` PENDING purchases created before `before`
    /// that never got a checkout session: the call to the payment provider
    /// failed or the server stopped before it, so nobody can pay them. A
    /// purchase that has a session is left for the provider's webhook (its
    /// session expires there). Returns how many it failed.
    pub async fn fail_abandoned_purchases(&self, before: DateTime<Utc>, limit: u64) -> StoreResult<u64> {
        let ids: Vec<String> = purchases::Entity::find()
            .select_only()
            .column(purchases::Column::Id)
            .filter(purchases::Column::Status.eq(PurchaseStatus::Pending.as_str()))
            .filter(purchases::Column::ProviderSessionId.is_null())
            .filter(purchases::Column::CreatedAt.lt(before))
            .order_by_asc(purchases::Column::CreatedAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        // The same guards again in the update: a purchase completed, or
        // given a session, since the read above is left alone.
        let failed = purchases::Entity::update_many()
            .col_expr(purchases::Column::Status, Expr::value(PurchaseStatus::Failed.as_str()))
            .col_expr(purchases::Column::UpdatedAt, Expr::value(self.clock.now()))
            .filter(purchases::Column::Id.is_in(ids))
            .filter(purchases::Column::Status.eq(PurchaseStatus::Pending.as_str()))
            .filter(purchases::Column::ProviderSessionId.is_null())
            .exec(&self.db)
            .await?;
        Ok(failed.rows_affected)
    }
}
