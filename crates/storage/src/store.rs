//! The store: connection, configuration and the locked-wallet transaction
//! every credit movement goes through.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use creditgate_domain::{ActivityKind, Clock, Credits, PlanCatalog, Posting, Thresholds, WalletState, cycle_at};
use creditgate_migrations::{Migrator, MigratorTrait};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    EntityTrait, QueryFilter, Statement, TransactionTrait,
};

use crate::alerts::StoredAlerts;
use crate::cache::{Cached, ReplicaCache};
use crate::entities::{journal_entries, organizations, wallets};
use crate::error::{StoreError, StoreResult};
use crate::group::{Batch, GroupCommit};
use crate::model::{Entry, UsageDetails, Wallet, WalletChange};
use crate::outbox::{OutgoingEvent, event_types};

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
    /// `None`: one on SQLite (it has one writer), four on PostgreSQL.
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
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

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
            });
        } else {
            opts.max_connections(std::cmp::max(options.max_connections, 1));
        }
        let db = Database::connect(opts)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let notify_channel = options
            .notify_channel
            .clone()
            .filter(|_| db.get_database_backend() == DbBackend::Postgres);
        // One process owns a SQLite database: nothing changes behind its back.
        let cache = Arc::new(ReplicaCache::new(db.get_database_backend() == DbBackend::Sqlite));
        let ledger_writers = options.ledger_writers.unwrap_or(match db.get_database_backend() {
            DbBackend::Sqlite => 1,
            _ => 4,
        });
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
            group: Some(Arc::new(GroupCommit::new(ledger_writers))),
            ledger_writers,
        })
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
        self.group = Some(Arc::new(GroupCommit::new(self.ledger_writers)));
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
        let txn = Txn::Own(parent.begin().await?);
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

    /// Locks the wallets of `user_ids` in a batch's transaction with one
    /// statement (bumping their versions, as [`Store::lock_wallet`] does);
    /// the rows as locked. PostgreSQL locks them in the index's order,
    /// which is the users' order.
    pub(crate) async fn lock_wallets_in(
        &self,
        batch: &Batch,
        user_ids: impl IntoIterator<Item = &str>,
    ) -> StoreResult<Vec<wallets::Model>> {
        Ok(wallets::Entity::update_many()
            .col_expr(wallets::Column::Version, Expr::col(wallets::Column::Version).add(1))
            .filter(wallets::Column::UserId.is_in(user_ids))
            .exec_with_returning(&batch.txn)
            .await?)
    }

    /// The wallet of `row`, just locked in `txn`, with its billing cycle
    /// closed if that has ended.
    pub(crate) async fn locked_from(&self, txn: Txn, row: wallets::Model) -> StoreResult<LockedWallet> {
        let now = self.clock.now();
        let user_id = row.user_id.clone();
        let before = Wallet::from(&row).state();
        let mut locked = LockedWallet {
            txn,
            user_id: row.user_id.clone(),
            org_id: row.org_id.clone(),
            version: row.version,
            before: before.clone(),
            state: before,
            now,
            pending: Vec::new(),
            alerts: StoredAlerts::of(&row),
            alerts_before: StoredAlerts::of(&row),
            alert_defaults: self.alert_defaults.clone(),
            webhooks: self.webhooks.clone(),
        };
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
                if let Err(e) = crate::outbox::enqueue(&locked.txn, &self.webhooks, &event, now).await {
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

/// What an entry records besides its posting.
#[derive(Debug, Clone, Default)]
pub(crate) struct EntryExtras {
    pub usage: Option<UsageDetails>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub hold_id: Option<String>,
    pub reference: Option<String>,
}

/// The transaction a locked wallet is changed in.
pub(crate) enum Txn {
    /// Its own (or a savepoint of its caller's): committed with the change.
    Own(DatabaseTransaction),
    /// A batch's (see [`crate::group`]): the batch writes the new holds and
    /// the journal entries of all its wallets, each kind with one
    /// statement, then commits, or rolls back all of it on any error.
    Shared(Arc<Batch>),
}

impl std::ops::Deref for Txn {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        match self {
            Txn::Own(t) => t,
            Txn::Shared(b) => &b.txn,
        }
    }
}

impl Txn {
    /// Gives up what this transaction wrote (a shared one: the batch's
    /// owner does, once the error reaches it).
    pub async fn rollback(self) -> StoreResult<()> {
        if let Txn::Own(t) = self {
            t.rollback().await?;
        }
        Ok(())
    }

    async fn commit(self) -> StoreResult<()> {
        if let Txn::Own(t) = self {
            t.commit().await?;
        }
        Ok(())
    }
}

/// A wallet locked inside an open transaction, with the changes to write.
pub(crate) struct LockedWallet {
    pub txn: Txn,
    pub user_id: String,
    pub org_id: String,
    /// The version after the lock's bump.
    pub version: i64,
    pub before: WalletState,
    pub state: WalletState,
    pub now: DateTime<Utc>,
    pending: Vec<(Posting, EntryExtras)>,
    /// The balance-alert settings, as the change will leave them.
    pub alerts: StoredAlerts,
    alerts_before: StoredAlerts,
    alert_defaults: Arc<Thresholds>,
    /// Where the alerts this change raises are also sent as webhooks.
    webhooks: crate::outbox::WebhookRoutes,
}

impl LockedWallet {
    /// Adds an entry to write; its index among the change's entries.
    pub fn push(&mut self, posting: Posting, extras: EntryExtras) -> usize {
        self.pending.push((posting, extras));
        self.pending.len() - 1
    }

    /// Whether an entry of hold `hold_id` waits to be written with this change.
    pub fn pending_entry_of(&self, hold_id: &str) -> bool {
        self.pending.iter().any(|(_, e)| e.hold_id.as_deref() == Some(hold_id))
    }

    pub fn has_changes(&self) -> bool {
        !self.pending.is_empty() || self.state != self.before || self.alerts != self.alerts_before
    }

    /// Commits and tells the listener.
    pub async fn commit_and_publish(self, store: &Store) -> StoreResult<WalletChange> {
        let change = self.commit_notifying(store.notify_channel.as_deref()).await?;
        store.publish(&change);
        Ok(change)
    }

    /// Writes the new balances (as deltas, guarded by the version this
    /// transaction holds) and the entries, each with the balance right after
    /// it, raises the balance alerts the change crosses (one call into
    /// [`crate::alerts`]), announces the change on `channel` (PostgreSQL) in
    /// the same transaction, then commits (releases the savepoint, when
    /// nested: the caller publishes after the outer commit).
    pub async fn commit_notifying(self, channel: Option<&str>) -> StoreResult<WalletChange> {
        let LockedWallet {
            txn,
            user_id,
            org_id,
            version,
            before,
            state,
            now,
            pending,
            mut alerts,
            alerts_before,
            alert_defaults,
            webhooks,
        } = self;
        if let Err(broken) = state.check() {
            txn.rollback().await?;
            return Err(StoreError::corrupt(broken));
        }
        let change = crate::alerts::AlertChange {
            user_id: &user_id,
            // Version 1 opens the wallet: nothing was crossed to get there.
            before: (version > 1).then(|| before.available()),
            after: state.available(),
            defaults: &alert_defaults,
        };
        let raised = match crate::alerts::evaluate_change(&change, &mut alerts) {
            Ok(a) => a,
            Err(e) => {
                txn.rollback().await?;
                return Err(e);
            }
        };
        let delta = |a: Credits, b: Credits| b.millis() - a.millis();
        let mut update = wallets::Entity::update_many();
        if alerts != alerts_before {
            update = update
                .col_expr(wallets::Column::AlertThresholds, Expr::value(alerts.thresholds))
                .col_expr(wallets::Column::AlertState, Expr::value(alerts.state));
        }
        let updated = update
            .col_expr(
                wallets::Column::MonthlyBalance,
                Expr::col(wallets::Column::MonthlyBalance).add(delta(before.monthly, state.monthly)),
            )
            .col_expr(
                wallets::Column::PermanentBalance,
                Expr::col(wallets::Column::PermanentBalance).add(delta(before.permanent, state.permanent)),
            )
            .col_expr(
                wallets::Column::HeldMonthly,
                Expr::col(wallets::Column::HeldMonthly).add(delta(before.held_monthly, state.held_monthly)),
            )
            .col_expr(
                wallets::Column::HeldPermanent,
                Expr::col(wallets::Column::HeldPermanent).add(delta(before.held_permanent, state.held_permanent)),
            )
            .col_expr(
                wallets::Column::MonthlyAllocation,
                Expr::value(state.monthly_allocation.millis()),
            )
            .col_expr(wallets::Column::CycleStart, Expr::value(state.cycle.start))
            .col_expr(wallets::Column::CycleEnd, Expr::value(state.cycle.end))
            .col_expr(wallets::Column::UpdatedAt, Expr::value(now))
            .filter(wallets::Column::UserId.eq(user_id.as_str()))
            .filter(wallets::Column::Version.eq(version))
            .exec(&*txn)
            .await?;
        if updated.rows_affected != 1 {
            txn.rollback().await?;
            return Err(StoreError::corrupt(format!(
                "wallet of `{user_id}` changed under its lock"
            )));
        }
        let mut running = before.total().millis();
        let mut entries = Vec::with_capacity(pending.len());
        for (posting, extras) in pending {
            running += posting.monthly_delta.millis() + posting.permanent_delta.millis();
            let usage = extras.usage.unwrap_or_default();
            let row = journal_entries::ActiveModel {
                id: NotSet,
                user_id: Set(user_id.clone()),
                org_id: Set(org_id.clone()),
                at: Set(now),
                kind: Set(posting.kind.as_str().to_owned()),
                feature: Set(usage.feature.map(|f| f.as_str().to_owned())),
                billing_mode: Set(usage.billing_mode.map(|f| f.as_str().to_owned())),
                status: Set(usage.status.map(|f| f.as_str().to_owned())),
                provider: Set(usage.provider),
                model: Set(usage.model),
                input_tokens: Set(usage.input_tokens),
                output_tokens: Set(usage.output_tokens),
                credits_consumed: Set(posting.credits_consumed.millis()),
                credits_avoided: Set(usage.credits_avoided.millis()),
                monthly_delta: Set(posting.monthly_delta.millis()),
                permanent_delta: Set(posting.permanent_delta.millis()),
                balance_after: Set(running),
                pricing_version: Set(usage.pricing_version),
                idempotency_key: Set(extras.idempotency_key),
                request_hash: Set(extras.request_hash),
                hold_id: Set(extras.hold_id),
                reference: Set(extras.reference),
                description: Set(usage.description.or(posting.description)),
                wallet_version: Set(version),
                cached_input_tokens: Set(usage.cached_input_tokens),
                cache_write_tokens: Set(usage.cache_write_tokens),
                reasoning_tokens: Set(usage.reasoning_tokens),
                actor: Set(usage.actor),
            };
            if let Txn::Shared(batch) = &txn {
                // Written with the batch's other entries, in one statement.
                batch.defer_entry(row);
                continue;
            }
            let inserted = journal_entries::Entity::insert(row).exec_with_returning(&*txn).await;
            let inserted = match inserted {
                Ok(m) => m,
                Err(e) => {
                    txn.rollback().await?;
                    return Err(e.into());
                }
            };
            entries.push(Entry::try_from(inserted)?);
        }
        if running != state.total().millis() {
            txn.rollback().await?;
            return Err(StoreError::corrupt(format!(
                "entries of `{user_id}` do not add up to the new balance"
            )));
        }
        let alerts = match crate::alerts::record_alerts(&*txn, &user_id, &org_id, version, now, &raised).await {
            Ok(a) => a,
            Err(e) => {
                txn.rollback().await?;
                return Err(e);
            }
        };
        for alert in &alerts {
            // Delivered if and only if the change that raised it commits.
            if let Err(e) = crate::outbox::enqueue(&txn, &webhooks, &alert.webhook_event(), now).await {
                txn.rollback().await?;
                return Err(e);
            }
        }
        // A batch announces its changes together, before its commit.
        if let (Some(channel), Txn::Own(_)) = (channel, &txn) {
            let payload = format!("{version} {user_id}");
            let notify = Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_notify($1, $2)",
                [channel.into(), payload.into()],
            );
            if let Err(e) = txn.execute_raw(notify).await {
                txn.rollback().await?;
                return Err(e.into());
            }
        }
        txn.commit().await?;
        Ok(WalletChange {
            wallet: Wallet::from_state(&user_id, &org_id, &state, version),
            entries,
            alerts,
        })
    }

    /// Gives up: nothing is written. In a batch's transaction, the lock's
    /// version bump is undone (no one else saw it: the wallet is still
    /// locked) and the batch goes on.
    pub async fn rollback(self) -> StoreResult<()> {
        if let Txn::Shared(batch) = &self.txn {
            wallets::Entity::update_many()
                .col_expr(wallets::Column::Version, Expr::col(wallets::Column::Version).sub(1))
                .filter(wallets::Column::UserId.eq(self.user_id.as_str()))
                .filter(wallets::Column::Version.eq(self.version))
                .exec(&batch.txn)
                .await?;
        }
        self.txn.rollback().await
    }

    /// Commits when something changed (a closed cycle, say), else rolls back.
    pub async fn finish(self, store: &Store) -> StoreResult<Wallet> {
        if self.has_changes() {
            Ok(self.commit_and_publish(store).await?.wallet)
        } else {
            let wallet = Wallet::from_state(&self.user_id, &self.org_id, &self.state, self.version - 1);
            self.rollback().await?;
            Ok(wallet)
        }
    }
}
