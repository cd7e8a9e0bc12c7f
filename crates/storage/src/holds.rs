//! Holds: credits reserved for a call whose cost is known only afterwards,
//! resolved exactly once (settled or released).

use chrono::Duration;
use creditgate_domain::{ActivityKind, AiRequestStatus, Credits, HoldStatus, Posting, Reservation};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::entities::{holds, journal_entries};
use crate::error::{StoreError, StoreResult};
use crate::group::{Batch, Claimed, Done, HoldClaim, Op, Resolve, claim_holds};
use crate::model::{Entry, Hold, Resolution, UsageDetails, Wallet};
use crate::outbox::{OutgoingEvent, event_types};
use crate::store::{EntryExtras, LockedWallet, Store};

/// The condition "the hold is open", with the status written out rather
/// than bound: the holds' indexes by status keep only the open holds
/// (`WHERE status = 'open'`), and a planner uses a partial index only for a
/// query whose condition it can see implies the index's, which a bound
/// parameter does not show it.
pub(crate) fn is_open() -> Expr {
    Expr::cust(open_condition())
}

/// [`is_open`] as SQL: `holds.status = 'open'`.
pub(crate) fn open_condition() -> String {
    format!("holds.status = '{}'", HoldStatus::Open.as_str())
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
#[derive(Debug, Default, Clone)]
pub(crate) struct Outcome {
    /// The call's result (JSON), for idempotent retries.
    result: Option<String>,
    /// Free the idempotency key (the call failed; a retry runs again).
    forget_key: bool,
    /// The provider refused the user's own key: `byok.key_failed`, with
    /// the provider and why.
    key_failed: Option<(String, String)>,
}

impl Outcome {
    /// A call that answered: `result` is kept for retries.
    pub(crate) fn with_result(result: String) -> Self {
        Outcome {
            result: Some(result),
            ..Outcome::default()
        }
    }

    /// A call that failed: a retry with its key runs again.
    pub(crate) fn failed() -> Self {
        Outcome {
            forget_key: true,
            ..Outcome::default()
        }
    }
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

/// What applying a hold to a locked wallet gave.
pub(crate) enum HoldApplied {
    Placed(Hold),
    Existing(Placement),
}

/// What applying a resolution to a locked wallet gave: its entry is the
/// `entry`-th of the change the wallet commits.
pub(crate) struct ResolveApplied {
    pub charged: Credits,
    pub overrun: bool,
    pub entry: Option<usize>,
}

/// A refusal (the inner error) leaves the locked wallet as it was; the
/// outer error is a failure of the database, after which the transaction
/// must be given up.
pub(crate) type Applied<T> = StoreResult<Result<T, StoreError>>;

impl Store {
    // ---------------------------------------------------------------- holds

    /// Reserves credits for a call, monthly first; INSUFFICIENT_CREDITS when
    /// the wallet does not afford it.
    pub async fn place_hold(&self, user_id: &str, req: &HoldRequest) -> StoreResult<Placement> {
        match self
            .submit(Op::Hold {
                user_id: user_id.to_owned(),
                req: req.clone(),
            })
            .await?
        {
            Done::Hold(p) => Ok(p),
            Done::Resolve(_) => Err(StoreError::corrupt("a hold was answered as a resolution")),
        }
    }

    /// Places a hold on `locked` (see [`Store::place_hold`]).
    pub(crate) async fn apply_hold(
        &self,
        batch: &Batch,
        locked: &mut LockedWallet,
        req: &HoldRequest,
    ) -> Applied<HoldApplied> {
        if let Some(key) = &req.idempotency_key {
            let prior = holds::Entity::find()
                .filter(holds::Column::UserId.eq(locked.user_id.as_str()))
                .filter(holds::Column::IdempotencyKey.eq(key.as_str()))
                .one(&*locked.txn)
                .await?;
            if let Some(prior) = prior {
                if prior.request_hash != req.request_hash {
                    return Ok(Err(StoreError::IdempotencyConflict));
                }
                let entry = journal_entries::Entity::find()
                    .filter(journal_entries::Column::UserId.eq(locked.user_id.as_str()))
                    .filter(journal_entries::Column::HoldId.eq(prior.id.as_str()))
                    .filter(journal_entries::Column::Kind.eq(ActivityKind::AiUsage.as_str()))
                    .one(&*locked.txn)
                    .await?;
                let unwritten = batch.defers_entry_of(&prior.id) || locked.pending_entry_of(&prior.id);
                if entry.is_none() && unwritten {
                    // Resolved earlier in this batch, its entry not written
                    // yet: the batch is run again one operation at a time.
                    return Err(StoreError::Unavailable(
                        "a hold resolved in this batch was asked for again".into(),
                    ));
                }
                let status = prior.status.parse().map_err(StoreError::corrupt)?;
                return Ok(Ok(HoldApplied::Existing(Placement::Existing {
                    hold: hold_from(&prior),
                    status,
                    entry: entry.map(Entry::try_from).transpose()?.map(Box::new),
                    result: prior.result.clone(),
                })));
            }
        }
        let reservation = if req.amount.is_zero() && req.minimum.is_none() {
            // A request paid otherwise (BYOK) still takes a hold of nothing:
            // its idempotency, its result and its sweep work the same way.
            creditgate_domain::Reservation {
                monthly: Credits::ZERO,
                permanent: Credits::ZERO,
                cycle_start: locked.state.cycle.start,
            }
        } else {
            // The wallet and the spend limits that apply, in one step.
            match crate::limits::reserve(locked, &self.cache, req).await? {
                Ok(r) => r,
                Err(refused) => return Ok(Err(refused)),
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
            user_id: locked.user_id.clone(),
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
        // Written with the batch's other new holds, in one statement.
        batch.defer_hold(row);
        Ok(Ok(HoldApplied::Placed(hold)))
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
        let outcome = Outcome::with_result(result);
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
        self.resolve_hold(
            user_id,
            hold_id,
            Credits::ZERO,
            HoldStatus::Released,
            Some(usage),
            Outcome::failed(),
        )
        .await
    }

    /// [`Store::release_failed_hold`] for a request the provider refused
    /// because of the user's own (BYOK) key: raises `byok.key_failed` in
    /// the same transaction. `reason` must not contain the key.
    pub async fn release_refused_key_hold(
        &self,
        user_id: &str,
        hold_id: &str,
        usage: UsageDetails,
        provider: &str,
        reason: &str,
    ) -> StoreResult<Resolution> {
        let outcome = Outcome {
            result: None,
            forget_key: true,
            key_failed: Some((provider.to_owned(), reason.to_owned())),
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

    pub(crate) async fn resolve_hold(
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
        let op = Op::Resolve(Resolve {
            user_id: user_id.to_owned(),
            hold_id: hold_id.to_owned(),
            cost,
            status,
            usage,
            outcome,
        });
        match self.submit(op).await? {
            Done::Resolve(r) => Ok(r),
            Done::Hold(_) => Err(StoreError::corrupt("a resolution was answered as a hold")),
        }
    }

    /// Resolves a hold of `locked` (see [`Store::resolve_hold`]).
    pub(crate) async fn apply_resolve(
        &self,
        batch: &Batch,
        locked: &mut LockedWallet,
        r: &Resolve,
    ) -> Applied<ResolveApplied> {
        let Resolve {
            hold_id,
            cost,
            status,
            usage,
            outcome,
            ..
        } = r;
        let (cost, status) = (*cost, *status);
        let claimed = match batch.take_claim(&locked.user_id, hold_id) {
            Some(claimed) => claimed,
            None => self.claim_hold(locked, r).await?,
        };
        let Some(row) = claimed else {
            let existing = holds::Entity::find_by_id(hold_id.clone())
                .filter(holds::Column::UserId.eq(locked.user_id.as_str()))
                .one(&*locked.txn)
                .await?;
            return Ok(Err(match existing {
                Some(h) => StoreError::HoldNotOpen {
                    id: hold_id.clone(),
                    status: h.status,
                },
                None => StoreError::NotFound {
                    what: "hold",
                    id: hold_id.clone(),
                },
            }));
        };
        let reservation = Reservation {
            monthly: Credits::from_millis(row.monthly_part),
            permanent: Credits::from_millis(row.permanent_part),
            cycle_start: row.cycle_start,
        };
        let settlement = locked.state.settle_hold(&reservation, cost);
        crate::limits::resolve(locked, &self.cache, &reservation, settlement.charged).await?;
        let usage = match usage {
            Some(u) => Some(u.clone()),
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
        let mut entry = None;
        if usage.is_some() || settlement.charged.is_positive() {
            let posting = Posting {
                kind: ActivityKind::AiUsage,
                monthly_delta: settlement.monthly_delta,
                permanent_delta: settlement.permanent_delta,
                credits_consumed: settlement.charged,
                description: settlement
                    .overrun
                    .then(|| "The provider reported more than was held; charged the hold".into()),
            };
            entry = Some(locked.push(
                posting,
                EntryExtras {
                    usage,
                    hold_id: Some(row.id.clone()),
                    ..EntryExtras::default()
                },
            ));
        }
        if let Some((provider, reason)) = &outcome.key_failed {
            let event = OutgoingEvent::new(
                event_types::BYOK_KEY_FAILED,
                serde_json::json!({
                    "userId": locked.user_id,
                    "orgId": locked.org_id,
                    "provider": provider,
                    "reason": reason,
                    "holdId": row.id,
                }),
            );
            crate::outbox::enqueue(&*locked.txn, &self.webhooks, &event, locked.now).await?;
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
        if settlement.overrun {
            tracing::warn!(
                hold_id = row.id,
                user_id = locked.user_id,
                "provider reported more usage than was held; charged the hold"
            );
        }
        Ok(Ok(ResolveApplied {
            charged: settlement.charged,
            overrun: settlement.overrun,
            entry,
        }))
    }

    /// Claims the hold `r` resolves, if it is still open (a batch claims
    /// its holds together, see [`crate::group`]).
    async fn claim_hold(&self, locked: &LockedWallet, r: &Resolve) -> StoreResult<Option<Claimed>> {
        Ok(claim_holds(&locked.txn, &[r.claim(locked.now)]).await?.pop())
    }

    /// The open holds of a user.
    pub async fn open_holds(&self, user_id: &str) -> StoreResult<Vec<Hold>> {
        Ok(holds::Entity::find()
            .filter(holds::Column::UserId.eq(user_id))
            .filter(is_open())
            .order_by_asc(holds::Column::CreatedAt)
            .all(&self.db)
            .await?
            .iter()
            .map(hold_from)
            .collect())
    }
}

impl Resolve {
    /// What resolving takes of its hold at `now`: the new status, the
    /// result kept for retries, and whether the idempotency key is freed
    /// (a failed call, or one the sweep gave up on).
    pub(crate) fn claim(&self, now: chrono::DateTime<chrono::Utc>) -> HoldClaim {
        HoldClaim {
            id: self.hold_id.clone(),
            user_id: self.user_id.clone(),
            status: self.status,
            resolved_at: now,
            result: self.outcome.result.clone(),
            forget_key: self.outcome.forget_key || self.status == HoldStatus::Expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use creditgate_domain::{ManualClock, PlanCatalog};
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    use super::*;
    use crate::testing::{Backend, TestDb, member};

    /// The open holds' indexes keep the holds whose status is the one the
    /// store writes for an open hold, so a query of open holds (whose
    /// condition is [`open_condition`]) can use them: on SQLite, a user's
    /// open holds are read from `holds_open_user`, not from every hold.
    async fn the_open_holds_indexes_are_the_stores(backend: Backend) {
        assert_eq!(HoldStatus::Open.as_str(), creditgate_migrations::OPEN_STATUS);
        let db = TestDb::new(backend).await.expect("database");
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let store = db.store(clock, PlanCatalog::shipped()).await.expect("store");
        store.ensure_user(&member("ana", "org")).await.expect("user");
        let (sql, plan_sql) = match store.backend() {
            DbBackend::Sqlite => (
                "SELECT sql AS d FROM sqlite_master WHERE name IN ('holds_open_deadline', 'holds_open_user')",
                format!(
                    "EXPLAIN QUERY PLAN SELECT id FROM holds WHERE user_id = 'ana' AND {}",
                    open_condition()
                ),
            ),
            _ => (
                "SELECT indexdef AS d FROM pg_indexes WHERE indexname IN ('holds_open_deadline', 'holds_open_user')",
                String::new(),
            ),
        };
        let rows = store
            .db
            .query_all_raw(Statement::from_string(store.backend(), sql))
            .await
            .expect("definitions");
        assert_eq!(rows.len(), 2);
        let open = format!("'{}'", HoldStatus::Open.as_str());
        for row in rows {
            let d: String = row.try_get("", "d").expect("definition");
            assert!(d.contains(&open), "{d}");
        }
        if plan_sql.is_empty() {
            return;
        }
        let plan = store
            .db
            .query_all_raw(Statement::from_string(store.backend(), plan_sql))
            .await
            .expect("plan");
        let details: Vec<String> = plan.iter().map(|r| r.try_get("", "detail").expect("detail")).collect();
        assert!(details.iter().any(|d| d.contains("holds_open_user")), "{details:?}");
    }

    #[tokio::test]
    async fn sqlite_the_open_holds_indexes_are_the_stores() {
        the_open_holds_indexes_are_the_stores(Backend::Sqlite).await;
    }

    #[tokio::test]
    async fn postgres_the_open_holds_indexes_are_the_stores() {
        the_open_holds_indexes_are_the_stores(Backend::Postgres).await;
    }
}
