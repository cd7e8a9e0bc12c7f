//! A batch of several wallets' operations: one transaction, the rows its
//! wallets write together, one announcement, one commit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, Statement, TransactionTrait};

use super::apply::{Applied, Lock};
use super::sets::{Claimed, HoldClaim, WalletWrite, claim_holds, insert_entries, write_wallets};
use super::{Done, Job, Op};
use crate::entities::{holds, journal_entries, wallets};
use crate::error::{StoreError, StoreResult};
use crate::model::Entry;
use crate::store::{Store, Txn};

/// A batch's transaction, with the rows its wallets write together at its
/// end: the new holds and the journal entries, each kind in one statement.
pub(crate) struct Batch {
    pub txn: DatabaseTransaction,
    holds: Mutex<Vec<holds::ActiveModel>>,
    /// The entries to write, their ids not yet known.
    entries: Mutex<Vec<journal_entries::Model>>,
    wallets: Mutex<Vec<WalletWrite>>,
    /// The holds the batch resolves, claimed together before its
    /// operations run, by user and hold id: each taken once, by the first
    /// operation that resolves it.
    claims: Mutex<HashMap<(String, String), Option<Claimed>>>,
}

impl Batch {
    pub(super) fn new(txn: DatabaseTransaction) -> Self {
        Batch {
            txn,
            holds: Mutex::new(Vec::new()),
            entries: Mutex::new(Vec::new()),
            wallets: Mutex::new(Vec::new()),
            claims: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn defer_wallet(&self, write: WalletWrite) {
        self.wallets.lock().unwrap_or_else(PoisonError::into_inner).push(write);
    }

    /// Claims, with one statement, the open holds among `claims`, for
    /// [`Batch::take_claim`].
    async fn claim(&self, claims: Vec<HoldClaim>) -> StoreResult<()> {
        let claimed = claim_holds(&self.txn, &claims).await?;
        let mut taken: HashMap<(String, String), Option<Claimed>> =
            claims.into_iter().map(|c| ((c.user_id, c.id), None)).collect();
        for row in claimed {
            taken.insert((row.user_id.clone(), row.id.clone()), Some(row));
        }
        *self.claims.lock().unwrap_or_else(PoisonError::into_inner) = taken;
        Ok(())
    }

    /// What the batch's claim of `user_id`'s hold `hold_id` gave: `None`
    /// when it was not claimed with the batch's others; `Some(None)` when
    /// it was not open, or an earlier operation took it.
    pub(crate) fn take_claim(&self, user_id: &str, hold_id: &str) -> Option<Option<Claimed>> {
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        claims
            .get_mut(&(user_id.to_owned(), hold_id.to_owned()))
            .map(Option::take)
    }

    pub(crate) fn defer_hold(&self, row: holds::ActiveModel) {
        self.holds.lock().unwrap_or_else(PoisonError::into_inner).push(row);
    }

    pub(crate) fn defer_entries(&self, rows: Vec<journal_entries::Model>) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).extend(rows);
    }

    /// Whether an entry of hold `hold_id` waits to be written.
    pub(crate) fn defers_entry_of(&self, hold_id: &str) -> bool {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|e| e.hold_id.as_deref() == Some(hold_id))
    }

    pub(super) fn entries_deferred(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Writes the deferred rows; the entries as written, in the order they
    /// were deferred.
    async fn flush(&self) -> StoreResult<Vec<Entry>> {
        let wallets = std::mem::take(&mut *self.wallets.lock().unwrap_or_else(PoisonError::into_inner));
        write_wallets(&self.txn, &wallets).await?;
        let holds = std::mem::take(&mut *self.holds.lock().unwrap_or_else(PoisonError::into_inner));
        if !holds.is_empty() {
            holds::Entity::insert_many(holds)
                .exec_without_returning(&self.txn)
                .await?;
        }
        let rows = std::mem::take(&mut *self.entries.lock().unwrap_or_else(PoisonError::into_inner));
        insert_entries(&self.txn, rows).await
    }
}

/// Why a batch did not commit.
enum Failed {
    /// Before its commit: nothing of it landed.
    Before(StoreError),
    /// At its commit: it may or may not have landed.
    Commit(StoreError),
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

impl Store {
    pub(super) async fn run_batch(&self, mut jobs: Vec<Job>) {
        // One operation runs as if alone; several, even of one wallet,
        // claim their holds and write their rows together.
        if jobs.len() == 1
            && let Some(job) = jobs.pop()
        {
            let done = self.run_alone(job.op).await;
            let _ = job.reply.send(done);
            return;
        }
        // Each wallet's operations in arrival order; the wallets in user-id
        // order, the order in which they are locked.
        let mut wallets: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
        for job in &jobs {
            wallets.entry(job.op.user_id()).or_default().push(&job.op);
        }
        let answers = match self.run_wallets(&wallets).await {
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

    /// A batch of several operations: one transaction, announced (PostgreSQL)
    /// with one statement and published once it commits.
    async fn run_wallets(
        &self,
        wallets: &BTreeMap<&str, Vec<&Op>>,
    ) -> Result<Vec<std::vec::IntoIter<StoreResult<Done>>>, Failed> {
        let batch = Arc::new(Batch::new(self.db.begin().await.map_err(|e| Failed::Before(e.into()))?));
        let applied = self.fill(&batch, wallets).await;
        let Ok(batch) = Arc::try_unwrap(batch) else {
            return Err(Failed::Before(StoreError::corrupt(
                "a batch's transaction outlived its wallets",
            )));
        };
        let applied = match applied {
            Ok(applied) => applied,
            Err(e) => {
                let _ = batch.txn.rollback().await;
                return Err(Failed::Before(e));
            }
        };
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

    /// Everything of a batch but its commit: locks its wallets, claims the
    /// holds it resolves, applies each wallet's operations, writes what
    /// they changed and announces it.
    async fn fill(&self, batch: &Arc<Batch>, wallets: &BTreeMap<&str, Vec<&Op>>) -> StoreResult<Vec<Applied>> {
        let mut rows: BTreeMap<String, wallets::Model> = self
            .lock_wallets_in(batch, wallets.keys().copied())
            .await?
            .into_iter()
            .map(|r| (r.user_id.clone(), r))
            .collect();
        let mut locked = Vec::with_capacity(wallets.len());
        let mut claims = Vec::new();
        let mut claiming = HashSet::new();
        for (user_id, ops) in wallets {
            let Some(row) = rows.remove(*user_id) else {
                locked.push(None);
                continue;
            };
            let wallet = self.locked_from(Txn::Shared(batch.clone()), row).await?;
            for op in ops {
                if let Op::Resolve(r) = op
                    && claiming.insert((r.user_id.as_str(), r.hold_id.as_str()))
                {
                    claims.push(r.claim(wallet.now));
                }
            }
            locked.push(Some(wallet));
        }
        batch.claim(claims).await?;
        let mut applied = Vec::with_capacity(wallets.len());
        for ((user_id, ops), wallet) in wallets.iter().zip(locked) {
            applied.push(self.apply_ops(Lock::Locked(batch, wallet), user_id, ops).await?);
        }
        let entries = batch.flush().await?;
        hand_out(entries, &mut applied)?;
        self.announce(&batch.txn, &applied).await?;
        Ok(applied)
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
}
