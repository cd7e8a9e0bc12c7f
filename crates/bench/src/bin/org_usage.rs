//! orgUsage at scale: the totals, per user, per team, per feature and the
//! daily trend of one organization of 1,000 users in 20 teams over
//! 1,000,000 journal entries (90 days), as the resolvers read them. Seeds
//! with multi-row INSERTs in big transactions; the clock then stands at
//! noon of the last day, and the range ends there: the last half day is
//! open and read from the journal, the closed days before it from their
//! rollups. Times one report from the journal alone (before any rollup),
//! the housekeeping sweep rolling up the closed days (as production runs
//! it, a bounded batch per pass), the first report after it (cold), then
//! the latency (p50, p95, max) of the whole report, part by part as the
//! resolvers read them one after the other and with the parts at once (as
//! GraphQL resolves them).
//!
//!   cargo run --release -p creditgate-bench --bin org_usage -- --backend sqlite
//!   cargo run --release -p creditgate-bench --bin org_usage -- --backend postgres

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use creditgate_domain::{ActivityKind, ManualClock, PlanCatalog, Role};
use creditgate_storage::entities::journal_entries;
use creditgate_storage::testing::{Backend, TestDb};
use creditgate_storage::{Bucket, Identity, Store};
use hdrhistogram::Histogram;
use sea_orm::{ActiveValue::NotSet, ActiveValue::Set, ConnectionTrait, EntityTrait, TransactionTrait};

#[derive(Clone, Copy, ValueEnum)]
enum Db {
    Sqlite,
    Postgres,
}

#[derive(Parser)]
struct Cli {
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Db,
    #[arg(long, default_value_t = 1_000)]
    users: usize,
    #[arg(long, default_value_t = 20)]
    teams: usize,
    #[arg(long, default_value_t = 1_000_000)]
    entries: usize,
    /// Days the entries are spread over (the report's range).
    #[arg(long, default_value_t = 90)]
    days: i64,
    /// Measured reports (after 3 warm-up runs).
    #[arg(long, default_value_t = 20)]
    runs: usize,
}

const ORG: &str = "bench-org";
const FEATURES: [&str; 4] = ["CHAT", "EXECUTIVE_ANALYSIS", "STANDUP_SYNTHESIS", "AUTO_SCHEDULING"];

