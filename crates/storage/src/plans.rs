//! Plan changes and the sweeps (expired holds, ended billing cycles) that
//! every replica may run at once.

use creditgate_domain::{Credits, HoldStatus};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};

use crate::entities::{holds, organizations, wallets};
use crate::error::{StoreError, StoreResult};
use crate::holds::Outcome;
use crate::model::{Organization, WalletChange};
use crate::store::{EntryExtras, Store};

impl Store {
    // ---------------------------------------------------------------- plans

    /// Moves an organization to another plan: an upgrade grants every member
    /// the difference for the current cycle at once, a downgrade applies
    /// from the next cycle; both are journal entries. All in one transaction.
    pub async fn set_organization_plan(&self, org_id: &str, plan_id: &str) -> StoreResult<Organization> {
        let plan = self
            .plans
            .get(plan_id)
            .ok_or_else(|| StoreError::NotFound {
                what: "plan",
                id: plan_id.to_owned(),
            })?
            .clone();
        let outer = self.db.begin().await?;
        // Lock the organization first (members are locked after it).
        let org = organizations::Entity::update_many()
            .col_expr(organizations::Column::PlanId, Expr::col(organizations::Column::PlanId))
            .filter(organizations::Column::Id.eq(org_id))
            .exec_with_returning(&outer)
            .await?
            .pop();
        let Some(org) = org else {
            outer.rollback().await?;
            return Err(StoreError::NotFound {
                what: "organization",
                id: org_id.to_owned(),
            });
        };
        let members: Vec<String> = wallets::Entity::find()
            .select_only()
            .column(wallets::Column::UserId)
            .filter(wallets::Column::OrgId.eq(org_id))
            .order_by_asc(wallets::Column::UserId)
            .into_tuple()
            .all(&outer)
            .await?;
        let mut changes: Vec<WalletChange> = Vec::with_capacity(members.len());
        if org.plan_id != plan.id {
            for member in &members {
                // Each member's wallet in a savepoint of the outer transaction;
                // its lazy cycle close still sees the old plan.
                let Some(mut locked) = self.lock_wallet_on(&outer, member, false).await? else {
                    continue;
                };
                let posting = locked.state.change_plan(plan.monthly_credits_per_user, &plan.name);
                locked.push(posting, EntryExtras::default());
                changes.push(locked.commit_notifying(self.notify_channel.as_deref()).await?);
            }
        }
        let updated = organizations::Entity::update_many()
            .col_expr(organizations::Column::PlanId, Expr::value(plan.id.as_str()))
            .filter(organizations::Column::Id.eq(org_id))
            .exec_with_returning(&outer)
            .await?
            .pop()
            .ok_or_else(|| StoreError::corrupt("organization vanished under its lock"))?;
        outer.commit().await?;
        for change in &changes {
            self.publish(change);
        }
        Ok(Organization::from(updated))
    }

    // --------------------------------------------------------------- sweeps

    /// Releases open holds whose deadline has passed (their request never
    /// finished: a replica died). Safe to run on every replica at once: each
    /// hold is claimed by a guarded update. Returns how many it released.
    pub async fn expire_holds(&self, limit: u64) -> StoreResult<usize> {
        let now = self.clock.now();
        let due: Vec<(String, String)> = holds::Entity::find()
            .select_only()
            .column(holds::Column::Id)
            .column(holds::Column::UserId)
            .filter(crate::holds::is_open())
            .filter(holds::Column::Deadline.lte(now))
            .order_by_asc(holds::Column::Deadline)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut released = 0;
        for (hold_id, user_id) in due {
            match self
                .resolve_hold(
                    &user_id,
                    &hold_id,
                    Credits::ZERO,
                    HoldStatus::Expired,
                    None,
                    Outcome::default(),
                )
                .await
            {
                Ok(_) => released += 1,
                Err(StoreError::HoldNotOpen { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(released)
    }

    /// Closes the billing cycles that have ended, so idle wallets (and their
    /// subscribers) see the reset. Safe to run on every replica at once.
    pub async fn close_ended_cycles(&self, limit: u64) -> StoreResult<usize> {
        let now = self.clock.now();
        let due: Vec<String> = wallets::Entity::find()
            .select_only()
            .column(wallets::Column::UserId)
            .filter(wallets::Column::CycleEnd.lte(now))
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut closed = 0;
        for user_id in due {
            if let Some(locked) = self.lock_wallet(&user_id, true).await? {
                locked.commit_and_publish(self).await?;
                closed += 1;
            }
        }
        Ok(closed)
    }
}
