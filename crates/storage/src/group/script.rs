//! Several statements of a batch sent together. On SQLite they go to its
//! connection as one script: one hand-off to the connection's thread (and
//! back) instead of one per statement, which is most of what a statement
//! costs a request there (see the README's benchmarks). PostgreSQL runs
//! them one after the other (its protocol takes one statement with
//! parameters at a time).
//!
//! Each statement says how many columns its rows have, and the statements
//! of a script that return rows have different numbers of them: that is
//! how a script's rows, which SQLite returns one statement after the
//! other, are told apart.

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, QueryResult, Statement, Value};

use crate::error::{StoreError, StoreResult};

/// One statement of a [`Script`].
struct Part {
    sql: String,
    values: Vec<Value>,
    /// Columns of the rows it returns; 0: it returns none.
    width: usize,
}

/// Statements to run in order in one transaction (see the module's
/// documentation).
pub(crate) struct Script {
    parts: Vec<Part>,
    /// Sent together on SQLite. SQLite's connection keeps each statement
    /// it prepared (the last hundred) by its text, and a script's text
    /// varies with the number of rows of each of its statements: a
    /// batch's rows only go together while they are few, else their
    /// combinations would crowd that cache (and memory) with large
    /// statements prepared again and again.
    together: bool,
}

impl Script {
    /// A script whose statements are sent together when `together`.
    pub(crate) fn new(together: bool) -> Self {
        Script {
            parts: Vec::new(),
            together,
        }
    }

    /// Adds `statement`, whose rows (if `width` is not 0) have `width`
    /// columns; its index, for [`Ran::rows`].
    pub(crate) fn push(&mut self, statement: Statement, width: usize) -> StoreResult<usize> {
        if width > 0 && self.parts.iter().any(|p| p.width == width) {
            return Err(StoreError::corrupt(
                "two statements of a script return rows of the same width",
            ));
        }
        let values = statement.values.map(|v| v.0).unwrap_or_default();
        self.parts.push(Part {
            sql: statement.sql,
            values,
            width,
        });
        Ok(self.parts.len() - 1)
    }

    /// Runs the statements in `txn`; each one's rows.
    pub(crate) async fn run(self, txn: &DatabaseTransaction) -> StoreResult<Ran> {
        let backend = txn.get_database_backend();
        let mut rows: Vec<Vec<QueryResult>> = self.parts.iter().map(|_| Vec::new()).collect();
        match (backend, self.parts.len()) {
            (_, 0) => {}
            (DbBackend::Sqlite, n) if n > 1 && self.together => {
                let widths: Vec<usize> = self.parts.iter().map(|p| p.width).collect();
                let mut sql = String::with_capacity(self.parts.iter().map(|p| p.sql.len() + 2).sum());
                let mut values = Vec::with_capacity(self.parts.iter().map(|p| p.values.len()).sum());
                for part in self.parts {
                    sql.push_str(&part.sql);
                    sql.push_str(";\n");
                    values.extend(part.values);
                }
                for row in txn
                    .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
                    .await?
                {
                    let width = row
                        .try_as_sqlite_row()
                        .map(sea_orm::sqlx::Row::len)
                        .ok_or_else(|| StoreError::corrupt("a SQLite script returned a row of another database"))?;
                    let Some(i) = widths.iter().position(|&w| w == width && w > 0) else {
                        return Err(StoreError::corrupt(format!(
                            "a script returned a row of {width} columns, which none of its statements returns"
                        )));
                    };
                    rows[i].push(row);
                }
            }
            _ => {
                for (i, part) in self.parts.into_iter().enumerate() {
                    let statement = Statement::from_sql_and_values(backend, part.sql, part.values);
                    if part.width == 0 {
                        txn.execute_raw(statement).await?;
                    } else {
                        rows[i] = txn.query_all_raw(statement).await?;
                    }
                }
            }
        }
        Ok(Ran { rows })
    }
}

/// What a [`Script`] returned.
pub(crate) struct Ran {
    rows: Vec<Vec<QueryResult>>,
}

impl Ran {
    /// The rows of the statement [`Script::push`] numbered `index`.
    pub(crate) fn rows(&mut self, index: usize) -> Vec<QueryResult> {
        self.rows.get_mut(index).map(std::mem::take).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{Database, TransactionTrait};

    use super::*;

    async fn table() -> sea_orm::DatabaseConnection {
        let db = Database::connect("sqlite::memory:").await.expect("memory database");
        db.execute_unprepared("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n INTEGER NOT NULL)")
            .await
            .expect("table");
        db.execute_unprepared("INSERT INTO t (id, name, n) VALUES (1, 'a', 10), (2, 'b', 20)")
            .await
            .expect("rows");
        db
    }

    fn statement(sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
    }

    /// The script a batch sends: an update returning one shape of rows, an
    /// insert returning none, another returning another shape.
    fn script(together: bool, second_name: &str) -> Script {
        let mut script = Script::new(together);
        script
            .push(
                statement(
                    "UPDATE t SET n = n + ? WHERE id IN (?, ?) RETURNING id",
                    vec![1.into(), 1.into(), 2.into()],
                ),
                1,
            )
            .expect("first");
        script
            .push(
                statement(
                    "INSERT INTO t (id, name, n) VALUES (?, ?, ?)",
                    vec![3.into(), second_name.into(), 30.into()],
                ),
                0,
            )
            .expect("second");
        script
            .push(
                statement("SELECT name, n FROM t WHERE id >= ? ORDER BY id", vec![2.into()]),
                2,
            )
            .expect("third");
        script
    }

    async fn sums(db: &sea_orm::DatabaseConnection) -> (i64, i64) {
        let row = db
            .query_one_raw(statement("SELECT COUNT(*) AS c, SUM(n) AS s FROM t", vec![]))
            .await
            .expect("sum")
            .expect("a row");
        (row.try_get("", "c").expect("c"), row.try_get("", "s").expect("s"))
    }

    #[tokio::test]
    async fn a_script_answers_each_statement_its_own_rows_sent_together_or_not() {
        for together in [true, false] {
            let db = table().await;
            let txn = db.begin().await.expect("begin");
            let mut ran = script(together, "c").run(&txn).await.expect("runs");
            txn.commit().await.expect("commit");
            let ids: Vec<i64> = ran.rows(0).iter().map(|r| r.try_get("", "id").expect("id")).collect();
            assert_eq!(ids.len(), 2);
            assert!(ran.rows(1).is_empty());
            let names: Vec<(String, i64)> = ran
                .rows(2)
                .iter()
                .map(|r| (r.try_get("", "name").expect("name"), r.try_get("", "n").expect("n")))
                .collect();
            assert_eq!(names, vec![("b".to_owned(), 21), ("c".to_owned(), 30)]);
            assert_eq!(sums(&db).await, (3, 62));
        }
    }

    #[tokio::test]
    async fn a_statement_that_fails_fails_the_script_and_its_rollback_undoes_all_of_it() {
        for together in [true, false] {
            let db = table().await;
            let txn = db.begin().await.expect("begin");
            // The insert breaks the unique name, after the update ran.
            assert!(script(together, "a").run(&txn).await.is_err());
            txn.rollback().await.expect("rollback");
            assert_eq!(sums(&db).await, (2, 30), "together: {together}");
        }
    }

    #[test]
    fn statements_returning_rows_of_one_width_cannot_share_a_script() {
        let mut script = Script::new(true);
        script.push(statement("SELECT 1", vec![]), 1).expect("first");
        assert!(script.push(statement("SELECT 2", vec![]), 1).is_err());
        assert!(script.push(statement("SELECT 2, 3", vec![]), 2).is_ok());
    }
}
