//! Every migration can be undone and done again: an operator who rolls a
//! release back (`down`) gets the schema before it, and the next release
//! applies cleanly on top. Runs on SQLite, and on PostgreSQL when
//! `CREDITGATE_TEST_POSTGRES_URL` names a server (a database of its own is
//! made and dropped).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use creditgate_migrations::Migrator;
use sea_orm_migration::MigratorTrait;
use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};

/// The indexes of the schema, as (table, name), sorted.
async fn indexes(db: &DatabaseConnection) -> Vec<(String, String)> {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => {
            "SELECT tbl_name AS t, name AS n FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY 1, 2"
        }
        _ => {
            "SELECT tablename::text AS t, indexname::text AS n FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"
        }
    };
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("list indexes");
    rows.iter()
        .map(|r| (r.try_get("", "t").expect("t"), r.try_get("", "n").expect("n")))
        .collect()
}

/// The tables with a foreign key to `users`, sorted.
async fn checked_by_user(db: &DatabaseConnection) -> Vec<String> {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => {
            "SELECT m.name AS t FROM sqlite_master m, pragma_foreign_key_list(m.name) f \
             WHERE m.type = 'table' AND f.\"table\" = 'users' ORDER BY 1"
        }
        _ => {
            "SELECT conrelid::regclass::text AS t FROM pg_constraint \
             WHERE contype = 'f' AND confrelid = 'users'::regclass ORDER BY 1"
        }
    };
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("list foreign keys");
    rows.iter().map(|r| r.try_get("", "t").expect("t")).collect()
}

async fn round_trip(db: &DatabaseConnection) {
    let steps = u32::try_from(Migrator::migrations().len()).expect("few migrations");
    Migrator::up(db, None).await.expect("up");
    let latest = indexes(db).await;
    let latest_keys = checked_by_user(db).await;
    assert!(latest.iter().any(|(_, n)| n == "holds_open_deadline"), "{latest:?}");
    // PostgreSQL's journal entries and holds do not check their user by a
    // foreign key (see `m20261210_000001_ledger_user_checks`); SQLite's do.
    let ledger = ["holds".to_owned(), "journal_entries".to_owned()];
    let postgres = db.get_database_backend() == DbBackend::Postgres;
    assert_eq!(
        ledger.iter().all(|t| latest_keys.contains(t)),
        !postgres,
        "{latest_keys:?}"
    );
    assert!(latest_keys.contains(&"wallets".to_owned()), "{latest_keys:?}");
    assert!(open_only(db, "OPEN").await);
    // Undo the newest migration alone: the open holds' indexes are again
    // for the status no hold has.
    Migrator::down(db, Some(1)).await.expect("down one");
    assert_eq!(indexes(db).await, latest);
    assert!(open_only(db, "open").await);
    // And the one before it: the foreign keys come back.
    Migrator::down(db, Some(1)).await.expect("down two");
    let keys_before = checked_by_user(db).await;
    assert!(ledger.iter().all(|t| keys_before.contains(t)), "{keys_before:?}");
    assert_eq!(indexes(db).await, latest);
    // And the one before it: the indexes before it come back.
    Migrator::down(db, Some(1)).await.expect("down three");
    let before = indexes(db).await;
    assert!(before.iter().any(|(_, n)| n == "holds_status_deadline"), "{before:?}");
    assert!(!before.iter().any(|(_, n)| n == "holds_open_deadline"), "{before:?}");
    // Undo everything, then do it all again.
    Migrator::down(db, Some(steps)).await.expect("down all");
    Migrator::up(db, None).await.expect("up again");
    assert_eq!(indexes(db).await, latest);
    assert_eq!(checked_by_user(db).await, latest_keys);
    assert!(open_only(db, "OPEN").await);
}

/// Whether both open holds' indexes keep only the holds whose status is
/// `status`.
async fn open_only(db: &DatabaseConnection, status: &str) -> bool {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => {
            "SELECT sql AS d FROM sqlite_master WHERE name IN ('holds_open_deadline', 'holds_open_user')"
        }
        _ => "SELECT indexdef AS d FROM pg_indexes WHERE indexname IN ('holds_open_deadline', 'holds_open_user')",
    };
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("index definitions");
    rows.len() == 2
        && rows.iter().all(|row| {
            let d: String = row.try_get("", "d").expect("definition");
            d.ends_with(&format!("'{status}'")) || d.ends_with(&format!("'{status}'::text)"))
        })
}

#[tokio::test]
async fn migrations_undo_and_redo_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("creditgate-migrations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.join("round-trip.db").display());
    let db = Database::connect(&url).await.expect("sqlite");
    round_trip(&db).await;
    db.close().await.expect("close");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[tokio::test]
async fn migrations_undo_and_redo_on_postgres() {
    let Ok(server) = std::env::var("CREDITGATE_TEST_POSTGRES_URL") else {
        eprintln!("CREDITGATE_TEST_POSTGRES_URL is not set: skipped");
        return;
    };
    let admin = Database::connect(&server).await.expect("postgres");
    let name = format!("creditgate_migrations_{}", std::process::id());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    let db = Database::connect(format!("{base}/{name}")).await.expect("connect");
    round_trip(&db).await;
    db.close().await.expect("close");
    admin
        .execute_unprepared(&format!("DROP DATABASE {name}"))
        .await
        .expect("drop database");
}
