//! The texts of a batch's statements, built once per shape and kept.
//!
//! A batch's statements (the lock of its wallets, the claim of its holds,
//! the wallets' write, the inserts of its holds and of its entries) differ
//! from one batch to the next only in how many rows they carry; their
//! values are the batch's own. SeaORM's query builder makes a tree of every
//! value and column of a statement and then renders it, each time: at
//! concurrency 1, where every request is a batch of its own, that was 5% of
//! the server's CPU (the lock alone 2.4%), and 2.5% at concurrency 32
//! (`perf record --call-graph dwarf`, see the README's benchmarks). Here
//! the text of each shape (statement, database, rows) is built once, by
//! the same code as before (the query builder, for the lock and the
//! inserts), and a batch only lays out its values, in the order that text
//! binds them (tests below check both against the query builder's).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, DbBackend, EntityTrait, IntoActiveModel, Iterable, ModelTrait, QueryFilter, QueryTrait, Statement,
    Value,
};

use crate::entities::{holds, journal_entries, wallets};

/// The statements whose texts are kept, with what else than their rows
/// their text depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Shape {
    Lock,
    Claim,
    Wallets {
        cycles: bool,
        announced: bool,
        check: super::sets::VersionCheck,
    },
    Holds,
    Entries,
}

/// Rows up to which a shape's text is kept; a larger statement's is built
/// each time (on SQLite a batch's rows are rarely more; on PostgreSQL a
/// large batch's are chunked, see `chunks`). At most about 5 × 2 × 128
/// texts of a few KiB.
const KEPT_ROWS: usize = 128;

type Key = (Shape, bool, usize);

/// Texts kept by shape, database and rows.
#[derive(Default)]
struct Texts(Mutex<HashMap<Key, Arc<str>>>);

impl Texts {
    /// The text of `shape` with `rows` rows on `backend`: kept, or made by
    /// `build` (and kept when `rows` is at most [`KEPT_ROWS`]).
    fn get(&self, shape: Shape, backend: DbBackend, rows: usize, build: impl FnOnce() -> String) -> String {
        let key = (shape, backend == DbBackend::Postgres, rows);
        if let Some(kept) = self.0.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return kept.to_string();
        }
        let built = build();
        if rows <= KEPT_ROWS {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, Arc::from(built.as_str()));
        }
        built
    }
}

/// The texts of this process: a text is a function of its key alone.
static TEXTS: LazyLock<Texts> = LazyLock::new(Texts::default);

/// The text of `shape` with `rows` rows on `backend` (see [`Texts::get`]).
pub(crate) fn text(shape: Shape, backend: DbBackend, rows: usize, build: impl FnOnce() -> String) -> String {
    TEXTS.get(shape, backend, rows, build)
}

/// The statement that locks the wallets of `user_ids` (bumping their
/// versions, as `Store::lock_wallet` does) and returns them as locked, a
/// column for each of the wallet's: a batch's first (see [`crate::group`]).
/// PostgreSQL locks them in the index's order, which is the users' order.
pub(crate) fn lock_statement(backend: DbBackend, user_ids: &[&str]) -> Statement {
    let sql = text(Shape::Lock, backend, user_ids.len(), || {
        built_lock(backend, user_ids).sql
    });
    let mut values: Vec<Value> = Vec::with_capacity(user_ids.len() + 1);
    values.push(1i32.into());
    values.extend(user_ids.iter().map(|&id| Value::from(id)));
    Statement::from_sql_and_values(backend, sql, values)
}

/// [`lock_statement`] through the query builder.
fn built_lock(backend: DbBackend, user_ids: &[&str]) -> Statement {
    let mut update = wallets::Entity::update_many()
        .col_expr(wallets::Column::Version, Expr::col(wallets::Column::Version).add(1))
        .filter(wallets::Column::UserId.is_in(user_ids.iter().copied()))
        .into_query();
    update.returning(Query::returning().columns(wallets::Column::iter()));
    backend.build(&update)
}

/// The statement that inserts the holds `rows`, every column given.
pub(crate) fn holds_statement(backend: DbBackend, rows: &[holds::Model]) -> Statement {
    let sql = text(Shape::Holds, backend, rows.len(), || built_holds(backend, rows).sql);
    let columns: Vec<holds::Column> = holds::Column::iter().collect();
    Statement::from_sql_and_values(backend, sql, row_values(rows, &columns))
}

/// [`holds_statement`] through the query builder.
fn built_holds(backend: DbBackend, rows: &[holds::Model]) -> Statement {
    backend
        .build(&holds::Entity::insert_many(rows.iter().cloned().map(IntoActiveModel::into_active_model)).into_query())
}

