//! Usage rollups: the AI usage of each organization summed per closed UTC
//! day, per user (`usage_user_days`) and per feature (`usage_org_days`),
//! built off the request path by the periodic sweep.
//!
//! The invariant they rest on: a journal entry is stamped `at` by its
//! writer's clock when its wallet transaction begins
//! ([`Store::lock_wallet`](crate::store)), and it is committed when that
//! transaction ends, a moment later. Entries are never updated nor deleted.
//! So once a day's end is older than [`ROLLUP_GRACE`] (longer than any
//! wallet transaction plus the clock skew between replicas), no entry of
//! that day is still to come: the day is *closed*, and its sums never
//! change. Only closed days are rolled up.
//!
//! A day's sums and its row in `usage_rollup_days` are written in one
//! transaction, the row first: its primary key is the claim, so when
//! replicas sweep at once, one rolls the day up and the others leave it
//! (their insert conflicts; on PostgreSQL it waits for the winner's commit).
//! Readers use the rollups of a day only when its row is there, and the
//! journal for every other moment, so the answers never depend on how far
//! the sweep got. Whole months are summed per user once all their days are
//! ([`crate::rollup_months`]).

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, IntoIden, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Select, TransactionTrait,
};

use crate::entities::{organizations, usage_org_days, usage_rollup_days, usage_user_days};
use crate::error::StoreResult;
use crate::rollup_months::{month_of, next_month};
use crate::store::Store;
use crate::usage::{Bucket, Row, Span, bucket_sql, day_at_or_after, day_of, totals};
use crate::usage_journal::{self as journal, within};

/// How long after its end a UTC day is closed (see the module's invariant).
pub const ROLLUP_GRACE: Duration = Duration::hours(1);

/// Rows per INSERT when writing a day's sums.
pub(crate) const INSERT_CHUNK: usize = 500;

/// A rollup row of the entity module `$entity`: its keys, and the sums
/// `$sums` (see [`sums_of`]).
macro_rules! sum_row {
    ($entity:ident { $($key:ident: $value:expr),* $(,)? }, $sums:expr) => {{
        let s = $sums;
        $entity::ActiveModel {
            $($key: Set($value),)*
            credits: Set(s[0]),
            credits_avoided: Set(s[1]),
            requests: Set(s[2]),
            byok_requests: Set(s[3]),
            input_tokens: Set(s[4]),
            output_tokens: Set(s[5]),
            permanent_spent: Set(s[6]),
        }
    }};
}
pub(crate) use sum_row;

/// Inserts the marker `row` unless one with the same `key` is there:
/// whether this call claimed it (so that two replicas never build the same
/// rollup).
pub(crate) async fn claim<A, C, const N: usize>(txn: &DatabaseTransaction, row: A, key: [C; N]) -> StoreResult<bool>
where
    A: ActiveModelTrait,
    C: IntoIden,
{
    let inserted = A::Entity::insert(row)
        .on_conflict(OnConflict::columns(key).do_nothing().to_owned())
        .exec_without_returning(txn)
        .await?;
    Ok(inserted > 0)
}

/// Inserts `rows`, [`INSERT_CHUNK`] to a statement.
pub(crate) async fn insert_chunked<A: ActiveModelTrait>(txn: &DatabaseTransaction, rows: Vec<A>) -> StoreResult<()> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(INSERT_CHUNK).collect();
        A::Entity::insert_many(chunk).exec_without_returning(txn).await?;
    }
    Ok(())
}

/// Which part of a range comes from where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Runs of rolled-up whole days.
    pub rolled: Vec<Span>,
    /// The rest of the range, read from the journal.
    pub raw: Vec<Span>,
}

pub(crate) fn rolled_sums<E: EntityTrait>(q: Select<E>) -> Select<E> {
    let sum = |col: &str| Expr::cust(format!("CAST(COALESCE(SUM({col}), 0) AS BIGINT)"));
    q.expr_as(sum("credits"), "credits")
        .expr_as(sum("credits_avoided"), "avoided")
        .expr_as(sum("requests"), "requests")
        .expr_as(sum("byok_requests"), "byok")
        .expr_as(sum("input_tokens"), "input")
        .expr_as(sum("output_tokens"), "output")
        .expr_as(sum("permanent_spent"), "permanent")
}

