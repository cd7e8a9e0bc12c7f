//! SQLite's log is copied back into the database file by the store's own
//! checkpoint task, not by the commits that serve requests, and that task
//! ends with the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use creditgate_domain::{ActivityKind, ManualClock, PlanCatalog};
use creditgate_storage::testing::{Backend, TestDb};
use creditgate_storage::{CreditRequest, Store};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

/// The SQLite file of `db`.
fn file_of(db: &TestDb) -> PathBuf {
    let path = db.url.strip_prefix("sqlite://").expect("a SQLite URL");
    PathBuf::from(path.split('?').next().expect("a path"))
}

/// Waits for `check` to hold, for at most 20 seconds: how long the test may
/// wait for what must happen, not a measure of how fast it happens.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 20 seconds");
}

/// Journal entries in the database file itself, the log ignored (an
/// immutable read); `None` when the file cannot be read at that moment.
async fn entries_in_file(file: &std::path::Path) -> Option<i64> {
    let url = format!("sqlite://{}?mode=ro&immutable=true", file.display());
    let db = Database::connect(&url).await.ok()?;
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT COUNT(*) FROM journal_entries",
        ))
        .await
        .ok()??;
    let n = row.try_get_by_index::<i64>(0).ok();
    let _ = db.close().await;
    n
}

fn grant(n: usize) -> CreditRequest {
    CreditRequest {
        kind: ActivityKind::Grant,
        amount: cr("1"),
        // About a page per entry, so the log fills quickly.
        description: Some(format!("{n:04} {}", "x".repeat(3_000))),
        reference: None,
        idempotency_key: None,
    }
}

/// A SQLite store with one user, `ana`.
async fn with_ana() -> (TestDb, Store) {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let clock = Arc::new(ManualClock::new(at("2025-03-10T12:00:00Z")));
    let store = db.store(clock, PlanCatalog::shipped()).await.unwrap();
    store.ensure_user(&member("ana", "org")).await.unwrap();
    (db, store)
}

/// Three hundred commits of about a page each, far below where the serving
/// connection checkpoints itself: without the store's own checkpoints they
/// would stay in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_copied_back_by_the_stores_own_checkpoints() {
    let (db, store) = with_ana().await;
    for n in 0..300 {
        store.add_credits("ana", &grant(n)).await.unwrap();
    }
    let written = journal(&store, "ana").await.len();
    let written = i64::try_from(written).unwrap();
    let file = file_of(&db);
    eventually("every entry copied into the database file", || {
        let file = file.clone();
        async move { entries_in_file(&file).await == Some(written) }
    })
    .await;
    // The store goes on serving as before.
    store.add_credits("ana", &grant(300)).await.unwrap();
    assert_books_balance(&store, "ana").await;
}

/// The checkpoint task holds a connection of its own; when the last copy of
/// the store goes, so does it, and SQLite, its last connection closed,
/// folds the log into the file and removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoints_end_with_the_store() {
    let (db, store) = with_ana().await;
    store.add_credits("ana", &grant(0)).await.unwrap();
    let mut wal = file_of(&db).into_os_string();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    assert!(wal.exists(), "a store in use has a log");
    drop(store);
    eventually("the log removed once every connection closed", || {
        let gone = !wal.exists();
        async move { gone }
    })
    .await;
}
