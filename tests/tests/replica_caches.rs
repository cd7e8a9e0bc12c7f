//! Per-replica caches (users, BYOK keys, which organizations have spend
//! limits) stay correct across replicas on one PostgreSQL database: a write
//! on one replica is heard by every other through its LISTEN connection
//! before any later change (PostgreSQL delivers notifications in commit
//! order), so a subscriber on replica B that sees a later wallet change
//! proves B has dropped what it cached.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use creditgate_domain::{ActivityKind, Credits};
use creditgate_e2e::ws::{WALLET_UPDATED, WsClient, live_subscriptions};
use creditgate_e2e::{Backend, Replica, TestApp};
use creditgate_storage::{CreditRequest, HoldRequest, LimitTarget, StoreError};
use sea_orm::ConnectionTrait;
use serde_json::Value;

fn credits(v: &str) -> Credits {
    v.parse().unwrap()
}

fn providers(keys: &[creditgate_storage::StoredCiphertext]) -> Vec<&str> {
    keys.iter().map(|k| k.provider.as_str()).collect()
}

async fn grant(app: &creditgate_server::App, user: &str, amount: &str) {
    app.store
        .add_credits(
            user,
            &CreditRequest {
                kind: ActivityKind::Grant,
                amount: credits(amount),
                description: None,
                reference: None,
                idempotency_key: None,
            },
        )
        .await
        .unwrap();
}

/// Waits on `c` until the wallet shows `permanent` as its permanent balance.
async fn until_permanent(c: &mut WsClient, id: &str, permanent: &str) {
    loop {
        let w: Value = c.next(id, "walletUpdated").await;
        if w["permanentBalance"].as_str() == Some(permanent) {
            return;
        }
    }
}

/// Replicas A and B of one PostgreSQL database, with alice's wallet
/// subscribed on B (its first wallet already read).
async fn two_replicas() -> (TestApp, Replica, WsClient, String) {
    let a = TestApp::new(Backend::Postgres).await;
    let b = a.replica("").await;
    let token = a.member("alice", "acme");
    let mut c = WsClient::connect(b.addr, &token).await;
    let wid = c.subscribe(WALLET_UPDATED).await;
    c.next(&wid, "walletUpdated").await;
    live_subscriptions(&b.app, 1).await;
    (a, b, c, wid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_written_on_one_replica_is_never_served_stale_by_another() {
    let (a, b, mut c, wid) = two_replicas().await;

    // B routes alice by her keys: none yet, and it remembers that.
    assert!(b.app.store.byok_routes("alice").await.unwrap().is_empty());
    a.app
        .store
        .put_byok_key("alice", "openai", "ciphertext-1".to_owned(), "sk-…0001".to_owned())
        .await
        .unwrap();
    // The key's own wallet change reaches B after the `forget`.
    c.next(&wid, "walletUpdated").await;
    let keys = b.app.store.byok_routes("alice").await.unwrap();
    assert_eq!(providers(&keys), ["openai"]);

    // B serves what it read from its cache: a row removed behind every
    // replica's back (no notification) is still routed by B...
    let db = a.app.store.connection();
    db.execute_unprepared("DELETE FROM byok_keys WHERE user_id = 'alice'")
        .await
        .unwrap();
    assert_eq!(providers(&b.app.store.byok_routes("alice").await.unwrap()), ["openai"]);
    // ...while a change made through a replica is heard by all of them.
    a.app
        .store
        .put_byok_key("alice", "anthropic", "ciphertext-2".to_owned(), "sk-…0002".to_owned())
        .await
        .unwrap();
    c.next(&wid, "walletUpdated").await;
    let keys = b.app.store.byok_routes("alice").await.unwrap();
    assert_eq!(providers(&keys), ["anthropic"]);
    assert_eq!(keys[0].ciphertext, "ciphertext-2");

    assert!(a.app.store.remove_byok_key("alice", "anthropic").await.unwrap());
    c.next(&wid, "walletUpdated").await;
    assert!(b.app.store.byok_routes("alice").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spend_limit_set_on_one_replica_binds_on_every_other() {
    let (a, b, mut c, wid) = two_replicas().await;

    // A hold on B: the organization has no limit, and B remembers that.
    let store_b = &b.app.store;
    store_b
        .place_hold("alice", &HoldRequest::new(credits("1")))
        .await
        .unwrap();

    // The admin caps alice at 2 credits on A; then a later change of her
    // wallet on A, heard by B after the `forget`.
    a.app
        .store
        .set_spend_limit("acme", &LimitTarget::Member("alice".into()), Some(credits("2")))
        .await
        .unwrap();
    grant(&a.app, "alice", "5").await;
    until_permanent(&mut c, &wid, "5").await;

    // B now looks for limits again: 1 of 2 is held, 5 more is refused.
    let refused = store_b.place_hold("alice", &HoldRequest::new(credits("5"))).await;
    assert!(
        matches!(refused, Err(StoreError::SpendLimitReached { .. })),
        "{refused:?}"
    );
    store_b
        .place_hold("alice", &HoldRequest::new(credits("1")))
        .await
        .unwrap();
    let limit = store_b.spend_limit_for("alice").await.unwrap().unwrap();
    assert_eq!(limit.spent, credits("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_cannot_listen_caches_nothing() {
    let (a, b, mut c, wid) = two_replicas().await;
    a.app
        .store
        .put_byok_key("alice", "openai", "ciphertext-1".to_owned(), "sk-…0001".to_owned())
        .await
        .unwrap();
    c.next(&wid, "walletUpdated").await;
    assert_eq!(providers(&b.app.store.byok_routes("alice").await.unwrap()), ["openai"]);

    // B goes deaf (as when its LISTEN connection drops): it stops caching
    // at once, so a change it cannot hear is still seen.
    b.app.store.set_shared_caching(false);
    let db = a.app.store.connection();
    db.execute_unprepared("DELETE FROM byok_keys WHERE user_id = 'alice'")
        .await
        .unwrap();
    assert!(b.app.store.byok_routes("alice").await.unwrap().is_empty());
    a.app
        .store
        .put_byok_key("alice", "anthropic", "ciphertext-2".to_owned(), "sk-…0002".to_owned())
        .await
        .unwrap();
    assert_eq!(
        providers(&b.app.store.byok_routes("alice").await.unwrap()),
        ["anthropic"]
    );
}
