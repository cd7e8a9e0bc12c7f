//! Spend limits: an admin's monthly cap on the credits a member, or a whole
//! team, may consume, and the counters holds consume them through.
//!
//! A hold locks the counters that apply to its wallet (the member's own and
//! their team's, the team being the JWT `team` claim as last seen) inside
//! its own transaction, after the wallet's lock, and adds what it reserves:
//! concurrent holds of different members of one team serialize on the
//! team's row, so together they never reserve more than the limit leaves.
//! Settling corrects the counter to the actual charge; releasing gives the
//! hold back; a new billing cycle starts the counter from 0. The stricter of
//! the limits binds (see `creditgate_domain::limits`).

use chrono::{DateTime, Utc};
use creditgate_domain::limits::{self, LimitState};
use creditgate_domain::{ActivityKind, Credits, Reservation, cycle_at};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};

use crate::cache::{Cached, ReplicaCache, announce_forget};
use crate::entities::{holds, journal_entries, organizations, spend_limits, users};
use crate::error::{StoreError, StoreResult};
use crate::holds::HoldRequest;
use crate::store::{LockedWallet, Store};

/// Whom a spend limit applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitTarget {
    Member(String),
    Team(String),
}

impl LimitTarget {
    fn scope(&self) -> String {
        match self {
            LimitTarget::Member(id) => member_scope(id),
            LimitTarget::Team(t) => team_scope(t),
        }
    }
}

fn member_scope(user_id: &str) -> String {
    format!("user:{user_id}")
}

fn team_scope(team: &str) -> String {
    format!("team:{team}")
}

/// A spend limit with what was consumed against it in the current cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendLimit {
    /// The member it applies to; `None` for a team limit.
    pub user_id: Option<String>,
    /// The team it applies to; `None` for a member limit.
    pub team: Option<String>,
    pub monthly: Credits,
    /// Consumed (or held by requests in flight) this billing cycle.
    pub spent: Credits,
}

fn state(row: &spend_limits::Model) -> LimitState {
    LimitState {
        monthly: Credits::from_millis(row.monthly_credits),
        spent: Credits::from_millis(row.spent),
        cycle_start: row.cycle_start,
    }
}

fn shown(row: &spend_limits::Model, cycle: DateTime<Utc>) -> SpendLimit {
    SpendLimit {
        user_id: row.user_id.clone(),
        team: row.team.clone(),
        monthly: Credits::from_millis(row.monthly_credits),
        spent: state(row).spent_in(cycle),
    }
}

/// Locks the limits that apply to the locked wallet's owner (their own,
/// and their team's as last seen), in scope order, with one statement: a
/// no-op update (the row lock on PostgreSQL) whose team comes from a
/// subquery. A member of no team has NULL there, which matches nothing.
///
/// An organization this replica knows to have no limit costs nothing (see
/// [`crate::cache`]; a new limit is announced when it commits).
async fn lock_limits(locked: &LockedWallet, cache: &ReplicaCache) -> StoreResult<Vec<spend_limits::Model>> {
    if cache.limited(&locked.org_id) == Some(false) {
        return Ok(Vec::new());
    }
    let ticket = cache.ticket();
    let team_scope = Query::select()
        .expr(Expr::cust("'team:' || users.team"))
        .from(users::Entity)
        .and_where(Expr::col((users::Entity, users::Column::Id)).eq(locked.user_id.as_str()))
        .to_owned();
    let mut rows = spend_limits::Entity::update_many()
        .col_expr(spend_limits::Column::Spent, Expr::col(spend_limits::Column::Spent))
        .filter(spend_limits::Column::OrgId.eq(locked.org_id.as_str()))
        .filter(
            Condition::any()
                .add(spend_limits::Column::Scope.eq(member_scope(&locked.user_id)))
                .add(spend_limits::Column::Scope.in_subquery(team_scope)),
        )
        .exec_with_returning(&*locked.txn)
        .await?;
    if rows.is_empty() {
        // None for this member: is there any in the organization?
        let any = spend_limits::Entity::find()
            .select_only()
            .column(spend_limits::Column::Scope)
            .filter(spend_limits::Column::OrgId.eq(locked.org_id.as_str()))
            .limit(1)
            .into_tuple::<String>()
            .one(&*locked.txn)
            .await?;
        cache.keep_limited(ticket, &locked.org_id, any.is_some());
    }
    rows.sort_by(|a, b| a.scope.cmp(&b.scope));
    Ok(rows)
}

