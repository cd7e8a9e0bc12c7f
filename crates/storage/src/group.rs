//! Group commit: the holds and resolutions that arrive together are applied
//! by one writer task in one transaction, and acknowledged after it commits.
//!
//! Each writer owns a shard of the wallets (by user id). It takes the first
//! operation waiting, then every other one already queued (up to a batch's
//! most), locks all the batch's wallets with one statement (PostgreSQL
//! takes the row locks in index order, the users' order, so two replicas'
//! batches do not wait on each other in a cycle; if they ever did, the
//! deadlock detector fails one, which then runs one by one), applies each
//! wallet's operations in arrival order to its state in memory, writes it
//! once, inserts the batch's new holds and journal entries with one
//! statement each, and commits the batch: one commit, and on PostgreSQL
//! one WAL flush, for the whole batch. An
//! operation that finds no other in the ledger runs at once in its own
//! transaction, as it always did: at concurrency 1 there is nothing to
//! batch, and no hand-off to pay for.
//!
//! An operation is answered only after the commit that holds it: a crash
//! before then loses nothing that was acknowledged. A refusal (insufficient
//! credits, a hold already resolved) is one operation's answer and changes
//! nothing. A failure of the database anywhere in a batch rolls the whole
//! batch back, and its operations are run again one by one, each in its own
//! transaction, so one bad operation never fails the others. A failed
//! commit is reported to every operation of the batch (as a failed commit
//! always was: the caller cannot know whether it landed).

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use creditgate_domain::{Credits, HoldStatus, WalletState};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, Statement, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

use crate::entities::{holds, journal_entries, wallets};
use crate::error::{StoreError, StoreResult};
use crate::holds::{HoldApplied, HoldRequest, Outcome, Placement, ResolveApplied};
use crate::model::{Entry, Hold, Resolution, UsageDetails, Wallet, WalletChange};
use crate::store::{Store, Txn};

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

/// An operation of [`Store::run_batch_for_test`].
#[cfg(feature = "test-support")]
#[derive(Debug, Clone)]
#[expect(clippy::large_enum_variant, reason = "built once per operation of a test")]
pub enum BatchOp {
    Hold {
        user_id: String,
        req: HoldRequest,
    },
    Settle {
        user_id: String,
        hold_id: String,
        cost: Credits,
    },
    Release {
        user_id: String,
        hold_id: String,
    },
}

/// An answer of [`Store::run_batch_for_test`].
#[cfg(feature = "test-support")]
#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "built once per operation of a test")]
pub enum BatchAnswer {
    Hold(Placement),
    Resolution(Resolution),
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
        GroupCommit {
            in_flight: AtomicUsize::new(0),
            shards: (0..writers).map(|_| Mutex::new(None)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            counts: Arc::new(Counts::default()),
        }
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

/// A batch's transaction, with the rows its wallets write together at its
/// end: the new holds and the journal entries, each kind in one statement.
pub(crate) struct Batch {
    pub txn: DatabaseTransaction,
    holds: Mutex<Vec<holds::ActiveModel>>,
    entries: Mutex<Vec<journal_entries::ActiveModel>>,
}

impl Batch {
    fn new(txn: DatabaseTransaction) -> Self {
        Batch {
            txn,
            holds: Mutex::new(Vec::new()),
            entries: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn defer_hold(&self, row: holds::ActiveModel) {
        self.holds.lock().unwrap_or_else(PoisonError::into_inner).push(row);
    }

    pub(crate) fn defer_entry(&self, row: journal_entries::ActiveModel) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).push(row);
    }

    /// Whether an entry of hold `hold_id` waits to be written.
    pub(crate) fn defers_entry_of(&self, hold_id: &str) -> bool {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|e| e.hold_id.try_as_ref().is_some_and(|h| h.as_deref() == Some(hold_id)))
    }

    fn entries_deferred(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Writes the deferred rows; the entries as written, in the order they
    /// were deferred.
    async fn flush(&self) -> StoreResult<Vec<Entry>> {
        let holds = std::mem::take(&mut *self.holds.lock().unwrap_or_else(PoisonError::into_inner));
        if !holds.is_empty() {
            holds::Entity::insert_many(holds)
                .exec_without_returning(&self.txn)
                .await?;
        }
        let rows = std::mem::take(&mut *self.entries.lock().unwrap_or_else(PoisonError::into_inner));
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<(Option<String>, Option<i64>)> = rows
            .iter()
            .map(|r| (r.user_id.try_as_ref().cloned(), r.balance_after.try_as_ref().copied()))
            .collect();
        // One statement numbers its rows in the order given; RETURNING may
        // list them in any order, so they are put back in id order and
        // checked against what was asked.
        let mut written = journal_entries::Entity::insert_many(rows)
            .exec_with_returning(&self.txn)
            .await?;
        written.sort_by_key(|m| m.id);
        let same = written.len() == wanted.len()
            && written
                .iter()
                .zip(&wanted)
                .all(|(m, (user, balance))| user.as_ref() == Some(&m.user_id) && *balance == Some(m.balance_after));
        if !same {
            return Err(StoreError::corrupt("a batch's entries came back out of order"));
        }
        written.into_iter().map(Entry::try_from).collect()
    }
}

/// What an operation gave before its wallet's change committed.
#[expect(
    clippy::large_enum_variant,
    reason = "one per operation of a batch, moved once into its answer"
)]
enum Answer {
    Now(StoreResult<Done>),
    Placed(Hold, WalletState),
    Resolved(ResolveApplied, WalletState),
}

