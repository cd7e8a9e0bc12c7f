//! creditgate benchmarks.
//!
//! `ledger`: hold-and-settle pairs per second through the storage layer, on
//! SQLite or PostgreSQL, across many wallets and on one hot wallet. Each
//! pair is what every credit-paid AI request does: one transaction that
//! places a hold, one that settles it and writes the journal entry.
//!
//!   cargo run --release -p creditgate-bench -- ledger --backend sqlite
//!   cargo run --release -p creditgate-bench -- ledger --backend postgres

use std::sync::Arc;
use std::time::{Duration, Instant};

/// The server's allocator (see `crates/server/src/main.rs`), also as the
/// process's `malloc` (SQLite's), so that the ledger here allocates as it
/// does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use creditgate_domain::{ActivityKind, Credits, PlanCatalog, SystemClock};
use creditgate_storage::testing::{Backend, TestDb};
use creditgate_storage::{CreditRequest, HoldRequest, Identity, Placement, Store, UsageDetails};
use hdrhistogram::Histogram;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Db {
    Sqlite,
    Postgres,
}

#[derive(Subcommand)]
enum Command {
    /// Hold-and-settle pairs per second.
    Ledger {
        #[arg(long, value_enum, default_value = "sqlite")]
        backend: Db,
        /// Wallets in the many-wallets run.
        #[arg(long, default_value_t = 1_000)]
        wallets: usize,
        /// Pairs per run.
        #[arg(long, default_value_t = 20_000)]
        pairs: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Ledger writers (group commit); 0 turns it off. Default: the
        /// store's (1).
        #[arg(long)]
        ledger_writers: Option<usize>,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let Command::Ledger {
        backend,
        wallets,
        pairs,
        concurrency,
        ledger_writers,
    } = Cli::parse().command;
    let backend = match backend {
        Db::Sqlite => Backend::Sqlite,
        Db::Postgres => Backend::Postgres,
    };
    let db = TestDb::new(backend).await?;
    let store = db
        .store_with(Arc::new(SystemClock), PlanCatalog::shipped(), |o| {
            if ledger_writers.is_some() {
                o.ledger_writers = ledger_writers;
            }
        })
        .await?;
    // As a server runs it: a PostgreSQL replica's caches are on while it
    // hears the other replicas' changes (its listener turns them on), and
    // this store is the only replica. Without them each hold would also
    // look up its organization's spend limits.
    store.set_shared_caching(true);
    let users: Vec<String> = (0..wallets).map(|i| format!("user-{i}")).collect();
    for u in &users {
        store
            .ensure_user(&Identity {
                user_id: u.clone(),
                org_id: format!("org-{}", u.len() % 7),
                role: creditgate_domain::Role::Member,
                name: None,
                email: None,
                team: None,
                org_name: None,
                expires_at: None,
            })
            .await?;
        store
            .add_credits(
                u,
                &CreditRequest {
                    kind: ActivityKind::Grant,
                    amount: Credits::from_whole(1_000_000).unwrap_or(Credits::MAX),
                    description: None,
                    reference: None,
                    idempotency_key: None,
                },
            )
            .await?;
    }
    println!("backend: {backend:?}, concurrency {concurrency}, {pairs} pairs per run");
    for (label, pool) in [
        ("many wallets", users.clone()),
        ("one hot wallet", vec![users[0].clone()]),
    ] {
        let (elapsed, hist) = run(&store, &pool, pairs, concurrency).await?;
        println!(
            "{label:>15}: {:>8.0} pairs/s   pair latency p50 {:>6.2} ms  p99 {:>6.2} ms",
            pairs as f64 / elapsed.as_secs_f64(),
            hist.value_at_quantile(0.50) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0,
        );
    }
    let off = store.reconcile().await?;
    if !off.is_empty() {
        bail!("reconcile failed after the benchmark: {off:?}");
    }
    println!("reconcile: every wallet balances");
    let (ops, batches) = store.group_commit_counts();
    if batches > 0 {
        println!(
            "group commit: {ops} holds and settles in {batches} transactions ({:.1} per commit)",
            ops as f64 / batches as f64
        );
    }
    let (taken, stale) = store.ledger_mirror_counts();
    if taken > 0 {
        println!("mirror: {taken} batches took their wallets and holds from it, {stale} of them found stale");
    }
    Ok(())
}

async fn run(store: &Store, users: &[String], pairs: usize, concurrency: usize) -> Result<(Duration, Histogram<u64>)> {
    let per_task = pairs / concurrency;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let store = store.clone();
        let users: Vec<String> = users.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3)?;
            for i in 0..per_task {
                let user = &users[(t * per_task + i) % users.len()];
                let t0 = Instant::now();
                let Placement::Placed { hold, .. } = store
                    .place_hold(user, &HoldRequest::new(Credits::from_millis(5_000)))
                    .await?
                else {
                    bail!("unexpected replay");
                };
                store
                    .settle_hold(user, &hold.id, Credits::from_millis(1_234), UsageDetails::default())
                    .await?;
                hist.record(t0.elapsed().as_micros() as u64)?;
            }
            Ok::<_, anyhow::Error>(hist)
        }));
    }
    let mut all = Histogram::<u64>::new(3)?;
    for t in tasks {
        all.add(t.await??)?;
    }
    Ok((started.elapsed(), all))
}
