//! PostgreSQL's writes of a batch as one statement whose text never
//! changes.
//!
//! PostgreSQL takes one statement with parameters at a time, and each is a
//! round trip from the writer to its connection and back: a batch wrote
//! its wallets, its new holds and its journal entries with one statement
//! each, then committed, and a batch taken from the mirror (see `mirror`)
//! claimed its holds with one more. Here all of it is one statement, the
//! four kinds of rows each passed as one JSON array of rows (one
//! parameter, each row an array of its values in a fixed order), each
//! kind written by a data-modifying `WITH`: its text is the same whatever
//! the batch's rows, so the writer's connection prepares it once (texts
//! that varied with each kind's rows would have crowded its cache of
//! prepared statements). Sent as a transaction's first statement it is a
//! transaction by itself: a batch taken from the mirror is then one round
//! trip, from its first statement to its commit (see `txn`).
//!
//! A statement carries at most about 12 KiB of rows (see `chunks`: a
//! larger message stalls 40 ms over TLS); a larger batch's rows go in
//! several, each the same text, in one transaction.
//!
//! What it checks before anything of it lands (a failed check fails the
//! batch, which then runs again reading, see `batch`): each wallet's
//! version, as the batch locked it or, taken from the mirror, one before
//! the one it writes (a change by anything else bumps it); and, taken from
//! the mirror, that every hold it claims was still open. In a statement
//! that is its own transaction both are the statement's own: a failed one
//! sets the wallet's version to null, which its column refuses. In a
//! batch of several statements the claims are also counted by what each
//! returns, before the commit.

use std::fmt::Write as _;
use std::sync::LazyLock;

use chrono::{DateTime, SecondsFormat, Utc};
use creditgate_domain::HoldStatus;
use sea_orm::sea_query::{ColumnType, Value};
use sea_orm::{ColumnTrait, DbBackend, EntityTrait, IdenStatic, Iterable, ModelTrait, QueryResult, Statement};

use super::chunks::MAX_VALUE_BYTES;
use super::sets::{HoldClaim, Numbered, WalletWrite};
use crate::entities::{holds, journal_entries};
use crate::error::{StoreError, StoreResult};

/// A batch's writes (see the module's documentation).
pub(crate) struct Writes<'a> {
    /// Holds claimed with the writes (a batch taken from the mirror's).
    pub claims: &'a [HoldClaim],
    /// The wallets were taken from the mirror, not locked.
    pub mirrored: bool,
    pub wallets: &'a [WalletWrite],
    pub holds: &'a [holds::Model],
    pub entries: &'a [journal_entries::Model],
    /// Where each wallet written is announced (`<version> <user id>`).
    pub channel: Option<&'a str>,
}

/// One statement's share of a batch's writes: each kind's rows as JSON,
/// and how many.
#[derive(Default)]
struct Part {
    kinds: [Rows; 4],
}

#[derive(Default, Clone)]
struct Rows {
    json: String,
    count: usize,
}

impl Rows {
    fn push(&mut self, row: &str) {
        self.json.push(if self.count == 0 { '[' } else { ',' });
        self.json.push_str(row);
        self.count += 1;
    }

    fn array(&self) -> String {
        if self.count == 0 {
            "[]".to_owned()
        } else {
            format!("{}]", self.json)
        }
    }
}

const CLAIMS: usize = 0;
const WALLETS: usize = 1;
const HOLDS: usize = 2;
const ENTRIES: usize = 3;

impl Part {
    fn bytes(&self) -> usize {
        self.kinds.iter().map(|k| k.json.len()).sum()
    }

    fn is_empty(&self) -> bool {
        self.kinds.iter().all(|k| k.count == 0)
    }
}

/// A statement of a batch's writes and what it must have done.
pub(crate) struct WriteStatement {
    pub statement: Statement,
    pub claims: usize,
    pub wallets: usize,
}

