//! The SQLite this store runs on is built as `.cargo/config.toml` says
//! (libsqlite3-sys compiles the SQLite it bundles with those options): the
//! README's benchmarks depend on them, and a build that lost them (cargo
//! run from elsewhere than the workspace, the variable overridden) would
//! still pass every other test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use creditgate_domain::{PlanCatalog, SystemClock};
use creditgate_storage::testing::{Backend, TestDb};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

#[tokio::test]
async fn sqlite_is_built_with_the_workspace_options() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let store = db.store(Arc::new(SystemClock), PlanCatalog::shipped()).await.unwrap();
    let rows = store
        .connection()
        .query_all_raw(Statement::from_string(DbBackend::Sqlite, "PRAGMA compile_options"))
        .await
        .unwrap();
    let options: Vec<String> = rows.iter().map(|r| r.try_get_by_index::<String>(0).unwrap()).collect();
    for wanted in [
        // No global mutex around each of SQLite's allocations.
        "DEFAULT_MEMSTATUS=0",
        // A batch's statement journals stay in memory up to 1 MiB.
        "STMTJRNL_SPILL=1048576",
    ] {
        assert!(
            options.iter().any(|o| o == wanted),
            "SQLite is not built with {wanted}: {options:?}"
        );
    }
}
