//! Aggregate AI usage of an organization, for its admins.

use chrono::{DateTime, Utc};
use creditgate_domain::{ActivityKind, BillingMode, Credits};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entities::journal_entries;
use crate::error::StoreResult;
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
    }
}

/// One AI interaction, as the trend needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePoint {
    pub at: DateTime<Utc>,
    pub totals: UsageTotals,
}

type Row = (String, i64, i64, i64, i64, i64, i64);
/// at, credits consumed, credits avoided, billing mode, input and output tokens.
type PointRow = (DateTime<Utc>, i64, i64, Option<String>, Option<i64>, Option<i64>);

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
}

fn totals(r: &Row) -> UsageTotals {
    UsageTotals {
        credits: Credits::from_millis(r.1),
        credits_avoided: Credits::from_millis(r.2),
        requests: r.3,
        byok_requests: r.4,
        input_tokens: r.5,
        output_tokens: r.6,
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

    /// Each AI interaction in `[from, to)` (time and amounts only), oldest
    /// first, for bucketing into a trend.
    pub async fn usage_points(
        &self,
        org_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<UsagePoint>> {
        let rows: Vec<PointRow> = self
            .ai_entries_of(org_id, from, to)
            .select_only()
            .column(journal_entries::Column::At)
            .column(journal_entries::Column::CreditsConsumed)
            .column(journal_entries::Column::CreditsAvoided)
            .column(journal_entries::Column::BillingMode)
            .column(journal_entries::Column::InputTokens)
            .column(journal_entries::Column::OutputTokens)
            .order_by_asc(journal_entries::Column::At)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(at, credits, avoided, mode, input, output)| UsagePoint {
                at,
                totals: UsageTotals {
                    credits: Credits::from_millis(credits),
                    credits_avoided: Credits::from_millis(avoided),
                    requests: 1,
                    byok_requests: i64::from(mode.as_deref() == Some(BillingMode::Byok.as_str())),
                    input_tokens: input.unwrap_or(0),
                    output_tokens: output.unwrap_or(0),
                },
            })
            .collect())
    }
}
