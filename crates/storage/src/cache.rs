//! Per-replica caches of what every request reads and what rarely changes:
//! users as last written, each user's BYOK keys (ciphertexts) that route
//! their requests, and which organizations have no spend limit (so that a
//! hold need not look for one). Money is never cached: every wallet change
//! reads the wallet under its lock, and a limit, once an organization has
//! one, is read under its lock too.
//!
//! Correct across replicas: a write of a cached thing sends `forget <what>
//! <id>` on the notify channel in its own transaction, and every
//! replica's LISTEN connection drops the entry when the write commits. With
//! PostgreSQL the caches are on only while this replica listens (off, and
//! emptied, while the LISTEN connection is down: notifications sent
//! meanwhile are lost); with SQLite one process owns the database and they
//! are always on.
//!
//! A read that raced a write cannot leave a stale entry: each fill notes
//! the invalidation epoch before reading and stores what it read only if
//! no invalidation came in between.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use quick_cache::sync::Cache;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::byok::StoredCiphertext;
use crate::entities::users;
use crate::error::StoreResult;

/// Entries per cache (users, and users' keys); the least used go first.
const CAPACITY: usize = 100_000;

/// What a `forget` notification names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    /// The user's row (name, email, team, role as last seen).
    User,
    /// The user's BYOK keys.
    Keys,
    /// Whether an organization (named instead of a user) has spend limits.
    Limits,
}

impl Cached {
    pub fn as_str(self) -> &'static str {
        match self {
            Cached::User => "user",
            Cached::Keys => "keys",
            Cached::Limits => "limits",
        }
    }

    pub fn parse(s: &str) -> Option<Cached> {
        match s {
            "user" => Some(Cached::User),
            "keys" => Some(Cached::Keys),
            "limits" => Some(Cached::Limits),
            _ => None,
        }
    }
}

/// The head of a `forget <what> <user_id>` notification.
pub const FORGET: &str = "forget";

pub(crate) struct ReplicaCache {
    users: Cache<String, Arc<users::Model>>,
    keys: Cache<String, Arc<Vec<StoredCiphertext>>>,
    /// Organizations known to have no spend limit (`false`) or some.
    limited: Cache<String, bool>,
    epoch: AtomicU64,
    on: AtomicBool,
}

/// A fill in progress: what the epoch was before the read.
#[derive(Clone, Copy)]
pub(crate) struct Ticket(u64);

impl ReplicaCache {
    pub(crate) fn new(on: bool) -> Self {
        ReplicaCache {
            users: Cache::new(CAPACITY),
            keys: Cache::new(CAPACITY),
            limited: Cache::new(CAPACITY),
            epoch: AtomicU64::new(0),
            on: AtomicBool::new(on),
        }
    }

    fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    pub(crate) fn set_on(&self, on: bool) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.on.store(on, Ordering::Release);
        self.users.clear();
        self.keys.clear();
        self.limited.clear();
    }

    pub(crate) fn forget(&self, what: Cached, id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        match what {
            Cached::User => {
                self.users.remove(id);
            }
            Cached::Keys => {
                self.keys.remove(id);
            }
            Cached::Limits => {
                self.limited.remove(id);
            }
        }
    }

    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.epoch.load(Ordering::Acquire))
    }

    fn still(&self, t: Ticket) -> bool {
        self.is_on() && self.epoch.load(Ordering::Acquire) == t.0
    }

    pub(crate) fn user(&self, user_id: &str) -> Option<Arc<users::Model>> {
        if !self.is_on() {
            return None;
        }
        self.users.get(user_id)
    }

    pub(crate) fn keep_user(&self, t: Ticket, m: users::Model) {
        if self.still(t) {
            self.users.insert(m.id.clone(), Arc::new(m));
        }
    }

    pub(crate) fn keys(&self, user_id: &str) -> Option<Arc<Vec<StoredCiphertext>>> {
        if !self.is_on() {
            return None;
        }
        self.keys.get(user_id)
    }

    /// Whether `org_id` is known to have spend limits (`None`: not known).
    pub(crate) fn limited(&self, org_id: &str) -> Option<bool> {
        if !self.is_on() {
            return None;
        }
        self.limited.get(org_id)
    }

    pub(crate) fn keep_limited(&self, t: Ticket, org_id: &str, limited: bool) {
        if self.still(t) {
            self.limited.insert(org_id.to_owned(), limited);
        }
    }

    pub(crate) fn keep_keys(&self, t: Ticket, user_id: &str, keys: Arc<Vec<StoredCiphertext>>) {
        if self.still(t) {
            self.keys.insert(user_id.to_owned(), keys);
        }
    }
}

/// Tells every replica (this one included, through its own LISTEN) to drop
/// `what` of `user_id` (an organization's id for [`Cached::Limits`]) when `conn`'s transaction commits. Nothing on SQLite
/// or without a channel.
pub(crate) async fn announce_forget(
    conn: &impl ConnectionTrait,
    channel: Option<&str>,
    what: Cached,
    user_id: &str,
) -> StoreResult<()> {
    let Some(channel) = channel else {
        return Ok(());
    };
    if conn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let payload = format!("{FORGET} {} {user_id}", what.as_str());
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [channel.into(), payload.into()],
    ))
    .await?;
    Ok(())
}
