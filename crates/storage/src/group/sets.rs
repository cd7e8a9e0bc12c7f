//! A batch's per-row changes as one statement each: every claimed hold, and
//! every changed wallet, with values of its own. Both are
//! `WITH v(..) AS (VALUES (..), ..) UPDATE t SET .. FROM v WHERE ..`,
//! which SQLite (3.33 and later) and PostgreSQL read alike.

use chrono::{DateTime, Utc};
use creditgate_domain::HoldStatus;
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, QueryResult, Statement, Value};

use super::script::Script;
use super::texts::{Shape, entries_statement, text};
use super::txn::LedgerTxn;

use crate::entities::journal_entries;
use crate::error::{StoreError, StoreResult};
use crate::model::Entry;

/// A hold a batch resolves: claimed while it is still open.
#[derive(Debug, Clone)]
pub(crate) struct HoldClaim {
    pub id: String,
    pub user_id: String,
    pub status: HoldStatus,
    pub resolved_at: DateTime<Utc>,
    /// Kept with the hold for retries (unchanged when `None`).
    pub result: Option<String>,
    /// Frees the hold's idempotency key.
    pub forget_key: bool,
}

/// What resolving a hold needs of it, as its claim returns it: only these
/// columns are read back (none of them is null but `details`).
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub(crate) struct Claimed {
    pub id: String,
    pub user_id: String,
    pub monthly_part: i64,
    pub permanent_part: i64,
    pub cycle_start: DateTime<Utc>,
    /// JSON of the usage details the hold was placed for.
    pub details: Option<String>,
}

/// A wallet's write in a batch: balances as deltas, guarded by the version
/// the batch's lock gave it; the rest as it now is.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct WalletWrite {
    pub user_id: String,
    pub version: i64,
    pub monthly_delta: i64,
    pub permanent_delta: i64,
    pub held_monthly_delta: i64,
    pub held_permanent_delta: i64,
    /// The billing cycle (or the allocation) changed: a cycle closed.
    pub cycle_changed: bool,
    pub monthly_allocation: i64,
    pub cycle_start: DateTime<Utc>,
    pub cycle_end: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub alert_thresholds: Option<String>,
    pub alert_state: Option<String>,
}

/// The `n`-th (from 1) parameter of a statement.
fn placeholder(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    }
}

/// `WITH v(columns) AS (VALUES ..)` with `rows` rows of placeholders.
fn values_of(backend: DbBackend, columns: &[&str], rows: usize) -> String {
    let mut sql = String::with_capacity(32 + rows * columns.len() * 5);
    sql.push_str("WITH v(");
    sql.push_str(&columns.join(", "));
    sql.push_str(") AS (VALUES ");
    let mut n = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns.len() {
            if column > 0 {
                sql.push_str(", ");
            }
            n += 1;
            sql.push_str(&placeholder(backend, n));
        }
        sql.push(')');
    }
    sql.push_str(") ");
    sql
}

const CLAIM_COLUMNS: [&str; 6] = ["id", "user_id", "status", "resolved_at", "result", "forget_key"];

/// Columns of the rows [`claim_statement`] returns.
pub(crate) const CLAIMED_WIDTH: usize = 6;

/// The statement that claims the holds of `claims` that are still open
/// (see [`claim_holds`]); its rows are [`Claimed`]s. Each hold must
/// appear once, and there is at least one.
pub(crate) fn claim_statement(backend: DbBackend, claims: &[HoldClaim]) -> Statement {
    let sql = text(Shape::Claim, backend, claims.len(), || {
        claim_text(backend, claims.len())
    });
    let mut values: Vec<Value> = Vec::with_capacity(claims.len() * CLAIM_COLUMNS.len());
    for c in claims {
        values.push(c.id.as_str().into());
        values.push(c.user_id.as_str().into());
        values.push(c.status.as_str().into());
        values.push(c.resolved_at.into());
        values.push(c.result.clone().into());
        values.push(i64::from(c.forget_key).into());
    }
    Statement::from_sql_and_values(backend, sql, values)
}

/// The text of a [`claim_statement`] of `rows` holds.
fn claim_text(backend: DbBackend, rows: usize) -> String {
    let mut sql = values_of(backend, &CLAIM_COLUMNS, rows);
    sql.push_str(
        "UPDATE holds SET status = v.status, resolved_at = v.resolved_at, \
         result = COALESCE(v.result, holds.result), \
         idempotency_key = CASE WHEN v.forget_key = 1 THEN NULL ELSE holds.idempotency_key END \
         FROM v WHERE holds.id = v.id AND holds.user_id = v.user_id AND ",
    );
    // Written out, not bound: SQLite weighs a bound value against the
    // holds' partial indexes (`WHERE status = 'open'`) and then prepares
    // the statement again each time it is bound (a tenth of a request's
    // instructions).
    sql.push_str(&crate::holds::open_condition());
    sql.push_str(
        " RETURNING holds.id, holds.user_id, holds.monthly_part, holds.permanent_part, holds.cycle_start, \
         holds.details",
    );
    sql
}

