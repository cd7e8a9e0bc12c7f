//! Aggregate AI usage of an organization, for its admins.

use chrono::{DateTime, Utc};
use creditgate_domain::{ActivityKind, BillingMode, Credits};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DbBackend, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect};

use crate::entities::{journal_entries, users};
use crate::error::{StoreError, StoreResult};
use crate::store::Store;

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

type Row = (String, i64, i64, i64, i64, i64, i64, i64);

fn sums<E: EntityTrait>(q: sea_orm::Select<E>) -> sea_orm::Select<E> {
    let sum = |col: &str| Expr::cust(format!("CAST(COALESCE(SUM({col}), 0) AS BIGINT)"));
    q.expr_as(sum("credits_consumed"), "credits")
        .expr_as(sum("credits_avoided"), "avoided")
        .expr_as(Expr::cust("CAST(COUNT(*) AS BIGINT)"), "requests")
        .expr_as(
            Expr::cust(format!(
                "CAST(COALESCE(SUM(CASE WHEN billing_mode = '{}' THEN 1 ELSE 0 END), 0) AS BIGINT)",
                BillingMode::Byok.as_str()
            )),
            "byok",
        )
        .expr_as(sum("input_tokens"), "input")
        .expr_as(sum("output_tokens"), "output")
        .expr_as(sum("-permanent_delta"), "permanent")
}

fn totals(r: &Row) -> UsageTotals {
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

impl Store {
    fn ai_entries_of(
        &self,
        org_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> sea_orm::Select<journal_entries::Entity> {
        journal_entries::Entity::find()
            .filter(journal_entries::Column::OrgId.eq(org_id))
            .filter(journal_entries::Column::Kind.eq(ActivityKind::AiUsage.as_str()))
            .filter(journal_entries::Column::At.gte(from))
            .filter(journal_entries::Column::At.lt(to))
    }

    /// AI usage in `[from, to)` of the whole organization.
    pub async fn usage_totals(&self, org_id: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<UsageTotals> {
        let q = sums(
            self.ai_entries_of(org_id, from, to)
                .select_only()
                .expr_as(Expr::cust("CAST('' AS TEXT)"), "scope"),
        );
        let row: Option<Row> = q.into_tuple().one(&self.db).await?;
        Ok(row.as_ref().map(totals).unwrap_or_default())
    }

    /// AI usage in `[from, to)` per user, most credits first.
    pub async fn usage_by_user(
        &self,
        org_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<(String, UsageTotals)>> {
        let q = sums(
            self.ai_entries_of(org_id, from, to)
                .select_only()
                .column(journal_entries::Column::UserId),
        )
        .group_by(journal_entries::Column::UserId);
        let rows: Vec<Row> = q.into_tuple().all(&self.db).await?;
        let mut out: Vec<(String, UsageTotals)> = rows.iter().map(|r| (r.0.clone(), totals(r))).collect();
        out.sort_by(|a, b| b.1.credits.cmp(&a.1.credits).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }

    /// AI usage in `[from, to)` per feature.
    pub async fn usage_by_feature(
        &self,
        org_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<(String, UsageTotals)>> {
        let q = sums(
            self.ai_entries_of(org_id, from, to)
                .filter(journal_entries::Column::Feature.is_not_null())
                .select_only()
                .column(journal_entries::Column::Feature),
        )
        .group_by(journal_entries::Column::Feature);
        let rows: Vec<Row> = q.into_tuple().all(&self.db).await?;
        Ok(rows.iter().map(|r| (r.0.clone(), totals(r))).collect())
    }
}

type TeamRow = (Option<String>, i64, i64, i64, i64, i64, i64, i64);

impl Store {
    /// AI usage in `[from, to)` per team, most credits first (then by
    /// name), every team with members included.
    pub async fn usage_by_team(
        &self,
        org_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<TeamUsage>> {
        let by_user = journal_entries::Entity::belongs_to(users::Entity)
            .from(journal_entries::Column::UserId)
            .to(users::Column::Id)
            .into();
        let q = sums(
            self.ai_entries_of(org_id, from, to)
                .select_only()
                .column(users::Column::Team)
                .join(JoinType::InnerJoin, by_user),
        )
        .group_by(users::Column::Team);
        let rows: Vec<TeamRow> = q.into_tuple().all(&self.db).await?;
        let members: Vec<(Option<String>, i64, i64)> = users::Entity::find()
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
            .await?;
        let mut out: Vec<TeamUsage> = members
            .into_iter()
            .map(|(team, members, byok_members)| TeamUsage {
                team,
                members,
                byok_members,
                totals: UsageTotals::default(),
            })
            .collect();
        for r in rows {
            let t = totals(&(String::new(), r.1, r.2, r.3, r.4, r.5, r.6, r.7));
            match out.iter_mut().find(|u| u.team == r.0) {
                Some(u) => u.totals = t,
                None => out.push(TeamUsage {
                    team: r.0,
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
}

/// The span of a trend's buckets (UTC; weeks start on Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Day,
    Week,
    Month,
}

/// SQL for the first day of the bucket holding `journal_entries.at`, as
/// text `YYYY-MM-DD`: SQLite's `strftime` (its `weekday 0` moves to the
/// next Sunday, six days back is that week's Monday) and PostgreSQL's
/// `date_trunc` (whose weeks start on Monday).
pub(crate) fn bucket_sql(backend: DbBackend, bucket: Bucket) -> &'static str {
    match (backend, bucket) {
        (DbBackend::Postgres, Bucket::Day) => {
            "to_char(date_trunc('day', journal_entries.at AT TIME ZONE 'UTC'), 'YYYY-MM-DD')"
        }
        (DbBackend::Postgres, Bucket::Week) => {
            "to_char(date_trunc('week', journal_entries.at AT TIME ZONE 'UTC'), 'YYYY-MM-DD')"
        }
        (DbBackend::Postgres, Bucket::Month) => {
            "to_char(date_trunc('month', journal_entries.at AT TIME ZONE 'UTC'), 'YYYY-MM-DD')"
        }
        (_, Bucket::Day) => "strftime('%Y-%m-%d', journal_entries.at)",
        (_, Bucket::Week) => "strftime('%Y-%m-%d', journal_entries.at, 'weekday 0', '-6 days')",
        (_, Bucket::Month) => "strftime('%Y-%m-01', journal_entries.at)",
    }
}

/// A bucket's first day, as the database wrote it, at midnight UTC.
pub(crate) fn bucket_time(day: &str) -> StoreResult<DateTime<Utc>> {
    let date = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .map_err(|e| StoreError::corrupt(format!("bucket `{day}`: {e}")))?;
    Ok(date.and_time(chrono::NaiveTime::MIN).and_utc())
}

impl Store {
    /// AI usage in `[from, to)` per bucket that has any, oldest first,
    /// summed by the database.
    pub async fn usage_trend(
        &self,
        org_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket: Bucket,
    ) -> StoreResult<Vec<UsagePoint>> {
        let expr = bucket_sql(self.backend(), bucket);
        let q = sums(
            self.ai_entries_of(org_id, from, to)
                .select_only()
                .expr_as(Expr::cust(expr), "bucket"),
        )
        .group_by(Expr::cust(expr))
        .order_by_asc(Expr::cust(expr));
        let rows: Vec<Row> = q.into_tuple().all(&self.db).await?;
        rows.iter()
            .map(|r| {
                Ok(UsagePoint {
                    at: bucket_time(&r.0)?,
                    totals: totals(r),
                })
            })
            .collect()
    }
}
