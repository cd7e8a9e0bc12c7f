//! The transaction a ledger batch runs in.
//!
//! On PostgreSQL (and an in-memory SQLite database, which lives only as
//! long as its one connection) it is SeaORM's. On a SQLite file it is the
//! pool's one connection, held for the batch, with `BEGIN` sent with the
//! batch's first statement and `COMMIT` with its last (see
//! [`LedgerTxn::run`]): sqlx hands every statement to the connection's
//! own thread and waits for it to come back, and SeaORM's transaction sends
//! `BEGIN` and `COMMIT` as statements of their own, so a batch of one
//! wallet cost four such round trips where it now costs two, and a larger
//! batch six where it cost seven (`COMMIT` goes alone after a larger
//! batch: see `Batch::flush`, and the README's benchmarks). Both are
//! SeaORM connections ([`ConnectionTrait`]): everything that runs in a
//! batch is written once for both.
//!
//! A SQLite transaction that ends any other way than by its commit or
//! rollback (its future dropped, a panic) closes its connection, which
//! rolls it back: the connection never goes back to the pool inside a
//! transaction.

use std::sync::Arc;

use sea_orm::sea_query::Values;
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{self, AssertSqlSafe, Sqlite, SqlitePool};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr, Statement};
use sea_query_sqlx::SqlxValues;
use tokio::sync::Mutex;

/// A ledger batch's transaction (see the module's documentation).
pub(crate) enum LedgerTxn {
    Sea(DatabaseTransaction),
    Sqlite(SqliteTxn),
}

impl From<DatabaseTransaction> for LedgerTxn {
    fn from(txn: DatabaseTransaction) -> Self {
        LedgerTxn::Sea(txn)
    }
}

/// What [`LedgerTxn::run`] returned.
pub(crate) struct Sent {
    pub rows: Vec<QueryResult>,
}

impl LedgerTxn {
    /// A transaction on `pool`'s connection (a SQLite file's), begun with
    /// its first statement.
    pub(crate) async fn sqlite(pool: &SqlitePool) -> Result<Self, DbErr> {
        let conn = pool.acquire().await.map_err(query_err)?;
        Ok(LedgerTxn::Sqlite(SqliteTxn {
            inner: Mutex::new(Inner {
                conn,
                stage: Stage::Fresh,
            }),
        }))
    }

    /// Runs `statement` (its rows when `rows`), committing the transaction
    /// with it when `commit` and the transaction can (a SQLite file's):
    /// one round trip to the connection's thread for both. A transaction
    /// that cannot runs it alone, for the caller to commit.
    pub(crate) async fn run(&self, statement: Statement, rows: bool, commit: bool) -> Result<Sent, DbErr> {
        match self {
            LedgerTxn::Sqlite(t) => t.send(statement, rows, commit).await,
            LedgerTxn::Sea(t) => {
                let rows = if rows {
                    t.query_all_raw(statement).await?
                } else {
                    t.execute_raw(statement).await?;
                    Vec::new()
                };
                Ok(Sent { rows })
            }
        }
    }

    /// Where it stands: SeaORM's are open until committed or rolled back,
    /// which takes them.
    pub(crate) async fn stage(&self) -> Stage {
        match self {
            LedgerTxn::Sea(_) => Stage::Open,
            LedgerTxn::Sqlite(t) => t.stage().await,
        }
    }

    pub(crate) async fn commit(self) -> Result<(), DbErr> {
        match self {
            LedgerTxn::Sea(t) => t.commit().await,
            LedgerTxn::Sqlite(t) => t.end("COMMIT", Stage::Committed).await,
        }
    }

