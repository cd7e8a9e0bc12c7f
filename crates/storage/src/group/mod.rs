//! Group commit: the holds and resolutions that arrive together are applied
//! by one writer task in one transaction, and acknowledged after it commits.
//!
//! Each writer owns a shard of the wallets (by user id). It takes the first
//! operation waiting, then every other one already queued (up to a batch's
//! most), locks all the batch's wallets with one statement (PostgreSQL
//! takes the row locks in index order, the users' order, so two replicas'
//! batches do not wait on each other in a cycle; if they ever did, the
//! deadlock detector fails one, which then runs one by one), claims every
//! hold the batch resolves with one statement, applies each wallet's
//! operations in arrival order to its state in memory, then writes all the
//! wallets, the new holds and the journal entries (on SQLite with one
//! statement each, see `sets`; on PostgreSQL all with one statement, see
//! `pg`), and commits the batch: one commit, and on PostgreSQL one WAL
//! flush, for the whole batch, and a fixed number of statements whatever
//! its size (on PostgreSQL, a large batch's rows go in several statements
//! of at most about 12 KiB each: see `chunks`; each statement's text is
//! built once per shape and kept: see `texts`, or never changes: see
//! `pg`). An
//! operation that finds no other in the ledger runs at once, as a batch of
//! its own: at concurrency 1 there is nothing to batch, and no hand-off to
//! a writer to pay for. On SQLite, a batch of one wallet (so every
//! operation at concurrency 1) sends its lock and its claims together, and
//! its writes together (see `script`), and on a SQLite file `BEGIN` goes
//! with the first of them and `COMMIT` with the last (see `txn`): two
//! round trips to SQLite's connection thread, where a hold took five and a
//! settle six (a larger batch's `BEGIN` goes with its first statement too).
//! On a SQLite file a batch whose wallets and claimed holds this process
//! last committed takes them from its mirror instead of locking and
//! claiming them first, and its writes check what it took (see `mirror`):
//! a batch of one wallet, every operation at concurrency 1, is then one
//! round trip, `BEGIN` to `COMMIT`. So does any batch on PostgreSQL while
//! the replica hears the others (its mirror is on): its claims and writes
//! are one statement, a transaction by itself, one round trip where a
//! batch took seven (`BEGIN`, lock, claim, wallets, holds, entries,
//! `COMMIT`); one that reads its wallets takes five.
//!
//! An operation is answered only after the commit that holds it: a crash
//! before then loses nothing that was acknowledged. A refusal (insufficient
//! credits, a hold already resolved) is one operation's answer and changes
//! nothing. A failure of the database anywhere in a batch rolls the whole
//! batch back, and its operations are run again one by one, each in its own
//! transaction, so one bad operation never fails the others. A failed
//! commit is reported to every operation of the batch (as a failed commit
//! always was: the caller cannot know whether it landed).

mod apply;
mod batch;
mod chunks;
mod mirror;
mod pg;
mod script;
mod sets;
#[cfg(test)]
mod test_table;
#[cfg(feature = "test-support")]
mod testing;
mod texts;
mod txn;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use creditgate_domain::{Credits, HoldStatus};
use tokio::sync::{mpsc, oneshot};

use crate::error::{StoreError, StoreResult};
use crate::holds::{HoldRequest, Outcome, Placement};
use crate::model::{Resolution, UsageDetails};
use crate::store::Store;

pub(crate) use batch::Batch;
pub(crate) use mirror::Mirror;
pub(crate) use sets::{Claimed, HoldClaim, WalletWrite, claim_holds, insert_entries, write_wallets};
#[cfg(feature = "test-support")]
pub use testing::{BatchAnswer, BatchOp};
pub(crate) use txn::LedgerTxn;

/// Operations a writer takes into one transaction at most.
const MAX_BATCH: usize = 256;

/// Resolving a hold: settling, releasing or expiring it.
#[derive(Debug, Clone)]
pub(crate) struct Resolve {
    pub user_id: String,
    pub hold_id: String,
    pub cost: Credits,
    pub status: HoldStatus,
    pub usage: Option<UsageDetails>,
    pub outcome: Outcome,
}

/// One operation on a wallet.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Hold { user_id: String, req: HoldRequest },
    Resolve(Resolve),
}

impl Op {
    fn user_id(&self) -> &str {
        match self {
            Op::Hold { user_id, .. } => user_id,
            Op::Resolve(r) => &r.user_id,
        }
    }
}

/// An operation's answer.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "moved once, through its oneshot: a box would cost an allocation per operation"
)]
pub(crate) enum Done {
    Hold(Placement),
    Resolve(Resolution),
}

struct Job {
    op: Op,
    reply: oneshot::Sender<StoreResult<Done>>,
}

/// What group commit has done on this replica, for the metrics and tests.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    batches: AtomicU64,
    ops: AtomicU64,
}

