//! A wallet locked inside an open transaction (its own, or a batch's), with
//! the changes to write: the new balances as guarded deltas, the journal
//! entries with the balance after each, the balance alerts the change
//! crosses, and the announcement to other replicas.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use creditgate_domain::{Credits, Posting, Thresholds, WalletState};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::alerts::StoredAlerts;
use crate::entities::{journal_entries, wallets};
use crate::error::{StoreError, StoreResult};
use crate::group::{Batch, LedgerTxn, WalletWrite};
use crate::model::{UsageDetails, Wallet, WalletChange};
use crate::store::Store;

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
    Own(LedgerTxn),
    /// A batch's (see [`crate::group`]): the batch writes the new holds and
    /// the journal entries of all its wallets, each kind with one
    /// statement, then commits, or rolls back all of it on any error.
    Shared(Arc<Batch>),
}

impl std::ops::Deref for Txn {
    type Target = LedgerTxn;

    fn deref(&self) -> &LedgerTxn {
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
    /// The wallet of `row`, just locked in `txn` at `now`.
    pub(crate) fn new(txn: Txn, row: &wallets::Model, now: DateTime<Utc>, store: &Store) -> Self {
        let before = Wallet::from(row).state();
        LockedWallet {
            txn,
            user_id: row.user_id.clone(),
            org_id: row.org_id.clone(),
            version: row.version,
            before: before.clone(),
            state: before,
            now,
            pending: Vec::new(),
            alerts: StoredAlerts::of(row),
            alerts_before: StoredAlerts::of(row),
            alert_defaults: store.alert_defaults.clone(),
            webhooks: store.webhooks.clone(),
        }
    }

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
    /// [`crate::alerts`]), announces the change on `channel` (PostgreSQL) with
    /// the wallet's write (in a batch, the batch's write of its wallets), then commits (releases the savepoint, when
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
            alerts_before: _,
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
        let write = WalletWrite {
            user_id: user_id.clone(),
            version,
            monthly_delta: delta(before.monthly, state.monthly),
            permanent_delta: delta(before.permanent, state.permanent),
            held_monthly_delta: delta(before.held_monthly, state.held_monthly),
            held_permanent_delta: delta(before.held_permanent, state.held_permanent),
            cycle_changed: state.cycle != before.cycle || state.monthly_allocation != before.monthly_allocation,
            monthly_allocation: state.monthly_allocation.millis(),
            cycle_start: state.cycle.start,
            cycle_end: state.cycle.end,
            updated_at: now,
            alert_thresholds: alerts.thresholds.clone(),
            alert_state: alerts.state.clone(),
        };
        match &txn {
            // Written with the batch's other wallets, in one statement.
            Txn::Shared(batch) => batch.defer_wallet(write),
            Txn::Own(own) => {
                if let Err(e) = crate::group::write_wallets(own, std::slice::from_ref(&write), channel).await {
                    txn.rollback().await?;
                    return Err(e);
                }
            }
        }
        let mut running = before.total().millis();
        let mut rows = Vec::with_capacity(pending.len());
        for (posting, extras) in pending {
            running += posting.monthly_delta.millis() + posting.permanent_delta.millis();
            let usage = extras.usage.unwrap_or_default();
            rows.push(journal_entries::Model {
                // Numbered by the database when written.
                id: 0,
                user_id: user_id.clone(),
                org_id: org_id.clone(),
                at: now,
                kind: posting.kind.as_str().to_owned(),
                feature: usage.feature.map(|f| f.as_str().to_owned()),
                billing_mode: usage.billing_mode.map(|f| f.as_str().to_owned()),
                status: usage.status.map(|f| f.as_str().to_owned()),
                provider: usage.provider,
                model: usage.model,
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                credits_consumed: posting.credits_consumed.millis(),
                credits_avoided: usage.credits_avoided.millis(),
                monthly_delta: posting.monthly_delta.millis(),
                permanent_delta: posting.permanent_delta.millis(),
                balance_after: running,
                pricing_version: usage.pricing_version,
                idempotency_key: extras.idempotency_key,
                request_hash: extras.request_hash,
                hold_id: extras.hold_id,
                reference: extras.reference,
                description: usage.description.or(posting.description),
                wallet_version: version,
                cached_input_tokens: usage.cached_input_tokens,
                cache_write_tokens: usage.cache_write_tokens,
                reasoning_tokens: usage.reasoning_tokens,
                actor: usage.actor,
            });
        }
        let entries = match &txn {
            // Written with the batch's other entries, in one statement (the
            // batch hands them out once written).
            Txn::Shared(batch) => {
                batch.defer_entries(rows);
                Vec::new()
            }
            Txn::Own(own) => match crate::group::insert_entries(own, rows).await {
                Ok(written) => written,
                Err(e) => {
                    txn.rollback().await?;
                    return Err(e);
                }
            },
        };
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
            if let Err(e) = crate::outbox::enqueue(&*txn, &webhooks, &alert.webhook_event(), now).await {
                txn.rollback().await?;
                return Err(e);
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
