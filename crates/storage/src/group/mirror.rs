//! The SQLite ledger's mirror: the wallets and open holds as this process
//! last committed them, so that a batch of them needs no round trip to read
//! them first.
//!
//! One process owns a SQLite file (see [`crate::cache`]), and every batch
//! runs on its one connection, so the rows a batch last wrote are what the
//! next one would read. A batch whose wallets and claimed holds are all
//! here takes them from here instead of locking and claiming them (one
//! round trip to SQLite's connection thread fewer: at concurrency 1 a hold
//! and a settle each become one round trip, `BEGIN` to `COMMIT`), and its
//! writes check what it took: each wallet's write is refused unless the
//! wallet is still at the version taken (a change by anything else bumps
//! it: `Store::lock_wallet` does), and its claims unless each claimed its
//! hold still open. A refusal fails the batch before it commits, and it
//! runs again as any batch does, reading: what it took is no longer here.
//!
//! On PostgreSQL (where replicas share the database) the same checks make
//! it safe, and it is kept only while this replica hears the others'
//! announcements (see `Store::set_shared_caching`): a wallet another
//! replica wrote is dropped when its announcement arrives (see
//! `Store::wallet_changed`), so that its next batch reads it rather than
//! fails. One announced in the moment between a batch's take and its
//! write is caught by the write's checks, as on SQLite.
//!
//! A batch takes its wallets and holds out whether it uses them or not,
//! and only what it committed comes back (a wallet only at a version
//! newer than the one here): a batch that fails leaves nothing stale.
//! Both maps are bounded; past their bound, what a batch committed is
//! simply not kept, and the next batch of it reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::sets::{Claimed, HoldClaim, WalletWrite};
use crate::entities::{holds, wallets};

/// Wallets kept at most (a few hundred bytes each).
const MAX_WALLETS: usize = 10_000;
/// Open holds kept at most.
const MAX_HOLDS: usize = 10_000;

#[derive(Default)]
struct Rows {
    wallets: HashMap<String, wallets::Model>,
    /// Open holds by id.
    holds: HashMap<String, Claimed>,
}

/// See the module's documentation.
pub(crate) struct Mirror {
    rows: Mutex<Rows>,
    /// Kept and taken from only while on.
    on: AtomicBool,
    /// Batches that took their rows from it, and those whose writes then
    /// found them stale.
    taken: AtomicU64,
    stale: AtomicU64,
}

/// What a batch took from the [`Mirror`]: its wallets as last committed
/// and the holds it claims, each as placed.
pub(crate) struct Taken {
    pub wallets: Vec<wallets::Model>,
    pub claimed: Vec<Claimed>,
}

impl Mirror {
    /// A mirror, on or off (see [`Mirror::set_on`]).
    pub(crate) fn new(on: bool) -> Self {
        Mirror {
            rows: Mutex::new(Rows::default()),
            on: AtomicBool::new(on),
            taken: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        }
    }

    /// A batch took its rows from it, and found them `stale` or not.
    pub(crate) fn count(&self, stale: bool) {
        self.taken.fetch_add(1, Ordering::Relaxed);
        if stale {
            self.stale.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Batches that took their rows from it, and those of them that found
    /// them stale, so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.taken.load(Ordering::Relaxed), self.stale.load(Ordering::Relaxed))
    }

    /// Turns it on or off, emptying it either way.
    pub(crate) fn set_on(&self, on: bool) {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        *rows = Rows::default();
        self.on.store(on, Ordering::Release);
    }

    /// Takes the wallets of `user_ids` and the holds of `claims` out; all
    /// of them when each is here (and each hold is its claim's user's),
    /// else `None` (always while it is off).
    pub(crate) fn take(&self, user_ids: &[&str], claims: &[HoldClaim]) -> Option<Taken> {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.on.load(Ordering::Acquire) {
            return None;
        }
        let wallets: Vec<Option<wallets::Model>> = user_ids.iter().map(|id| rows.wallets.remove(*id)).collect();
        let claimed: Vec<Option<Claimed>> = claims
            .iter()
            .map(|c| rows.holds.remove(&c.id).filter(|h| h.user_id == c.user_id))
            .collect();
        Some(Taken {
            wallets: wallets.into_iter().collect::<Option<Vec<_>>>()?,
            claimed: claimed.into_iter().collect::<Option<Vec<_>>>()?,
        })
    }

    /// Keeps what a batch committed: each wallet of `writes` as its row
    /// `before` the batch (as locked or taken) changed by its write, and
    /// the holds it placed.
    pub(crate) fn keep<'a>(
        &self,
        before: &HashMap<String, wallets::Model>,
        writes: &[WalletWrite],
        placed: impl IntoIterator<Item = &'a holds::Model>,
    ) {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.on.load(Ordering::Acquire) {
            return;
        }
        for w in writes {
            let Some(row) = before.get(&w.user_id) else {
                continue;
            };
            let after = written(row, w);
            let full = rows.wallets.len() >= MAX_WALLETS;
            match rows.wallets.get_mut(&w.user_id) {
                // Another batch of it committed since: keep the newer.
                Some(kept) if kept.version >= after.version => {}
                Some(kept) => *kept = after,
                None if !full => {
                    rows.wallets.insert(w.user_id.clone(), after);
                }
                None => {}
            }
        }
        for h in placed {
            if rows.holds.len() >= MAX_HOLDS {
                break;
            }
            rows.holds.insert(
                h.id.clone(),
                Claimed {
                    id: h.id.clone(),
                    user_id: h.user_id.clone(),
                    monthly_part: h.monthly_part,
                    permanent_part: h.permanent_part,
                    cycle_start: h.cycle_start,
                    details: h.details.clone(),
                },
            );
        }
    }