/// The statements that make `writes`, in order (see the module's
/// documentation): one unless its rows are more than one carries.
pub(crate) fn write_statements(writes: &Writes<'_>) -> StoreResult<Vec<WriteStatement>> {
    let mut rows: Vec<(usize, String)> = Vec::new();
    rows.extend(writes.claims.iter().map(|c| (CLAIMS, claim_row(c))));
    rows.extend(writes.wallets.iter().map(|w| (WALLETS, wallet_row(w))));
    for h in writes.holds {
        rows.push((HOLDS, model_row(h, &HOLD_COLUMNS)?));
    }
    for e in writes.entries {
        rows.push((ENTRIES, model_row(e, &ENTRY_COLUMNS)?));
    }
    let mut parts = vec![Part::default()];
    for (kind, row) in rows {
        if let Some(last) = parts
            .last_mut()
            .filter(|p| p.is_empty() || p.bytes() + row.len() <= MAX_VALUE_BYTES)
        {
            last.kinds[kind].push(&row);
        } else {
            let mut part = Part::default();
            part.kinds[kind].push(&row);
            parts.push(part);
        }
    }
    let one = parts.len() == 1;
    Ok(parts
        .into_iter()
        .map(|part| {
            let claims = part.kinds[CLAIMS].count;
            // Checked by the statement when it is the batch's only one
            // (see the module's documentation).
            let expected: Option<i64> = (writes.mirrored && one).then(|| i64::try_from(claims).unwrap_or(i64::MAX));
            let values: Vec<Value> = vec![
                part.kinds[CLAIMS].array().into(),
                expected.into(),
                part.kinds[WALLETS].array().into(),
                writes.channel.map(str::to_owned).into(),
                part.kinds[HOLDS].array().into(),
                part.kinds[ENTRIES].array().into(),
                writes.mirrored.into(),
            ];
            WriteStatement {
                statement: Statement::from_sql_and_values(DbBackend::Postgres, TEXT.as_str(), values),
                claims,
                wallets: part.kinds[WALLETS].count,
            }
        })
        .collect())
}

/// A JSON string.
fn string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A time as PostgreSQL reads it, to the microsecond as sqlx writes it.
fn time(t: &DateTime<Utc>) -> String {
    format!("\"{}\"", t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

fn optional(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_owned(), string)
}

fn claim_row(c: &HoldClaim) -> String {
    format!(
        "[{},{},{},{},{},{}]",
        string(&c.id),
        string(&c.user_id),
        string(c.status.as_str()),
        time(&c.resolved_at),
        optional(c.result.as_deref()),
        c.forget_key
    )
}

fn wallet_row(w: &WalletWrite) -> String {
    format!(
        "[{},{},{},{},{},{},{},{},{},{},{},{},{}]",
        string(&w.user_id),
        w.version,
        w.monthly_delta,
        w.permanent_delta,
        w.held_monthly_delta,
        w.held_permanent_delta,
        w.cycle_changed,
        w.monthly_allocation,
        time(&w.cycle_start),
        time(&w.cycle_end),
        time(&w.updated_at),
        optional(w.alert_thresholds.as_deref()),
        optional(w.alert_state.as_deref()),
    )
}

/// `model`'s values of `columns`, as a JSON array.
fn model_row<M: ModelTrait>(model: &M, columns: &[<M::Entity as EntityTrait>::Column]) -> StoreResult<String> {
    let mut row = String::with_capacity(32 * columns.len());
    row.push('[');
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            row.push(',');
        }
        let value = match model.get(*column) {
            Value::String(Some(s)) => string(&s),
            Value::BigInt(Some(n)) => n.to_string(),
            Value::Int(Some(n)) => n.to_string(),
            Value::Bool(Some(b)) => b.to_string(),
            Value::ChronoDateTimeUtc(Some(t)) => time(&t),
            Value::String(None)
            | Value::BigInt(None)
            | Value::Int(None)
            | Value::Bool(None)
            | Value::ChronoDateTimeUtc(None) => "null".to_owned(),
            other => {
                return Err(StoreError::corrupt(format!(
                    "column `{}` holds a value a batch does not write: {other:?}",
                    column.as_str()
                )));
            }
        };
        row.push_str(&value);
    }
    row.push(']');
    Ok(row)
}