    pub(crate) async fn rollback(self) -> Result<(), DbErr> {
        match self {
            LedgerTxn::Sea(t) => t.rollback().await,
            LedgerTxn::Sqlite(t) => t.end("ROLLBACK", Stage::RolledBack).await,
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for LedgerTxn {
    fn get_database_backend(&self) -> DbBackend {
        match self {
            LedgerTxn::Sea(t) => t.get_database_backend(),
            LedgerTxn::Sqlite(_) => DbBackend::Sqlite,
        }
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self {
            LedgerTxn::Sea(t) => t.execute_raw(stmt).await,
            LedgerTxn::Sqlite(t) => t.execute(stmt.sql, stmt.values).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self {
            LedgerTxn::Sea(t) => t.execute_unprepared(sql).await,
            LedgerTxn::Sqlite(t) => t.execute(sql.to_owned(), None).await,
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            LedgerTxn::Sea(t) => t.query_one_raw(stmt).await,
            LedgerTxn::Sqlite(t) => Ok(t.send(stmt, true, false).await?.rows.into_iter().next()),
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            LedgerTxn::Sea(t) => t.query_all_raw(stmt).await,
            LedgerTxn::Sqlite(t) => Ok(t.send(stmt, true, false).await?.rows),
        }
    }
}

/// A transaction on a SQLite file's connection (see the module's
/// documentation).
pub(crate) struct SqliteTxn {
    inner: Mutex<Inner>,
}

/// Where a [`LedgerTxn`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Nothing sent yet.
    Fresh,
    Open,
    Committed,
    RolledBack,
    /// Its `COMMIT` failed in a way that leaves unknown whether it landed.
    Unknown,
}

struct Inner {
    conn: PoolConnection<Sqlite>,
    stage: Stage,
}

impl Inner {
    /// `sql` as sent: after `BEGIN` if it is the transaction's first, and
    /// before `COMMIT` when `commit`.
    fn text(&mut self, sql: String, commit: bool) -> Result<String, DbErr> {
        let sql = match self.stage {
            Stage::Open => sql,
            Stage::Fresh => {
                self.stage = Stage::Open;
                format!("BEGIN;\n{sql}")
            }
            Stage::Committed | Stage::RolledBack | Stage::Unknown => {
                return Err(DbErr::Custom("the ledger transaction has already ended".to_owned()));
            }
        };
        Ok(if commit { format!("{sql};\nCOMMIT") } else { sql })
    }

    /// Sends `end` (`COMMIT` or `ROLLBACK`), kept prepared by the
    /// connection like any statement (a batch of several wallets commits
    /// alone: sent raw, it was prepared again for every batch).
    async fn end(&mut self, end: &'static str, to: Stage) -> Result<(), sqlx::Error> {
        let done = sqlx::query(AssertSqlSafe(end)).execute(&mut *self.conn).await;
        self.stage = if done.is_ok() { to } else { Stage::Unknown };
        done.map(|_| ())
    }
}

impl SqliteTxn {
    async fn send(&self, statement: Statement, rows: bool, commit: bool) -> Result<Sent, DbErr> {
        let mut inner = self.inner.lock().await;
        let sql = inner.text(statement.sql, commit)?;
        let values = SqlxValues(statement.values.unwrap_or(Values(Vec::new())));
        let query = sqlx::query_with(AssertSqlSafe(sql), values);
        let sent = if rows {
            query
                .fetch_all(&mut *inner.conn)
                .await
                .map(|rows| rows.into_iter().map(QueryResult::from).collect())
        } else {
            query.execute(&mut *inner.conn).await.map(|_| Vec::new())
        };
        match sent {
            Ok(rows) => {
                if commit {
                    inner.stage = Stage::Committed;
                }
                Ok(Sent { rows })
            }
            Err(e) => {
                if commit {
                    // Whether a statement before the `COMMIT` failed (the
                    // transaction still open) or the `COMMIT` itself: a
                    // `ROLLBACK` that finds no transaction tells.
                    let _ = inner.end("ROLLBACK", Stage::RolledBack).await;
                }
                Err(query_err(e))
            }
        }
    }

    async fn execute(&self, sql: String, values: Option<Values>) -> Result<ExecResult, DbErr> {
        let mut inner = self.inner.lock().await;
        let sql = inner.text(sql, false)?;
        let done = match values {
            Some(values) => {
                sqlx::query_with(AssertSqlSafe(sql), SqlxValues(values))
                    .execute(&mut *inner.conn)
                    .await
            }
            None => sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *inner.conn).await,
        };
        done.map(ExecResult::from).map_err(exec_err)
    }

    async fn stage(&self) -> Stage {
        self.inner.lock().await.stage
    }

    /// Commits or rolls back (`end`) what it began, if anything.
    async fn end(self, end: &'static str, to: Stage) -> Result<(), DbErr> {
        let mut inner = self.inner.into_inner();
        match inner.stage {
            Stage::Open => inner.end(end, to).await.map_err(exec_err),
            Stage::Fresh | Stage::RolledBack => Ok(()),
            Stage::Committed if to == Stage::Committed => Ok(()),
            Stage::Committed | Stage::Unknown => Err(DbErr::Custom(format!(
                "the ledger transaction cannot {end}: it is {:?}",
                inner.stage
            ))),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if matches!(self.stage, Stage::Open | Stage::Unknown) {
            // Closing the connection rolls back what is open, and a
            // connection in an unknown state never serves again.
            tracing::warn!(stage = ?self.stage, "a ledger transaction ended midway; its connection closes");
            self.conn.close_on_drop();
        }
    }
}

fn query_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(e)))
}

