//! Month rollups per user: for a whole UTC month whose every day is rolled
//! up, the sums per user of its days (`usage_user_months`), marked in
//! `usage_rollup_months` in the same transaction (the marker's primary key
//! is the claim, as for days). A long range then reads a row per user and
//! month for its whole rolled-up months instead of one per user and day.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Months, NaiveTime, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, TransactionTrait};

use crate::entities::{usage_rollup_days, usage_rollup_months, usage_user_days, usage_user_months};
use crate::error::StoreResult;
use crate::rollups::{claim, insert_chunked, rolled_sums, sum_row, sums_of};
use crate::store::Store;
use crate::usage::{Row, Span};
use crate::usage_journal::within;

/// Midnight UTC starting the month of `at`.
pub(crate) fn month_of(at: DateTime<Utc>) -> DateTime<Utc> {
    let day = at.date_naive();
    day.with_day(1).unwrap_or(day).and_time(NaiveTime::MIN).and_utc()
}

/// The start of the month after the one starting at `month`.
pub(crate) fn next_month(month: DateTime<Utc>) -> DateTime<Utc> {
    month
        .checked_add_months(Months::new(1))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The days of the month starting at `month`.
fn days_in(month: DateTime<Utc>) -> i64 {
    (next_month(month) - month).num_days()
}

impl Store {
    /// Splits runs of rolled-up days into the whole months among them that
    /// are rolled up per user, and the other days.
    pub(crate) async fn split_months(&self, org_id: &str, rolled: &[Span]) -> StoreResult<(Vec<Span>, Vec<Span>)> {
        let mut whole = Vec::new();
        for (start, end) in rolled {
            let mut m = month_of(*start);
            if m < *start {
                m = next_month(m);
            }
            while next_month(m) <= *end {
                whole.push(m);
                m = next_month(m);
            }
        }
        if whole.is_empty() {
            return Ok((Vec::new(), rolled.to_vec()));
        }
        let built: BTreeSet<DateTime<Utc>> = usage_rollup_months::Entity::find()
            .select_only()
            .column(usage_rollup_months::Column::Month)
            .filter(usage_rollup_months::Column::OrgId.eq(org_id))
            .filter(usage_rollup_months::Column::Month.is_in(whole.clone()))
            .into_tuple::<DateTime<Utc>>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let months: Vec<Span> = whole
            .into_iter()
            .filter(|m| built.contains(m))
            .map(|m| (m, next_month(m)))
            .collect();
        let mut days = Vec::new();
        for (start, end) in rolled {
            let mut at = *start;
            for (m, m_end) in months.iter().filter(|(m, m_end)| m >= start && m_end <= end) {
                if at < *m {
                    days.push((at, *m));
                }
                at = *m_end;
            }
            if at < *end {
                days.push((at, *end));
            }
        }
        Ok((months, days))
    }

    pub(crate) async fn rolled_months_by_user(&self, org_id: &str, spans: &[Span]) -> StoreResult<Vec<Row>> {
        if spans.is_empty() {
            return Ok(Vec::new());
        }
        let q = rolled_sums(
            usage_user_months::Entity::find()
                .filter(usage_user_months::Column::OrgId.eq(org_id))
                .filter(within(usage_user_months::Column::Month, spans))
                .select_only()
                .column(usage_user_months::Column::UserId),
        )
        .group_by(usage_user_months::Column::UserId);
        Ok(q.into_tuple().all(&self.db).await?)
    }

    /// The months of `org_id` rolled up per user already.
    pub(crate) async fn rolled_months(&self, org_id: &str) -> StoreResult<BTreeSet<DateTime<Utc>>> {
        Ok(usage_rollup_months::Entity::find()
            .select_only()
            .column(usage_rollup_months::Column::Month)
            .filter(usage_rollup_months::Column::OrgId.eq(org_id))
            .into_tuple::<DateTime<Utc>>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect())
    }

    /// Rolls up the month of `org_id` starting at `month` per user from its
    /// days, in one transaction. False when it was rolled up already, or
    /// when one of its days is not.
    pub async fn roll_up_month(&self, org_id: &str, month: DateTime<Utc>) -> StoreResult<bool> {
        let txn = self.db.begin().await?;
        let marker = usage_rollup_months::ActiveModel {
            org_id: Set(org_id.to_owned()),
            month: Set(month),
            built_at: Set(self.clock.now()),
        };
        let key = [usage_rollup_months::Column::OrgId, usage_rollup_months::Column::Month];
        let claimed = claim(&txn, marker, key).await?;
        let span = [(month, next_month(month))];
        let days = usage_rollup_days::Entity::find()
            .filter(usage_rollup_days::Column::OrgId.eq(org_id))
            .filter(within(usage_rollup_days::Column::Day, &span))
            .count(&txn)
            .await?;
        if !claimed || i64::try_from(days).unwrap_or(i64::MAX) != days_in(month) {
            txn.rollback().await?;
            return Ok(false);
        }
        let per_user: Vec<Row> = rolled_sums(
            usage_user_days::Entity::find()
                .filter(usage_user_days::Column::OrgId.eq(org_id))
                .filter(within(usage_user_days::Column::Day, &span))
                .select_only()
                .column(usage_user_days::Column::UserId),
        )
        .group_by(usage_user_days::Column::UserId)
        .into_tuple()
        .all(&txn)
        .await?;
        let rows = per_user.iter().map(|r| {
            sum_row!(
                usage_user_months {
                    org_id: org_id.to_owned(),
                    month: month,
                    user_id: r.0.clone()
                },
                sums_of(r)
            )
        });
        insert_chunked(&txn, rows.collect()).await?;
        txn.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        let at: DateTime<Utc> = "2028-02-10T15:00:00Z".parse().unwrap();
        assert_eq!(month_of(at).to_rfc3339(), "2028-02-01T00:00:00+00:00");
        assert_eq!(next_month(month_of(at)).to_rfc3339(), "2028-03-01T00:00:00+00:00");
        assert_eq!(days_in(month_of(at)), 29);
    }
}
