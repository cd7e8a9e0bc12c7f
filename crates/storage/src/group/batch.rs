//! A batch of several wallets' operations: one transaction, the rows its
//! wallets write together, one announcement, one commit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Iterable};

use super::apply::Applied;
use super::chunks::chunked;
use super::pg::{Writes, write_statements, written};
use super::script::Script;
use super::sets::{
    CLAIMED_WIDTH, Claimed, ENTRIES_WIDTH, HoldClaim, VersionCheck, WalletWrite, announces, check_wallets, claim_holds,
    claim_statement, claimed, number_entries, numbered_entries, wallet_write_width, wallets_statement,
};
use super::texts::{entries_statement, holds_statement, lock_statement};
use super::txn::{LedgerTxn, Stage};
use super::{Done, Job, Mirror, Op};
use crate::entities::{holds, journal_entries, wallets};
use crate::error::{StoreError, StoreResult};
use crate::model::Entry;
use crate::store::{Store, Txn};

/// A batch's transaction, with the rows its wallets write together at its
/// end: the new holds and the journal entries, each kind in one statement
/// (on PostgreSQL, a large batch's in several: see `chunks`).
pub(crate) struct Batch {
    pub txn: LedgerTxn,
    holds: Mutex<Vec<holds::Model>>,
    /// The entries to write, their ids not yet known.
    entries: Mutex<Vec<journal_entries::Model>>,
    wallets: Mutex<Vec<WalletWrite>>,
    /// The holds the batch resolves, claimed together before its
    /// operations run, by user and hold id: each taken once, by the first
    /// operation that resolves it.
    claims: Mutex<HashMap<(String, String), Option<Claimed>>>,
    /// Its statements are sent together (see [`Script`]): it has few
    /// wallets.
    together: bool,
    /// Its wallets and holds came from the mirror (see `mirror`): the
    /// holds it claims, claimed with its writes.
    mirrored: Mutex<Option<Vec<HoldClaim>>>,
    /// With a mirror: its wallets as locked or taken, and what it wrote,
    /// for the mirror to keep once it commits.
    before: Mutex<HashMap<String, wallets::Model>>,
    written: Mutex<(Vec<WalletWrite>, Vec<holds::Model>)>,
    /// It took its wallets from the mirror.
    from_mirror: AtomicBool,
}

/// Wallets a batch has at most for its statements to be sent together
/// (see [`Script`]).
const TOGETHER_MAX_WALLETS: usize = 1;

impl Batch {
    pub(super) fn new(txn: LedgerTxn, wallets: usize) -> Self {
        Batch {
            txn,
            together: wallets <= TOGETHER_MAX_WALLETS,
            holds: Mutex::new(Vec::new()),
            entries: Mutex::new(Vec::new()),
            wallets: Mutex::new(Vec::new()),
            claims: Mutex::new(HashMap::new()),
            mirrored: Mutex::new(None),
            before: Mutex::new(HashMap::new()),
            written: Mutex::new((Vec::new(), Vec::new())),
            from_mirror: AtomicBool::new(false),
        }
    }

    /// Takes its wallets and the holds it claims from `mirror` (see
    /// `mirror`) when all are there: the wallets as a lock would give
    /// them (their versions bumped), the claims kept for
    /// [`Batch::take_claim`] and made with the batch's writes.
    fn take_mirrored(&self, mirror: &Mirror, user_ids: &[&str], claims: &[HoldClaim]) -> Option<Vec<wallets::Model>> {
        let taken = mirror.take(user_ids, claims)?;
        let mut held = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        for c in taken.claimed {
            held.insert((c.user_id.clone(), c.id.clone()), Some(c));
        }
        *self.mirrored.lock().unwrap_or_else(PoisonError::into_inner) = Some(claims.to_vec());
        self.from_mirror.store(true, Ordering::Relaxed);
        Some(
            taken
                .wallets
                .into_iter()
                .map(|mut w| {
                    w.version += 1;
                    w
                })
                .collect(),
        )
    }

    /// Gives `mirror` what the batch wrote (see `mirror`).
    fn keep_in(&self, mirror: &Mirror) {
        let before = self.before.lock().unwrap_or_else(PoisonError::into_inner);
        let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        mirror.keep(&before, &written.0, &written.1);
    }

    pub(crate) fn defer_wallet(&self, write: WalletWrite) {
        self.wallets.lock().unwrap_or_else(PoisonError::into_inner).push(write);
    }

