//! Everything that moves credits, each in one transaction on a locked wallet.

use chrono::Duration;
use creditgate_domain::{
    ActivityKind, AiRequestStatus, Credits, HoldStatus, Posting, Reservation, WalletState, anchor_for, cycle_at,
};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use sha2::{Digest, Sha256};

use crate::entities::{holds, journal_entries, organizations, users, wallets};
use crate::error::{StoreError, StoreResult};
use crate::model::{Entry, Hold, Identity, Organization, Resolution, UsageDetails, User, Wallet, WalletChange};
use crate::store::{EntryExtras, Store};

/// A fingerprint of a request, to tell a retry from a different request
/// that reuses its idempotency key.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

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

/// Credits to reserve for a call whose cost is known only afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRequest {
    /// The most the call can cost.
    pub amount: Credits,
    /// When set, a wallet that affords less than `amount` but at least this
    /// much is held for what it affords instead of refused.
    pub minimum: Option<Credits>,
    pub idempotency_key: Option<String>,
    /// Fingerprint of the request, compared when the key is reused.
    pub request_hash: Option<String>,
    /// What the call is, for the entry a sweep writes if it never resolves.
    pub details: Option<UsageDetails>,
    /// How long before the sweep releases it; the store's default if absent.
    pub ttl: Option<Duration>,
}

impl HoldRequest {
    pub fn new(amount: Credits) -> Self {
        HoldRequest {
            amount,
            minimum: None,
            idempotency_key: None,
            request_hash: None,
            details: None,
            ttl: None,
        }
    }
}

/// The outcome of placing a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A new hold.
    Placed { hold: Hold, wallet: Wallet },
    /// The idempotency key was used before with the same request: that hold.
    Existing {
        hold: Hold,
        status: HoldStatus,
        entry: Option<Box<Entry>>,
        /// What the first call stored as its result.
        result: Option<String>,
    },
}

/// What resolving a hold keeps besides the money.
#[derive(Debug, Default)]
struct Outcome {
    /// The call's result (JSON), for idempotent retries.
    result: Option<String>,
    /// Free the idempotency key (the call failed; a retry runs again).
    forget_key: bool,
}

fn hold_from(row: &holds::Model) -> Hold {
    Hold {
        id: row.id.clone(),
        user_id: row.user_id.clone(),
        amount: Credits::from_millis(row.monthly_part + row.permanent_part),
        monthly_part: Credits::from_millis(row.monthly_part),
        permanent_part: Credits::from_millis(row.permanent_part),
        cycle_start: row.cycle_start,
        created_at: row.created_at,
        deadline: row.deadline,
    }
}

impl Store {
    // ---------------------------------------------------------------- users

