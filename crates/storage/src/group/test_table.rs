//! Test support of `script` and `txn`: a table `t` of two rows on SQLite.

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, Value};

/// `url`'s database (on a pool of one connection, as the store's) with a
/// table `t` of two rows: (1, 'a', 10) and (2, 'b', 20), `name` unique.
pub(super) async fn table(url: &str) -> DatabaseConnection {
    let mut opts = sea_orm::ConnectOptions::new(url.to_owned());
    opts.max_connections(1).min_connections(1).sqlx_logging(false);
    let db = Database::connect(opts).await.expect("connects");
    db.execute_unprepared(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n INTEGER NOT NULL); \
         INSERT INTO t (id, name, n) VALUES (1, 'a', 10), (2, 'b', 20)",
    )
    .await
    .expect("table");
    db
}

pub(super) fn statement(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

/// The number of rows of `t` and the sum of their `n`, read outside any
/// transaction.
pub(super) async fn sums(db: &DatabaseConnection) -> (i64, i64) {
    let row = db
        .query_one_raw(statement("SELECT COUNT(*) AS c, SUM(n) AS s FROM t", vec![]))
        .await
        .expect("sum")
        .expect("a row");
    (row.try_get("", "c").expect("c"), row.try_get("", "s").expect("s"))
}
