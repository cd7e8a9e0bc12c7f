//! The usage service: what an admin may read of their organization's usage
//! (the range checks orgUsage applies), and the CSV exports of the HTTP
//! door (`GET /export/activity.csv`, `GET /export/org-usage.csv`), streamed
//! page by page (the activity log by keyset, the organization's usage one
//! bucket at a time) so that a year of a large organization never sits in
//! memory.

use chrono::{DateTime, Utc};
use creditgate_domain::Role;
use creditgate_storage::{ActivityFilter, Entry, Identity, Store, UsageTotals};
use futures::stream::{self, BoxStream, StreamExt};

use crate::error::{ApiError, ApiResult};
use crate::usage::{Granularity, bucket_start, next_bucket};

/// The most buckets a range may hold.
pub const MAX_BUCKETS: usize = 1_000;
/// Entries read per page of the activity export.
const ACTIVITY_PAGE: u64 = 500;

/// A checked range of an organization's usage.
#[derive(Debug, Clone)]
pub struct OrgRange {
    pub org_id: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub granularity: Granularity,
}

impl OrgRange {
    /// The start of each bucket of the range.
    pub fn buckets(&self) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut start = bucket_start(self.from, self.granularity);
        while start < self.to {
            out.push(start);
            start = next_bucket(start, self.granularity);
        }
        out
    }
}

/// One chunk of a CSV export.
pub type CsvChunk = Result<Vec<u8>, ApiError>;

/// Usage reports, for GraphQL resolvers and the HTTP exports alike.
#[derive(Clone, Debug)]
pub struct UsageService {
    store: Store,
}

fn check_range(from: DateTime<Utc>, to: DateTime<Utc>) -> ApiResult<()> {
    if from >= to {
        return Err(ApiError::bad_input("`from` must be before `to`"));
    }
    Ok(())
}

fn csv_error(e: &csv::Error) -> ApiError {
    ApiError::internal(e)
}

/// Writes rows into one chunk.
fn chunk<F>(write: F) -> CsvChunk
where
    F: FnOnce(&mut csv::Writer<Vec<u8>>) -> csv::Result<()>,
{
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    write(&mut w).map_err(|e| csv_error(&e))?;
    w.into_inner().map_err(|e| ApiError::internal(&e.error()))
}

const ACTIVITY_HEADER: [&str; 16] = [
    "id",
    "at",
    "kind",
    "feature",
    "billing_mode",
    "status",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "credits_consumed",
    "monthly_delta",
    "permanent_delta",
    "balance_after",
    "description",
    "actor",
];

fn activity_row(e: &Entry) -> [String; 16] {
    let opt = |s: Option<&str>| s.unwrap_or("").to_owned();
    let num = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    [
        e.id.to_string(),
        e.at.to_rfc3339(),
        e.kind.as_str().to_owned(),
        opt(e.feature.map(|f| f.as_str())),
        opt(e.billing_mode.map(|m| m.as_str())),
        opt(e.status.map(|s| s.as_str())),
        opt(e.provider.as_deref()),
        opt(e.model.as_deref()),
        num(e.input_tokens),
        num(e.output_tokens),
        e.credits_consumed.to_string(),
        e.monthly_delta.to_string(),
        e.permanent_delta.to_string(),
        e.balance_after.to_string(),
        opt(e.description.as_deref()),
        opt(e.actor.as_deref()),
    ]
}

const ORG_HEADER: [&str; 10] = [
    "bucket_start",
    "user_id",
    "team",
    "credits",
    "credits_saved",
    "requests",
    "byok_requests",
    "input_tokens",
    "output_tokens",
    "permanent_spent",
];

fn org_row(bucket: DateTime<Utc>, user: &str, team: Option<&str>, t: &UsageTotals) -> [String; 10] {
    [
        bucket.to_rfc3339(),
        user.to_owned(),
        team.unwrap_or("").to_owned(),
        t.credits.to_string(),
        t.credits_avoided.to_string(),
        t.requests.to_string(),
        t.byok_requests.to_string(),
        t.input_tokens.to_string(),
        t.output_tokens.to_string(),
        t.permanent_spent.to_string(),
    ]
}

impl UsageService {
    pub fn new(store: Store) -> Self {
        UsageService { store }
    }

    /// The range of the caller's organization an admin asks for: ADMIN
    /// only, `from` before `to`, at most [`MAX_BUCKETS`] buckets.
    pub fn org_range(
        who: &Identity,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        granularity: Option<Granularity>,
    ) -> ApiResult<OrgRange> {
        if who.role != Role::Admin {
            return Err(ApiError::forbidden("only the ADMIN role may do this"));
        }
        check_range(from, to)?;
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
        Ok(OrgRange {
            org_id: who.org_id.clone(),
            from,
            to,
            granularity,
        })
    }

    /// The caller's activity log in `[from, to)` as CSV, newest first, read
    /// page by page.
    pub fn activity_csv(
        &self,
        user_id: String,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> ApiResult<BoxStream<'static, CsvChunk>> {
        if let (Some(f), Some(t)) = (from, to) {
            check_range(f, t)?;
        }
        let header = chunk(|w| w.write_record(ACTIVITY_HEADER));
        let filter = ActivityFilter {
            kinds: None,
            features: None,
            from,
            to,
        };
        let store = self.store.clone();
        // State: the last entry id read, and whether there is more.
        let pages = stream::unfold(Some(None::<i64>), move |state| {
            let store = store.clone();
            let filter = filter.clone();
            let user_id = user_id.clone();
            async move {
                let after = state?;
                let page = match store.activity(&user_id, &filter, ACTIVITY_PAGE, after).await {
                    Ok(p) => p,
                    Err(e) => return Some((Err(ApiError::from(e)), None)),
                };
                let next = match (page.has_next_page, page.entries.last()) {
                    (true, Some(last)) => Some(Some(last.id)),
                    _ => None,
                };
                let rows = chunk(|w| page.entries.iter().try_for_each(|e| w.write_record(activity_row(e))));
                Some((rows, next))
            }
        });
        Ok(stream::once(async move { header }).chain(pages).boxed())
    }

    /// The organization's usage per bucket and user as CSV, one bucket read
    /// at a time (the database sums each).
    pub fn org_usage_csv(&self, range: OrgRange) -> BoxStream<'static, CsvChunk> {
        let header = chunk(|w| w.write_record(ORG_HEADER));
        let store = self.store.clone();
        let buckets = range.buckets();
        let granularity = range.granularity;
        let rows = stream::iter(buckets).then(move |start| {
            let store = store.clone();
            let org_id = range.org_id.clone();
            let (from, to) = (range.from, range.to);
            async move {
                let lo = start.max(from);
                let hi = next_bucket(start, granularity).min(to);
                let per_user = store.usage_by_user(&org_id, lo, hi).await?;
                let ids: Vec<String> = per_user.iter().map(|(id, _)| id.clone()).collect();
                let users = if ids.is_empty() {
                    Vec::new()
                } else {
                    store.users(&ids).await?
                };
                chunk(|w| {
                    per_user.iter().try_for_each(|(id, t)| {
                        let team = users.iter().find(|u| &u.id == id).and_then(|u| u.team.as_deref());
                        w.write_record(org_row(start, id, team, t))
                    })
                })
            }
        });
        stream::once(async move { header }).chain(rows).boxed()
    }
}
