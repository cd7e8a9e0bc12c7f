//! ADMIN only: the AI usage of the caller's organization.

use async_graphql::{Context, Enum, Object, SimpleObject};
use chrono::{DateTime, Datelike, Duration, Months, NaiveTime, TimeZone, Utc};
use creditgate_domain::Role as DomainRole;
use creditgate_storage::UsageTotals as StoredTotals;

use crate::context::{require_role, services};
use crate::error::{ApiError, ApiResult};
use crate::scalars::CreditsScalar;
use crate::types::{AiFeature, User};

const MAX_BUCKETS: usize = 1_000;
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
}

#[derive(SimpleObject, Clone, Debug)]
pub struct FeatureUsage {
    pub feature: AiFeature,
    pub totals: UsageTotals,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct UsagePoint {
    pub bucket_start: DateTime<Utc>,
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

fn next_bucket(start: DateTime<Utc>, g: Granularity) -> DateTime<Utc> {
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
}

#[Object]
impl OrgUsage {
    async fn totals(&self, ctx: &Context<'_>) -> ApiResult<UsageTotals> {
        let mut sum = StoredTotals::default();
        for (_, t) in services(ctx)
            .store
            .usage_by_user(&self.org_id, self.from, self.to)
            .await?
        {
            sum.add(&t);
        }
        Ok(sum.into())
    }

    /// Users ordered by credits consumed, most first.
    async fn per_user(&self, ctx: &Context<'_>, first: Option<i32>) -> ApiResult<Vec<UserUsage>> {
        let first = match first {
            None => 50,
            Some(n) if n < 0 => return Err(ApiError::bad_input("`first` must not be negative")),
            Some(n) => n.min(MAX_PER_USER),
        };
        let store = &services(ctx).store;
        let mut rows = store.usage_by_user(&self.org_id, self.from, self.to).await?;
        rows.truncate(usize::try_from(first).unwrap_or(0));
        let ids: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();
        let users = store.users(&ids).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, t)| {
                users.iter().find(|u| u.id == id).map(|u| UserUsage {
                    user: User::from(u.clone()),
                    totals: t.into(),
                })
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
            .usage_points(&self.org_id, self.from, self.to)
            .await?;
        let mut out: Vec<(DateTime<Utc>, StoredTotals)> = Vec::new();
        let mut start = bucket_start(self.from, self.granularity);
        while start < self.to {
            out.push((start, StoredTotals::default()));
            start = next_bucket(start, self.granularity);
        }
        for p in points {
            let b = bucket_start(p.at, self.granularity);
            if let Some(slot) = out.iter_mut().find(|(s, _)| *s == b) {
                slot.1.add(&p.totals);
            }
        }
        Ok(out
            .into_iter()
            .map(|(s, t)| UsagePoint {
                bucket_start: s,
                totals: t.into(),
            })
            .collect())
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
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        granularity: Option<Granularity>,
    ) -> ApiResult<OrgUsage> {
        let who = require_role(ctx, DomainRole::Admin)?;
        if from >= to {
            return Err(ApiError::bad_input("`from` must be before `to`"));
        }
        let granularity = granularity.unwrap_or(Granularity::Day);
        let mut buckets = 0usize;
        let mut start = bucket_start(from, granularity);
        while start < to {
            buckets += 1;
            if buckets > MAX_BUCKETS {
                return Err(ApiError::bad_input(format!(
                    "the range holds more than {MAX_BUCKETS} buckets; use a coarser granularity"
                )));
            }
            start = next_bucket(start, granularity);
        }
        Ok(OrgUsage {
            org_id: who.org_id.clone(),
            from,
            to,
            granularity,
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
