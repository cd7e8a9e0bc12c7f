//! The store: connection, configuration, and locking a wallet for the
//! transaction every credit movement goes through (see [`crate::locked`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use creditgate_domain::{ActivityKind, Clock, Credits, PlanCatalog, Thresholds, cycle_at};
use creditgate_migrations::{Migrator, MigratorTrait};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, TransactionTrait,
};

use crate::cache::{Cached, ReplicaCache};
use crate::checkpoint::Checkpoints;
use crate::entities::{organizations, wallets};
use crate::error::{StoreError, StoreResult};
use crate::group::GroupCommit;
use crate::model::WalletChange;
use crate::outbox::{OutgoingEvent, event_types};

pub(crate) use crate::locked::{EntryExtras, LockedWallet, Txn};

/// Told about every committed wallet change, after its commit, in commit
/// order per wallet.
pub trait WalletListener: Send + Sync {
    fn wallet_changed(&self, change: &WalletChange);
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    /// Connections of the pool (PostgreSQL). SQLite always uses one writer.
    pub max_connections: u32,
    pub connect_timeout: Duration,
    /// How long a hold may stay open before the sweep releases it.
    pub hold_ttl: chrono::Duration,
    /// PostgreSQL only: a channel on which every committed wallet change is
    /// announced (`pg_notify(channel, '<version> <user_id>')`) inside its own
    /// transaction, so other replicas hear of it exactly when it commits.
    pub notify_channel: Option<String>,
    /// The balance-alert thresholds of users who have not set their own.
    pub alert_thresholds: Thresholds,
    /// Writer tasks that apply concurrent holds and settles in shared
    /// transactions (group commit, see [`crate::group`]); 0 turns it off.
    /// `None`: one (SQLite has one writer; on PostgreSQL, one writer's
    /// larger batches cost the database less per operation than several
    /// writers' smaller ones: see the README's benchmarks).
    pub ledger_writers: Option<usize>,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            max_connections: 16,
            connect_timeout: Duration::from_secs(10),
            hold_ttl: chrono::Duration::minutes(10),
            notify_channel: None,
            alert_thresholds: Thresholds::shipped(),
            ledger_writers: None,
        }
    }
}

/// The storage of creditgate. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: DatabaseConnection,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) plans: Arc<PlanCatalog>,
    pub(crate) hold_ttl: chrono::Duration,
    pub(crate) notify_channel: Option<String>,
    /// Where outgoing webhooks go (none: nothing is written to the outbox).
    pub(crate) webhooks: crate::outbox::WebhookRoutes,
    pub(crate) alert_defaults: Arc<Thresholds>,
    /// Users and BYOK keys as this replica last read them (see [`crate::cache`]).
    pub(crate) cache: Arc<ReplicaCache>,
    listener: Option<Arc<dyn WalletListener>>,
    /// The writers holds and settles go through (none in a writer's own
    /// copy of the store).
    pub(crate) group: Option<Arc<GroupCommit>>,
    ledger_writers: usize,
    /// PostgreSQL: the writers' own connections (one per writer), apart
    /// from the requests' pool (see [`Store::connect`]).
    pub(crate) writers_db: Option<DatabaseConnection>,
    /// A SQLite file's pool (its one connection), on which the ledger's
    /// batches run their own transactions (see [`crate::group`]'s `txn`).
    ledger_sqlite: Option<sea_orm::sqlx::SqlitePool>,
    /// The wallets and open holds as this process's ledger last committed
    /// them, on a SQLite file or PostgreSQL (see [`crate::group`]'s
    /// `mirror`).
    pub(crate) mirror: Option<Arc<crate::group::Mirror>>,
    /// SQLite's checkpoints, run off the request path while a copy of the
    /// store lives (see [`crate::checkpoint`]); held only to be dropped.
    _checkpoints: Option<Arc<Checkpoints>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// How the ledger writers' connections plan (PostgreSQL). Every statement
/// of a batch finds its rows by key (wallets by user, holds by id), joined
/// to the batch's values: index lookups are always the right plan. The
/// planner, costing a small table (the wallets of a young organization, the
/// holds table as it grows) or one full of dead row versions (each batch
/// updates its wallets twice), chose sequential scans and hash joins
/// instead, and kept them in the generic plans of the prepared statements:
/// a claim of 16 holds took 2 ms (a scan of every hold) where it takes
/// 0.08, and a lock of 5 to 10 wallets 0.3 ms where it takes 0.05 (see the
/// README's benchmarks).
const WRITERS_PLANNER: &str = "SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off";