/// Adds `amount` (negative: gives back) to the counters of `rows` for the
/// cycle starting at `cycle`.
async fn consume(
    txn: &impl ConnectionTrait,
    rows: &[spend_limits::Model],
    cycle: DateTime<Utc>,
    amount: Credits,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for row in rows {
        let next = state(row).consume(cycle, amount);
        spend_limits::Entity::update_many()
            .col_expr(spend_limits::Column::Spent, Expr::value(next.spent.millis()))
            .col_expr(spend_limits::Column::CycleStart, Expr::value(next.cycle_start))
            .col_expr(spend_limits::Column::UpdatedAt, Expr::value(now))
            .filter(spend_limits::Column::OrgId.eq(row.org_id.as_str()))
            .filter(spend_limits::Column::Scope.eq(row.scope.as_str()))
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// Reserves what a paid request may take from the locked wallet within its
/// spend limits, and counts it against them. The outer error is a failure
/// of the database; the inner one a refusal (SPEND_LIMIT_REACHED or
/// INSUFFICIENT_CREDITS) after which the caller still decides what to keep.
pub(crate) async fn reserve(
    locked: &mut LockedWallet,
    cache: &ReplicaCache,
    req: &HoldRequest,
) -> StoreResult<Result<Reservation, StoreError>> {
    let rows = lock_limits(locked, cache).await?;
    let cycle = locked.state.cycle.start;
    let left = limits::left_under(&rows.iter().map(state).collect::<Vec<_>>(), cycle);
    let amount = match limits::affordable(req.amount, req.minimum, left) {
        Ok(a) => a,
        Err(reached) => {
            return Ok(Err(StoreError::SpendLimitReached {
                requested: reached.requested,
                left: reached.left,
            }));
        }
    };
    let reservation = match req.minimum {
        Some(min) => locked.state.place_hold_up_to(amount, min.min(amount)),
        None => locked.state.place_hold(amount),
    };
    let reservation = match reservation {
        Ok(r) => r,
        Err(e) => return Ok(Err(e.into())),
    };
    if !rows.is_empty() {
        consume(&*locked.txn, &rows, cycle, reservation.amount(), locked.now).await?;
    }
    Ok(Ok(reservation))
}

/// After a hold of `reservation` resolved charging `charged`: corrects the
/// counters of its cycle to the actual charge (a release gives it all back).
/// Counters already in a later cycle are left alone.
pub(crate) async fn resolve(
    locked: &LockedWallet,
    cache: &ReplicaCache,
    reservation: &Reservation,
    charged: Credits,
) -> StoreResult<()> {
    let correction = Credits::from_millis(charged.millis() - reservation.amount().millis());
    if correction.is_zero() {
        return Ok(());
    }
    let rows: Vec<_> = lock_limits(locked, cache)
        .await?
        .into_iter()
        .filter(|r| r.cycle_start == reservation.cycle_start)
        .collect();
    consume(&*locked.txn, &rows, reservation.cycle_start, correction, locked.now).await
}

impl Store {
    /// The current billing cycle's start of an organization.
    async fn org_cycle<C: ConnectionTrait>(&self, db: &C, org_id: &str) -> StoreResult<DateTime<Utc>> {
        let org = organizations::Entity::find_by_id(org_id.to_owned())
            .one(db)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "organization",
                id: org_id.to_owned(),
            })?;
        Ok(cycle_at(org.billing_anchor, self.clock.now()).start)
    }

    /// Sets (or, with `monthly` `None`, removes) a spend limit in an
    /// organization. A new limit starts from what its member or team already
    /// consumed, or holds, this cycle. A member of another organization is
    /// NOT_FOUND.
    pub async fn set_spend_limit(
        &self,
        org_id: &str,
        target: &LimitTarget,
        monthly: Option<Credits>,
    ) -> StoreResult<Option<SpendLimit>> {
        if let Some(m) = monthly
            && m.is_negative()
        {
            return Err(StoreError::InvalidInput("a spend limit must not be negative".into()));
        }
        if let LimitTarget::Member(id) = target {
            let user = users::Entity::find_by_id(id.clone()).one(&self.db).await?;
            if user.is_none_or(|u| u.org_id != org_id) {
                return Err(StoreError::NotFound {
                    what: "user",
                    id: id.clone(),
                });
            }
        }
        let scope = target.scope();
        let Some(monthly) = monthly else {
            spend_limits::Entity::delete_many()
                .filter(spend_limits::Column::OrgId.eq(org_id))
                .filter(spend_limits::Column::Scope.eq(scope.as_str()))
                .exec(&self.db)
                .await?;
            return Ok(None);
        };
        let now = self.clock.now();
        let txn = self.db.begin().await?;
        let cycle = self.org_cycle(&txn, org_id).await?;
        let updated = spend_limits::Entity::update_many()
            .col_expr(spend_limits::Column::MonthlyCredits, Expr::value(monthly.millis()))
            .col_expr(spend_limits::Column::UpdatedAt, Expr::value(now))
            .filter(spend_limits::Column::OrgId.eq(org_id))
            .filter(spend_limits::Column::Scope.eq(scope.as_str()))
            .exec_with_returning(&txn)
            .await?
            .pop();
        let row = match updated {
            Some(row) => row,
            None => {
                let members = match target {
                    LimitTarget::Member(id) => vec![id.clone()],
                    LimitTarget::Team(team) => {
                        users::Entity::find()
                            .select_only()
                            .column(users::Column::Id)
                            .filter(users::Column::OrgId.eq(org_id))
                            .filter(users::Column::Team.eq(team.as_str()))
                            .order_by_asc(users::Column::Id)
                            .into_tuple()
                            .all(&txn)
                            .await?
                    }
                };
                let spent = consumed_in_cycle(&txn, org_id, &members, cycle).await?;
                let row = spend_limits::ActiveModel {
                    org_id: Set(org_id.to_owned()),
                    scope: Set(scope.clone()),
                    user_id: Set(match target {
                        LimitTarget::Member(id) => Some(id.clone()),
                        LimitTarget::Team(_) => None,
                    }),
                    team: Set(match target {
                        LimitTarget::Team(t) => Some(t.clone()),
                        LimitTarget::Member(_) => None,
                    }),
                    monthly_credits: Set(monthly.millis()),
                    spent: Set(spent.millis()),
                    cycle_start: Set(cycle),
                    updated_at: Set(now),
                };
                let row = spend_limits::Entity::insert(row).exec_with_returning(&txn).await?;
                // Replicas that knew the organization had no limit must look again.
                announce_forget(&txn, self.notify_channel.as_deref(), Cached::Limits, org_id).await?;
                row
            }
        };
        txn.commit().await?;
        self.cache.forget(Cached::Limits, org_id);
        Ok(Some(shown(&row, cycle)))
    }

    /// The spend limits of an organization: members' first, then teams'.
    pub async fn spend_limits(&self, org_id: &str) -> StoreResult<Vec<SpendLimit>> {
        let cycle = self.org_cycle(&self.db, org_id).await?;
        Ok(spend_limits::Entity::find()
            .filter(spend_limits::Column::OrgId.eq(org_id))
            .order_by_asc(spend_limits::Column::Scope)
            .all(&self.db)
            .await?
            .iter()
            .map(|r| shown(r, cycle))
            .collect())
    }

    /// The spend limit that applies to a member now: of their own and their
    /// team's, the one with the least left (the stricter binds).
    pub async fn spend_limit_for(&self, user_id: &str) -> StoreResult<Option<SpendLimit>> {
        let Some(user) = users::Entity::find_by_id(user_id.to_owned()).one(&self.db).await? else {
            return Ok(None);
        };
        let mut scopes = vec![member_scope(user_id)];
        if let Some(team) = &user.team {
            scopes.push(team_scope(team));
        }
        let rows = spend_limits::Entity::find()
            .filter(spend_limits::Column::OrgId.eq(user.org_id.as_str()))
            .filter(spend_limits::Column::Scope.is_in(scopes))
            .order_by_asc(spend_limits::Column::Scope)
            .all(&self.db)
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let cycle = self.org_cycle(&self.db, &user.org_id).await?;
        Ok(rows
            .iter()
            .min_by_key(|r| state(r).left_in(cycle))
            .map(|r| shown(r, cycle)))
    }
}

