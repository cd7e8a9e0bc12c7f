//! What changes carry, live: journal entries and balance alerts. Each item
//! is tagged with the wallet version of the change that made it; the hub
//! reads a change made on another replica once (its entries and its
//! alerts), and a subscriber delivers the items of versions after the last
//! one it delivered: none missed, none twice.

use std::collections::VecDeque;

use creditgate_storage::{BalanceAlert, WalletChange};
use futures::Stream;
use tokio::sync::broadcast;

use crate::hub::{CATCH_UP_ENTRIES, Event, Hub, RealtimeError};

impl Hub {
    /// The user's balance alerts raised from now on, as they commit, in
    /// order. A subscriber that falls behind catches up from the alert log.
    pub async fn balance_alerts(
        &self,
        user_id: &str,
    ) -> Result<impl Stream<Item = Result<BalanceAlert, RealtimeError>> + Send + 'static + use<>, RealtimeError> {
        self.changed_items(user_id, |e| &e.alerts, |c| c.alerts, |a| a.wallet_version)
            .await
    }

    /// What the user's changes carry (journal entries, alerts), from now on,
    /// in order: each item is tagged with the wallet version of its change,
    /// and a subscriber delivers the items of versions after the last one it
    /// delivered, catching up from the store when it falls behind. None is
    /// missed, none comes twice.
    pub(crate) async fn changed_items<T: Clone + Send + Sync + 'static>(
        &self,
        user_id: &str,
        of_event: fn(&Event) -> &Vec<T>,
        of_change: fn(WalletChange) -> Vec<T>,
        version_of: fn(&T) -> i64,
    ) -> Result<impl Stream<Item = Result<T, RealtimeError>> + Send + 'static + use<T>, RealtimeError> {
        let mut sub = self.inner.fanout.subscribe(user_id);
        let start = self
            .inner
            .store
            .committed_wallet(user_id)
            .await?
            .ok_or_else(|| RealtimeError::NoWallet(user_id.to_owned()))?;
        self.inner.fanout.seed(&mut sub, start.version);
        let store = self.inner.store.clone();
        let state = (sub, store, VecDeque::<T>::new(), start.version);
        Ok(futures::stream::unfold(
            state,
            move |(mut sub, store, mut queue, mut delivered)| async move {
                loop {
                    if let Some(item) = queue.pop_front() {
                        return Some((Ok(item), (sub, store, queue, delivered)));
                    }
                    match sub.recv().await {
                        Ok(event) => {
                            queue.extend(of_event(&event).iter().filter(|i| version_of(i) > delivered).cloned());
                            delivered = delivered.max(event.wallet.version);
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            match store
                                .committed_change(&sub.user_id, Some(delivered), CATCH_UP_ENTRIES)
                                .await
                            {
                                Ok(Some(change)) => {
                                    delivered = delivered.max(change.wallet.version);
                                    queue.extend(of_change(change));
                                }
                                Ok(None) => {}
                                Err(e) => return Some((Err(e.into()), (sub, store, queue, delivered))),
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        ))
    }
}