impl Store {
    /// Connects (creating a SQLite file when missing). SQLite runs in WAL
    /// mode with foreign keys on, through one connection: SQLite has one
    /// writer, and one connection makes every transaction wait its turn
    /// instead of failing busy.
    pub async fn connect(options: &StoreOptions, clock: Arc<dyn Clock>, plans: Arc<PlanCatalog>) -> StoreResult<Store> {
        let mut opts = ConnectOptions::new(options.url.clone());
        opts.connect_timeout(options.connect_timeout)
            .acquire_timeout(Duration::from_secs(30))
            .sqlx_logging(false)
            .test_before_acquire(false);
        if options.url.starts_with("sqlite:") {
            opts.max_connections(1).min_connections(1).map_sqlx_sqlite_opts(|o| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                o.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(30))
                    // Checkpoints run on a connection of their own; this one
                    // only when they fall far behind.
                    .pragma("wal_autocheckpoint", crate::checkpoint::INLINE_AFTER_PAGES.to_string())
            });
        } else {
            opts.max_connections(std::cmp::max(options.max_connections, 1));
        }
        let ledger_writers = options.ledger_writers.unwrap_or(1);
        // On PostgreSQL the ledger writers have connections of their own,
        // opened when first used: a batch never waits for the requests'
        // pool, and its statements, which vary with the batch's size, are
        // prepared and kept (sqlx keeps each connection's last hundred) on
        // those connections only, not on every connection of the pool (at
        // concurrency 32 that took the server's peak memory from 42 to 49
        // MiB, see the README's benchmarks).
        let writers_db = if options.url.starts_with("sqlite:") || ledger_writers == 0 {
            None
        } else {
            let mut writers = opts.clone();
            writers
                .max_connections(u32::try_from(ledger_writers).unwrap_or(u32::MAX))
                .min_connections(0)
                .map_sqlx_postgres_pool_opts(|pool| {
                    pool.after_connect(|conn, _| {
                        Box::pin(async move {
                            sea_orm::sqlx::Executor::execute(conn, WRITERS_PLANNER)
                                .await
                                .map(|_| ())
                        })
                    })
                });
            Some(
                Database::connect(writers)
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?,
            )
        };
        let db = Database::connect(opts)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let notify_channel = options
            .notify_channel
            .clone()
            .filter(|_| db.get_database_backend() == DbBackend::Postgres);
        // One process owns a SQLite database: nothing changes behind its back.
        let cache = Arc::new(ReplicaCache::new(db.get_database_backend() == DbBackend::Sqlite));
        // `Database::connect` of a `sqlite:` URL gives sqlx's SQLite pool.
        let ledger_sqlite = (db.get_database_backend() == DbBackend::Sqlite
            && !crate::checkpoint::in_memory(&options.url))
        .then(|| db.get_sqlite_connection_pool().clone());
        // On PostgreSQL, off until this replica hears the others (see
        // `set_shared_caching`).
        let mirror = match db.get_database_backend() {
            DbBackend::Postgres => Some(Arc::new(crate::group::Mirror::new(false))),
            _ => ledger_sqlite
                .as_ref()
                .map(|_| Arc::new(crate::group::Mirror::new(true))),
        };
        let group = Arc::new(GroupCommit::new(ledger_writers));
        let checkpoints = match db.get_database_backend() {
            DbBackend::Sqlite => {
                Checkpoints::start(&options.url, options.connect_timeout, db.clone(), group.counts()).await?
            }
            _ => None,
        };
        Ok(Store {
            db,
            clock,
            plans,
            hold_ttl: options.hold_ttl,
            notify_channel,
            webhooks: crate::outbox::WebhookRoutes::default(),
            alert_defaults: Arc::new(options.alert_thresholds.clone()),
            cache,
            listener: None,
            group: Some(group),
            ledger_writers,
            writers_db,
            mirror,
            ledger_sqlite,
            _checkpoints: checkpoints,
        })
    }

    /// A transaction for a batch of the ledger (see [`crate::group`]).
    pub(crate) async fn begin_ledger(&self) -> Result<crate::group::LedgerTxn, sea_orm::DbErr> {
        match &self.ledger_sqlite {
            Some(pool) => crate::group::LedgerTxn::sqlite(pool).await,
            None if self.db.get_database_backend() == DbBackend::Postgres => {
                crate::group::LedgerTxn::postgres(self.db.get_postgres_connection_pool()).await
            }
            None => Ok(self.db.begin().await?.into()),
        }
    }

    /// Runs the pending migrations.
    pub async fn migrate(&self) -> StoreResult<()> {
        Migrator::up(&self.db, None).await?;
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        self.db.ping().await.map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Turns this replica's caches of users and BYOK keys on (while it
    /// hears every other replica's `forget` notifications) or off (while
    /// it cannot), emptying them either way. Only for PostgreSQL: SQLite's
    /// are always on.
    pub fn set_shared_caching(&self, on: bool) {
        if self.backend() == DbBackend::Postgres {
            self.cache.set_on(on);
            // The ledger's mirror too (see `group`'s `mirror`).
            if let Some(mirror) = &self.mirror {
                mirror.set_on(on);
            }
        }
    }

    /// A wallet change announced (`<version> <user_id>`, by another replica
    /// or this one): the ledger's mirror drops what it kept of the wallet
    /// if older, so that the next batch of it reads it (see `group`'s
    /// `mirror`).
    pub fn wallet_changed(&self, user_id: &str, version: i64) {
        if let Some(mirror) = &self.mirror {
            mirror.forget_before(user_id, version);
        }
    }

    /// Drops what this replica cached of `user_id` (a `forget`
    /// notification: another replica, or this one, wrote it).
    pub fn forget_cached(&self, what: Cached, user_id: &str) {
        self.cache.forget(what, user_id);
    }

    pub fn with_listener(mut self, listener: Arc<dyn WalletListener>) -> Self {
        self.listener = Some(listener);
        self.new_writers();
        self
    }

    /// Gives this (changed) copy of the store writers of its own, which
    /// publish to its listener and write its webhooks.
    pub(crate) fn new_writers(&mut self) {
        let counts = self.group.as_ref().map(|g| g.counts()).unwrap_or_default();
        self.group = Some(Arc::new(GroupCommit::counting_in(self.ledger_writers, counts)));
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    pub fn plans(&self) -> &PlanCatalog {
        &self.plans
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The underlying connection, for checks that read raw rows.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    pub(crate) fn publish(&self, change: &WalletChange) {
        crate::metrics::count_charges(change);
        if let Some(l) = &self.listener {
            l.wallet_changed(change);
        }
    }

    pub(crate) fn allocation_for(&self, plan_id: &str) -> Credits {
        match self.plans.get(plan_id) {
            Some(p) => p.monthly_credits_per_user,
            None => {
                tracing::warn!(
                    plan_id,
                    "organization is on a plan that is no longer configured; using the default plan"
                );
                self.plans.default_plan().monthly_credits_per_user
            }
        }
    }

    /// Locks one wallet for a change: bumps its version (which takes the row
    /// lock on PostgreSQL and the write lock on SQLite) and reads it, then
    /// closes its billing cycle if that has ended. `None` when there is no
    /// such wallet, or (with `only_if_cycle_ended`) when its cycle has not
    /// ended, which lets concurrent sweeps claim each wallet once.
    pub(crate) async fn lock_wallet(
        &self,
        user_id: &str,
        only_if_cycle_ended: bool,
    ) -> StoreResult<Option<LockedWallet>> {
        self.lock_wallet_on(&self.db, user_id, only_if_cycle_ended).await
    }

    /// [`Store::lock_wallet`] inside `parent`: a savepoint when `parent` is
    /// itself a transaction, whose changes commit with it.
    pub(crate) async fn lock_wallet_on<P: TransactionTrait<Transaction = DatabaseTransaction>>(
        &self,
        parent: &P,
        user_id: &str,
        only_if_cycle_ended: bool,
    ) -> StoreResult<Option<LockedWallet>> {
        let txn = Txn::Own(parent.begin().await?.into());
        self.lock_wallet_in(txn, user_id, only_if_cycle_ended).await
    }

    /// [`Store::lock_wallet`] in `txn`: its own transaction, or a batch's
    /// (group commit), which the batch commits or rolls back as a whole.
    pub(crate) async fn lock_wallet_in(
        &self,
        txn: Txn,
        user_id: &str,
        only_if_cycle_ended: bool,
    ) -> StoreResult<Option<LockedWallet>> {
        // Changed outside the ledger's batches: the mirror no longer has
        // it (see `group`'s `mirror`).
        if let Some(mirror) = &self.mirror {
            mirror.forget(std::iter::once(user_id), std::iter::empty());
        }
        let now = self.clock.now();
        let mut update = wallets::Entity::update_many()
            .col_expr(wallets::Column::Version, Expr::col(wallets::Column::Version).add(1))
            .filter(wallets::Column::UserId.eq(user_id));
        if only_if_cycle_ended {
            update = update.filter(wallets::Column::CycleEnd.lte(now));
        }
        let mut rows = update.exec_with_returning(&*txn).await?;
        let Some(row) = rows.pop() else {
            txn.rollback().await?;
            return Ok(None);
        };
        self.locked_from(txn, row).await.map(Some)
    }

    /// The wallet of `row`, just locked in `txn`, with its billing cycle
    /// closed if that has ended.
    pub(crate) async fn locked_from(&self, txn: Txn, row: wallets::Model) -> StoreResult<LockedWallet> {
        self.locked_at(txn, row, self.change_time()).await
    }

    /// The time a change made now records: to the microsecond, which both
    /// databases keep exactly, so that what a change writes (its entries'
    /// times) is what it answers with, without reading it back.
    pub(crate) fn change_time(&self) -> DateTime<Utc> {
        self.clock.now().trunc_subsecs(6)
    }

    /// [`Store::locked_from`], the change made at `now` (a
    /// [`Store::change_time`]).
    pub(crate) async fn locked_at(
        &self,
        txn: Txn,
        row: wallets::Model,
        now: DateTime<Utc>,
    ) -> StoreResult<LockedWallet> {
        let user_id = row.user_id.clone();
        let mut locked = LockedWallet::new(txn, &row, now, self);
        if locked.state.cycle_ended(now) {
            let org = organizations::Entity::find_by_id(locked.org_id.clone())
                .one(&*locked.txn)
                .await?
                .ok_or_else(|| StoreError::corrupt(format!("wallet of `{user_id}` has no organization")))?;
            let current = cycle_at(org.billing_anchor, now);
            let ended = locked.state.cycle;
            let postings = locked.state.close_cycle(current, self.allocation_for(&org.plan_id));
            if !postings.is_empty() || locked.state.cycle != ended {
                let expired: i64 = postings
                    .iter()
                    .filter(|p| p.kind == ActivityKind::MonthlyExpiry)
                    .map(|p| -p.monthly_delta.millis())
                    .sum();
                // Written with the close: raised once per closed cycle, and
                // not at all when the change that closed it rolls back.
                let event = OutgoingEvent::new(
                    event_types::CYCLE_RESET,
                    serde_json::json!({
                        "userId": locked.user_id,
                        "orgId": locked.org_id,
                        "previousCycleStart": ended.start,
                        "previousCycleEnd": ended.end,
                        "cycleStart": locked.state.cycle.start,
                        "cycleEnd": locked.state.cycle.end,
                        "expiredCredits": Credits::from_millis(expired).to_string(),
                        "monthlyAllocation": locked.state.monthly_allocation.to_string(),
                        "monthlyBalance": locked.state.monthly.to_string(),
                        "available": locked.state.available().to_string(),
                    }),
                );
                if let Err(e) = crate::outbox::enqueue(&*locked.txn, &self.webhooks, &event, now).await {
                    locked.rollback().await?;
                    return Err(e);
                }
            }
            for p in postings {
                locked.push(p, EntryExtras::default());
            }
        }
        Ok(locked)
    }

    pub(crate) async fn lock_existing(&self, user_id: &str) -> StoreResult<LockedWallet> {
        self.lock_wallet(user_id, false)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "user",
                id: user_id.to_owned(),
            })
    }
}