/// The holds a [`claim_statement`] claimed, from its rows.
pub(crate) fn claimed(rows: &[QueryResult]) -> StoreResult<Vec<Claimed>> {
    rows.iter()
        .map(|row| Claimed::from_query_result(row, "").map_err(StoreError::from))
        .collect()
}

/// Claims the holds of `claims` that are still open, with one statement;
/// the holds as claimed, in no particular order. Each hold must appear
/// once.
pub(crate) async fn claim_holds(txn: &LedgerTxn, claims: &[HoldClaim]) -> StoreResult<Vec<Claimed>> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let mut script = Script::new(false);
    let at = script.push(claim_statement(txn.get_database_backend(), claims), CLAIMED_WIDTH)?;
    claimed(&script.run(txn, false).await?.rows(at))
}

/// The columns of a wallet's write; its billing cycle's last (see
/// [`CYCLE_COLUMNS`]).
const WALLET_COLUMNS: [&str; 12] = [
    "user_id",
    "version",
    "monthly_delta",
    "permanent_delta",
    "held_monthly_delta",
    "held_permanent_delta",
    "updated_at",
    "alert_thresholds",
    "alert_state",
    "monthly_allocation",
    "cycle_start",
    "cycle_end",
];

/// The last columns of [`WALLET_COLUMNS`]: the billing cycle's, written
/// only by a batch that changes a cycle.
const CYCLE_COLUMNS: usize = 3;

/// Columns of the rows [`wallets_statement`] returns when it announces
/// (`announced`) or not.
pub(crate) const fn wallet_write_width(announced: bool) -> usize {
    if announced { 2 } else { 1 }
}

/// The statement that writes the wallets of `writes` (see
/// [`write_wallets`]); it returns the user id of each wallet written,
/// for [`check_wallets`]. Each wallet must appear once, and there is at
/// least one. The billing cycle's columns are written only when one of
/// `writes` changes them (a cycle closed): `cycle_end` is indexed, and
/// writing it, even unchanged, rewrites its index's page.
///
/// With `channel` (PostgreSQL), each wallet written is also announced on
/// it (`<version> <user id>`, the version its lock gave it), by its row's
/// `RETURNING`: other replicas hear of it when the transaction commits,
/// and announcing costs no statement (nor round trip) of its own.
/// How a [`wallets_statement`] checks each wallet's version before writing
/// it: a wallet whose version is not the one checked fails the statement
/// (its version cannot be null), and with it the batch, before it commits
/// (on a SQLite file the commit goes with this statement, see `txn`, so a
/// check of what it returns would come too late).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum VersionCheck {
    /// The batch locked the wallet, which bumped its version to the
    /// write's.
    Locked,
    /// The batch took the wallet from the mirror (see `mirror`), one
    /// version before the write's, which the write sets.
    Mirrored,
    /// As [`VersionCheck::Mirrored`], and the statement just before this
    /// one (in the same script) claimed as many holds as the value bound
    /// after the rows' (each still open, see `mirror`).
    MirroredClaimed,
}

pub(crate) fn wallets_statement(
    backend: DbBackend,
    writes: &[WalletWrite],
    channel: Option<&str>,
    check: VersionCheck,
    claimed: usize,
) -> Statement {
    let cycles = writes.iter().any(|w| w.cycle_changed);
    let columns = wallet_columns(cycles);
    let channel = channel.filter(|_| announces(backend, channel));
    let shape = Shape::Wallets {
        cycles,
        announced: channel.is_some(),
        check,
    };
    let sql = text(shape, backend, writes.len(), || {
        wallets_text(backend, writes.len(), cycles, channel.is_some(), check)
    });
    let mut values: Vec<Value> = Vec::with_capacity(writes.len() * columns.len() + 1);
    for w in writes {
        values.push(w.user_id.as_str().into());
        values.push(w.version.into());
        values.push(w.monthly_delta.into());
        values.push(w.permanent_delta.into());
        values.push(w.held_monthly_delta.into());
        values.push(w.held_permanent_delta.into());
        values.push(w.updated_at.into());
        values.push(w.alert_thresholds.clone().into());
        values.push(w.alert_state.clone().into());
        if cycles {
            values.push(w.monthly_allocation.into());
            values.push(w.cycle_start.into());
            values.push(w.cycle_end.into());
        }
    }
    if check == VersionCheck::MirroredClaimed {
        values.push(i64::try_from(claimed).unwrap_or(i64::MAX).into());
    }
    if let Some(channel) = channel {
        values.push(channel.into());
    }
    Statement::from_sql_and_values(backend, sql, values)
}

