//! Usage rollups on SQLite and PostgreSQL: every orgUsage part answers the
//! same whether its days come from rollups or from the journal (random
//! entries, random ranges, the sweep anywhere from not run to done), only
//! closed days are rolled up, and replicas sweeping at once roll each day
//! up once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use creditgate_domain::{ActivityKind, PlanCatalog, Role};
use creditgate_storage::entities::{
    journal_entries, usage_org_days, usage_rollup_days, usage_rollup_months, usage_user_days,
};
use creditgate_storage::testing::Backend;
use creditgate_storage::{Bucket, Identity, Store, TeamUsage, UsagePoint, UsageTotals};
use futures::future::join_all;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::NotSet, ActiveValue::Set, EntityTrait, PaginatorTrait, QuerySelect};

const START: &str = "2026-03-01T00:00:00Z";
const FEATURES: [Option<&str>; 4] = [Some("CHAT"), Some("EXECUTIVE_ANALYSIS"), Some("AUTO_SCHEDULING"), None];

/// A small deterministic generator (xorshift), so failures replay.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn entry(rng: &mut Rng, org: &str, user: &str, at: DateTime<Utc>) -> journal_entries::ActiveModel {
    let byok = rng.below(4) == 0;
    let consumed = if byok { 0 } else { 1 + rng.below(5_000) as i64 };
    let permanent = -(rng.below(2) as i64) * consumed / 2;
    let kind = if rng.below(8) == 0 {
        ActivityKind::Grant
    } else {
        ActivityKind::AiUsage
    };
    let tokens = |rng: &mut Rng| (rng.below(5) != 0).then(|| rng.below(2_000) as i64);
    journal_entries::ActiveModel {
        id: NotSet,
        user_id: Set(user.to_owned()),
        org_id: Set(org.to_owned()),
        at: Set(at),
        kind: Set(kind.as_str().to_owned()),
        feature: Set(FEATURES[rng.below(4) as usize].map(str::to_owned)),
        billing_mode: Set(Some(if byok { "BYOK" } else { "CREDITS" }.to_owned())),
        status: Set(Some("SUCCEEDED".to_owned())),
        provider: Set(None),
        model: Set(None),
        input_tokens: Set(tokens(rng)),
        output_tokens: Set(tokens(rng)),
        credits_consumed: Set(consumed),
        credits_avoided: Set(if byok { 1 + rng.below(900) as i64 } else { 0 }),
        monthly_delta: Set(-consumed - permanent),
        permanent_delta: Set(permanent),
        balance_after: Set(0),
        pricing_version: Set(None),
        idempotency_key: Set(None),
        request_hash: Set(None),
        hold_id: Set(None),
        reference: Set(None),
        description: Set(None),
        wallet_version: Set(0),
        cached_input_tokens: Set(None),
        cache_write_tokens: Set(None),
        reasoning_tokens: Set(None),
        actor: Set(None),
    }
}

async fn add_user(store: &Store, user: &str, org: &str, team: Option<&str>) {
    store
        .ensure_user(&Identity {
            team: team.map(str::to_owned),
            role: Role::Member,
            ..member(user, org)
        })
        .await
        .unwrap();
}

/// Users in two teams and none, one user now of another organization,
/// another organization; `n` entries spread over `days` days from START.
async fn seed(store: &Store, rng: &mut Rng, n: usize, days: i64) {
    let users = ["ann", "ben", "cid", "dee", "eve", "ghost"];
    let teams = [Some("red"), Some("red"), Some("blue"), None, Some("blue")];
    for (u, t) in users.iter().zip(teams) {
        add_user(store, u, "org", t).await;
    }
    // Moved to another organization since: their entries stay this one's,
    // under a team with no members here.
    add_user(store, "ghost", "other", Some("green")).await;
    add_user(store, "zed", "other", Some("red")).await;
    let rows: Vec<_> = (0..n)
        .map(|_| {
            let at = at(START) + Duration::seconds(rng.below((days * 86_400) as u64) as i64);
            let (org, user) = if rng.below(10) == 0 {
                ("other", "zed")
            } else {
                ("org", users[rng.below(users.len() as u64) as usize])
            };
            entry(rng, org, user, at)
        })
        .collect();
    for chunk in rows.chunks(200) {
        journal_entries::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(store.connection())
            .await
            .unwrap();
    }
}

#[derive(Debug, PartialEq)]
struct Report {
    totals: UsageTotals,
    users: Vec<(String, UsageTotals)>,
    teams: Vec<TeamUsage>,
    features: Vec<(String, UsageTotals)>,
    trends: Vec<Vec<UsagePoint>>,
}

