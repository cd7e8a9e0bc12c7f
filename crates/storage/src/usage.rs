//! Aggregate AI usage of an organization, for its admins.
//!
//! Each report over `[from, to)` is answered in two parts added together:
//! the rollups of the whole UTC days of the range that are rolled up (see
//! [`crate::rollups`]) and the journal entries of everything else (partial
//! days at the edges, today, closed days not rolled up yet). Both parts are
//! read concurrently, and their sum equals the sum of the journal alone.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, NaiveTime, Utc};
use creditgate_domain::Credits;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect};

use crate::entities::users;
use crate::error::{StoreError, StoreResult};
use crate::store::Store;
use crate::usage_journal as journal;

/// Sums over AI interactions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTotals {
    /// Credits charged.
    pub credits: Credits,
    /// What BYOK requests would have cost in credits.
    pub credits_avoided: Credits,
    pub requests: i64,
    pub byok_requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Credits paid from permanent (bought or earned) balances: what BYOK
    /// would have saved beyond the monthly allocation.
    pub permanent_spent: Credits,
}

impl UsageTotals {
    pub fn add(&mut self, o: &UsageTotals) {
        self.credits = Credits::from_millis(self.credits.millis().saturating_add(o.credits.millis()));
        self.credits_avoided =
            Credits::from_millis(self.credits_avoided.millis().saturating_add(o.credits_avoided.millis()));
        self.requests += o.requests;
        self.byok_requests += o.byok_requests;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.permanent_spent =
            Credits::from_millis(self.permanent_spent.millis().saturating_add(o.permanent_spent.millis()));
    }
}

/// The AI usage of one team (the JWT `team` claim as last seen for each
/// user; `None`: no team).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamUsage {
    pub team: Option<String>,
    /// Users of the organization in this team.
    pub members: i64,
    /// Of them, those with at least one BYOK key.
    pub byok_members: i64,
    pub totals: UsageTotals,
}

/// The AI usage of one bucket of a trend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePoint {
    pub at: DateTime<Utc>,
    pub totals: UsageTotals,
}

/// A time span `[start, end)`.
pub(crate) type Span = (DateTime<Utc>, DateTime<Utc>);
/// A key and its sums, as the database returns them.
pub(crate) type Row = (String, i64, i64, i64, i64, i64, i64, i64);

/// Ids per `IN (...)` list.
const IDS_PER_QUERY: usize = 1_000;

pub(crate) fn totals(r: &Row) -> UsageTotals {
    UsageTotals {
        credits: Credits::from_millis(r.1),
        credits_avoided: Credits::from_millis(r.2),
        requests: r.3,
        byok_requests: r.4,
        input_tokens: r.5,
        output_tokens: r.6,
        permanent_spent: Credits::from_millis(r.7),
    }
}

/// Adds rows of both parts up by key.
fn merge<K: Ord, R, const N: usize>(
    parts: [Vec<R>; N],
    split: impl Fn(R) -> (K, UsageTotals),
) -> BTreeMap<K, UsageTotals> {
    let mut out: BTreeMap<K, UsageTotals> = BTreeMap::new();
    for row in parts.into_iter().flatten() {
        let (k, t) = split(row);
        out.entry(k).or_default().add(&t);
    }
    out
}

/// Midnight UTC starting the day of `at`.
pub(crate) fn day_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.date_naive().and_time(NaiveTime::MIN).and_utc()
}

/// The first midnight UTC at or after `at`.
pub(crate) fn day_at_or_after(at: DateTime<Utc>) -> DateTime<Utc> {
    let day = day_of(at);
    if day == at { day } else { day + Duration::days(1) }
}

