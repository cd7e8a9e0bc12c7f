//! SQLite's checkpoints, off the request path.
//!
//! In WAL mode every commit appends pages to the write-ahead log, and a
//! checkpoint copies them back into the database file, syncing both files
//! to disk (a few milliseconds each). Left to itself, SQLite checkpoints
//! inside the commit that takes the log past 1,000 pages, on the one
//! connection every request goes through: about one request in a hundred
//! waited those milliseconds, which made this server's p99 at concurrency 1
//! (5.5 ms against a p50 of 0.8 ms).
//!
//! Here a task of the store copies the log back on a connection of its own,
//! every [`EVERY`] (longer, up to [`LONGEST`], while the ledger's commits
//! each carry several operations: see [`pause`]), with a passive
//! checkpoint: it never waits for, nor blocks, the serving connection,
//! which goes on committing while it runs.
//! The serving connection still checkpoints itself once the log passes
//! [`INLINE_AFTER_PAGES`]; what it then copies is only what this task has
//! not, but it still syncs both files. It is needed: SQLite starts the log
//! over only once a checkpoint has copied all of it, and under a steady
//! stream of commits this task's checkpoints never do (commits land while
//! they sync), so that one checkpoint in eight thousand pages restarts the
//! log. That is the tail left at concurrency 1 (p99.9, about 4 ms).
//!
//! Durability is unchanged: commits are as durable as `synchronous =
//! NORMAL` makes them (lost on power failure only if not yet
//! checkpointed), and a checkpoint still syncs the database file before the
//! log's pages may be overwritten.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};

use crate::error::{StoreError, StoreResult};
use crate::group::Counts;

/// How often the log is copied back while operations commit one by one.
/// Often, so that each copy is short: on a server of one core it takes the
/// core from requests while it copies (measured at concurrency 1: p99 2.3
/// ms every 100 ms, 1.7 ms every 20 ms or 10 ms). A checkpoint with nothing
/// to copy does not touch the disk.
pub(crate) const EVERY: Duration = Duration::from_millis(20);

/// How often at most while operations share commits: the more a commit
/// carries, the longer the pause, up to this. Under load the same pages
/// (a wallet's, an index's last) are written again and again, and a longer
/// pause copies and syncs each once for more commits (measured at
/// concurrency 32: the checkpoints' CPU per runAi 14 → 6 µs, four fsyncs
/// in five gone; the README's benchmarks). A lone request's latency is
/// what the short pause is for, and a lone request commits alone.
pub(crate) const LONGEST: Duration = Duration::from_millis(100);

/// The pause before the next checkpoint, after `ops` operations were
/// committed in `batches` commits since the last: [`EVERY`] times the
/// operations per commit, from [`EVERY`] to [`LONGEST`].
pub(crate) fn pause(ops: u64, batches: u64) -> Duration {
    if batches == 0 {
        return EVERY;
    }
    let per_commit = u32::try_from(ops / batches).unwrap_or(u32::MAX).max(1);
    EVERY.saturating_mul(per_commit).min(LONGEST)
}

/// Pages of log past which the serving connection checkpoints itself
/// (SQLite's `wal_autocheckpoint`; its default is 1,000).
pub(crate) const INLINE_AFTER_PAGES: u32 = 8_192;

/// Pages in the log not yet copied into the database file, as of the last
/// checkpoint.
pub const WAL_PAGES: &str = "creditgate_sqlite_wal_pages";

/// Keeps the checkpoint task running while any copy of its store lives.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    _alive: (),
}

/// What one checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpointed {
    /// Pages in the log.
    pub log: i64,
    /// Of those, the pages now in the database file.
    pub copied: i64,
}

impl Checkpoints {
    /// Opens the checkpoint connection to the SQLite database at `url` and
    /// starts its task on the current runtime. `None` for an in-memory
    /// database, which has no log.
    ///
    /// The task keeps a copy of `serving`, the store's own connection, and
    /// lets it go only once its own connection has closed: SQLite folds the
    /// log into the file and removes it when its last connection closes,
    /// and two connections closing at the same moment on their own threads
    /// may each see the other still open, so that neither does.
    pub(crate) async fn start(
        url: &str,
        connect_timeout: Duration,
        serving: DatabaseConnection,
        counts: Arc<Counts>,
    ) -> StoreResult<Option<Arc<Checkpoints>>> {
        if in_memory(url) {
            return Ok(None);
        }
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.connect_timeout(connect_timeout)
            .max_connections(1)
            .min_connections(1)
            .sqlx_logging(false)
            .test_before_acquire(false)
            .map_sqlx_sqlite_opts(|o| o.create_if_missing(false).busy_timeout(Duration::from_secs(1)));
        let db = Database::connect(opts)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let checkpoints = Arc::new(Checkpoints { _alive: () });
        tokio::spawn(run(Arc::downgrade(&checkpoints), db, serving, counts));
        Ok(Some(checkpoints))
    }
}

/// Copies what it can of the log into the database file, without waiting
/// for the serving connection.
async fn once(db: &DatabaseConnection) -> StoreResult<Checkpointed> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA wal_checkpoint(PASSIVE)",
        ))
        .await?
        .ok_or_else(|| StoreError::corrupt("a checkpoint answered nothing"))?;
    // (busy, pages in the log, pages copied); -1 when not in WAL mode.
    let log: i64 = row.try_get_by_index(1)?;
    let copied: i64 = row.try_get_by_index(2)?;
    Ok(Checkpointed {
        log: log.max(0),
        copied: copied.max(0),
    })
}

/// Checkpoints every [`pause`] (from what the ledger's commits carried,
/// `counts`) until the store is dropped, then closes its connection before
/// letting the serving one go (see [`Checkpoints::start`]).
async fn run(alive: Weak<Checkpoints>, db: DatabaseConnection, serving: DatabaseConnection, counts: Arc<Counts>) {
    let mut failing = false;
    let mut last = counts.totals();
    let mut next = EVERY;
    loop {
        tokio::time::sleep(next).await;
        if alive.strong_count() == 0 {
            break;
        }
        let now = counts.totals();
        next = pause(now.0.saturating_sub(last.0), now.1.saturating_sub(last.1));
        last = now;
        match once(&db).await {
            Ok(done) => {
                failing = false;
                #[expect(clippy::cast_precision_loss, reason = "page counts are far below 2^52")]
                let behind = (done.log - done.copied) as f64;
                metrics::gauge!(WAL_PAGES).set(behind);
            }
            // Said once per run of failures; the serving connection's own
            // checkpoints keep the log bounded meanwhile.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "SQLite checkpoint failed; the serving connection checkpoints itself meanwhile");
            }
            Err(_) => {}
        }
    }
    // Closed, the serving connection is the database's last (unless a
    // copy of it still serves elsewhere).
    let _ = db.close().await;
    drop(serving);
}

/// Whether the SQLite database of `url` lives in memory (gone with its
/// last connection).
pub(crate) fn in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_request_is_checkpointed_after_the_short_pause() {
        // Idle, or every operation committed alone (concurrency 1).
        assert_eq!(pause(0, 0), EVERY);
        assert_eq!(pause(120, 120), EVERY);
        // Mostly alone: less than two per commit.
        assert_eq!(pause(190, 100), EVERY);
    }

    #[test]
    fn shared_commits_lengthen_the_pause_up_to_the_longest() {
        assert_eq!(pause(200, 100), EVERY * 2);
        assert_eq!(pause(450, 100), EVERY * 4);
        assert_eq!(pause(900, 100), LONGEST);
        assert_eq!(pause(u64::MAX, 1), LONGEST);
    }
}
