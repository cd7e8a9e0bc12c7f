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

use sea_orm::{DbBackend, QueryResult, Statement, Value};

use super::txn::LedgerTxn;
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

    /// Runs the statements in `txn`; each one's rows. With `commit`, the
    /// transaction commits with the last of them where it can (see
    /// [`LedgerTxn::run`]; [`LedgerTxn::stage`] says).
    pub(crate) async fn run(self, txn: &LedgerTxn, commit: bool) -> StoreResult<Ran> {
        let backend = sea_orm::ConnectionTrait::get_database_backend(txn);
        let mut rows: Vec<Vec<QueryResult>> = self.parts.iter().map(|_| Vec::new()).collect();
        match (backend, self.parts.len()) {
            (_, 0) => {}
            (DbBackend::Sqlite, n) if n > 1 && self.together => {
                let widths: Vec<usize> = self.parts.iter().map(|p| p.width).collect();
                let mut sql = String::with_capacity(self.parts.iter().map(|p| p.sql.len() + 2).sum());
                let mut values = Vec::with_capacity(self.parts.iter().map(|p| p.values.len()).sum());
                for (i, part) in self.parts.into_iter().enumerate() {
                    if i > 0 {
                        sql.push_str(";\n");
                    }
                    sql.push_str(&part.sql);
                    values.extend(part.values);
                }
                let sent = txn
                    .run(Statement::from_sql_and_values(backend, sql, values), true, commit)
                    .await?;
                for row in sent.rows {
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
            (_, n) => {
                for (i, part) in self.parts.into_iter().enumerate() {
                    let statement = Statement::from_sql_and_values(backend, part.sql, part.values);
                    let sent = txn.run(statement, part.width > 0, commit && i + 1 == n).await?;
                    rows[i] = sent.rows;
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
    use sea_orm::TransactionTrait;

    use super::super::test_table::{statement, sums};
    use super::*;

    async fn table() -> sea_orm::DatabaseConnection {
        super::super::test_table::table("sqlite::memory:").await
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

    #[tokio::test]
    async fn a_script_answers_each_statement_its_own_rows_sent_together_or_not() {
        for together in [true, false] {
            let db = table().await;
            let txn = LedgerTxn::from(db.begin().await.expect("begin"));
            let mut ran = script(together, "c").run(&txn, false).await.expect("runs");
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
            let txn = LedgerTxn::from(db.begin().await.expect("begin"));
            // The insert breaks the unique name, after the update ran.
            assert!(script(together, "a").run(&txn, false).await.is_err());
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