/// One wallet's operations, applied and written (not yet committed when
/// nested in a batch).
struct Applied {
    change: Option<WalletChange>,
    answers: Vec<Answer>,
    user_id: String,
    org_id: String,
    version: i64,
    /// Which of the batch's deferred entries are this wallet's.
    deferred: std::ops::Range<usize>,
}

/// Gives each wallet's change the entries the batch wrote for it.
fn hand_out(entries: Vec<Entry>, applied: &mut [Applied]) -> StoreResult<()> {
    let mut entries = entries.into_iter();
    for a in applied {
        let theirs: Vec<Entry> = entries.by_ref().take(a.deferred.len()).collect();
        if theirs.len() != a.deferred.len() {
            return Err(StoreError::corrupt("a batch wrote fewer entries than it deferred"));
        }
        match &mut a.change {
            Some(change) => change.entries = theirs,
            None if theirs.is_empty() => {}
            None => return Err(StoreError::corrupt("entries deferred for a wallet that did not change")),
        }
    }
    Ok(())
}

impl Applied {
    fn answers(self) -> Vec<StoreResult<Done>> {
        let Applied {
            change,
            answers,
            user_id,
            org_id,
            version,
            ..
        } = self;
        let wallet = |state: &WalletState| Wallet::from_state(&user_id, &org_id, state, version);
        answers
            .into_iter()
            .map(|a| match a {
                Answer::Now(done) => done,
                Answer::Placed(hold, state) => Ok(Done::Hold(Placement::Placed {
                    hold,
                    wallet: wallet(&state),
                })),
                Answer::Resolved(r, state) => Ok(Done::Resolve(Resolution {
                    charged: r.charged,
                    overrun: r.overrun,
                    entry: r
                        .entry
                        .and_then(|i| change.as_ref().and_then(|c| c.entries.get(i)).cloned()),
                    wallet: wallet(&state),
                })),
            })
            .collect()
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
        self.group.as_ref().map_or((0, 0), |g| {
            (
                g.counts.ops.load(Ordering::Relaxed),
                g.counts.batches.load(Ordering::Relaxed),
            )
        })
    }