impl Store {
    /// AI usage in `[from, to)` of the whole organization.
    pub async fn usage_totals(&self, org_id: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<UsageTotals> {
        let plan = self.usage_plan(org_id, from, to).await?;
        let (rolled, raw) = tokio::try_join!(
            self.rolled_totals(org_id, &plan.rolled),
            journal::totals(&self.db, org_id, &plan.raw)
        )?;
        let mut out = UsageTotals::default();
        for row in rolled.iter().chain(raw.iter()) {
            out.add(&totals(row));
        }
        Ok(out)
    }

    /// AI usage in `[from, to)` per user, most credits first.
    pub async fn usage_by_user(
        &self,
        org_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<(String, UsageTotals)>> {
        let plan = self.usage_plan(org_id, from, to).await?;
        let (months, days) = self.split_months(org_id, &plan.rolled).await?;
        let (months, days, raw) = tokio::try_join!(
            self.rolled_months_by_user(org_id, &months),
            self.rolled_by_user(org_id, &days),
            journal::by_user(&self.db, org_id, &plan.raw)
        )?;
        let mut out: Vec<(String, UsageTotals)> = merge([months, days, raw], |r| (r.0.clone(), totals(&r)))
            .into_iter()
            .collect();
        out.sort_by(|a, b| b.1.credits.cmp(&a.1.credits).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }

    /// AI usage in `[from, to)` per feature, by feature name.
    pub async fn usage_by_feature(
        &self,
        org_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<(String, UsageTotals)>> {
        let plan = self.usage_plan(org_id, from, to).await?;
        let (rolled, raw) = tokio::try_join!(
            self.rolled_by_feature(org_id, &plan.rolled),
            journal::by_feature(&self.db, org_id, &plan.raw, false)
        )?;
        Ok(merge([rolled, raw], |r| (r.0.clone(), totals(&r)))
            .into_iter()
            .collect())
    }

    /// AI usage in `[from, to)` per team, most credits first (then by
    /// name), every team with members included.
    pub async fn usage_by_team(
        &self,
        org_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<TeamUsage>> {
        let per_user = self.usage_by_user(org_id, from, to).await?;
        self.usage_by_team_of(org_id, &per_user).await
    }

    /// [`Store::usage_by_team`] from the usage per user
    /// ([`Store::usage_by_user`]) of the same range: each user's usage goes
    /// to their team as last seen (a user unknown to the store to none).
    pub async fn usage_by_team_of(
        &self,
        org_id: &str,
        per_user: &[(String, UsageTotals)],
    ) -> StoreResult<Vec<TeamUsage>> {
        let (team_of, members) = tokio::try_join!(self.teams_of(per_user), self.team_members(org_id))?;
        let mut sums: BTreeMap<Option<String>, UsageTotals> = BTreeMap::new();
        for (user, t) in per_user {
            if let Some(team) = team_of.get(user) {
                sums.entry(team.clone()).or_default().add(t);
            }
        }
        let mut out: Vec<TeamUsage> = members
            .into_iter()
            .map(|(team, members, byok_members)| TeamUsage {
                team,
                members,
                byok_members,
                totals: UsageTotals::default(),
            })
            .collect();
        for (team, t) in sums {
            match out.iter_mut().find(|u| u.team == team) {
                Some(u) => u.totals = t,
                None => out.push(TeamUsage {
                    team,
                    members: 0,
                    byok_members: 0,
                    totals: t,
                }),
            }
        }
        out.sort_by(|a, b| {
            b.totals
                .credits
                .cmp(&a.totals.credits)
                .then_with(|| a.team.cmp(&b.team))
        });
        Ok(out)
    }

    /// The team as last seen of each of these users the store knows.
    async fn teams_of(&self, per_user: &[(String, UsageTotals)]) -> StoreResult<HashMap<String, Option<String>>> {
        let mut out = HashMap::with_capacity(per_user.len());
        for ids in per_user.chunks(IDS_PER_QUERY) {
            let found: Vec<(String, Option<String>)> = users::Entity::find()
                .select_only()
                .column(users::Column::Id)
                .column(users::Column::Team)
                .filter(users::Column::Id.is_in(ids.iter().map(|(id, _)| id.as_str())))
                .into_tuple()
                .all(&self.db)
                .await?;
            out.extend(found);
        }
        Ok(out)
    }

    /// Per team of the organization: its users, and of them those with a
    /// BYOK key.
    async fn team_members(&self, org_id: &str) -> StoreResult<Vec<(Option<String>, i64, i64)>> {
        Ok(users::Entity::find()
            .select_only()
            .column(users::Column::Team)
            .expr(Expr::cust("CAST(COUNT(*) AS BIGINT)"))
            .expr(Expr::cust(
                "CAST(COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM byok_keys WHERE byok_keys.user_id = users.id) \
                 THEN 1 ELSE 0 END), 0) AS BIGINT)",
            ))
            .filter(users::Column::OrgId.eq(org_id))
            .group_by(users::Column::Team)
            .into_tuple()
            .all(&self.db)
            .await?)
    }
}

/// The span of a trend's buckets (UTC; weeks start on Monday). Each is
/// made of whole days, so rolled-up days add up into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Day,
    Week,
    Month,
}

/// SQL for the first day of the bucket holding the timestamp `col`, as
/// text `YYYY-MM-DD`: SQLite's `strftime` (its `weekday 0` moves to the
/// next Sunday, six days back is that week's Monday) and PostgreSQL's
/// `date_trunc` (whose weeks start on Monday).
pub(crate) fn bucket_sql(backend: DbBackend, bucket: Bucket, col: &str) -> String {
    match (backend, bucket) {
        (DbBackend::Postgres, Bucket::Day) => {
            format!("to_char(date_trunc('day', {col} AT TIME ZONE 'UTC'), 'YYYY-MM-DD')")
        }
        (DbBackend::Postgres, Bucket::Week) => {
            format!("to_char(date_trunc('week', {col} AT TIME ZONE 'UTC'), 'YYYY-MM-DD')")
        }
        (DbBackend::Postgres, Bucket::Month) => {
            format!("to_char(date_trunc('month', {col} AT TIME ZONE 'UTC'), 'YYYY-MM-DD')")
        }
        (_, Bucket::Day) => format!("strftime('%Y-%m-%d', {col})"),
        (_, Bucket::Week) => format!("strftime('%Y-%m-%d', {col}, 'weekday 0', '-6 days')"),
        (_, Bucket::Month) => format!("strftime('%Y-%m-01', {col})"),
    }
}

/// A bucket's first day, as the database wrote it, at midnight UTC.
pub(crate) fn bucket_time(day: &str) -> StoreResult<DateTime<Utc>> {
    let date = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .map_err(|e| StoreError::corrupt(format!("bucket `{day}`: {e}")))?;
    Ok(date.and_time(NaiveTime::MIN).and_utc())
}

impl Store {
    /// AI usage in `[from, to)` per bucket that has any, oldest first.
    pub async fn usage_trend(
        &self,
        org_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket: Bucket,
    ) -> StoreResult<Vec<UsagePoint>> {
        let plan = self.usage_plan(org_id, from, to).await?;
        let (rolled, raw) = tokio::try_join!(
            self.rolled_by_bucket(org_id, &plan.rolled, bucket),
            journal::by_bucket(&self.db, self.backend(), org_id, &plan.raw, bucket)
        )?;
        merge([rolled, raw], |r| (r.0.clone(), totals(&r)))
            .into_iter()
            .map(|(day, totals)| {
                Ok(UsagePoint {
                    at: bucket_time(&day)?,
                    totals,
                })
            })
            .collect()
    }
}
