//! What changes carry, live: journal entries and balance alerts. Each item
//! is tagged with the wallet version of the change that made it; the hub
//! reads a change made on another replica once (its entries and its
//! alerts), and a subscriber delivers the items of versions after the last
//! one it delivered: none missed, none twice.

use std::collections::VecDeque;

use creditgate_storage::{BalanceAlert, Store, WalletChange};
use futures::Stream;
use tokio::sync::broadcast;

use crate::hub::{CATCH_UP_ENTRIES, Event, Hub, RealtimeError, Subscriber};

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
        Ok(items_after(
            sub,
            self.inner.store.clone(),
            start.version,
            of_event,
            of_change,
            version_of,
        ))
    }
}

/// The items of `sub`'s events of versions after `start`, in order, read
/// from `store` where the events do not carry them.
fn items_after<T: Clone + Send + Sync + 'static>(
    sub: Subscriber,
    store: Store,
    start: i64,
    of_event: fn(&Event) -> &Vec<T>,
    of_change: fn(WalletChange) -> Vec<T>,
    version_of: fn(&T) -> i64,
) -> impl Stream<Item = Result<T, RealtimeError>> + Send + 'static + use<T> {
    let state = (sub, store, VecDeque::<T>::new(), start);
    futures::stream::unfold(state, move |(mut sub, store, mut queue, mut delivered)| async move {
        loop {
            if let Some(item) = queue.pop_front() {
                return Some((Ok(item), (sub, store, queue, delivered)));
            }
            match sub.recv().await {
                // Everything after `delivered` is in the event.
                Ok(event) if event.since <= delivered || event.wallet.version <= delivered => {
                    queue.extend(of_event(&event).iter().filter(|i| version_of(i) > delivered).cloned());
                    delivered = delivered.max(event.wallet.version);
                }
                // Behind (the hub published a change before this
                // subscriber read its starting point, or the
                // subscriber missed events): read what it lacks.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
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
    })
}

#[cfg(test)]
mod tests {

    use std::sync::Arc;
    use std::time::Duration;

    use creditgate_domain::{ActivityKind, Credits, ManualClock, PlanCatalog};
    use creditgate_storage::testing::{Backend, TestDb, member};
    use creditgate_storage::{CreditRequest, Store};
    use futures::StreamExt;

    use crate::{Hub, RealtimeConfig};

    async fn grant(store: &Store, reference: &str) {
        let request = CreditRequest {
            kind: ActivityKind::Grant,
            amount: Credits::from_whole(1).unwrap(),
            description: Some(reference.to_owned()),
            reference: None,
            idempotency_key: None,
        };
        store.add_credits("alice", &request).await.unwrap();
    }

    /// A change the hub publishes before a subscriber has read its starting
    /// point carries only its own entries; the changes between that
    /// starting point and it were never heard here (another replica's, not
    /// announced yet). The subscriber reads them: none is lost.
    async fn a_subscriber_behind_the_first_event_reads_what_it_lacks(backend: Backend) {
        let db = TestDb::new(backend).await.unwrap();
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let store = db.store(clock, PlanCatalog::shipped()).await.unwrap();
        store.ensure_user(&member("alice", "acme")).await.unwrap();
        // Writes through this copy are never heard by the hub.
        let elsewhere = store.clone();
        let config = RealtimeConfig {
            cross_replica: Some(false),
            ..RealtimeConfig::default()
        };
        let (store, hub) = Hub::start(store, &config, &db.url);

        // The subscriber reads its starting point...
        let mut sub = hub.inner.fanout.subscribe("alice");
        let start = store.committed_wallet("alice").await.unwrap().unwrap().version;
        // ...three changes commit unheard, and one the hub hears and
        // publishes before the subscriber is seeded.
        for reference in ["one", "two", "three"] {
            grant(&elsewhere, reference).await;
        }
        grant(&store, "four").await;
        let heard = tokio::time::timeout(Duration::from_secs(30), async {
            while hub.inner.fanout.last("alice") != Some(Some(start + 4)) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(heard.is_ok(), "the hub never published the change it heard");
        hub.inner.fanout.seed(&mut sub, start);

        let entries = super::items_after(
            sub,
            store.clone(),
            start,
            |e| &e.entries,
            |c| c.entries,
            |e| e.wallet_version,
        );
        futures::pin_mut!(entries);
        let mut got = Vec::new();
        while got.len() < 4
            && let Ok(Some(entry)) = tokio::time::timeout(Duration::from_secs(10), entries.next()).await
        {
            got.push(entry.unwrap().description.unwrap());
        }
        assert_eq!(got, ["one", "two", "three", "four"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_a_subscriber_behind_the_first_event_reads_what_it_lacks() {
        a_subscriber_behind_the_first_event_reads_what_it_lacks(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_subscriber_behind_the_first_event_reads_what_it_lacks() {
        a_subscriber_behind_the_first_event_reads_what_it_lacks(Backend::Postgres).await;
    }
}