/// The columns of a wallets' write, with the billing cycle's or not.
fn wallet_columns(cycles: bool) -> &'static [&'static str] {
    if cycles {
        &WALLET_COLUMNS[..]
    } else {
        &WALLET_COLUMNS[..WALLET_COLUMNS.len() - CYCLE_COLUMNS]
    }
}

/// The text of a [`wallets_statement`] of `rows` wallets.
fn wallets_text(backend: DbBackend, rows: usize, cycles: bool, announced: bool, check: VersionCheck) -> String {
    let columns = wallet_columns(cycles);
    let mut sql = values_of(backend, columns, rows);
    sql.push_str(
        "UPDATE wallets SET monthly_balance = wallets.monthly_balance + v.monthly_delta, \
         permanent_balance = wallets.permanent_balance + v.permanent_delta, \
         held_monthly = wallets.held_monthly + v.held_monthly_delta, \
         held_permanent = wallets.held_permanent + v.held_permanent_delta, \
         updated_at = v.updated_at, alert_thresholds = v.alert_thresholds, alert_state = v.alert_state",
    );
    if cycles {
        sql.push_str(
            ", monthly_allocation = v.monthly_allocation, cycle_start = v.cycle_start, cycle_end = v.cycle_end",
        );
    }
    // See `VersionCheck`.
    let mut next = rows * columns.len() + 1;
    match check {
        VersionCheck::Locked => {
            sql.push_str(", version = CASE WHEN wallets.version = v.version THEN wallets.version END")
        }
        VersionCheck::Mirrored => {
            sql.push_str(", version = CASE WHEN wallets.version = v.version - 1 THEN v.version END")
        }
        VersionCheck::MirroredClaimed => {
            sql.push_str(", version = CASE WHEN wallets.version = v.version - 1 AND changes() = ");
            sql.push_str(&placeholder(backend, next));
            sql.push_str(" THEN v.version END");
            next += 1;
        }
    }
    sql.push_str(" FROM v WHERE wallets.user_id = v.user_id RETURNING wallets.user_id");
    if announced {
        sql.push_str(", pg_notify(");
        sql.push_str(&placeholder(backend, next));
        sql.push_str(", wallets.version::text || ' ' || wallets.user_id)::text AS announced");
    }
    sql
}

/// Whether a [`wallets_statement`] on `backend` announces on `channel`.
pub(crate) fn announces(backend: DbBackend, channel: Option<&str>) -> bool {
    channel.is_some() && backend == DbBackend::Postgres
}

/// An error unless a [`wallets_statement`] wrote each of its `writes`
/// wallets (still at the version its lock gave it).
pub(crate) fn check_wallets(writes: &[WalletWrite], written: &[QueryResult]) -> StoreResult<()> {
    if written.len() != writes.len() {
        return Err(StoreError::corrupt(format!(
            "{} of a batch's {} wallets changed under their locks",
            writes.len().saturating_sub(written.len()),
            writes.len()
        )));
    }
    Ok(())
}

/// Writes the wallets of `writes` with one statement, announcing each on
/// `channel` (see [`wallets_statement`]); an error unless each was written
/// (still at the version its lock gave it). Each wallet must appear once.
pub(crate) async fn write_wallets(txn: &LedgerTxn, writes: &[WalletWrite], channel: Option<&str>) -> StoreResult<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let backend = txn.get_database_backend();
    let statement = wallets_statement(backend, writes, channel, VersionCheck::Locked, 0);
    let mut script = Script::new(false);
    let at = script.push(statement, wallet_write_width(announces(backend, channel)))?;
    check_wallets(writes, &script.run(txn, false).await?.rows(at))
}

/// An entry as its insert reads it back: enough to number it and check
/// that the numbers follow the rows.
#[derive(Debug, FromQueryResult)]
pub(crate) struct Numbered {
    pub id: i64,
    pub user_id: String,
    pub balance_after: i64,
}

/// Columns of the rows [`entries_statement`] returns.
pub(crate) const ENTRIES_WIDTH: usize = 3;