async fn report(store: &Store, (from, to): (DateTime<Utc>, DateTime<Utc>)) -> Report {
    let mut trends = Vec::new();
    for bucket in [Bucket::Day, Bucket::Week, Bucket::Month] {
        trends.push(store.usage_trend("org", from, to, bucket).await.unwrap());
    }
    Report {
        totals: store.usage_totals("org", from, to).await.unwrap(),
        users: store.usage_by_user("org", from, to).await.unwrap(),
        teams: store.usage_by_team("org", from, to).await.unwrap(),
        features: store.usage_by_feature("org", from, to).await.unwrap(),
        trends,
    }
}

/// Ranges within [START - 2 days, START + 12 days): day-aligned or not,
/// empty of entries, a single instant's day, everything.
fn ranges(rng: &mut Rng) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let base = at(START) - Duration::days(2);
    let mut out = vec![
        (base, base + Duration::days(14)),
        (at(START), at(START) + Duration::days(8)),
        (at(START) + Duration::hours(36), at(START) + Duration::hours(37)),
    ];
    for i in 0..20 {
        let a = rng.below(14 * 24 * 60) as i64;
        let b = a + 1 + rng.below(14 * 24 * 60 - a as u64) as i64;
        let (a, b) = if i % 3 == 0 {
            (a / 1_440 * 1_440, (b / 1_440 * 1_440).max(a / 1_440 * 1_440 + 1_440))
        } else {
            (a, b)
        };
        out.push((base + Duration::minutes(a), base + Duration::minutes(b)));
    }
    out
}

async fn rolled_days(store: &Store, org: &str) -> u64 {
    use sea_orm::{ColumnTrait, QueryFilter};
    usage_rollup_days::Entity::find()
        .filter(usage_rollup_days::Column::OrgId.eq(org))
        .count(store.connection())
        .await
        .unwrap()
}

async fn rollups_answer_as_the_journal_does(backend: Backend) {
    // Ten days of entries (days 0..=9 from START); now is 00:30 on day 9,
    // so day 8 (ended 30 minutes ago) is not closed yet, nor is day 9.
    let env = env(backend, START).await;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ 1_234);
    seed(&env.store, &mut rng, 1_500, 10).await;
    env.clock.set(at(START) + Duration::days(9) + Duration::minutes(30));
    let ranges = ranges(&mut rng);
    let mut raw = Vec::new();
    for r in &ranges {
        raw.push(report(&env.store, *r).await);
    }
    assert!(raw[0].totals.requests > 1_000, "the seed is in the range");
    let check = |phase: &'static str, got: Vec<Report>| {
        for ((r, want), got) in ranges.iter().zip(&raw).zip(got) {
            assert_eq!(&got, want, "{phase}: range {r:?}");
        }
    };
    // A day in the middle first (a gap on either side), then the oldest.
    assert!(
        env.store
            .roll_up_day("org", at(START) + Duration::days(5))
            .await
            .unwrap()
    );
    assert!(
        !env.store
            .roll_up_day("org", at(START) + Duration::days(5))
            .await
            .unwrap()
    );
    assert_eq!(env.store.roll_up_usage(3).await.unwrap(), 3);
    let mut got = Vec::new();
    for r in &ranges {
        got.push(report(&env.store, *r).await);
    }
    check("partly rolled up", got);
    // All closed days: 0..=7.
    let more = env.store.roll_up_usage(1_000).await.unwrap();
    assert_eq!(
        rolled_days(&env.store, "org").await,
        8,
        "days 0..=7 but not the open ones"
    );
    assert_eq!(more, 4 + 8, "the rest of this organization's and the other's");
    assert_eq!(env.store.roll_up_usage(1_000).await.unwrap(), 0, "nothing left to do");
    let mut got = Vec::new();
    for r in &ranges {
        got.push(report(&env.store, *r).await);
    }
    check("rolled up", got);
    // A day later day 8 closes.
    env.clock.advance(Duration::days(1));
    assert_eq!(
        env.store.roll_up_usage(1_000).await.unwrap(),
        2,
        "both organizations' day 8"
    );
    let mut got = Vec::new();
    for r in &ranges {
        got.push(report(&env.store, *r).await);
    }
    check("a day later", got);
    // The rolled-up days are read from their rollups: the journal of day 3
    // gone, a range of whole rolled-up days answers as before.
    use sea_orm::{ColumnTrait, QueryFilter};
    let day3 = (at(START) + Duration::days(3), at(START) + Duration::days(4));
    journal_entries::Entity::delete_many()
        .filter(journal_entries::Column::At.gte(day3.0))
        .filter(journal_entries::Column::At.lt(day3.1))
        .exec(env.store.connection())
        .await
        .unwrap();
    assert_eq!(report(&env.store, ranges[1]).await, raw[1]);
    assert_eq!(
        env.store
            .usage_totals("org", day3.0, day3.1 - Duration::minutes(1))
            .await
            .unwrap(),
        UsageTotals::default()
    );
}