/// An operation in the ledger, counted while it runs (dropping it when the
/// caller gives up counts it out too).
struct Busy<'a> {
    count: &'a AtomicUsize,
    /// No other operation was in the ledger when this one came.
    alone: bool,
}

impl<'a> Busy<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let before = count.fetch_add(1, Ordering::AcqRel);
        Busy {
            count,
            alone: before == 0,
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Counts {
    /// Operations taken into batches and the batches they made, so far.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (self.ops.load(Ordering::Relaxed), self.batches.load(Ordering::Relaxed))
    }

    /// A commit of `ops` operations.
    fn record(&self, ops: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.ops.fetch_add(ops as u64, Ordering::Relaxed);
        metrics::histogram!(crate::metrics::BATCH_SIZE).record(ops as f64);
    }
}

/// The writers of one store (see the module's documentation).
pub(crate) struct GroupCommit {
    /// Holds and settles submitted and not yet answered.
    in_flight: AtomicUsize,
    shards: Vec<Mutex<Option<mpsc::UnboundedSender<Job>>>>,
    hasher: std::collections::hash_map::RandomState,
    counts: Arc<Counts>,
}

impl GroupCommit {
    /// `writers` tasks (started on first use); none: every operation runs
    /// in its own transaction.
    pub(crate) fn new(writers: usize) -> Self {
        Self::counting_in(writers, Arc::default())
    }

    /// As [`GroupCommit::new`], counting in `counts` (shared by every copy
    /// of a store, which the checkpoints read: see `checkpoint`).
    pub(crate) fn counting_in(writers: usize, counts: Arc<Counts>) -> Self {
        GroupCommit {
            in_flight: AtomicUsize::new(0),
            shards: (0..writers).map(|_| Mutex::new(None)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            counts,
        }
    }

    /// What its writers have done so far.
    pub(crate) fn counts(&self) -> Arc<Counts> {
        Arc::clone(&self.counts)
    }

    fn shard_of(&self, user_id: &str) -> usize {
        // The remainder is below the number of shards, which is a usize.
        (self.hasher.hash_one(user_id) % self.shards.len() as u64) as usize
    }

    /// Queues `job` on its shard's writer, starting the writer (again) on
    /// the current runtime when it has none or its runtime has gone.
    /// Gives the job back when no writer can take it.
    fn send(&self, job: Job, writer_store: impl FnOnce() -> Store) -> Result<(), Box<Job>> {
        let Some(slot) = self.shards.get(self.shard_of(job.op.user_id())) else {
            return Err(Box::new(job));
        };
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        let job = match slot.as_ref() {
            Some(tx) => match tx.send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Box::new(job));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(writer_store(), rx, self.counts.clone()));
        let sent = tx.send(job).map_err(|mpsc::error::SendError(job)| Box::new(job));
        *slot = Some(tx);
        sent
    }
}

/// Takes what is queued, a batch at a time, until every handle to the
/// store is gone.
async fn writer(store: Store, mut rx: mpsc::UnboundedReceiver<Job>, counts: Arc<Counts>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = Vec::with_capacity(rx.len().min(MAX_BATCH - 1) + 1);
        jobs.push(first);
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        counts.record(jobs.len());
        store.run_batch(jobs).await;
    }
}

impl Store {
    /// Runs `op` through its shard's writer, or in a transaction of its own
    /// when group commit is off.
    pub(crate) async fn submit(&self, op: Op) -> StoreResult<Done> {
        let Some(group) = self.group.as_ref().filter(|g| !g.shards.is_empty()) else {
            return self.run_alone(op).await;
        };
        // Nothing else in the ledger on this replica: nothing to batch with,
        // so no hand-off to a writer either.
        let busy = Busy::enter(&group.in_flight);
        if busy.alone {
            group.counts.record(1);
            return self.run_alone(op).await;
        }
        let (reply, answer) = oneshot::channel();
        if let Err(job) = group.send(Job { op, reply }, || self.writer_store()) {
            return self.run_alone(job.op).await;
        }
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the ledger writer stopped before answering".into()))?
    }

    /// Operations taken into batches and the batches they made, since the
    /// store was connected.
    pub fn group_commit_counts(&self) -> (u64, u64) {
        self.group.as_ref().map_or((0, 0), |g| g.counts.totals())
    }

    /// Batches that took their wallets and holds from the ledger's mirror
    /// (see `mirror`), and those of them whose writes found them stale (and
    /// ran again, reading), since the store was connected.
    pub fn ledger_mirror_counts(&self) -> (u64, u64) {
        self.mirror.as_ref().map_or((0, 0), |m| m.counts())
    }

    /// This store as its writers use it: without writers of its own, on
    /// the writers' connections (PostgreSQL; see [`Store::connect`]).
    fn writer_store(&self) -> Store {
        let mut store = self.clone();
        store.group = None;
        if let Some(db) = &self.writers_db {
            store.db = db.clone();
        }
        store
    }
}