fn exec_err(e: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e)))
}

#[cfg(test)]
mod tests {
    use sea_orm::DatabaseConnection;

    use super::super::test_table::{statement, sums, table};
    use super::*;

    /// A SQLite file with the test table.
    async fn file() -> (tempfile::TempDir, DatabaseConnection) {
        let dir = tempfile::tempdir().expect("dir");
        let db = table(&format!("sqlite://{}/t.db?mode=rwc", dir.path().display())).await;
        (dir, db)
    }

    async fn txn(db: &DatabaseConnection) -> LedgerTxn {
        LedgerTxn::sqlite(db.get_sqlite_connection_pool()).await.expect("txn")
    }

    /// A transaction on a file that added 100 to each row's `n`, not yet
    /// committed.
    async fn updated() -> (tempfile::TempDir, DatabaseConnection, LedgerTxn) {
        let (dir, db) = file().await;
        let txn = txn(&db).await;
        txn.execute_raw(statement("UPDATE t SET n = n + 100", vec![]))
            .await
            .expect("update");
        (dir, db, txn)
    }

    async fn stage(txn: &LedgerTxn) -> Stage {
        txn.stage().await
    }

    #[tokio::test]
    async fn begins_with_its_first_statement_and_commits_with_its_last() {
        let (_dir, db) = file().await;
        let txn = txn(&db).await;
        assert_eq!(stage(&txn).await, Stage::Fresh);
        let rows = txn
            .query_all_raw(statement("UPDATE t SET n = n + ? RETURNING id", vec![1.into()]))
            .await
            .expect("update");
        assert_eq!(rows.len(), 2);
        assert_eq!(stage(&txn).await, Stage::Open);
        txn.run(
            statement(
                "INSERT INTO t (id, name, n) VALUES (?, ?, ?)",
                vec![3.into(), "c".into(), 30.into()],
            ),
            false,
            true,
        )
        .await
        .expect("insert and commit");
        assert_eq!(stage(&txn).await, Stage::Committed);
        txn.commit().await.expect("nothing left to commit");
        assert_eq!(sums(&db).await, (3, 62));
    }

    #[tokio::test]
    async fn a_failure_in_the_committing_statement_rolls_all_of_it_back() {
        let (_dir, db, txn) = updated().await;
        // The insert breaks the unique name: the commit after it never runs.
        let failed = txn
            .run(
                statement(
                    "INSERT INTO t (id, name, n) VALUES (?, ?, ?)",
                    vec![3.into(), "a".into(), 30.into()],
                ),
                false,
                true,
            )
            .await;
        assert!(failed.is_err());
        assert_eq!(stage(&txn).await, Stage::RolledBack);
        txn.rollback().await.expect("nothing left to roll back");
        assert_eq!(sums(&db).await, (2, 30));
        // The connection serves again, outside any transaction.
        db.execute_unprepared("INSERT INTO t (id, name, n) VALUES (4, 'd', 1)")
            .await
            .expect("insert");
        assert_eq!(sums(&db).await, (3, 31));
    }

    #[tokio::test]
    async fn a_transaction_given_up_midway_leaves_nothing_and_its_connection_goes() {
        let (_dir, db, txn) = updated().await;
        // As when a request's future is dropped between two statements.
        drop(txn);
        assert_eq!(sums(&db).await, (2, 30));
        let txn = crate::group::LedgerTxn::sqlite(db.get_sqlite_connection_pool())
            .await
            .expect("a new connection");
        txn.execute_raw(statement("UPDATE t SET n = n + 1", vec![]))
            .await
            .expect("update");
        txn.rollback().await.expect("rollback");
        assert_eq!(sums(&db).await, (2, 30));
    }

    #[tokio::test]
    async fn a_transaction_that_sent_nothing_commits_and_rolls_back_as_nothing() {
        let (_dir, db) = file().await;
        txn(&db).await.commit().await.expect("commit");
        txn(&db).await.rollback().await.expect("rollback");
        assert_eq!(sums(&db).await, (2, 30));
    }
}