/// The open day is left to the journal even when it is in the range.
async fn open_days_are_not_rolled_up(backend: Backend) {
    let env = env(backend, START).await;
    let mut rng = Rng(77);
    seed(&env.store, &mut rng, 300, 2).await;
    // 40 minutes after the second day ended: within the grace period.
    env.clock.set(at(START) + Duration::days(2) + Duration::minutes(40));
    env.store.roll_up_usage(100).await.unwrap();
    assert_eq!(rolled_days(&env.store, "org").await, 1, "only the first day is closed");
    env.clock.advance(Duration::minutes(30));
    env.store.roll_up_usage(100).await.unwrap();
    assert_eq!(rolled_days(&env.store, "org").await, 2, "past the grace period");
}

/// Four sweeps on two replicas at once: each day and month is rolled up
/// once, the rolled-up sums equal the journal's, and ranges over the whole
/// rolled-up month (read per user from its month rollup) answer as before.
async fn concurrent_sweeps_roll_each_day_up_once(backend: Backend) {
    let env = env(backend, START).await;
    let mut rng = Rng(4_242);
    // March (31 days) and the first days of April.
    seed(&env.store, &mut rng, 2_000, 35).await;
    env.clock.set(at(START) + Duration::days(40));
    let replica = env.db.store(env.clock.clone(), PlanCatalog::shipped()).await.unwrap();
    let ranges = [
        (at(START), at(START) + Duration::days(31)),
        (at(START) - Duration::days(3), at(START) + Duration::days(36)),
        (
            at(START) - Duration::minutes(5),
            at(START) + Duration::days(34) + Duration::minutes(7),
        ),
        (at(START) + Duration::hours(5), at(START) + Duration::days(31)),
    ];
    let mut want = Vec::new();
    for r in ranges {
        want.push(report(&env.store, r).await);
    }
    let sweeps = (0..4).map(|i| {
        let store = if i % 2 == 0 { env.store.clone() } else { replica.clone() };
        tokio::spawn(async move {
            let mut built = 0;
            loop {
                let n = store.roll_up_usage(7).await.unwrap();
                if n == 0 {
                    return built;
                }
                built += n;
            }
        })
    });
    let built: u64 = join_all(sweeps).await.into_iter().map(|r| r.unwrap()).sum();
    let days = rolled_days(&env.store, "org").await + rolled_days(&env.store, "other").await;
    // Closed: days 0..=38, the empty ones after the last entry too.
    assert_eq!(days, 2 * 39, "every closed day of two organizations");
    let months = usage_rollup_months::Entity::find()
        .count(env.store.connection())
        .await
        .unwrap();
    assert_eq!(months, 2, "March of both organizations (April is not over)");
    assert_eq!(built, days + months, "each day and month counted by exactly one sweep");
    let requests: Option<i64> = usage_org_days::Entity::find()
        .select_only()
        .expr(Expr::cust("CAST(SUM(requests) AS BIGINT)"))
        .into_tuple()
        .one(env.store.connection())
        .await
        .unwrap()
        .flatten();
    let ai = journal_entries::Entity::find()
        .filter_kind_ai()
        .count(env.store.connection())
        .await
        .unwrap();
    assert_eq!(requests, Some(ai as i64), "no entry counted twice");
    for (r, w) in ranges.iter().zip(&want) {
        assert_eq!(&report(&env.store, *r).await, w, "range {r:?}");
        assert_eq!(&report(&replica, *r).await, w, "range {r:?} on the other replica");
    }
    // March per user is read from its month rollup: its days' rows gone,
    // perUser over March answers as before.
    usage_user_days::Entity::delete_many()
        .exec(env.store.connection())
        .await
        .unwrap();
    let march = ranges[0];
    assert_eq!(
        env.store.usage_by_user("org", march.0, march.1).await.unwrap(),
        want[0].users
    );
}

trait AiOnly {
    fn filter_kind_ai(self) -> Self;
}

impl AiOnly for sea_orm::Select<journal_entries::Entity> {
    fn filter_kind_ai(self) -> Self {
        use sea_orm::{ColumnTrait, QueryFilter};
        self.filter(journal_entries::Column::Kind.eq(ActivityKind::AiUsage.as_str()))
    }
}

macro_rules! on_both {
    ($($name:ident),+) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await
                }
            )+
        }
    };
}

on_both!(
    rollups_answer_as_the_journal_does,
    open_days_are_not_rolled_up,
    concurrent_sweeps_roll_each_day_up_once
);