/// The statement that inserts the journal entries `rows`, their ids left
/// to the database, returning each one's id, user and balance after.
pub(crate) fn entries_statement(backend: DbBackend, rows: &[journal_entries::Model]) -> Statement {
    let sql = text(Shape::Entries, backend, rows.len(), || built_entries(backend, rows).sql);
    let columns: Vec<journal_entries::Column> = journal_entries::Column::iter()
        .filter(|c| !matches!(c, journal_entries::Column::Id))
        .collect();
    Statement::from_sql_and_values(backend, sql, row_values(rows, &columns))
}

/// [`entries_statement`] through the query builder.
fn built_entries(backend: DbBackend, rows: &[journal_entries::Model]) -> Statement {
    let mut insert = journal_entries::Entity::insert_many(rows.iter().map(|m| {
        let mut row = m.clone().into_active_model();
        row.id = sea_orm::ActiveValue::NotSet;
        row
    }))
    .into_query();
    insert.returning(Query::returning().columns([
        journal_entries::Column::Id,
        journal_entries::Column::UserId,
        journal_entries::Column::BalanceAfter,
    ]));
    backend.build(&insert)
}

/// The values of `rows`, row after row, each in the order of `columns`:
/// how an insert of those columns binds them.
fn row_values<M: ModelTrait>(rows: &[M], columns: &[<M::Entity as EntityTrait>::Column]) -> Vec<Value> {
    let mut values = Vec::with_capacity(rows.len() * columns.len());
    for row in rows {
        values.extend(columns.iter().map(|c| row.get(*c)));
    }
    values
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn entry(i: i64) -> journal_entries::Model {
        let at = Utc.timestamp_opt(1_700_000_000 + i, 123_000).single().expect("time");
        journal_entries::Model {
            id: 0,
            user_id: format!("u{i}"),
            org_id: "o".into(),
            at,
            kind: "settle".into(),
            feature: (i % 2 == 0).then(|| "chat".into()),
            billing_mode: Some("credits".into()),
            status: None,
            provider: Some("openai".into()),
            model: Some("gpt".into()),
            input_tokens: Some(i),
            output_tokens: None,
            credits_consumed: i * 3,
            credits_avoided: 0,
            monthly_delta: -i,
            permanent_delta: 0,
            balance_after: 100 - i,
            pricing_version: Some("v1".into()),
            idempotency_key: None,
            request_hash: Some("h".into()),
            hold_id: Some(format!("h{i}")),
            reference: None,
            description: Some("d'quote".into()),
            wallet_version: i,
            cached_input_tokens: None,
            cache_write_tokens: Some(2),
            reasoning_tokens: None,
            actor: None,
        }
    }

    fn hold(i: i64) -> holds::Model {
        let at = Utc.timestamp_opt(1_700_000_000 + i, 5_000).single().expect("time");
        holds::Model {
            id: format!("h{i}"),
            user_id: format!("u{i}"),
            monthly_part: i,
            permanent_part: 2 * i,
            cycle_start: at,
            status: "open".into(),
            created_at: at,
            deadline: at,
            resolved_at: (i % 2 == 1).then_some(at),
            idempotency_key: (i % 3 == 0).then(|| format!("k{i}")),
            request_hash: None,
            journal_entry_id: None,
            details: Some("{}".into()),
            result: None,
        }
    }

    /// Twice each size: the first builds and keeps the text, the second
    /// takes it; both must be what the query builder makes.
    #[test]
    fn each_statement_is_what_the_query_builder_makes_built_or_kept() {
        for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
            for n in [1_i64, 2, 3, 7, 16, 129, 1, 16, 129] {
                let entries: Vec<_> = (0..n).map(entry).collect();
                assert_eq!(entries_statement(backend, &entries), built_entries(backend, &entries));
                let holds: Vec<_> = (0..n).map(hold).collect();
                assert_eq!(holds_statement(backend, &holds), built_holds(backend, &holds));
                let users: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
                let users: Vec<&str> = users.iter().map(String::as_str).collect();
                assert_eq!(lock_statement(backend, &users), built_lock(backend, &users));
            }
        }
    }

    #[test]
    fn a_text_is_kept_by_its_shape_database_and_rows() {
        let texts = Texts::default();
        let key = Shape::Wallets {
            cycles: true,
            announced: false,
            check: super::super::sets::VersionCheck::Locked,
        };
        assert_eq!(texts.get(key, DbBackend::Sqlite, 3, || "first".into()), "first");
        assert_eq!(texts.get(key, DbBackend::Sqlite, 3, || "second".into()), "first");
        assert_eq!(texts.get(key, DbBackend::Postgres, 3, || "other".into()), "other");
        assert_eq!(texts.get(key, DbBackend::Sqlite, 4, || "four".into()), "four");
        assert_eq!(
            texts.get(Shape::Claim, DbBackend::Sqlite, 3, || "claim".into()),
            "claim"
        );
        let large = KEPT_ROWS + 1;
        assert_eq!(texts.get(key, DbBackend::Sqlite, large, || "a".into()), "a");
        assert_eq!(texts.get(key, DbBackend::Sqlite, large, || "b".into()), "b", "not kept");
    }
}
