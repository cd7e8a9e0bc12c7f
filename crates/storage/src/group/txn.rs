//! The transaction a ledger batch runs in.
//!
//! On a SQLite file or PostgreSQL it is a connection of the pool, held for
//! the batch, begun with the batch's first statement and committed with
//! its last where the database can (see [`LedgerTxn::run`]); elsewhere (an
//! in-memory SQLite database, which lives only as long as its one
//! connection) it is SeaORM's. SeaORM's transaction sends `BEGIN` and
//! `COMMIT` as statements of their own, each a round trip:
//! - SQLite: sqlx hands every statement to the connection's own thread
//!   and waits for it to come back; `BEGIN` goes with the batch's first
//!   statement and `COMMIT` with its last, in one script, so a batch of
//!   one wallet cost four such round trips where it now costs two, and a
//!   larger batch six where it cost seven (`COMMIT` goes alone after a
//!   larger batch: see `Batch::flush`, and the README's benchmarks).
//! - PostgreSQL: its protocol takes one statement with parameters at a
//!   time, so `BEGIN` goes alone before the batch's first statement,
//!   unless that statement is also its last: then it runs alone, a
//!   transaction by itself, and commits with no `BEGIN` or `COMMIT` (a
//!   batch taken from the mirror: one round trip, see `pg`).
//!
//! All are SeaORM connections ([`ConnectionTrait`]): everything that runs
//! in a batch is written once for every database.
//!
//! A pool's transaction that ends any other way than by its commit or
//! rollback (its future dropped, a panic) closes its connection, which
//! rolls it back: the connection never goes back to the pool inside a
//! transaction.

use std::sync::Arc;

use sea_orm::sea_query::Values;
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{self, AssertSqlSafe, PgPool, Postgres, Sqlite, SqlitePool};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr, Statement};
use sea_query_sqlx::SqlxValues;
use tokio::sync::Mutex;