fn entry(user: &str, at: DateTime<Utc>, i: usize) -> journal_entries::ActiveModel {
    let byok = i.is_multiple_of(10);
    let consumed = if byok { 0 } else { 100 + (i as i64 % 900) };
    // One charge in five is paid (partly) from permanent credits.
    let permanent = if i.is_multiple_of(5) { -consumed / 2 } else { 0 };
    journal_entries::ActiveModel {
        id: NotSet,
        user_id: Set(user.to_owned()),
        org_id: Set(ORG.to_owned()),
        at: Set(at),
        kind: Set(ActivityKind::AiUsage.as_str().to_owned()),
        feature: Set(Some(FEATURES[i % 4].to_owned())),
        billing_mode: Set(Some(if byok { "BYOK" } else { "CREDITS" }.to_owned())),
        status: Set(Some("SUCCEEDED".to_owned())),
        provider: Set(Some("openai".to_owned())),
        model: Set(Some("gpt-4o-mini".to_owned())),
        input_tokens: Set(Some(200 + (i as i64 % 50))),
        output_tokens: Set(Some(100 + (i as i64 % 70))),
        credits_consumed: Set(consumed),
        credits_avoided: Set(if byok { 300 } else { 0 }),
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

async fn seed(store: &Store, cli: &Cli, start: DateTime<Utc>) -> Result<()> {
    let users: Vec<String> = (0..cli.users).map(|i| format!("user-{i:05}")).collect();
    for (i, u) in users.iter().enumerate() {
        store
            .ensure_user(&Identity {
                user_id: u.clone(),
                org_id: ORG.into(),
                role: Role::Member,
                name: None,
                email: None,
                team: Some(format!("team-{:02}", i % cli.teams)),
                org_name: None,
                expires_at: None,
            })
            .await?;
    }
    let span = cli.days * 86_400;
    let began = Instant::now();
    let db = store.connection();
    let per_txn = 50_000;
    let per_stmt = 500;
    let mut i = 0;
    while i < cli.entries {
        let txn = db.begin().await?;
        let end = (i + per_txn).min(cli.entries);
        while i < end {
            let stop = (i + per_stmt).min(end);
            let rows: Vec<_> = (i..stop)
                .map(|k| {
                    // In time order, as production appends them.
                    let at = start + chrono::Duration::milliseconds(k as i64 * span * 1_000 / cli.entries as i64);
                    entry(&users[k % users.len()], at, k)
                })
                .collect();
            journal_entries::Entity::insert_many(rows)
                .exec_without_returning(&txn)
                .await?;
            i = stop;
        }
        txn.commit().await?;
    }
    // Fresh statistics, as the database would have on a long-lived table.
    db.execute_unprepared("ANALYZE").await?;
    println!("seeded {} entries in {:.1?}", cli.entries, began.elapsed());
    Ok(())
}

type Part = (&'static str, Duration);

/// The parts of one report at once, as GraphQL resolves them (perTeam from
/// perUser's sums, read once).
async fn report_at_once(store: &Store, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<()> {
    let users_and_teams = async {
        let users = store.usage_by_user(ORG, from, to).await?;
        store.usage_by_team_of(ORG, &users).await
    };
    tokio::try_join!(
        store.usage_totals(ORG, from, to),
        users_and_teams,
        store.usage_by_feature(ORG, from, to),
        store.usage_trend(ORG, from, to, Bucket::Day),
    )?;
    Ok(())
}

/// One orgUsage report, part by part, as its resolvers read it (one after
/// the other).
async fn report(store: &Store, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Part>> {
    let mut parts = Vec::new();
    let t = Instant::now();
    store.usage_totals(ORG, from, to).await?;
    parts.push(("totals", t.elapsed()));
    let t = Instant::now();
    let users = store.usage_by_user(ORG, from, to).await?;
    parts.push(("perUser", t.elapsed()));
    // perTeam from perUser's sums, as the resolvers share them.
    let t = Instant::now();
    let teams = store.usage_by_team_of(ORG, &users).await?;
    parts.push(("perTeam", t.elapsed()));
    let t = Instant::now();
    store.usage_by_feature(ORG, from, to).await?;
    parts.push(("byFeature", t.elapsed()));
    let t = Instant::now();
    let trend = store.usage_trend(ORG, from, to, Bucket::Day).await?;
    parts.push(("trend", t.elapsed()));
    anyhow::ensure!(teams.len() >= 20 && !trend.is_empty(), "the report is empty");
    Ok(parts)
}

fn ms(d: u64) -> f64 {
    d as f64 / 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let backend = match cli.backend {
        Db::Sqlite => Backend::Sqlite,
        Db::Postgres => Backend::Postgres,
    };
    let start: DateTime<Utc> = "2026-06-01T00:00:00Z".parse()?;
    let clock = Arc::new(ManualClock::new(start));
    let db = TestDb::new(backend).await?;
    let store = db.store(clock.clone(), PlanCatalog::shipped()).await?;
    seed(&store, &cli, start).await?;
    let now = start + chrono::Duration::days(cli.days) - chrono::Duration::hours(12);
    clock.set(now);
    let (from, to) = (start, now);
    let t = Instant::now();
    report(&store, from, to).await?;
    println!(
        "one report from the journal alone (no rollups yet): {:.1?}",
        t.elapsed()
    );
    let t = Instant::now();
    let (mut rolled, mut passes) = (0, 0);
    loop {
        let n = store.roll_up_usage(50).await?;
        if n == 0 {
            break;
        }
        rolled += n;
        passes += 1;
    }
    println!(
        "housekeeping rolled up {rolled} closed days and months in {passes} passes of at most 50: {:.1?}",
        t.elapsed()
    );
    // Fresh statistics of the rollup tables too, as a long-lived database has.
    store.connection().execute_unprepared("ANALYZE").await?;
    let t = Instant::now();
    report(&store, from, to).await?;
    println!("first report after the rollups (cold): {:.1?}", t.elapsed());
    for _ in 0..3 {
        report(&store, from, to).await?;
    }
    let mut at_once = Histogram::<u64>::new(3)?;
    for _ in 0..cli.runs {
        let t = Instant::now();
        report_at_once(&store, from, to).await?;
        at_once.record(t.elapsed().as_micros() as u64)?;
    }
    let mut whole = Histogram::<u64>::new(3)?;
    let mut each: Vec<(&'static str, Histogram<u64>)> = Vec::new();
    for _ in 0..cli.runs {
        let t = Instant::now();
        let parts = report(&store, from, to).await?;
        whole.record(t.elapsed().as_micros() as u64)?;
        for (name, d) in parts {
            match each.iter_mut().find(|(n, _)| *n == name) {
                Some((_, h)) => h.record(d.as_micros() as u64)?,
                None => {
                    let mut h = Histogram::<u64>::new(3)?;
                    h.record(d.as_micros() as u64)?;
                    each.push((name, h));
                }
            }
        }
    }
    let line = |name: &str, h: &Histogram<u64>| {
        println!(
            "{name:<10} p50 {:>8.1} ms  p95 {:>8.1} ms  max {:>8.1} ms",
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.95)),
            ms(h.max())
        );
    };
    println!(
        "orgUsage over {} entries, {} users in {} teams, {} days by day ({} runs):",
        cli.entries, cli.users, cli.teams, cli.days, cli.runs
    );
    line("report", &whole);
    line("at once", &at_once);
    for (name, h) in &each {
        line(name, h);
    }
    Ok(())
}