static HOLD_COLUMNS: LazyLock<Vec<holds::Column>> = LazyLock::new(|| holds::Column::iter().collect());
static ENTRY_COLUMNS: LazyLock<Vec<journal_entries::Column>> = LazyLock::new(|| {
    journal_entries::Column::iter()
        .filter(|c| !matches!(c, journal_entries::Column::Id))
        .collect()
});

/// PostgreSQL's name of a column type a batch writes.
fn sql_type(column_type: &ColumnType) -> &'static str {
    match column_type {
        ColumnType::BigInteger => "bigint",
        ColumnType::Integer => "integer",
        ColumnType::Boolean => "boolean",
        ColumnType::TimestampWithTimeZone => "timestamptz",
        _ => "text",
    }
}

/// `(j->>0)::type AS name, ..`: the values of a row array `j` as the
/// columns `columns` (names and types).
fn select_list<'a>(columns: impl IntoIterator<Item = (&'a str, &'static str)>) -> String {
    let mut sql = String::new();
    for (i, (name, ty)) in columns.into_iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "(j->>{i})::{ty} AS {name}");
    }
    sql
}

fn entity_columns<C: ColumnTrait>(columns: &[C]) -> Vec<(&'static str, &'static str)> {
    columns
        .iter()
        .map(|c| (c.as_str(), sql_type(c.def().get_column_type())))
        .collect()
}

/// The columns of a claim's row, in [`claim_row`]'s order.
const CLAIM_COLUMNS: [(&str, &str); 6] = [
    ("id", "text"),
    ("user_id", "text"),
    ("status", "text"),
    ("resolved_at", "timestamptz"),
    ("result", "text"),
    ("forget_key", "boolean"),
];

