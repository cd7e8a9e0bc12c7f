//! Users and organizations: created on first sight, refreshed from their tokens.

use creditgate_domain::{WalletState, anchor_for, cycle_at};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};

use crate::cache::{Cached, Ticket, announce_forget};
use crate::entities::{organizations, users, wallets};
use crate::error::{StoreError, StoreResult};
use crate::model::{Identity, Organization, User};
use crate::store::{EntryExtras, Store};

/// Whether the token says something about the user that their row does
/// not (a claim the token leaves out keeps what is stored).
fn needs_refresh(row: &users::Model, who: &Identity) -> bool {
    let changed = |new: &Option<String>, old: &Option<String>| new.is_some() && new != old;
    changed(&who.name, &row.name)
        || changed(&who.email, &row.email)
        || changed(&who.team, &row.team)
        || row.role != who.role.as_str()
}

impl Store {
    // ---------------------------------------------------------------- users

    /// The caller's user, created with their organization and wallet on
    /// first sight. A token naming another organization than the one the
    /// user was created in is refused.
    ///
    /// A user this replica has seen as the token describes them is served
    /// from its cache (see [`crate::cache`]).
    pub async fn ensure_user(&self, who: &Identity) -> StoreResult<User> {
        if let Some(cached) = self.cache.user(&who.user_id)
            && cached.org_id == who.org_id
            && !needs_refresh(&cached, who)
        {
            return User::try_from((*cached).clone());
        }
        for _ in 0..3 {
            let ticket = self.cache.ticket();
            if let Some(existing) = users::Entity::find_by_id(who.user_id.clone()).one(&self.db).await? {
                return self.refresh_user(existing, who, ticket).await;
            }
            match self.create_user(who).await {
                Ok(user) => return Ok(user),
                // Someone created them concurrently: read theirs.
                Err(e) if e.is_unique_violation() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable("could not create the user; try again".into()))
    }

    async fn refresh_user(&self, existing: users::Model, who: &Identity, ticket: Ticket) -> StoreResult<User> {
        if existing.org_id != who.org_id {
            return Err(StoreError::Forbidden(
                "this user belongs to another organization than the token names".into(),
            ));
        }
        let role = who.role.as_str();
        if needs_refresh(&existing, who) {
            let mut update = users::Entity::update_many()
                .col_expr(users::Column::Role, Expr::value(role))
                .filter(users::Column::Id.eq(existing.id.as_str()));
            for (col, v) in [
                (users::Column::Name, &who.name),
                (users::Column::Email, &who.email),
                (users::Column::Team, &who.team),
            ] {
                if let Some(v) = v {
                    update = update.col_expr(col, Expr::value(v.clone()));
                }
            }
            let txn = self.db.begin().await?;
            update.exec(&txn).await?;
            announce_forget(&txn, self.notify_channel.as_deref(), Cached::User, &existing.id).await?;
            txn.commit().await?;
            self.cache.forget(Cached::User, &existing.id);
            let mut user = User::try_from(existing)?;
            user.role = who.role;
            user.name = who.name.clone().or(user.name);
            user.email = who.email.clone().or(user.email);
            user.team = who.team.clone().or(user.team);
            return Ok(user);
        }
        self.cache.keep_user(ticket, existing.clone());
        User::try_from(existing)
    }

    async fn create_user(&self, who: &Identity) -> StoreResult<User> {
        let now = self.clock.now();
        let txn = self.db.begin().await?;
        let org = organizations::ActiveModel {
            id: Set(who.org_id.clone()),
            name: Set(who.org_name.clone().unwrap_or_else(|| who.org_id.clone())),
            plan_id: Set(self.plans.default_plan().id.clone()),
            billing_anchor: Set(anchor_for(now)),
            created_at: Set(now),
        };
        organizations::Entity::insert(org)
            .on_conflict_do_nothing_on([organizations::Column::Id])
            .exec_without_returning(&txn)
            .await?;
        // Lock the organization so a plan change cannot interleave with
        // this member's first allocation.
        let org = organizations::Entity::update_many()
            .col_expr(organizations::Column::Name, Expr::col(organizations::Column::Name))
            .filter(organizations::Column::Id.eq(who.org_id.as_str()))
            .exec_with_returning(&txn)
            .await?
            .pop()
            .ok_or_else(|| StoreError::corrupt("organization vanished while creating a user"))?;
        let user = users::ActiveModel {
            id: Set(who.user_id.clone()),
            org_id: Set(who.org_id.clone()),
            name: Set(who.name.clone()),
            email: Set(who.email.clone()),
            team: Set(who.team.clone()),
            role: Set(who.role.as_str().to_owned()),
            created_at: Set(now),
        };
        if let Err(e) = users::Entity::insert(user).exec_without_returning(&txn).await {
            txn.rollback().await?;
            return Err(e.into());
        }
        let (state, postings) = WalletState::open(cycle_at(org.billing_anchor, now), self.allocation_for(&org.plan_id));
        let wallet = wallets::ActiveModel {
            user_id: Set(who.user_id.clone()),
            org_id: Set(who.org_id.clone()),
            monthly_balance: Set(0),
            permanent_balance: Set(0),
            held_monthly: Set(0),
            held_permanent: Set(0),
            monthly_allocation: Set(0),
            cycle_start: Set(state.cycle.start),
            cycle_end: Set(state.cycle.end),
            version: Set(0),
            updated_at: Set(now),
            alert_thresholds: Set(None),
            alert_state: Set(None),
        };
        wallets::Entity::insert(wallet).exec_without_returning(&txn).await?;
        // Open the wallet through the ordinary path, in this transaction, so
        // the first allocation is a journal entry like any other.
        let mut locked = self
            .lock_wallet_on(&txn, &who.user_id, false)
            .await?
            .ok_or_else(|| StoreError::corrupt("wallet vanished while creating it"))?;
        locked.state = state;
        for p in postings {
            locked.push(p, EntryExtras::default());
        }
        let change = locked.commit_notifying(self.notify_channel.as_deref()).await?;
        txn.commit().await?;
        self.publish(&change);
        let created = users::Entity::find_by_id(who.user_id.clone())
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::corrupt("user vanished after creation"))?;
        User::try_from(created)
    }

    pub async fn user(&self, user_id: &str) -> StoreResult<Option<User>> {
        users::Entity::find_by_id(user_id.to_owned())
            .one(&self.db)
            .await?
            .map(User::try_from)
            .transpose()
    }

    pub async fn users(&self, ids: &[String]) -> StoreResult<Vec<User>> {
        users::Entity::find()
            .filter(users::Column::Id.is_in(ids.iter().cloned()))
            .all(&self.db)
            .await?
            .into_iter()
            .map(User::try_from)
            .collect()
    }

    pub async fn organization(&self, org_id: &str) -> StoreResult<Option<Organization>> {
        Ok(organizations::Entity::find_by_id(org_id.to_owned())
            .one(&self.db)
            .await?
            .map(Organization::from))
    }
}