/// A ledger batch's transaction (see the module's documentation).
pub(crate) enum LedgerTxn {
    Sea(DatabaseTransaction),
    Pool(PoolTxn),
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
        Ok(Self::pool(Conn::Sqlite(conn)))
    }

    /// A transaction on a connection of `pool` (PostgreSQL's), begun
    /// before its first statement unless that one is also its last.
    pub(crate) async fn postgres(pool: &PgPool) -> Result<Self, DbErr> {
        let conn = pool.acquire().await.map_err(query_err)?;
        Ok(Self::pool(Conn::Postgres(conn)))
    }

    fn pool(conn: Conn) -> Self {
        LedgerTxn::Pool(PoolTxn {
            backend: conn.backend(),
            inner: Mutex::new(Inner {
                conn,
                stage: Stage::Fresh,
            }),
        })
    }

    /// Runs `statement` (its rows when `rows`), committing the transaction
    /// with it when `commit` and the transaction can (a pool's; see the
    /// module's documentation): one round trip for both. SeaORM's runs it
    /// alone, for the caller to commit.
    pub(crate) async fn run(&self, statement: Statement, rows: bool, commit: bool) -> Result<Sent, DbErr> {
        match self {
            LedgerTxn::Pool(t) => t.send(statement, rows, commit).await,
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
            LedgerTxn::Pool(t) => t.stage().await,
        }
    }

    pub(crate) async fn commit(self) -> Result<(), DbErr> {
        match self {
            LedgerTxn::Sea(t) => t.commit().await,
            LedgerTxn::Pool(t) => t.end("COMMIT", Stage::Committed).await,
        }
    }

    pub(crate) async fn rollback(self) -> Result<(), DbErr> {
        match self {
            LedgerTxn::Sea(t) => t.rollback().await,
            LedgerTxn::Pool(t) => t.end("ROLLBACK", Stage::RolledBack).await,
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for LedgerTxn {
    fn get_database_backend(&self) -> DbBackend {
        match self {
            LedgerTxn::Sea(t) => t.get_database_backend(),
            LedgerTxn::Pool(t) => t.backend(),
        }
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self {
            LedgerTxn::Sea(t) => t.execute_raw(stmt).await,
            LedgerTxn::Pool(t) => t.execute(stmt.sql, stmt.values).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self {
            LedgerTxn::Sea(t) => t.execute_unprepared(sql).await,
            LedgerTxn::Pool(t) => t.execute(sql.to_owned(), None).await,
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            LedgerTxn::Sea(t) => t.query_one_raw(stmt).await,
            LedgerTxn::Pool(t) => Ok(t.send(stmt, true, false).await?.rows.into_iter().next()),
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            LedgerTxn::Sea(t) => t.query_all_raw(stmt).await,
            LedgerTxn::Pool(t) => Ok(t.send(stmt, true, false).await?.rows),
        }
    }
}

/// A transaction on a connection of a pool (see the module's
/// documentation).
pub(crate) struct PoolTxn {
    backend: DbBackend,
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

/// A pool's connection.
enum Conn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl Conn {
    fn backend(&self) -> DbBackend {
        match self {
            Conn::Sqlite(_) => DbBackend::Sqlite,
            Conn::Postgres(_) => DbBackend::Postgres,
        }
    }

    /// Runs `sql` with `values`: its rows when `rows`.
    async fn run(&mut self, sql: String, values: Values, rows: bool) -> Result<Vec<QueryResult>, sqlx::Error> {
        match (self, rows) {
            (Conn::Sqlite(c), true) => Ok(sqlx::query_with(AssertSqlSafe(sql), SqlxValues(values))
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(QueryResult::from)
                .collect()),
            (Conn::Sqlite(c), false) => sqlx::query_with(AssertSqlSafe(sql), SqlxValues(values))
                .execute(&mut **c)
                .await
                .map(|_| Vec::new()),
            (Conn::Postgres(c), true) => Ok(sqlx::query_with(AssertSqlSafe(sql), SqlxValues(values))
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(QueryResult::from)
                .collect()),
            (Conn::Postgres(c), false) => sqlx::query_with(AssertSqlSafe(sql), SqlxValues(values))
                .execute(&mut **c)
                .await
                .map(|_| Vec::new()),
        }
    }

    /// Runs `sql` with `values` (unprepared without).
    async fn execute(&mut self, sql: String, values: Option<Values>) -> Result<ExecResult, sqlx::Error> {
        Ok(match (self, values) {
            (Conn::Sqlite(c), Some(values)) => sqlx::query_with(AssertSqlSafe(sql), SqlxValues(values))
                .execute(&mut **c)
                .await?
                .into(),
            (Conn::Sqlite(c), None) => sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut **c).await?.into(),
            (Conn::Postgres(c), Some(values)) => sqlx::query_with(AssertSqlSafe(sql), SqlxValues(values))
                .execute(&mut **c)
                .await?
                .into(),
            (Conn::Postgres(c), None) => sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut **c).await?.into(),
        })
    }

    /// Sends `sql`, with no parameters, kept prepared by the connection
    /// like any statement.
    async fn send(&mut self, sql: &'static str) -> Result<(), sqlx::Error> {
        match self {
            Conn::Sqlite(c) => sqlx::query(AssertSqlSafe(sql)).execute(&mut **c).await.map(|_| ()),
            Conn::Postgres(c) => sqlx::query(AssertSqlSafe(sql)).execute(&mut **c).await.map(|_| ()),
        }
    }

    fn close_on_drop(&mut self) {
        match self {
            Conn::Sqlite(c) => c.close_on_drop(),
            Conn::Postgres(c) => c.close_on_drop(),
        }
    }
}

struct Inner {
    conn: Conn,
    stage: Stage,
}

impl Inner {
    fn backend(&self) -> DbBackend {
        self.conn.backend()
    }

    /// Opens the transaction before `sql` if it is its first: on SQLite
    /// `BEGIN` goes with it (the text to send is returned), on PostgreSQL
    /// alone, first. `alone`: `sql` is also the transaction's last, and on
    /// PostgreSQL it then runs as a transaction by itself.
    async fn open(&mut self, sql: String, alone: bool) -> Result<String, DbErr> {
        match self.stage {
            Stage::Open => Ok(sql),
            Stage::Fresh => match self.conn {
                Conn::Sqlite(_) => {
                    self.stage = Stage::Open;
                    Ok(format!("BEGIN;\n{sql}"))
                }
                Conn::Postgres(_) if alone => Ok(sql),
                Conn::Postgres(_) => {
                    self.end("BEGIN", Stage::Open).await.map_err(exec_err)?;
                    Ok(sql)
                }
            },
            Stage::Committed | Stage::RolledBack | Stage::Unknown => {
                Err(DbErr::Custom("the ledger transaction has already ended".to_owned()))
            }
        }
    }

    /// Sends `end` (`BEGIN`, `COMMIT` or `ROLLBACK`), kept prepared by the
    /// connection like any statement (a batch of several wallets commits
    /// alone: sent raw, it was prepared again for every batch).
    async fn end(&mut self, end: &'static str, to: Stage) -> Result<(), sqlx::Error> {
        let done = self.conn.send(end).await;
        self.stage = if done.is_ok() { to } else { Stage::Unknown };
        done
    }
}

impl PoolTxn {
    async fn send(&self, statement: Statement, rows: bool, commit: bool) -> Result<Sent, DbErr> {
        let mut inner = self.inner.lock().await;
        let alone = commit && inner.stage == Stage::Fresh;
        let mut sql = inner.open(statement.sql, commit).await?;
        let postgres = inner.backend() == DbBackend::Postgres;
        if commit && !postgres {
            sql.push_str(";\nCOMMIT");
        }
        let values = statement.values.unwrap_or(Values(Vec::new()));
        let sent = inner.conn.run(sql, values, rows).await;
        match sent {
            Ok(rows) if commit && postgres && !alone => {
                inner.end("COMMIT", Stage::Committed).await.map_err(exec_err)?;
                Ok(Sent { rows })
            }
            Ok(rows) => {
                if commit {
                    inner.stage = Stage::Committed;
                }
                Ok(Sent { rows })
            }
            // PostgreSQL, a transaction by itself: refused by the database,
            // nothing of it landed; any other failure leaves unknown
            // whether it did.
            Err(e) if alone && postgres => {
                inner.stage = if e.as_database_error().is_some() {
                    Stage::RolledBack
                } else {
                    Stage::Unknown
                };
                Err(query_err(e))
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
        let sql = inner.open(sql, false).await?;
        inner.conn.execute(sql, values).await.map_err(exec_err)
    }

    async fn stage(&self) -> Stage {
        self.inner.lock().await.stage
    }

    fn backend(&self) -> DbBackend {
        self.backend
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
