//! The AI usage of an organization summed from its journal entries, over
//! a set of time spans: what [`crate::usage`] reads for everything that is
//! not rolled up, and what a day's rollup is built from.

use chrono::{DateTime, Utc};
use creditgate_domain::{ActivityKind, BillingMode};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};

use crate::entities::journal_entries;
use crate::error::StoreResult;
use crate::usage::{Bucket, Row, Span, bucket_sql};

/// `col` within any of `spans` (each `[start, end)`).
pub(crate) fn within<C: ColumnTrait>(col: C, spans: &[Span]) -> Condition {
    spans.iter().fold(Condition::any(), |c, (a, b)| {
        c.add(Condition::all().add(col.gte(*a)).add(col.lt(*b)))
    })
}

fn sums<E: EntityTrait>(q: Select<E>) -> Select<E> {
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

fn ai_entries_in(org_id: &str, spans: &[Span]) -> Select<journal_entries::Entity> {
    journal_entries::Entity::find()
        .filter(journal_entries::Column::OrgId.eq(org_id))
        .filter(journal_entries::Column::Kind.eq(ActivityKind::AiUsage.as_str()))
        .filter(within(journal_entries::Column::At, spans))
}

/// Whole-organization sums; `None` when `spans` is empty (nothing read).
pub(crate) async fn totals<C: ConnectionTrait>(db: &C, org_id: &str, spans: &[Span]) -> StoreResult<Option<Row>> {
    if spans.is_empty() {
        return Ok(None);
    }
    let q = sums(
        ai_entries_in(org_id, spans)
            .select_only()
            .expr_as(Expr::cust("CAST('' AS TEXT)"), "scope"),
    );
    Ok(q.into_tuple().one(db).await?)
}

/// Sums per user.
pub(crate) async fn by_user<C: ConnectionTrait>(db: &C, org_id: &str, spans: &[Span]) -> StoreResult<Vec<Row>> {
    if spans.is_empty() {
        return Ok(Vec::new());
    }
    let q = sums(
        ai_entries_in(org_id, spans)
            .select_only()
            .column(journal_entries::Column::UserId),
    )
    .group_by(journal_entries::Column::UserId);
    Ok(q.into_tuple().all(db).await?)
}

/// Sums per feature; with `none_too`, entries without a feature are summed
/// under `''`, else left out.
pub(crate) async fn by_feature<C: ConnectionTrait>(
    db: &C,
    org_id: &str,
    spans: &[Span],
    none_too: bool,
) -> StoreResult<Vec<Row>> {
    if spans.is_empty() {
        return Ok(Vec::new());
    }
    let q = if none_too {
        let expr = "COALESCE(journal_entries.feature, '')";
        sums(
            ai_entries_in(org_id, spans)
                .select_only()
                .expr_as(Expr::cust(expr), "feature"),
        )
        .group_by(Expr::cust(expr))
    } else {
        sums(
            ai_entries_in(org_id, spans)
                .filter(journal_entries::Column::Feature.is_not_null())
                .select_only()
                .column(journal_entries::Column::Feature),
        )
        .group_by(journal_entries::Column::Feature)
    };
    Ok(q.into_tuple().all(db).await?)
}

/// Sums per bucket (its first day as `YYYY-MM-DD`).
pub(crate) async fn by_bucket<C: ConnectionTrait>(
    db: &C,
    backend: DbBackend,
    org_id: &str,
    spans: &[Span],
    bucket: Bucket,
) -> StoreResult<Vec<Row>> {
    if spans.is_empty() {
        return Ok(Vec::new());
    }
    let expr = bucket_sql(backend, bucket, "journal_entries.at");
    let q = sums(
        ai_entries_in(org_id, spans)
            .select_only()
            .expr_as(Expr::cust(expr.clone()), "bucket"),
    )
    .group_by(Expr::cust(expr));
    Ok(q.into_tuple().all(db).await?)
}

/// When the organization's first AI usage was recorded.
pub(crate) async fn first_at<C: ConnectionTrait>(db: &C, org_id: &str) -> StoreResult<Option<DateTime<Utc>>> {
    Ok(journal_entries::Entity::find()
        .select_only()
        .column(journal_entries::Column::At)
        .filter(journal_entries::Column::OrgId.eq(org_id))
        .filter(journal_entries::Column::Kind.eq(ActivityKind::AiUsage.as_str()))
        .order_by_asc(journal_entries::Column::At)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?)
}