    /// The caller's user, created with their organization and wallet on
    /// first sight. A token naming another organization than the one the
    /// user was created in is refused.
    pub async fn ensure_user(&self, who: &Identity) -> StoreResult<User> {
        for _ in 0..3 {
            if let Some(existing) = users::Entity::find_by_id(who.user_id.clone()).one(&self.db).await? {
                return self.refresh_user(existing, who).await;
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

    async fn refresh_user(&self, existing: users::Model, who: &Identity) -> StoreResult<User> {
        if existing.org_id != who.org_id {
            return Err(StoreError::Forbidden(
                "this user belongs to another organization than the token names".into(),
            ));
        }
        let changed = |new: &Option<String>, old: &Option<String>| new.is_some() && new != old;
        let role = who.role.as_str();
        if changed(&who.name, &existing.name)
            || changed(&who.email, &existing.email)
            || changed(&who.team, &existing.team)
            || existing.role != role
        {
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
            update.exec(&self.db).await?;
            let mut user = User::try_from(existing)?;
            user.role = who.role;
            user.name = who.name.clone().or(user.name);
            user.email = who.email.clone().or(user.email);
            user.team = who.team.clone().or(user.team);
            return Ok(user);
        }
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
                .one(&locked.txn)
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

    // ---------------------------------------------------------------- holds

    /// Reserves credits for a call, monthly first; INSUFFICIENT_CREDITS when
    /// the wallet does not afford it.
    pub async fn place_hold(&self, user_id: &str, req: &HoldRequest) -> StoreResult<Placement> {
        let mut locked = self.lock_existing(user_id).await?;
        if let Some(key) = &req.idempotency_key {
            let prior = holds::Entity::find()
                .filter(holds::Column::UserId.eq(user_id))
                .filter(holds::Column::IdempotencyKey.eq(key.as_str()))
                .one(&locked.txn)
                .await?;
            if let Some(prior) = prior {
                let entry = journal_entries::Entity::find()
                    .filter(journal_entries::Column::UserId.eq(user_id))
                    .filter(journal_entries::Column::HoldId.eq(prior.id.as_str()))
                    .filter(journal_entries::Column::Kind.eq(ActivityKind::AiUsage.as_str()))
                    .one(&locked.txn)
                    .await?;
                locked.rollback().await?;
                if prior.request_hash != req.request_hash {
                    return Err(StoreError::IdempotencyConflict);
                }
                let status = prior.status.parse().map_err(StoreError::corrupt)?;
                return Ok(Placement::Existing {
                    hold: hold_from(&prior),
                    status,
                    entry: entry.map(Entry::try_from).transpose()?.map(Box::new),
                    result: prior.result.clone(),
                });
            }
        }
        let reservation = if req.amount.is_zero() && req.minimum.is_none() {
            // A request paid otherwise (BYOK) still takes a hold of nothing:
            // its idempotency, its result and its sweep work the same way.
            Ok(creditgate_domain::Reservation {
                monthly: Credits::ZERO,
                permanent: Credits::ZERO,
                cycle_start: locked.state.cycle.start,
            })
        } else {
            match req.minimum {
                Some(min) => locked.state.place_hold_up_to(req.amount, min),
                None => locked.state.place_hold(req.amount),
            }
        };
        let reservation = match reservation {
            Ok(r) => r,
            Err(e) => {
                // A closed cycle is still worth keeping.
                if locked.has_changes() {
                    locked.commit_and_publish(self).await?;
                } else {
                    locked.rollback().await?;
                }
                return Err(e.into());
            }
        };
        let details = req
            .details
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(StoreError::corrupt)?;
        let now = locked.now;
        let row = holds::Model {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user_id.to_owned(),
            monthly_part: reservation.monthly.millis(),
            permanent_part: reservation.permanent.millis(),
            cycle_start: reservation.cycle_start,
            status: HoldStatus::Open.as_str().to_owned(),
            created_at: now,
            deadline: now + req.ttl.unwrap_or(self.hold_ttl),
            resolved_at: None,
            idempotency_key: req.idempotency_key.clone(),
            request_hash: req.request_hash.clone(),
            journal_entry_id: None,
            details,
            result: None,
        };
        let hold = hold_from(&row);
        let active: holds::ActiveModel = row.into();
        if let Err(e) = holds::Entity::insert(active).exec_without_returning(&locked.txn).await {
            locked.rollback().await?;
            return Err(e.into());
        }
        let change = locked.commit_and_publish(self).await?;
        Ok(Placement::Placed {
            hold,
            wallet: change.wallet,
        })
    }

    /// Charges the actual cost of a call (never more than its hold; a cost
    /// above it is charged the hold and reported as an overrun) and frees
    /// the rest, writing the call's AI_USAGE entry. Resolves the hold once:
    /// a second settle or release is refused.
    pub async fn settle_hold(
        &self,
        user_id: &str,
        hold_id: &str,
        cost: Credits,
        usage: UsageDetails,
    ) -> StoreResult<Resolution> {
        self.resolve_hold(
            user_id,
            hold_id,
            cost,
            HoldStatus::Settled,
            Some(usage),
            Outcome::default(),
        )
        .await
    }

    /// [`Store::settle_hold`], keeping `result` (JSON) with the hold so that
    /// a retry with its idempotency key returns it.
    pub async fn settle_hold_with_result(
        &self,
        user_id: &str,
        hold_id: &str,
        cost: Credits,
        usage: UsageDetails,
        result: String,
    ) -> StoreResult<Resolution> {
        let outcome = Outcome {
            result: Some(result),
            forget_key: false,
        };
        self.resolve_hold(user_id, hold_id, cost, HoldStatus::Settled, Some(usage), outcome)
            .await
    }

    /// Frees a hold and charges nothing; writes the call's entry (FAILED,
    /// say) when `usage` is given.
    pub async fn release_hold(
        &self,
        user_id: &str,
        hold_id: &str,
        usage: Option<UsageDetails>,
    ) -> StoreResult<Resolution> {
        self.resolve_hold(
            user_id,
            hold_id,
            Credits::ZERO,
            HoldStatus::Released,
            usage,
            Outcome::default(),
        )
        .await
    }

    /// [`Store::release_hold`] for a call that failed: its idempotency key is
    /// freed, so a retry with the same key runs again.
    pub async fn release_failed_hold(
        &self,
        user_id: &str,
        hold_id: &str,
        usage: UsageDetails,
    ) -> StoreResult<Resolution> {
        let outcome = Outcome {
            result: None,
            forget_key: true,
        };
        self.resolve_hold(
            user_id,
            hold_id,
            Credits::ZERO,
            HoldStatus::Released,
            Some(usage),
            outcome,
        )
        .await
    }

    async fn resolve_hold(
        &self,
        user_id: &str,
        hold_id: &str,
        cost: Credits,
        status: HoldStatus,
        usage: Option<UsageDetails>,
        outcome: Outcome,
    ) -> StoreResult<Resolution> {
        if cost.is_negative() {
            return Err(StoreError::InvalidInput("a cost cannot be negative".into()));
        }
        let mut locked = self.lock_existing(user_id).await?;
        let mut claim = holds::Entity::update_many()
            .col_expr(holds::Column::Status, Expr::value(status.as_str()))
            .col_expr(holds::Column::ResolvedAt, Expr::value(Some(locked.now)));
        if let Some(result) = outcome.result {
            claim = claim.col_expr(holds::Column::Result, Expr::value(Some(result)));
        }
        if outcome.forget_key || status == HoldStatus::Expired {
            claim = claim.col_expr(holds::Column::IdempotencyKey, Expr::value(Option::<String>::None));
        }
        let claimed = claim
            .filter(holds::Column::Id.eq(hold_id))
            .filter(holds::Column::UserId.eq(user_id))
            .filter(holds::Column::Status.eq(HoldStatus::Open.as_str()))
            .exec_with_returning(&locked.txn)
            .await?
            .pop();
        let Some(row) = claimed else {
            let existing = holds::Entity::find_by_id(hold_id.to_owned())
                .filter(holds::Column::UserId.eq(user_id))
                .one(&locked.txn)
                .await?;
            locked.rollback().await?;
            return Err(match existing {
                Some(h) => StoreError::HoldNotOpen {
                    id: hold_id.to_owned(),
                    status: h.status,
                },
                None => StoreError::NotFound {
                    what: "hold",
                    id: hold_id.to_owned(),
                },
            });
        };
        let reservation = Reservation {
            monthly: Credits::from_millis(row.monthly_part),
            permanent: Credits::from_millis(row.permanent_part),
            cycle_start: row.cycle_start,
        };
        let settlement = locked.state.settle_hold(&reservation, cost);
        let usage = match usage {
            Some(u) => Some(u),
            None if status == HoldStatus::Expired => {
                let mut u: UsageDetails = row
                    .details
                    .as_deref()
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or_default();
                u.status = Some(AiRequestStatus::Failed);
                u.description = Some("Released after its deadline: the request never finished".into());
                (row.details.is_some()).then_some(u)
            }
            None => None,
        };
        let writes_entry = usage.is_some() || settlement.charged.is_positive();
        if writes_entry {
            let posting = Posting {
                kind: ActivityKind::AiUsage,
                monthly_delta: settlement.monthly_delta,
                permanent_delta: settlement.permanent_delta,
                credits_consumed: settlement.charged,
                description: settlement
                    .overrun
                    .then(|| "The provider reported more than was held; charged the hold".into()),
            };
            locked.push(
                posting,
                EntryExtras {
                    usage,
                    hold_id: Some(row.id.clone()),
                    ..EntryExtras::default()
                },
            );
        }
        if let Some(expiry) = settlement.expiry.clone() {
            locked.push(
                expiry,
                EntryExtras {
                    hold_id: Some(row.id.clone()),
                    ..EntryExtras::default()
                },
            );
        }
        let change = locked.commit_and_publish(self).await?;
        let entry = if writes_entry {
            change.entries.iter().find(|e| e.kind == ActivityKind::AiUsage).cloned()
        } else {
            None
        };
        if settlement.overrun {
            tracing::warn!(
                hold_id,
                user_id,
                "provider reported more usage than was held; charged the hold"
            );
        }
        Ok(Resolution {
            charged: settlement.charged,
            overrun: settlement.overrun,
            entry,
            wallet: change.wallet,
        })
    }

    /// The open holds of a user.
    pub async fn open_holds(&self, user_id: &str) -> StoreResult<Vec<Hold>> {
        Ok(holds::Entity::find()
            .filter(holds::Column::UserId.eq(user_id))
            .filter(holds::Column::Status.eq(HoldStatus::Open.as_str()))
            .order_by_asc(holds::Column::CreatedAt)
            .all(&self.db)
            .await?
            .iter()
            .map(hold_from)
            .collect())
    }

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
            .filter(holds::Column::Status.eq(HoldStatus::Open.as_str()))
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