/// The entries `rows` as an [`entries_statement`] wrote them, numbered
/// from what it `returned`, in the order of `rows`. Only the ids (and what
/// checks their order) are read back: the rest is what was written.
pub(crate) fn numbered_entries(rows: Vec<journal_entries::Model>, returned: &[QueryResult]) -> StoreResult<Vec<Entry>> {
    let numbered = returned
        .iter()
        .map(|row| Numbered::from_query_result(row, ""))
        .collect::<Result<Vec<_>, _>>()?;
    number_entries(rows, numbered)
}

/// The entries `rows` numbered by what their insert returned (`numbered`,
/// in any order): in the order of `rows`, checked against it.
pub(crate) fn number_entries(
    rows: Vec<journal_entries::Model>,
    mut numbered: Vec<Numbered>,
) -> StoreResult<Vec<Entry>> {
    // One statement numbers its rows in the order given; RETURNING may
    // list them in any order, so they are put back in id order and
    // checked against what was asked.
    numbered.sort_by_key(|n| n.id);
    let same = numbered.len() == rows.len()
        && numbered
            .iter()
            .zip(&rows)
            .all(|(n, m)| n.user_id == m.user_id && n.balance_after == m.balance_after);
    if !same {
        return Err(StoreError::corrupt("journal entries came back out of order"));
    }
    rows.into_iter()
        .zip(numbered)
        .map(|(mut row, n)| {
            row.id = n.id;
            Entry::try_from(row)
        })
        .collect()
}

/// Inserts the journal entries `rows` (their ids unset) with one statement;
/// the entries as written, in the order of `rows`.
pub(crate) async fn insert_entries(txn: &LedgerTxn, rows: Vec<journal_entries::Model>) -> StoreResult<Vec<Entry>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut script = Script::new(false);
    let at = script.push(entries_statement(txn.get_database_backend(), &rows), ENTRIES_WIDTH)?;
    numbered_entries(rows, &script.run(txn, false).await?.rows(at))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use creditgate_domain::{ManualClock, PlanCatalog};

    use super::*;
    use crate::testing::{Backend, TestDb, member};

    /// A write of `user`'s wallet at `version` adding 5 credits to its
    /// permanent balance.
    fn write(user: &str, version: i64, at: DateTime<Utc>) -> WalletWrite {
        WalletWrite {
            user_id: user.to_owned(),
            version,
            monthly_delta: 0,
            permanent_delta: 5_000,
            held_monthly_delta: 0,
            held_permanent_delta: 0,
            cycle_changed: false,
            monthly_allocation: 0,
            cycle_start: at,
            cycle_end: at,
            updated_at: at,
            alert_thresholds: None,
            alert_state: None,
        }
    }

    /// A wallet no longer at the version its lock gave it fails the write,
    /// the commit that went with it (on a SQLite file) included, and
    /// nothing of it lands.
    async fn a_wallet_at_another_version_fails_its_write_and_its_commit(backend: Backend) {
        let db = TestDb::new(backend).await.expect("database");
        let now = DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let store = db
            .store(Arc::new(ManualClock::new(now)), PlanCatalog::shipped())
            .await
            .expect("store");
        store.ensure_user(&member("u1", "o1")).await.expect("user");
        let before = store.wallet("u1").await.expect("wallet");
        let backend = store.backend();

        let txn = store.begin_ledger().await.expect("begin");
        let stale = wallets_statement(
            backend,
            &[write("u1", before.version + 1, now)],
            None,
            VersionCheck::Locked,
            0,
        );
        assert!(txn.run(stale, true, true).await.is_err());
        let _ = txn.rollback().await;
        assert_eq!(store.wallet("u1").await.expect("wallet"), before);

        let txn = store.begin_ledger().await.expect("begin");
        let current = wallets_statement(
            backend,
            &[write("u1", before.version, now)],
            None,
            VersionCheck::Locked,
            0,
        );
        let written = txn.run(current, true, true).await.expect("written").rows;
        assert_eq!(written.len(), 1);
        txn.commit().await.expect("commit");
        let after = store.wallet("u1").await.expect("wallet");
        assert_eq!(
            after.permanent_balance.millis(),
            before.permanent_balance.millis() + 5_000
        );
    }

    #[tokio::test]
    async fn sqlite_a_wallet_at_another_version_fails_its_write_and_its_commit() {
        a_wallet_at_another_version_fails_its_write_and_its_commit(Backend::Sqlite).await;
    }

    #[tokio::test]
    async fn postgres_a_wallet_at_another_version_fails_its_write_and_its_commit() {
        a_wallet_at_another_version_fails_its_write_and_its_commit(Backend::Postgres).await;
    }
}