/// What `members` consumed this cycle (AI usage charged) plus what their
/// open holds of this cycle reserve.
async fn consumed_in_cycle(
    txn: &DatabaseTransaction,
    org_id: &str,
    members: &[String],
    cycle: DateTime<Utc>,
) -> StoreResult<Credits> {
    if members.is_empty() {
        return Ok(Credits::ZERO);
    }
    let mut total = 0i64;
    for chunk in members.chunks(500) {
        let charged: Option<i64> = journal_entries::Entity::find()
            .select_only()
            .expr(Expr::cust("CAST(COALESCE(SUM(credits_consumed), 0) AS BIGINT)"))
            .filter(journal_entries::Column::OrgId.eq(org_id))
            .filter(journal_entries::Column::Kind.eq(ActivityKind::AiUsage.as_str()))
            .filter(journal_entries::Column::At.gte(cycle))
            .filter(journal_entries::Column::UserId.is_in(chunk.iter().cloned()))
            .into_tuple()
            .one(txn)
            .await?;
        let held: Option<i64> = holds::Entity::find()
            .select_only()
            .expr(Expr::cust(
                "CAST(COALESCE(SUM(monthly_part + permanent_part), 0) AS BIGINT)",
            ))
            .filter(crate::holds::is_open())
            .filter(holds::Column::CycleStart.eq(cycle))
            .filter(holds::Column::UserId.is_in(chunk.iter().cloned()))
            .into_tuple()
            .one(txn)
            .await?;
        total = total
            .saturating_add(charged.unwrap_or(0))
            .saturating_add(held.unwrap_or(0));
    }
    Ok(Credits::from_millis(total))
}