fn user_days(org_id: &str, spans: &[Span]) -> Select<usage_user_days::Entity> {
    usage_user_days::Entity::find()
        .filter(usage_user_days::Column::OrgId.eq(org_id))
        .filter(within(usage_user_days::Column::Day, spans))
}

fn org_days(org_id: &str, spans: &[Span]) -> Select<usage_org_days::Entity> {
    usage_org_days::Entity::find()
        .filter(usage_org_days::Column::OrgId.eq(org_id))
        .filter(within(usage_org_days::Column::Day, spans))
}

impl Store {
    /// Splits `[from, to)` into the runs of rolled-up days it wholly holds
    /// and the rest.
    pub(crate) async fn usage_plan(&self, org_id: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<Plan> {
        let (first, last) = (day_at_or_after(from), day_of(to));
        let days: Vec<DateTime<Utc>> = if first < last {
            usage_rollup_days::Entity::find()
                .select_only()
                .column(usage_rollup_days::Column::Day)
                .filter(usage_rollup_days::Column::OrgId.eq(org_id))
                .filter(usage_rollup_days::Column::Day.gte(first))
                .filter(usage_rollup_days::Column::Day.lt(last))
                .order_by_asc(usage_rollup_days::Column::Day)
                .into_tuple()
                .all(&self.db)
                .await?
        } else {
            Vec::new()
        };
        let mut plan = Plan::default();
        for day in days {
            match plan.rolled.last_mut() {
                Some((_, end)) if *end == day => *end = day + Duration::days(1),
                _ => plan.rolled.push((day, day + Duration::days(1))),
            }
        }
        let mut at = from;
        for (start, end) in &plan.rolled {
            if at < *start {
                plan.raw.push((at, *start));
            }
            at = *end;
        }
        if at < to {
            plan.raw.push((at, to));
        }
        Ok(plan)
    }

    pub(crate) async fn rolled_totals(&self, org_id: &str, spans: &[Span]) -> StoreResult<Option<Row>> {
        if spans.is_empty() {
            return Ok(None);
        }
        let q = rolled_sums(
            org_days(org_id, spans)
                .select_only()
                .expr_as(Expr::cust("CAST('' AS TEXT)"), "scope"),
        );
        Ok(q.into_tuple().one(&self.db).await?)
    }

    pub(crate) async fn rolled_by_user(&self, org_id: &str, spans: &[Span]) -> StoreResult<Vec<Row>> {
        if spans.is_empty() {
            return Ok(Vec::new());
        }
        let q = rolled_sums(
            user_days(org_id, spans)
                .select_only()
                .column(usage_user_days::Column::UserId),
        )
        .group_by(usage_user_days::Column::UserId);
        Ok(q.into_tuple().all(&self.db).await?)
    }

    pub(crate) async fn rolled_by_feature(&self, org_id: &str, spans: &[Span]) -> StoreResult<Vec<Row>> {
        if spans.is_empty() {
            return Ok(Vec::new());
        }
        let q = rolled_sums(
            org_days(org_id, spans)
                .filter(usage_org_days::Column::Feature.ne(""))
                .select_only()
                .column(usage_org_days::Column::Feature),
        )
        .group_by(usage_org_days::Column::Feature);
        Ok(q.into_tuple().all(&self.db).await?)
    }

    pub(crate) async fn rolled_by_bucket(&self, org_id: &str, spans: &[Span], bucket: Bucket) -> StoreResult<Vec<Row>> {
        if spans.is_empty() {
            return Ok(Vec::new());
        }
        let expr = bucket_sql(self.backend(), bucket, "usage_org_days.day");
        let q = rolled_sums(
            org_days(org_id, spans)
                .select_only()
                .expr_as(Expr::cust(expr.clone()), "bucket"),
        )
        .group_by(Expr::cust(expr));
        Ok(q.into_tuple().all(&self.db).await?)
    }
}

pub(crate) fn sums_of(r: &Row) -> [i64; 7] {
    let t = totals(r);
    [
        t.credits.millis(),
        t.credits_avoided.millis(),
        t.requests,
        t.byok_requests,
        t.input_tokens,
        t.output_tokens,
        t.permanent_spent.millis(),
    ]
}

impl Store {
    /// Rolls up to `limit` closed days not rolled up yet, of every
    /// organization, oldest first (from the first of the month of its first
    /// AI usage), and then its whole months whose days are all rolled up.
    /// Returns how many days and months this call rolled up (those another
    /// replica took meanwhile are not counted).
    pub async fn roll_up_usage(&self, limit: u64) -> StoreResult<u64> {
        let closed_before = day_of(self.clock.now() - ROLLUP_GRACE);
        let orgs: Vec<String> = organizations::Entity::find()
            .select_only()
            .column(organizations::Column::Id)
            .order_by_asc(organizations::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut built = 0;
        for org in orgs {
            if built >= limit {
                break;
            }
            let Some(first) = journal::first_at(&self.db, &org).await? else {
                continue;
            };
            let start = month_of(first);
            if start >= closed_before {
                continue;
            }
            let mut done: BTreeSet<DateTime<Utc>> = usage_rollup_days::Entity::find()
                .select_only()
                .column(usage_rollup_days::Column::Day)
                .filter(usage_rollup_days::Column::OrgId.eq(org.as_str()))
                .filter(usage_rollup_days::Column::Day.gte(start))
                .into_tuple::<DateTime<Utc>>()
                .all(&self.db)
                .await?
                .into_iter()
                .collect();
            let mut day = start;
            while day < closed_before && built < limit {
                if !done.contains(&day) {
                    if self.roll_up_day(&org, day).await? {
                        built += 1;
                    }
                    // Rolled up now, by this call or by another replica.
                    done.insert(day);
                }
                day += Duration::days(1);
            }
            let months = self.rolled_months(&org).await?;
            let mut month = start;
            while next_month(month) <= closed_before && built < limit {
                let whole =
                    (0..(next_month(month) - month).num_days()).all(|d| done.contains(&(month + Duration::days(d))));
                if whole && !months.contains(&month) && self.roll_up_month(&org, month).await? {
                    built += 1;
                }
                month = next_month(month);
            }
        }
        Ok(built)
    }

    /// Rolls up one closed day of `org_id` (starting at midnight UTC `day`)
    /// in one transaction. False when it was rolled up already (by another
    /// replica, maybe at this very moment).
    pub async fn roll_up_day(&self, org_id: &str, day: DateTime<Utc>) -> StoreResult<bool> {
        let txn = self.db.begin().await?;
        let marker = usage_rollup_days::ActiveModel {
            org_id: Set(org_id.to_owned()),
            day: Set(day),
            built_at: Set(self.clock.now()),
        };
        let key = [usage_rollup_days::Column::OrgId, usage_rollup_days::Column::Day];
        if !claim(&txn, marker, key).await? {
            txn.rollback().await?;
            return Ok(false);
        }
        let span = [(day, day + Duration::days(1))];
        let per_user = journal::by_user(&txn, org_id, &span).await?;
        let per_feature = journal::by_feature(&txn, org_id, &span, true).await?;
        let user_rows = per_user.iter().map(|r| {
            sum_row!(
                usage_user_days {
                    org_id: org_id.to_owned(),
                    day: day,
                    user_id: r.0.clone()
                },
                sums_of(r)
            )
        });
        insert_chunked(&txn, user_rows.collect()).await?;
        let feature_rows = per_feature.iter().map(|r| {
            sum_row!(
                usage_org_days {
                    org_id: org_id.to_owned(),
                    day: day,
                    feature: r.0.clone()
                },
                sums_of(r)
            )
        });
        insert_chunked(&txn, feature_rows.collect()).await?;
        txn.commit().await?;
        Ok(true)
    }
}
