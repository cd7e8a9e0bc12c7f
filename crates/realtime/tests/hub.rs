//! The hub on a real store, on SQLite and PostgreSQL: ordering, a slow
//! subscriber that falls behind, and no events for other users.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use creditgate_domain::{ActivityKind, Credits, ManualClock, PlanCatalog};
use creditgate_realtime::{Hub, RealtimeConfig};
use creditgate_storage::testing::{Backend, TestDb, member};
use creditgate_storage::{CreditRequest, Store};
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(30);

async fn setup(backend: Backend, buffer: usize) -> (TestDb, Store, Hub) {
    let db = TestDb::new(backend).await.unwrap();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let store = db.store(clock, PlanCatalog::shipped()).await.unwrap();
    let config = RealtimeConfig {
        buffer,
        cross_replica: Some(false),
        ..RealtimeConfig::default()
    };
    let (store, hub) = Hub::start(store, &config, &db.url);
    for user in ["alice", "bob"] {
        store.ensure_user(&member(user, "acme")).await.unwrap();
    }
    (db, store, hub)
}

async fn grant(store: &Store, user: &str, amount: i64) {
    store
        .add_credits(
            user,
            &CreditRequest {
                kind: ActivityKind::Grant,
                amount: Credits::from_whole(amount).unwrap(),
                description: None,
                reference: None,
                idempotency_key: None,
            },
        )
        .await
        .unwrap();
}

async fn a_slow_subscriber_skips_to_the_latest_wallet(backend: Backend) {
    let (_db, store, hub) = setup(backend, 2).await;
    let wallets = hub.wallet_updates("alice").await.unwrap();
    let activity = hub.activity("alice").await.unwrap();
    let others = hub.wallet_updates("bob").await.unwrap();
    futures::pin_mut!(wallets, activity, others);
    // Nobody reads while 30 changes commit: the buffer (2) overflows.
    for _ in 0..30 {
        grant(&store, "alice", 1).await;
    }
    let first = wallets.next().await.unwrap().unwrap();
    assert_eq!(first.permanent_balance, Credits::ZERO);
    let mut seen = vec![first.version];
    loop {
        let w = tokio::time::timeout(WAIT, wallets.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(
            w.version > *seen.last().unwrap(),
            "versions only grow: {seen:?} then {}",
            w.version
        );
        seen.push(w.version);
        if w.permanent_balance == Credits::from_whole(30).unwrap() {
            break;
        }
    }
    assert!(
        seen.len() < 31,
        "a lagging subscriber skips, it does not queue: {seen:?}"
    );
    // Activity catches up from the journal: every entry, once, in order.
    let mut balances = Vec::new();
    for _ in 0..30 {
        let e = tokio::time::timeout(WAIT, activity.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        balances.push(e.balance_after.millis());
    }
    let expected: Vec<i64> = (1..=30).map(|i| (100 + i) * 1000).collect();
    assert_eq!(balances, expected);
    // Bob saw his own wallet only.
    let b = others.next().await.unwrap().unwrap();
    assert_eq!(b.user_id, "bob");
    grant(&store, "bob", 5).await;
    let b = tokio::time::timeout(WAIT, others.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (b.user_id.as_str(), b.permanent_balance),
        ("bob", Credits::from_whole(5).unwrap())
    );
}

async fn subscribers_go_away_with_their_streams(backend: Backend) {
    let (_db, store, hub) = setup(backend, 8).await;
    let a = hub.wallet_updates("alice").await.unwrap();
    let b = hub.activity("alice").await.unwrap();
    assert_eq!((hub.subscribed_users(), hub.live_subscriptions()), (1, 2));
    drop(a);
    assert_eq!((hub.subscribed_users(), hub.live_subscriptions()), (1, 1));
    drop(b);
    assert_eq!((hub.subscribed_users(), hub.live_subscriptions()), (0, 0));
    // Changes of users nobody listens to cost nothing and go nowhere.
    grant(&store, "alice", 1).await;
    assert_eq!(hub.subscribed_users(), 0);
}

macro_rules! on_both {
    ($($name:ident),+) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Sqlite).await } )+ }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Postgres).await } )+ }
    };
}

on_both!(
    a_slow_subscriber_skips_to_the_latest_wallet,
    subscribers_go_away_with_their_streams
);
