//! The hub: hears every committed wallet change of this replica (it is the
//! store's [`WalletListener`]) and, with LISTEN/NOTIFY, of the others; fans
//! each one out to the subscribers of its user on this replica.
//!
//! Changes are sharded by user onto a few worker tasks, so one user's
//! changes are handled in order, one at a time, and reads of the database
//! (a change made on another replica, a gap, a resync) happen once per
//! change, never once per subscriber. Each user with subscribers has a
//! bounded broadcast channel; a subscriber that falls behind it skips to the
//! current state instead of queueing. The listener itself never blocks: the
//! commit path only looks the user up and queues the change.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use creditgate_storage::{BalanceAlert, Entry, Store, StoreError, Wallet, WalletChange, WalletListener};
use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::RealtimeConfig;
use crate::limits::{self, ConnectionPermit, Limits, UserPermit};

/// Entries read at most to catch up one user (a gap, a lagging subscriber,
/// a resync after the LISTEN connection came back).
pub(crate) const CATCH_UP_ENTRIES: u64 = 500;

/// Why a subscription could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    #[error("user `{0}` has no wallet")]
    NoWallet(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One committed change (or several, caught up at once) as subscribers see
/// it: the wallet at its version and the entries and alerts of the versions
/// `(since, wallet.version]`.
#[derive(Debug, Clone)]
pub struct Event {
    pub wallet: Wallet,
    /// The version after which this event carries every entry and alert.
    /// Usually the version of its user's previous event; later when the hub
    /// did not know what its user's subscribers had (a change heard before
    /// the first subscriber read its starting point): a subscriber that had
    /// less reads the rest itself.
    pub since: i64,
    pub entries: Vec<Entry>,
    /// The balance alerts of the versions `(since, wallet.version]`.
    pub alerts: Vec<BalanceAlert>,
    /// Re-sent after this replica lost and regained its LISTEN connection:
    /// delivered even when a subscriber already has this version.
    pub resync: bool,
}

enum Work {
    /// Committed on this replica: the state is in hand.
    Committed(WalletChange),
    /// Announced by NOTIFY (maybe from this replica: then already seen).
    Notified { user_id: String, version: i64 },
    /// Re-read every user with subscribers (when LISTEN starts: what changed
    /// meanwhile; with `resend`, after it reconnects: every current wallet).
    Resync { resend: bool },
}

struct Slot {
    tx: broadcast::Sender<Arc<Event>>,
    /// The newest version sent to this user's subscribers.
    last: Option<i64>,
}

struct Shard {
    users: Mutex<HashMap<String, Slot>>,
    work: mpsc::UnboundedSender<Work>,
}

impl Shard {
    fn users(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `None`: nobody here listens to this user. `Some(last)`: the newest
    /// version sent to them.
    fn last(&self, user_id: &str) -> Option<Option<i64>> {
        self.users().get(user_id).map(|s| s.last)
    }

    fn publish(&self, event: Event) {
        let mut users = self.users();
        let Some(slot) = users.get_mut(&event.wallet.user_id) else {
            return;
        };
        let version = event.wallet.version;
        if let Some(last) = slot.last
            && (version < last || (version == last && !event.resync))
        {
            return;
        }
        slot.last = Some(version);
        // No receiver left is fine: the slot goes with the last one.
        let _ = slot.tx.send(Arc::new(event));
    }
}

/// The part the store calls after each commit.
pub struct Fanout {
    shards: Vec<Shard>,
    hasher: std::collections::hash_map::RandomState,
    buffer: usize,
    /// Subscriptions that have read their starting point.
    live: AtomicUsize,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout").field("shards", &self.shards.len()).finish()
    }
}

impl Fanout {
    fn shard_of(&self, user_id: &str) -> &Shard {
        let mut h = self.hasher.build_hasher();
        h.write(user_id.as_bytes());
        let n = self.shards.len() as u64;
        let i = usize::try_from(h.finish() % n.max(1)).unwrap_or(0);
        &self.shards[i]
    }

    fn route(&self, user_id: &str, work: Work) {
        let _ = self.shard_of(user_id).work.send(work);
    }

    fn resync_all(&self, resend: bool) {
        for shard in &self.shards {
            let _ = shard.work.send(Work::Resync { resend });
        }
    }

    pub(crate) fn subscribe(self: &Arc<Self>, user_id: &str) -> Subscriber {
        let shard = self.shard_of(user_id);
        let mut users = shard.users();
        let slot = users.entry(user_id.to_owned()).or_insert_with(|| Slot {
            tx: broadcast::channel(self.buffer).0,
            last: None,
        });
        Subscriber {
            rx: Some(slot.tx.subscribe()),
            user_id: user_id.to_owned(),
            fanout: self.clone(),
            live: false,
        }
    }

    /// Records the version a subscriber started from (when nothing was sent
    /// to its user yet); from now on it is live.
    pub(crate) fn seed(&self, sub: &mut Subscriber, version: i64) {
        if let Some(slot) = self.shard_of(&sub.user_id).users().get_mut(&sub.user_id)
            && slot.last.is_none()
        {
            slot.last = Some(version);
        }
        if !sub.live {
            sub.live = true;
            self.live.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The newest version sent to `user_id`'s subscribers here (see
    /// [`Shard::last`]).
    #[cfg(test)]
    pub(crate) fn last(&self, user_id: &str) -> Option<Option<i64>> {
        self.shard_of(user_id).last(user_id)
    }

    /// Users with subscribers on this replica.
    pub fn subscribed_users(&self) -> usize {
        self.shards.iter().map(|s| s.users().len()).sum()
    }
}

impl WalletListener for Fanout {
    fn wallet_changed(&self, change: &WalletChange) {
        let user_id = &change.wallet.user_id;
        let shard = self.shard_of(user_id);
        if !shard.users().contains_key(user_id) {
            return;
        }
        let _ = shard.work.send(Work::Committed(change.clone()));
    }
}

/// A receiver of one user's events; gives up the user's slot with the last one.
pub(crate) struct Subscriber {
    rx: Option<broadcast::Receiver<Arc<Event>>>,
    pub(crate) user_id: String,
    fanout: Arc<Fanout>,
    live: bool,
}

impl Subscriber {
    pub(crate) async fn recv(&mut self) -> Result<Arc<Event>, broadcast::error::RecvError> {
        match &mut self.rx {
            Some(rx) => rx.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if self.live {
            self.fanout.live.fetch_sub(1, Ordering::AcqRel);
        }
        drop(self.rx.take());
        let shard = self.fanout.shard_of(&self.user_id);
        let mut users = shard.users();
        if users.get(&self.user_id).is_some_and(|s| s.tx.receiver_count() == 0) {
            users.remove(&self.user_id);
        }
    }
}

async fn run_shard(
    index: usize,
    fanout: Arc<Fanout>,
    store: Store,
    mut work: mpsc::UnboundedReceiver<Work>,
    cancel: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return,
            next = work.recv() => next,
        };
        let Some(next) = next else { return };
        let shard = &fanout.shards[index];
        if let Err(e) = handle(shard, &store, next).await {
            tracing::warn!(error = %e, "real-time fan-out could not read a wallet change");
        }
    }
}

async fn handle(shard: &Shard, store: &Store, work: Work) -> Result<(), StoreError> {
    match work {
        Work::Committed(change) => {
            let WalletChange {
                wallet,
                entries,
                alerts,
            } = change;
            let version = wallet.version;
            let last = match shard.last(&wallet.user_id) {
                None => return Ok(()),
                Some(Some(last)) if version <= last => return Ok(()),
                Some(last) => last,
            };
            let (since, entries, alerts) = match last {
                // A change in between is not here yet (it commits on
                // another replica, or its publisher is slower): read it, so
                // its entries and alerts are not lost and nothing older
                // comes later.
                Some(last) if version > last + 1 => {
                    let mut missed = store
                        .entries_of_versions(&wallet.user_id, last, version - 1, CATCH_UP_ENTRIES)
                        .await?;
                    missed.extend(entries);
                    let mut missed_alerts = store
                        .alerts_of_versions(&wallet.user_id, last, version - 1, CATCH_UP_ENTRIES)
                        .await?;
                    missed_alerts.extend(alerts);
                    (last, missed, missed_alerts)
                }
                _ => (version - 1, entries, alerts),
            };
            shard.publish(Event {
                wallet,
                since,
                entries,
                alerts,
                resync: false,
            });
        }
        Work::Notified { user_id, version } => {
            let last = match shard.last(&user_id) {
                None => return Ok(()),
                Some(Some(last)) if version <= last => return Ok(()),
                Some(last) => last,
            };
            if let Some(change) = store.committed_change(&user_id, last, CATCH_UP_ENTRIES).await? {
                shard.publish(Event {
                    since: last.unwrap_or(change.wallet.version - 1),
                    wallet: change.wallet,
                    entries: change.entries,
                    alerts: change.alerts,
                    resync: false,
                });
            }
        }
        Work::Resync { resend } => {
            let users: Vec<(String, Option<i64>)> = shard.users().iter().map(|(u, s)| (u.clone(), s.last)).collect();
            if users.is_empty() {
                return Ok(());
            }
            let ids: Vec<String> = users.iter().map(|(u, _)| u.clone()).collect();
            let last: HashMap<String, Option<i64>> = users.into_iter().collect();
            for wallet in store.committed_wallets(&ids).await? {
                let after = last.get(&wallet.user_id).copied().flatten();
                let (since, entries, alerts) = match after {
                    Some(after) if wallet.version > after => (
                        after,
                        store
                            .entries_of_versions(&wallet.user_id, after, wallet.version, CATCH_UP_ENTRIES)
                            .await?,
                        store
                            .alerts_of_versions(&wallet.user_id, after, wallet.version, CATCH_UP_ENTRIES)
                            .await?,
                    ),
                    _ => (wallet.version, Vec::new(), Vec::new()),
                };
                shard.publish(Event {
                    wallet,
                    since,
                    entries,
                    alerts,
                    resync: resend,
                });
            }
        }
    }
    Ok(())
}

pub(crate) struct HubInner {
    pub(crate) store: Store,
    pub(crate) fanout: Arc<Fanout>,
    config: RealtimeConfig,
    limits: Arc<Limits>,
    cancel: CancellationToken,
    _stop: DropGuard,
}

/// Real-time wallet events of this replica. Cheap to clone; its tasks stop
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.inner.limits.open_connections())
            .field("subscribed_users", &self.inner.fanout.subscribed_users())
            .finish()
    }
}