    /// Locks the wallets of `user_ids` (one statement, see
    /// [`lock_statement`]) and claims the open holds among
    /// `claims` (one more), sent together: the wallets as locked, and the
    /// claims kept for [`Batch::take_claim`].
    async fn lock_and_claim<'a>(
        &self,
        user_ids: impl IntoIterator<Item = &'a str>,
        claims: Vec<HoldClaim>,
    ) -> StoreResult<Vec<wallets::Model>> {
        let backend = self.txn.get_database_backend();
        let mut script = Script::new(self.together);
        let user_ids: Vec<&str> = user_ids.into_iter().collect();
        let locked_at = script.push(lock_statement(backend, &user_ids), wallets::Column::iter().count())?;
        // Large batches claim in several statements (see `chunks`).
        let mut chunks = chunked(backend, &claims, HoldClaim::bytes).into_iter();
        let claimed_at = match chunks.next() {
            Some(first) => Some(script.push(claim_statement(backend, first), CLAIMED_WIDTH)?),
            None => None,
        };
        let mut ran = script.run(&self.txn, false).await?;
        let locked = ran
            .rows(locked_at)
            .iter()
            .map(|row| wallets::Model::from_query_result(row, "").map_err(StoreError::from))
            .collect::<StoreResult<Vec<_>>>()?;
        let mut claimed = match claimed_at {
            Some(at) => claimed(&ran.rows(at))?,
            None => Vec::new(),
        };
        for chunk in chunks {
            claimed.extend(claim_holds(&self.txn, chunk).await?);
        }
        let mut taken: HashMap<(String, String), Option<Claimed>> =
            claims.into_iter().map(|c| ((c.user_id, c.id), None)).collect();
        for row in claimed {
            // A hold is its wallet's: one claimed without its wallet locked
            // would be resolved without the wallet's change.
            if !locked.iter().any(|w| w.user_id == row.user_id) {
                return Err(StoreError::corrupt(format!(
                    "hold `{}` of `{}`, who has no wallet",
                    row.id, row.user_id
                )));
            }
            taken.insert((row.user_id.clone(), row.id.clone()), Some(row));
        }
        *self.claims.lock().unwrap_or_else(PoisonError::into_inner) = taken;
        Ok(locked)
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

    pub(crate) fn defer_hold(&self, row: holds::Model) {
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

    /// Writes the deferred rows, sent together (see [`Script`]), and
    /// announces the wallets written on `channel` (PostgreSQL) with them;
    /// the entries as written, in the order they were deferred. On a
    /// SQLite file the batch commits with its last statement (see
    /// [`LedgerTxn::run`]; [`LedgerTxn::stage`] tells), so the checks of
    /// what came back that must hold before it commits are the
    /// statements' own (see `wallets_statement`).
    async fn flush(&self, channel: Option<&str>, mirroring: bool) -> StoreResult<Vec<Entry>> {
        let backend = self.txn.get_database_backend();
        let wallets = std::mem::take(&mut *self.wallets.lock().unwrap_or_else(PoisonError::into_inner));
        let holds = std::mem::take(&mut *self.holds.lock().unwrap_or_else(PoisonError::into_inner));
        let rows = std::mem::take(&mut *self.entries.lock().unwrap_or_else(PoisonError::into_inner));
        if mirroring {
            *self.written.lock().unwrap_or_else(PoisonError::into_inner) = (wallets.clone(), holds.clone());
        }
        let mirrored = self.mirrored.lock().unwrap_or_else(PoisonError::into_inner).take();
        if backend == DbBackend::Postgres {
            return self.flush_postgres(channel, &wallets, &holds, rows, mirrored).await;
        }
        // SQLite: each kind of rows in one statement (its connection is no
        // socket, see `chunks`), sent together for a batch of few wallets.
        let mut script = Script::new(self.together);
        // Taken from the mirror: the claims go with the writes, checked by
        // the wallets' write when it is sent with them (one wallet), else
        // on their own, first.
        let mut check = VersionCheck::Locked;
        let mut claims = 0;
        if let Some(mirrored) = mirrored {
            check = VersionCheck::Mirrored;
            if !mirrored.is_empty() {
                if self.together && wallets.len() == 1 {
                    script.push(claim_statement(backend, &mirrored), CLAIMED_WIDTH)?;
                    (check, claims) = (VersionCheck::MirroredClaimed, mirrored.len());
                } else if claim_holds(&self.txn, &mirrored).await?.len() != mirrored.len() {
                    return Err(StoreError::Unavailable(
                        "a hold taken from the mirror was no longer open".into(),
                    ));
                }
            }
        }
        let wallets_at = match wallets.is_empty() {
            true => None,
            false => Some(script.push(
                wallets_statement(backend, &wallets, channel, check, claims),
                wallet_write_width(announces(backend, channel)),
            )?),
        };
        if !holds.is_empty() {
            script.push(holds_statement(backend, &holds), 0)?;
        }
        let entries_at = match rows.is_empty() {
            true => None,
            false => Some(script.push(entries_statement(backend, &rows), ENTRIES_WIDTH)?),
        };
        // All of it in one script sent together: the commit can go with
        // it. Not with a larger batch's statements, sent one by one:
        // SQLite's connection keeps each statement it prepared by its
        // text, and the last one's text, which varies with the batch's
        // rows, would come in a variant with the commit and one without
        // (the README's benchmarks: more memory, no gain).
        let mut ran = script.run(&self.txn, self.together).await?;
        if let Some(at) = wallets_at {
            check_wallets(&wallets, &ran.rows(at))?;
        }
        let entries = match entries_at {
            Some(at) => numbered_entries(rows, &ran.rows(at))?,
            None => Vec::new(),
        };
        Ok(entries)
    }
}

impl Batch {
    /// [`Batch::flush`] on PostgreSQL: one statement (see `pg`), which
    /// commits the batch when it is its first (see [`LedgerTxn::run`]), or
    /// several (a large batch's), each checked before the batch commits.
    async fn flush_postgres(
        &self,
        channel: Option<&str>,
        wallets: &[WalletWrite],
        holds: &[holds::Model],
        entries: Vec<journal_entries::Model>,
        mirrored: Option<Vec<HoldClaim>>,
    ) -> StoreResult<Vec<Entry>> {
        let claims = mirrored.as_deref().unwrap_or_default();
        if wallets.is_empty() && holds.is_empty() && entries.is_empty() && claims.is_empty() {
            return Ok(Vec::new());
        }
        let statements = write_statements(&Writes {
            claims,
            mirrored: mirrored.is_some(),
            wallets,
            holds,
            entries: &entries,
            channel,
        })?;
        let one = statements.len() == 1;
        let mut numbered = Vec::with_capacity(entries.len());
        for s in statements {
            let sent = self.txn.run(s.statement, true, one).await?;
            let written = written(&sent.rows)?;
            if written.wallets != s.wallets {
                return Err(StoreError::corrupt(format!(
                    "{} of a batch's {} wallets changed under their locks",
                    s.wallets.saturating_sub(written.wallets),
                    s.wallets
                )));
            }
            if mirrored.is_some() && written.claimed != s.claims {
                return Err(StoreError::Unavailable(
                    "a hold taken from the mirror was no longer open".into(),
                ));
            }
            numbered.extend(written.entries);
        }
        number_entries(entries, numbered)
    }
}

/// Why a batch did not commit.
pub(super) enum Failed {
    /// Before its commit: nothing of it landed.
    Before(StoreError),
    /// At its commit: it may or may not have landed.
    Commit(StoreError),
}

impl Failed {
    /// What each operation of a batch whose commit failed (`e`) is told.
    pub(super) fn commit_error(e: &StoreError) -> StoreError {
        StoreError::Unavailable(format!("the commit failed; the change may or may not have landed: {e}"))
    }
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
                for job in jobs {
                    let _ = job.reply.send(Err(Failed::commit_error(&e)));
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
    /// by its write of the wallets and published once it commits.
    pub(super) async fn run_wallets(
        &self,
        wallets: &BTreeMap<&str, Vec<&Op>>,
    ) -> Result<Vec<std::vec::IntoIter<StoreResult<Done>>>, Failed> {
        let (done, from_mirror) = self.run_wallets_once(wallets, true).await;
        let outcome = match (&done, from_mirror) {
            // What it took from the mirror was stale (or the database
            // failed): again, reading (what it took is no longer there).
            (Err(Failed::Before(e)), true) => {
                tracing::debug!(error = %e, "a batch taken from the mirror failed; running it again, reading");
                "stale"
            }
            (_, true) => "taken",
            (_, false) => "read",
        };
        if let Some(mirror) = &self.mirror {
            metrics::counter!(crate::metrics::LEDGER_MIRROR, "outcome" => outcome).increment(1);
            if from_mirror {
                mirror.count(outcome == "stale");
            }
        }
        if outcome == "stale" {
            return self.run_wallets_once(wallets, false).await.0;
        }
        done
    }

    /// [`Store::run_wallets`], from the mirror when `mirror` and it can;
    /// whether it did.
    async fn run_wallets_once(
        &self,
        wallets: &BTreeMap<&str, Vec<&Op>>,
        mirror: bool,
    ) -> (Result<Vec<std::vec::IntoIter<StoreResult<Done>>>, Failed>, bool) {
        let batch = match self.begin_ledger().await {
            Ok(txn) => Arc::new(Batch::new(txn, wallets.len())),
            Err(e) => return (Err(Failed::Before(e.into())), false),
        };
        let applied = self.fill(&batch, wallets, mirror).await;
        let from_mirror = batch.from_mirror.load(Ordering::Relaxed);
        (self.finish_batch(batch, applied).await, from_mirror)
    }

    /// Commits a filled batch (unless it committed with its last
    /// statement) or rolls it back; each wallet's answers.
    async fn finish_batch(
        &self,
        batch: Arc<Batch>,
        applied: StoreResult<Vec<Applied>>,
    ) -> Result<Vec<std::vec::IntoIter<StoreResult<Done>>>, Failed> {
        let Ok(batch) = Arc::try_unwrap(batch) else {
            return Err(Failed::Before(StoreError::corrupt(
                "a batch's transaction outlived its wallets",
            )));
        };
        let stage = batch.txn.stage().await;
        let applied = match applied {
            // Committed with its last statement, and then a check of what
            // came back failed: it landed, but its answers cannot be given.
            Err(e) if matches!(stage, Stage::Committed | Stage::Unknown) => return Err(Failed::Commit(e)),
            Ok(applied) => applied,
            Err(e) => {
                let _ = batch.txn.rollback().await;
                return Err(Failed::Before(e));
            }
        };
        // Kept before the connection goes back to the pool: the next batch
        // finds it.
        if let Some(mirror) = &self.mirror {
            batch.keep_in(mirror);
        }
        if stage != Stage::Committed {
            let written = std::mem::take(&mut *batch.written.lock().unwrap_or_else(PoisonError::into_inner));
            if let Err(e) = batch.txn.commit().await {
                // It may not have landed: the mirror keeps none of it.
                if let Some(mirror) = &self.mirror {
                    mirror.forget(
                        written.0.iter().map(|w| w.user_id.as_str()),
                        written.1.iter().map(|h| h.id.as_str()),
                    );
                }
                return Err(Failed::Commit(e.into()));
            }
        }
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
    /// they changed and announces it (with the wallets' write).
    async fn fill(
        &self,
        batch: &Arc<Batch>,
        wallets: &BTreeMap<&str, Vec<&Op>>,
        mirror: bool,
    ) -> StoreResult<Vec<Applied>> {
        let now = self.change_time();
        let mut claims = Vec::new();
        let mut claiming = HashSet::new();
        let mut twice = false;
        for op in wallets.values().flatten() {
            if let Op::Resolve(r) = op {
                if claiming.insert((r.user_id.as_str(), r.hold_id.as_str())) {
                    claims.push(r.claim(now));
                } else {
                    twice = true;
                }
            }
        }
        let user_ids: Vec<&str> = wallets.keys().copied().collect();
        // Not with a hold resolved twice: the second resolve reads it as
        // the first left it (see `apply_resolve`), which a batch from the
        // mirror only writes at its end.
        let mirrored = match &self.mirror {
            Some(m) if mirror && !twice => batch.take_mirrored(m, &user_ids, &claims),
            Some(m) => {
                // Out of it all the same: this batch changes them.
                let _ = m.take(&user_ids, &claims);
                None
            }
            None => None,
        };
        let locked = match mirrored {
            Some(rows) => rows,
            None => batch.lock_and_claim(user_ids, claims).await?,
        };
        let mut rows: BTreeMap<String, wallets::Model> = locked.into_iter().map(|r| (r.user_id.clone(), r)).collect();
        if self.mirror.is_some() {
            *batch.before.lock().unwrap_or_else(PoisonError::into_inner) =
                rows.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        let mut applied = Vec::with_capacity(wallets.len());
        for (user_id, ops) in wallets {
            let wallet = match rows.remove(*user_id) {
                Some(row) => Some(self.locked_at(Txn::Shared(batch.clone()), row, now).await?),
                None => None,
            };
            let a = self.apply_ops(batch, wallet, user_id, ops).await?;
            // A wallet from the mirror answers only with a write, whose
            // version check proves what it was taken at (see `mirror`):
            // one that refused everything and wrote nothing is read again.
            if a.change.is_none() && batch.from_mirror.load(Ordering::Relaxed) {
                return Err(StoreError::Unavailable(format!(
                    "the operations on `{user_id}`'s wallet as mirrored wrote nothing; reading it to answer them"
                )));
            }
            applied.push(a);
        }
        let entries = batch
            .flush(self.notify_channel.as_deref(), self.mirror.is_some())
            .await?;
        hand_out(entries, &mut applied)?;
        Ok(applied)
    }
}
