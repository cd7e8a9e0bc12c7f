//! ADMIN only: the AI usage of the caller's organization.

use async_graphql::{Context, Enum, Object, SimpleObject};
use chrono::{DateTime, Datelike, Duration, Months, NaiveTime, TimeZone, Utc};
use creditgate_storage::UsageTotals as StoredTotals;

use crate::context::{identity, services};
use crate::error::{ApiError, ApiResult};
use crate::exports::UsageService;
use crate::scalars::CreditsScalar;
use crate::types::{AiFeature, User};

const MAX_PER_USER: i32 = 500;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Granularity {
    Day,
    Week,
    Month,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct UsageTotals {
    pub credits: CreditsScalar,
    pub requests: i32,
    pub byok_requests: i32,
    pub input_tokens: i32,
    pub output_tokens: i32,
    /// What the BYOK requests would have cost in credits.
    pub credits_saved: CreditsScalar,
}

fn clamp(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl From<StoredTotals> for UsageTotals {
    fn from(t: StoredTotals) -> Self {
        UsageTotals {
            credits: t.credits.into(),
            requests: clamp(t.requests),
            byok_requests: clamp(t.byok_requests),
            input_tokens: clamp(t.input_tokens),
            output_tokens: clamp(t.output_tokens),
            credits_saved: t.credits_avoided.into(),
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct UserUsage {
    pub user: User,
    pub totals: UsageTotals,
    /// Credits in the range paid from permanent (bought or earned) balances: what BYOK would have saved.
    pub permanent_spent: CreditsScalar,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct TeamUsage {
    pub team: Option<String>,
    /// Members of the organization in this team.
    pub members: i32,
    /// Members with at least one BYOK key.
    pub byok_members: i32,
    pub totals: UsageTotals,
    /// Credits in the range paid from permanent (bought or earned) balances: what BYOK would have saved.
    pub permanent_spent: CreditsScalar,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct FeatureUsage {
    pub feature: AiFeature,
    pub totals: UsageTotals,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct UsagePoint {
    pub bucket_start: crate::scalars::Timestamp,
    pub totals: UsageTotals,
}

/// The start of the bucket holding `at` (UTC; weeks start on Monday).
pub fn bucket_start(at: DateTime<Utc>, g: Granularity) -> DateTime<Utc> {
    let day = at.date_naive();
    let date = match g {
        Granularity::Day => day,
        Granularity::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
        Granularity::Month => day.with_day(1).unwrap_or(day),
    };
    Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN))
}

pub(crate) fn next_bucket(start: DateTime<Utc>, g: Granularity) -> DateTime<Utc> {
    match g {
        Granularity::Day => start + Duration::days(1),
        Granularity::Week => start + Duration::days(7),
        Granularity::Month => start
            .checked_add_months(Months::new(1))
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    }
}

pub struct OrgUsage {
    org_id: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    granularity: Granularity,
    /// The usage per user, read once for perUser and perTeam alike.
    per_user: tokio::sync::OnceCell<Vec<(String, StoredTotals)>>,
}

impl OrgUsage {
    async fn per_user_sums(&self, ctx: &Context<'_>) -> ApiResult<&[(String, StoredTotals)]> {
        let rows = self
            .per_user
            .get_or_try_init(|| services(ctx).store.usage_by_user(&self.org_id, self.from, self.to))
            .await?;
        Ok(rows)
    }
}

#[Object]
impl OrgUsage {
    async fn totals(&self, ctx: &Context<'_>) -> ApiResult<UsageTotals> {
        Ok(services(ctx)
            .store
            .usage_totals(&self.org_id, self.from, self.to)
            .await?
            .into())
    }

    /// Users ordered by credits consumed, most first.
    async fn per_user(&self, ctx: &Context<'_>, first: Option<i32>) -> ApiResult<Vec<UserUsage>> {
        let first = match first {
            None => 50,
            Some(n) if n < 0 => return Err(ApiError::bad_input("`first` must not be negative")),
            Some(n) => n.min(MAX_PER_USER),
        };
        let store = &services(ctx).store;
        let all = self.per_user_sums(ctx).await?;
        let rows = &all[..all.len().min(usize::try_from(first).unwrap_or(0))];
        let ids: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();
        let users = store.users(&ids).await?;
        Ok(rows
            .iter()
            .filter_map(|(id, t)| {
                users.iter().find(|u| &u.id == id).map(|u| UserUsage {
                    user: User::from(u.clone()),
                    permanent_spent: t.permanent_spent.into(),
                    totals: (*t).into(),
                })
            })
            .collect())
    }

    /// Teams (the JWT team claim; null: no team) ordered by credits consumed, most first.
    async fn per_team(&self, ctx: &Context<'_>) -> ApiResult<Vec<TeamUsage>> {
        let per_user = self.per_user_sums(ctx).await?;
        let rows = services(ctx).store.usage_by_team_of(&self.org_id, per_user).await?;
        Ok(rows
            .into_iter()
            .map(|t| TeamUsage {
                team: t.team,
                members: clamp(t.members),
                byok_members: clamp(t.byok_members),
                permanent_spent: t.totals.permanent_spent.into(),
                totals: t.totals.into(),
            })
            .collect())
    }

    async fn by_feature(&self, ctx: &Context<'_>) -> ApiResult<Vec<FeatureUsage>> {
        let rows = services(ctx)
            .store
            .usage_by_feature(&self.org_id, self.from, self.to)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(f, t)| {
                f.parse::<creditgate_domain::AiFeature>()
                    .ok()
                    .map(|feature| FeatureUsage {
                        feature: feature.into(),
                        totals: t.into(),
                    })
            })
            .collect())
    }

    /// One point per bucket of the range, empty buckets included.
    async fn trend(&self, ctx: &Context<'_>) -> ApiResult<Vec<UsagePoint>> {
        let points = services(ctx)
            .store
            .usage_trend(&self.org_id, self.from, self.to, self.granularity.into())
            .await?;
        let mut out: Vec<UsagePoint> = Vec::new();
        let mut start = bucket_start(self.from, self.granularity);
        let mut points = points.into_iter().peekable();
        while start < self.to {
            let mut totals = StoredTotals::default();
            while let Some(p) = points.next_if(|p| p.at <= start) {
                if p.at == start {
                    totals.add(&p.totals);
                }
            }
            out.push(UsagePoint {
                bucket_start: start.into(),
                totals: totals.into(),
            });
            start = next_bucket(start, self.granularity);
        }
        Ok(out)
    }
}

impl From<Granularity> for creditgate_storage::Bucket {
    fn from(g: Granularity) -> Self {
        match g {
            Granularity::Day => creditgate_storage::Bucket::Day,
            Granularity::Week => creditgate_storage::Bucket::Week,
            Granularity::Month => creditgate_storage::Bucket::Month,
        }
    }
}

#[derive(Default)]
pub struct UsageQuery;

#[Object]
impl UsageQuery {
    /// ADMIN only: usage of the caller's organization in [from, to).
    async fn org_usage(
        &self,
        ctx: &Context<'_>,
        from: crate::scalars::Timestamp,
        to: crate::scalars::Timestamp,
        granularity: Option<Granularity>,
    ) -> ApiResult<OrgUsage> {
        let who = identity(ctx)?;
        let range = UsageService::org_range(who, from.into(), to.into(), granularity)?;
        Ok(OrgUsage {
            org_id: range.org_id,
            from: range.from,
            to: range.to,
            granularity: range.granularity,
            per_user: tokio::sync::OnceCell::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        let at = DateTime::parse_from_rfc3339("2026-11-26T15:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            bucket_start(at, Granularity::Day).to_rfc3339(),
            "2026-11-26T00:00:00+00:00"
        );
        assert_eq!(
            bucket_start(at, Granularity::Week).to_rfc3339(),
            "2026-11-23T00:00:00+00:00"
        );
        assert_eq!(
            bucket_start(at, Granularity::Month).to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
    }
}