impl Hub {
    /// Starts the hub on a connected store: returns the store to use from
    /// now on (it tells the hub of every commit) and the hub. With
    /// cross-replica fan-out on (PostgreSQL), also starts the LISTEN task on
    /// `config.listen_url` (default `database_url`), with its heartbeat sent
    /// through the store's pool; the store must then have been connected with
    /// `StoreOptions::notify_channel = config.notify_channel_for(url)`.
    /// Must be called inside a tokio runtime.
    pub fn start(store: Store, config: &RealtimeConfig, database_url: &str) -> (Store, Hub) {
        let shards_n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 16);
        let mut receivers = Vec::with_capacity(shards_n);
        let mut shards = Vec::with_capacity(shards_n);
        for _ in 0..shards_n {
            let (tx, rx) = mpsc::unbounded_channel();
            receivers.push(rx);
            shards.push(Shard {
                users: Mutex::new(HashMap::new()),
                work: tx,
            });
        }
        let fanout = Arc::new(Fanout {
            shards,
            hasher: std::collections::hash_map::RandomState::new(),
            buffer: config.buffer.max(1),
            live: AtomicUsize::new(0),
        });
        let store = store.with_listener(fanout.clone());
        let cancel = CancellationToken::new();
        for (i, rx) in receivers.into_iter().enumerate() {
            tokio::spawn(run_shard(i, fanout.clone(), store.clone(), rx, cancel.child_token()));
        }
        if config.cross_replica_for(database_url) {
            let settings = crate::pg::ListenSettings {
                url: config.listen_url_for(database_url).to_owned(),
                channel: config.notify_channel.clone(),
                heartbeat: Duration::from_secs(config.listen_heartbeat_secs.max(1)),
                heartbeat_timeout: Duration::from_secs(config.listen_heartbeat_timeout_secs.max(1)),
            };
            tokio::spawn(crate::pg::listen(
                settings,
                store.clone(),
                fanout.clone(),
                cancel.child_token(),
            ));
        }
        let hub = Hub {
            inner: Arc::new(HubInner {
                store: store.clone(),
                fanout,
                config: config.clone(),
                limits: Limits::new(config.max_connections, config.max_connections_per_user),
                _stop: cancel.clone().drop_guard(),
                cancel,
            }),
        };
        (store, hub)
    }

    pub fn config(&self) -> &RealtimeConfig {
        &self.inner.config
    }

    /// A place for one more WebSocket connection on this replica, or `None`
    /// when `max_connections` are open.
    pub fn try_connection(&self) -> Option<ConnectionPermit> {
        limits::try_connection(&self.inner.limits)
    }

    /// A place among the user's connections on this replica, or `None` when
    /// they hold `max_connections_per_user` already.
    pub fn try_user_connection(&self, user_id: &str) -> Option<UserPermit> {
        limits::try_user(&self.inner.limits, user_id)
    }

    /// Open WebSocket connections of this replica.
    pub fn open_connections(&self) -> usize {
        self.inner.limits.open_connections()
    }

    /// Subscriptions of this replica that are live (have read where they start).
    pub fn live_subscriptions(&self) -> usize {
        self.inner.fanout.live.load(Ordering::Acquire)
    }

    /// Users with at least one subscriber on this replica.
    pub fn subscribed_users(&self) -> usize {
        self.inner.fanout.subscribed_users()
    }

    /// Cancelled when the hub stops.
    pub fn stopped(&self) -> CancellationToken {
        self.inner.cancel.clone()
    }

    /// The user's wallet now, then each time it changes, in version order.
    /// A subscriber that falls behind gets the current wallet.
    pub async fn wallet_updates(
        &self,
        user_id: &str,
    ) -> Result<impl Stream<Item = Result<Wallet, RealtimeError>> + Send + 'static + use<>, RealtimeError> {
        let mut sub = self.inner.fanout.subscribe(user_id);
        let first = self.inner.store.wallet(user_id).await?;
        self.inner.fanout.seed(&mut sub, first.version);
        let store = self.inner.store.clone();
        let version = first.version;
        let state = (sub, store, Some(first), version);
        Ok(futures::stream::unfold(
            state,
            |(mut sub, store, mut pending, mut delivered)| async move {
                if let Some(w) = pending.take() {
                    return Some((Ok(w), (sub, store, None, delivered)));
                }
                loop {
                    match sub.recv().await {
                        Ok(event) => {
                            let v = event.wallet.version;
                            if v > delivered || (event.resync && v == delivered) {
                                delivered = v;
                                return Some((Ok(event.wallet.clone()), (sub, store, None, delivered)));
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => match store.committed_wallet(&sub.user_id).await
                        {
                            Ok(Some(w)) if w.version > delivered => {
                                delivered = w.version;
                                return Some((Ok(w), (sub, store, None, delivered)));
                            }
                            Ok(_) => {}
                            Err(e) => return Some((Err(e.into()), (sub, store, None, delivered))),
                        },
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        ))
    }

    /// The user's new journal entries, as they commit, in order. A
    /// subscriber that falls behind catches up from the journal.
    pub async fn activity(
        &self,
        user_id: &str,
    ) -> Result<impl Stream<Item = Result<Entry, RealtimeError>> + Send + 'static + use<>, RealtimeError> {
        self.changed_items(user_id, |e| &e.entries, |c| c.entries, |e| e.wallet_version)
            .await
    }
}

impl Fanout {
    pub(crate) fn notified(&self, user_id: &str, version: i64) {
        self.route(
            user_id,
            Work::Notified {
                user_id: user_id.to_owned(),
                version,
            },
        );
    }

    pub(crate) fn resync(&self, resend: bool) {
        self.resync_all(resend);
    }
}
