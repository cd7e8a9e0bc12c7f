//! The balance alerts of one user, live. Alerts ride on the hub's events
//! like journal entries: each is tagged with the wallet version of the
//! change that raised it, the hub reads a change made on another replica
//! once (its entries and its alerts), and a subscriber delivers the alerts
//! of versions after the last one it delivered: none missed, none twice.

use std::collections::VecDeque;

use creditgate_storage::BalanceAlert;
use futures::Stream;
use tokio::sync::broadcast;

use crate::hub::{CATCH_UP_ENTRIES, Hub, RealtimeError};

impl Hub {
    /// The user's balance alerts raised from now on, as they commit, in
    /// order. A subscriber that falls behind catches up from the alert log.
    pub async fn balance_alerts(
        &self,
        user_id: &str,
    ) -> Result<impl Stream<Item = Result<BalanceAlert, RealtimeError>> + Send + 'static + use<>, RealtimeError> {
        let mut sub = self.inner.fanout.subscribe(user_id);
        let start = self
            .inner
            .store
            .committed_wallet(user_id)
            .await?
            .ok_or_else(|| RealtimeError::NoWallet(user_id.to_owned()))?;
        self.inner.fanout.seed(&mut sub, start.version);
        let store = self.inner.store.clone();
        let state = (sub, store, VecDeque::<BalanceAlert>::new(), start.version);
        Ok(futures::stream::unfold(
            state,
            |(mut sub, store, mut queue, mut delivered)| async move {
                loop {
                    if let Some(a) = queue.pop_front() {
                        return Some((Ok(a), (sub, store, queue, delivered)));
                    }
                    match sub.recv().await {
                        Ok(event) => {
                            queue.extend(event.alerts.iter().filter(|a| a.wallet_version > delivered).cloned());
                            delivered = delivered.max(event.wallet.version);
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            match store
                                .committed_change(&sub.user_id, Some(delivered), CATCH_UP_ENTRIES)
                                .await
                            {
                                Ok(Some(change)) => {
                                    queue.extend(change.alerts);
                                    delivered = delivered.max(change.wallet.version);
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