    /// Applies `ops` as one batch, as a writer does, and answers each in
    /// order: for tests that need operations to share a transaction.
    #[cfg(feature = "test-support")]
    pub async fn run_batch_for_test(&self, ops: Vec<BatchOp>) -> Vec<StoreResult<BatchAnswer>> {
        let mut jobs = Vec::new();
        let mut answers = Vec::new();
        for op in ops {
            let resolve = |user_id: String, hold_id: String, cost, status| {
                Op::Resolve(Resolve {
                    user_id,
                    hold_id,
                    cost,
                    status,
                    usage: Some(UsageDetails::default()),
                    outcome: Outcome::default(),
                })
            };
            let op = match op {
                BatchOp::Hold { user_id, req } => Op::Hold { user_id, req },
                BatchOp::Settle { user_id, hold_id, cost } => resolve(user_id, hold_id, cost, HoldStatus::Settled),
                BatchOp::Release { user_id, hold_id } => resolve(user_id, hold_id, Credits::ZERO, HoldStatus::Released),
            };
            let (reply, answer) = oneshot::channel();
            jobs.push(Job { op, reply });
            answers.push(answer);
        }
        self.run_batch(jobs).await;
        let mut out = Vec::with_capacity(answers.len());
        for answer in answers {
            out.push(match answer.await {
                Ok(Ok(Done::Hold(p))) => Ok(BatchAnswer::Hold(p)),
                Ok(Ok(Done::Resolve(r))) => Ok(BatchAnswer::Resolution(r)),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::corrupt("an operation went unanswered")),
            });
        }
        out
    }

    /// One operation in a transaction of its own.
    async fn run_alone(&self, op: Op) -> StoreResult<Done> {
        let applied = self.apply_ops(Lock::Alone, op.user_id(), &[&op]).await?;
        if let Some(change) = &applied.change {
            self.publish(change);
        }
        applied
            .answers()
            .pop()
            .unwrap_or_else(|| Err(StoreError::corrupt("an operation went unanswered")))
    }

    async fn run_batch(&self, jobs: Vec<Job>) {
        // Each wallet's operations in arrival order; the wallets in user-id
        // order, the order in which they are locked.
        let mut wallets: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
        for job in &jobs {
            wallets.entry(job.op.user_id()).or_default().push(&job.op);
        }
        let outcome = if wallets.len() == 1 {
            self.run_one_wallet(&wallets).await
        } else {
            self.run_wallets(&wallets).await
        };
        let answers = match outcome {
            Ok(answers) => answers,
            Err(Failed::Commit(e)) => {
                let why = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(StoreError::Unavailable(format!(
                        "the commit failed; the change may or may not have landed: {why}"
                    ))));
                }
                return;
            }
            Err(Failed::Before(e)) if jobs.len() == 1 => {
                if let Some(job) = jobs.into_iter().next() {
                    let _ = job.reply.send(Err(e));
                }
                return;
            }
            Err(Failed::Before(e)) => {
                tracing::warn!(error = %e, ops = jobs.len(), "a batch failed; running its operations one by one");
                for job in jobs {
                    let done = self.run_alone(job.op).await;
                    let _ = job.reply.send(done);
                }
                return;
            }
        };
        // `answers` follows the wallets' order; hand each back to its job.
        let mut by_user: BTreeMap<&str, std::vec::IntoIter<StoreResult<Done>>> =
            wallets.keys().copied().zip(answers).collect();
        let mut replies = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let done = by_user
                .get_mut(job.op.user_id())
                .and_then(Iterator::next)
                .unwrap_or_else(|| Err(StoreError::corrupt("an operation went unanswered")));
            replies.push(done);
        }
        for (job, done) in jobs.into_iter().zip(replies) {
            let _ = job.reply.send(done);
        }
    }

    /// A batch of one wallet: its own transaction, as if alone.
    async fn run_one_wallet(
        &self,
        wallets: &BTreeMap<&str, Vec<&Op>>,
    ) -> Result<Vec<std::vec::IntoIter<StoreResult<Done>>>, Failed> {
        let mut out = Vec::with_capacity(1);
        for (user_id, ops) in wallets {
            let applied = self
                .apply_ops(Lock::Alone, user_id, ops)
                .await
                .map_err(Failed::Before)?;
            if let Some(change) = &applied.change {
                self.publish(change);
            }
            out.push(applied.answers().into_iter());
        }
        Ok(out)
    }

    /// A batch of several wallets: one transaction, announced (PostgreSQL)
    /// with one statement and published once it commits.
    async fn run_wallets(
        &self,
        wallets: &BTreeMap<&str, Vec<&Op>>,
    ) -> Result<Vec<std::vec::IntoIter<StoreResult<Done>>>, Failed> {
        let batch = Arc::new(Batch::new(self.db.begin().await.map_err(|e| Failed::Before(e.into()))?));
        let mut rows: BTreeMap<String, wallets::Model> =
            match self.lock_wallets_in(&batch, wallets.keys().copied()).await {
                Ok(rows) => rows.into_iter().map(|r| (r.user_id.clone(), r)).collect(),
                Err(e) => {
                    if let Ok(batch) = Arc::try_unwrap(batch) {
                        let _ = batch.txn.rollback().await;
                    }
                    return Err(Failed::Before(e));
                }
            };
        let mut applied = Vec::with_capacity(wallets.len());
        let mut failed = None;
        for (user_id, ops) in wallets {
            let lock = Lock::Locked(&batch, rows.remove(*user_id));
            match self.apply_ops(lock, user_id, ops).await {
                Ok(a) => applied.push(a),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if failed.is_none() {
            match batch.flush().await {
                Ok(entries) => {
                    if let Err(e) = hand_out(entries, &mut applied) {
                        failed = Some(e);
                    }
                }
                Err(e) => failed = Some(e),
            }
        }
        if failed.is_none()
            && let Err(e) = self.announce(&batch.txn, &applied).await
        {
            failed = Some(e);
        }
        let Ok(batch) = Arc::try_unwrap(batch) else {
            return Err(Failed::Before(StoreError::corrupt(
                "a batch's transaction outlived its wallets",
            )));
        };
        if let Some(e) = failed {
            let _ = batch.txn.rollback().await;
            return Err(Failed::Before(e));
        }
        batch.txn.commit().await.map_err(|e| Failed::Commit(e.into()))?;
        let mut out = Vec::with_capacity(applied.len());
        for a in applied {
            if let Some(change) = &a.change {
                self.publish(change);
            }
            out.push(a.answers().into_iter());
        }
        Ok(out)
    }

    /// Announces a batch's changes on the notify channel (PostgreSQL), in
    /// its transaction: other replicas hear of them when it commits.
    async fn announce(&self, txn: &DatabaseTransaction, applied: &[Applied]) -> StoreResult<()> {
        let Some(channel) = self.notify_channel.as_deref() else {
            return Ok(());
        };
        let payloads: Vec<String> = applied
            .iter()
            .filter_map(|a| a.change.as_ref())
            .map(|c| format!("{} {}", c.wallet.version, c.wallet.user_id))
            .collect();
        if payloads.is_empty() {
            return Ok(());
        }
        let calls: Vec<String> = (0..payloads.len())
            .map(|i| format!("pg_notify($1, ${})", i + 2))
            .collect();
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(payloads.len() + 1);
        values.push(channel.into());
        values.extend(payloads.into_iter().map(Into::into));
        let sql = format!("SELECT {}", calls.join(", "));
        txn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values))
            .await?;
        Ok(())
    }

    /// Locks `user_id`'s wallet (in `shared`, a batch's transaction, or in
    /// a transaction of its own), applies `ops` to it in order and writes
    /// the result (commits it, when in its own). An error is a failure of
    /// the database: nothing of it was written, or the batch is given up.
    async fn apply_ops(&self, lock: Lock<'_>, user_id: &str, ops: &[&Op]) -> StoreResult<Applied> {
        let (locked, shared) = match lock {
            Lock::Alone => (self.lock_wallet(user_id, false).await?, None),
            Lock::Locked(batch, Some(row)) => (
                Some(self.locked_from(Txn::Shared(batch.clone()), row).await?),
                Some(batch),
            ),
            Lock::Locked(batch, None) => (None, Some(batch)),
        };
        let Some(mut locked) = locked else {
            let answers = ops
                .iter()
                .map(|_| {
                    Answer::Now(Err(StoreError::NotFound {
                        what: "user",
                        id: user_id.to_owned(),
                    }))
                })
                .collect();
            return Ok(Applied {
                change: None,
                answers,
                user_id: user_id.to_owned(),
                org_id: String::new(),
                version: 0,
                deferred: 0..0,
            });
        };
        let mut answers = Vec::with_capacity(ops.len());
        let mut wrote = false;
        for &op in ops {
            let answer = match op {
                Op::Hold { req, .. } => self.apply_hold(&mut locked, req).await.map(|a| match a {
                    Ok(HoldApplied::Placed(hold)) => Answer::Placed(hold, locked.state.clone()),
                    Ok(HoldApplied::Existing(p)) => Answer::Now(Ok(Done::Hold(p))),
                    Err(refused) => Answer::Now(Err(refused)),
                }),
                Op::Resolve(r) => self.apply_resolve(&mut locked, r).await.map(|a| match a {
                    Ok(resolved) => Answer::Resolved(resolved, locked.state.clone()),
                    Err(refused) => Answer::Now(Err(refused)),
                }),
            };
            match answer {
                Ok(a) => {
                    wrote |= matches!(a, Answer::Placed(..) | Answer::Resolved(..));
                    answers.push(a);
                }
                Err(e) => {
                    let _ = locked.rollback().await;
                    return Err(e);
                }
            }
        }
        let (user_id, org_id) = (locked.user_id.clone(), locked.org_id.clone());
        let version = locked.version;
        let first = shared.map_or(0, |b| b.entries_deferred());
        let change = if wrote || locked.has_changes() {
            Some(locked.commit_notifying(self.notify_channel.as_deref()).await?)
        } else {
            locked.rollback().await?;
            None
        };
        Ok(Applied {
            change,
            answers,
            user_id,
            org_id,
            version,
            deferred: first..shared.map_or(first, |b| b.entries_deferred()),
        })
    }

    /// This store as its writers use it: without writers of its own.
    fn writer_store(&self) -> Store {
        let mut store = self.clone();
        store.group = None;
        store
    }
}

/// How `apply_ops` gets its wallet.
enum Lock<'a> {
    /// It locks it, in a transaction of its own.
    Alone,
    /// The batch locked it (`None`: there is no such wallet).
    Locked(&'a Arc<Batch>, Option<wallets::Model>),
}

/// Why a batch did not commit.
enum Failed {
    /// Before its commit: nothing of it landed.
    Before(StoreError),
    /// At its commit: it may or may not have landed.
    Commit(StoreError),
}
