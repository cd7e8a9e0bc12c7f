#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use creditgate_domain::{Credits, ManualClock, PlanCatalog};
use creditgate_storage::Store;
use creditgate_storage::testing::{Backend, TestDb};

pub struct Env {
    pub db: TestDb,
    pub store: Store,
    pub clock: Arc<ManualClock>,
}

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn cr(s: &str) -> Credits {
    s.parse().unwrap()
}

pub async fn env(backend: Backend, start: &str) -> Env {
    let db = TestDb::new(backend).await.expect("test database");
    let clock = Arc::new(ManualClock::new(at(start)));
    let store = db.store(clock.clone(), PlanCatalog::shipped()).await.expect("store");
    Env { db, store, clock }
}

pub use creditgate_storage::testing::member;

/// Every entry of a user, oldest first.
pub async fn journal(store: &Store, user: &str) -> Vec<creditgate_storage::Entry> {
    let mut page = store
        .activity(user, &Default::default(), 100_000, None)
        .await
        .unwrap()
        .entries;
    page.reverse();
    page
}

/// The journal's running sum matches every entry's balance after, and the
/// cache matches the journal and the holds.
pub async fn assert_books_balance(store: &Store, user: &str) {
    // Reading the wallet first closes an ended cycle, so the journal is complete.
    let w = store.wallet(user).await.unwrap();
    let mut running = 0i64;
    for e in journal(store, user).await {
        running += e.monthly_delta.millis() + e.permanent_delta.millis();
        assert_eq!(e.balance_after.millis(), running, "balance after of entry {e:?}");
    }
    assert_eq!(w.total().millis(), running, "wallet total equals the journal");
    let off = store.reconcile().await.unwrap();
    assert!(off.is_empty(), "reconcile found {off:?}");
}

/// A runtime for a property test's case (proptest runs cases synchronously).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