/// The columns of a wallet's row, in [`wallet_row`]'s order.
const WALLET_COLUMNS: [(&str, &str); 13] = [
    ("user_id", "text"),
    ("version", "bigint"),
    ("monthly_delta", "bigint"),
    ("permanent_delta", "bigint"),
    ("held_monthly_delta", "bigint"),
    ("held_permanent_delta", "bigint"),
    ("cycle_changed", "boolean"),
    ("monthly_allocation", "bigint"),
    ("cycle_start", "timestamptz"),
    ("cycle_end", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("alert_thresholds", "text"),
    ("alert_state", "text"),
];

/// What a [`WriteStatement`] returned: the claims and wallets it wrote,
/// and each entry's id, user and balance after.
pub(crate) struct Written {
    pub claimed: usize,
    pub wallets: usize,
    pub entries: Vec<Numbered>,
}

pub(crate) fn written(rows: &[QueryResult]) -> StoreResult<Written> {
    let mut out = Written {
        claimed: 0,
        wallets: 0,
        entries: Vec::with_capacity(rows.len()),
    };
    for row in rows {
        let count = |name| -> StoreResult<usize> {
            let n: i64 = row.try_get("", name)?;
            usize::try_from(n).map_err(StoreError::corrupt)
        };
        out.claimed = count("claimed")?;
        out.wallets = count("wallets")?;
        let id: Option<i64> = row.try_get("", "id")?;
        if let Some(id) = id {
            out.entries.push(Numbered {
                id,
                user_id: row.try_get("", "user_id")?,
                balance_after: row.try_get("", "balance_after")?,
            });
        }
    }
    Ok(out)
}

/// The statement's text (see the module's documentation); its parameters:
/// the claims, how many of them must claim for the wallets to be written
/// (null: the statement does not check), the wallets, the channel (null:
/// none), the holds, the entries, whether the wallets were taken from the
/// mirror.
static TEXT: LazyLock<String> = LazyLock::new(|| {
    let names = |columns: &[(&str, &str)]| columns.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    let hold_columns = entity_columns(&HOLD_COLUMNS);
    let entry_columns = entity_columns(&ENTRY_COLUMNS);
    let (claims, wallets) = (select_list(CLAIM_COLUMNS), select_list(WALLET_COLUMNS));
    let (holds, entries) = (select_list(hold_columns.clone()), select_list(entry_columns.clone()));
    let (hold_names, entry_names) = (names(&hold_columns), names(&entry_columns));
    // The holds and wallets are found by their keys, whatever the planner
    // makes of the tables (young ones, or full of dead rows: see
    // `WRITERS_PLANNER`) and of the rows (it counts 100 in any JSON
    // array): by `key = ANY (ARRAY(..))`, which it reads as a few lookups
    // by key, and with which open status a claim wants as a column of the
    // claims (kept apart by `OFFSET 0`), not a condition on the holds
    // alone. Without these, counting few open holds, it took every hold
    // by its key and the claims for each (6 ms a batch at 40,000 holds),
    // and on a requests' connection (a batch of one, at concurrency 1) it
    // read every hold and every wallet to join them with the rows by hash
    // (1.5 ms at 6,000 holds), where finding each by its key takes
    // microseconds.
    let open_status = format!("'{}'::text", HoldStatus::Open.as_str());
    format!(
        "WITH c AS (\
           UPDATE holds SET status = v.status, resolved_at = v.resolved_at, \
             result = COALESCE(v.result, holds.result), \
             idempotency_key = CASE WHEN v.forget_key THEN NULL ELSE holds.idempotency_key END \
           FROM (SELECT {claims}, {open_status} AS open FROM jsonb_array_elements($1::jsonb) AS j OFFSET 0) AS v \
           WHERE holds.id = ANY (ARRAY(SELECT j->>0 FROM jsonb_array_elements($1::jsonb) AS j)) \
             AND holds.id = v.id AND holds.user_id = v.user_id AND holds.status = v.open \
           RETURNING holds.id), \
         w AS (\
           UPDATE wallets SET monthly_balance = wallets.monthly_balance + v.monthly_delta, \
             permanent_balance = wallets.permanent_balance + v.permanent_delta, \
             held_monthly = wallets.held_monthly + v.held_monthly_delta, \
             held_permanent = wallets.held_permanent + v.held_permanent_delta, \
             updated_at = v.updated_at, alert_thresholds = v.alert_thresholds, alert_state = v.alert_state, \
             monthly_allocation = CASE WHEN v.cycle_changed THEN v.monthly_allocation \
               ELSE wallets.monthly_allocation END, \
             cycle_start = CASE WHEN v.cycle_changed THEN v.cycle_start ELSE wallets.cycle_start END, \
             cycle_end = CASE WHEN v.cycle_changed THEN v.cycle_end ELSE wallets.cycle_end END, \
             version = CASE \
               WHEN NOT $7::boolean THEN CASE WHEN wallets.version = v.version THEN wallets.version END \
               WHEN wallets.version = v.version - 1 \
                 AND ($2::bigint IS NULL OR (SELECT count(*) FROM c) = $2::bigint) THEN v.version \
             END \
           FROM (SELECT {wallets} FROM jsonb_array_elements($3::jsonb) AS j) AS v \
           WHERE wallets.user_id = ANY (ARRAY(SELECT j->>0 FROM jsonb_array_elements($3::jsonb) AS j)) \
             AND wallets.user_id = v.user_id \
           RETURNING CASE WHEN $4::text IS NULL THEN NULL \
             ELSE pg_notify($4::text, wallets.version::text || ' ' || wallets.user_id) END AS announced), \
         h AS (\
           INSERT INTO holds ({hold_names}) SELECT {holds} FROM jsonb_array_elements($5::jsonb) AS j), \
         e AS (\
           INSERT INTO journal_entries ({entry_names}) \
           SELECT {entries} FROM jsonb_array_elements($6::jsonb) WITH ORDINALITY AS r(j, n) ORDER BY r.n \
           RETURNING id, user_id, balance_after) \
         SELECT n.claimed, n.wallets, e.id, e.user_id, e.balance_after \
         FROM (SELECT (SELECT count(*) FROM c) AS claimed, count(*) AS wallets, count(announced) AS announced \
           FROM w) AS n LEFT JOIN e ON true \
         ORDER BY e.id"
    )
});
