#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Every journal entry and hold is of a user who has a wallet. The ledger
//! writes them only for a wallet it locked, so an operation for a user who
//! does not exist is refused and writes nothing; on SQLite a foreign key
//! refuses any other such row too, and on PostgreSQL (where no foreign key
//! checks these tables, see the migration `m20261210_000001_ledger_user_checks`)
//! `reconcile` reports one.

mod common;

use common::*;
use creditgate_storage::testing::Backend;
use creditgate_storage::{HoldRequest, StoreError};
use sea_orm::{ConnectionTrait, Statement};

const ORPHAN_ENTRY: &str = "INSERT INTO journal_entries (user_id, org_id, at, kind) \
                            VALUES ('ghost', 'org', '2025-03-10T12:00:00Z', 'grant')";
const ORPHAN_HOLD: &str = "INSERT INTO holds (id, user_id, cycle_start, status, created_at, deadline) \
                           VALUES ('h-ghost', 'ghost', '2025-03-01T00:00:00Z', 'open', \
                           '2025-03-10T12:00:00Z', '2025-03-10T12:05:00Z')";

async fn rows_of_users_without_wallets_are_refused_or_reported(backend: Backend) {
    let env = env(backend, "2025-03-10T12:00:00Z").await;
    let store = &env.store;
    store.ensure_user(&member("alice", "org")).await.unwrap();

    // Through the ledger: refused, nothing written.
    match store.place_hold("ghost", &HoldRequest::new(cr("1"))).await {
        Err(StoreError::NotFound { what: "user", .. }) => {}
        other => panic!("no such user: {other:?}"),
    }
    assert!(store.reconcile().await.unwrap().is_empty());

    // Behind the ledger's back.
    let conn = store.connection();
    let entry = conn
        .execute_raw(Statement::from_string(conn.get_database_backend(), ORPHAN_ENTRY))
        .await;
    let hold = conn
        .execute_raw(Statement::from_string(conn.get_database_backend(), ORPHAN_HOLD))
        .await;
    match backend {
        Backend::Sqlite => {
            assert!(entry.is_err() && hold.is_err(), "the foreign keys refuse them");
            assert!(store.reconcile().await.unwrap().is_empty());
        }
        Backend::Postgres => {
            entry.unwrap();
            hold.unwrap();
            let found: Vec<(String, String)> = store
                .reconcile()
                .await
                .unwrap()
                .into_iter()
                .map(|d| (d.user_id, d.problem))
                .collect();
            assert_eq!(
                found,
                vec![
                    ("ghost".to_owned(), "holds of a user who has no wallet".to_owned()),
                    (
                        "ghost".to_owned(),
                        "journal entries of a user who has no wallet".to_owned()
                    ),
                ]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rows_of_users_without_wallets_are_refused_or_reported() {
    rows_of_users_without_wallets_are_refused_or_reported(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_of_users_without_wallets_are_refused_or_reported() {
    rows_of_users_without_wallets_are_refused_or_reported(Backend::Postgres).await;
}