    /// Takes the wallets of `user_ids` and the holds of `hold_ids` out.
    pub(crate) fn forget<'a>(&self, user_ids: impl Iterator<Item = &'a str>, hold_ids: impl Iterator<Item = &'a str>) {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        for id in user_ids {
            rows.wallets.remove(id);
        }
        for id in hold_ids {
            rows.holds.remove(id);
        }
    }

    /// Takes out the wallet of `user_id` if it is kept at a version before
    /// `version` (written at `version` by another replica, or by this one
    /// before a batch that kept a newer version).
    pub(crate) fn forget_before(&self, user_id: &str, version: i64) {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        if rows.wallets.get(user_id).is_some_and(|w| w.version < version) {
            rows.wallets.remove(user_id);
        }
    }

    /// Wallets and holds kept, for the tests.
    #[cfg(test)]
    pub(crate) fn len(&self) -> (usize, usize) {
        let rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        (rows.wallets.len(), rows.holds.len())
    }
}

/// `row` as `write` leaves it (see `sets::wallets_statement`).
fn written(row: &wallets::Model, write: &WalletWrite) -> wallets::Model {
    let mut after = row.clone();
    after.monthly_balance += write.monthly_delta;
    after.permanent_balance += write.permanent_delta;
    after.held_monthly += write.held_monthly_delta;
    after.held_permanent += write.held_permanent_delta;
    after.updated_at = write.updated_at;
    after.alert_thresholds.clone_from(&write.alert_thresholds);
    after.alert_state.clone_from(&write.alert_state);
    if write.cycle_changed {
        after.monthly_allocation = write.monthly_allocation;
        after.cycle_start = write.cycle_start;
        after.cycle_end = write.cycle_end;
    }
    after.version = write.version;
    after
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use creditgate_domain::HoldStatus;

    use super::*;

    fn wallet(user: &str, version: i64) -> wallets::Model {
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).single().expect("time");
        wallets::Model {
            user_id: user.to_owned(),
            org_id: "org".to_owned(),
            monthly_balance: 100_000,
            permanent_balance: 5_000,
            held_monthly: 0,
            held_permanent: 0,
            monthly_allocation: 100_000,
            cycle_start: at,
            cycle_end: at,
            version,
            updated_at: at,
            alert_thresholds: None,
            alert_state: None,
        }
    }

    fn write(user: &str, version: i64, held_monthly_delta: i64) -> WalletWrite {
        let w = wallet(user, version);
        WalletWrite {
            user_id: user.to_owned(),
            version,
            monthly_delta: -1_000,
            permanent_delta: 0,
            held_monthly_delta,
            held_permanent_delta: 0,
            cycle_changed: false,
            monthly_allocation: w.monthly_allocation,
            cycle_start: w.cycle_start,
            cycle_end: w.cycle_end,
            updated_at: w.updated_at,
            alert_thresholds: Some("[1]".to_owned()),
            alert_state: None,
        }
    }

    fn hold(id: &str, user: &str) -> holds::Model {
        let w = wallet(user, 0);
        holds::Model {
            id: id.to_owned(),
            user_id: user.to_owned(),
            monthly_part: 2_000,
            permanent_part: 0,
            cycle_start: w.cycle_start,
            status: HoldStatus::Open.as_str().to_owned(),
            created_at: w.updated_at,
            deadline: w.updated_at,
            resolved_at: None,
            idempotency_key: None,
            request_hash: None,
            journal_entry_id: None,
            details: None,
            result: None,
        }
    }

    fn claim(id: &str, user: &str) -> HoldClaim {
        HoldClaim {
            id: id.to_owned(),
            user_id: user.to_owned(),
            status: HoldStatus::Settled,
            resolved_at: wallet(user, 0).updated_at,
            result: None,
            forget_key: false,
        }
    }

    #[test]
    fn a_kept_wallet_is_as_its_write_left_it_and_taken_once() {
        let mirror = Mirror::new(true);
        let before = HashMap::from([("ana".to_owned(), wallet("ana", 4))]);
        mirror.keep(&before, &[write("ana", 4, 2_000)], [&hold("h1", "ana")]);
        let taken = mirror.take(&["ana"], &[claim("h1", "ana")]).expect("both kept");
        let w = &taken.wallets[0];
        assert_eq!((w.monthly_balance, w.held_monthly, w.version), (99_000, 2_000, 4));
        assert_eq!(w.alert_thresholds.as_deref(), Some("[1]"));
        assert_eq!(taken.claimed[0].monthly_part, 2_000);
        assert_eq!(mirror.len(), (0, 0), "taken out");
        assert!(mirror.take(&["ana"], &[]).is_none(), "once");
    }

    #[test]
    fn a_batch_takes_all_or_nothing_and_what_it_missed_is_gone_too() {
        let mirror = Mirror::new(true);
        let before = HashMap::from([("ana".to_owned(), wallet("ana", 1)), ("bo".to_owned(), wallet("bo", 1))]);
        mirror.keep(&before, &[write("ana", 1, 0), write("bo", 1, 0)], [&hold("h1", "ana")]);
        // cy is not kept: nothing is taken, and ana's and bo's are out.
        assert!(mirror.take(&["ana", "bo", "cy"], &[]).is_none());
        assert_eq!(mirror.len(), (0, 1));
        // A hold claimed for another user is not that user's.
        mirror.keep(&before, &[write("ana", 2, 0)], []);
        assert!(mirror.take(&["ana"], &[claim("h1", "bo")]).is_none());
        assert_eq!(mirror.len(), (0, 0));
    }

    #[test]
    fn an_older_write_never_replaces_a_newer_one() {
        let mirror = Mirror::new(true);
        let before = HashMap::from([("ana".to_owned(), wallet("ana", 7))]);
        mirror.keep(&before, &[write("ana", 7, 0)], []);
        mirror.keep(&before, &[write("ana", 6, 0)], []);
        assert_eq!(mirror.take(&["ana"], &[]).expect("kept").wallets[0].version, 7);
        mirror.keep(&before, &[write("ana", 7, 0)], [&hold("h1", "ana")]);
        mirror.forget(["ana"].into_iter(), ["h1"].into_iter());
        assert_eq!(mirror.len(), (0, 0));
    }

    #[test]
    fn an_announced_newer_version_drops_the_wallet_an_older_or_equal_one_does_not() {
        let mirror = Mirror::new(true);
        let before = HashMap::from([("ana".to_owned(), wallet("ana", 7))]);
        mirror.keep(&before, &[write("ana", 7, 0)], []);
        // This replica's own announcement of the write it kept, or an
        // older one arriving late: kept.
        mirror.forget_before("ana", 7);
        mirror.forget_before("ana", 3);
        assert_eq!(mirror.len(), (1, 0));
        // Another replica wrote it since.
        mirror.forget_before("ana", 8);
        assert_eq!(mirror.len(), (0, 0));
    }

    #[test]
    fn off_it_keeps_and_gives_nothing_and_switching_empties_it() {
        let mirror = Mirror::new(false);
        let before = HashMap::from([("ana".to_owned(), wallet("ana", 1))]);
        mirror.keep(&before, &[write("ana", 1, 0)], [&hold("h1", "ana")]);
        assert_eq!(mirror.len(), (0, 0));
        assert!(mirror.take(&["ana"], &[]).is_none());
        mirror.set_on(true);
        mirror.keep(&before, &[write("ana", 1, 0)], [&hold("h1", "ana")]);
        assert_eq!(mirror.len(), (1, 1));
        mirror.set_on(false);
        assert_eq!(mirror.len(), (0, 0));
        mirror.set_on(true);
        assert!(mirror.take(&["ana"], &[]).is_none(), "emptied when switched off");
    }

    #[test]
    fn it_keeps_no_more_than_its_bounds() {
        let mirror = Mirror::new(true);
        let users: Vec<String> = (0..MAX_WALLETS + 5).map(|i| format!("u{i}")).collect();
        let before: HashMap<String, wallets::Model> = users.iter().map(|u| (u.clone(), wallet(u, 1))).collect();
        let writes: Vec<WalletWrite> = users.iter().map(|u| write(u, 1, 0)).collect();
        let holds: Vec<holds::Model> = users.iter().map(|u| hold(&format!("h-{u}"), u)).collect();
        mirror.keep(&before, &writes, &holds);
        assert_eq!(mirror.len(), (MAX_WALLETS, MAX_HOLDS));
    }
}
