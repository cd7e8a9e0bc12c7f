//! The ledger's mirror (a process keeps the wallets and open holds it last
//! committed, and takes them from there instead of reading them): a change
//! made behind its back, by another process on the same database, is
//! never answered from what it kept. Two stores on one database stand for
//! two processes (on PostgreSQL, two replicas with their mirrors on, as
//! while they listen, but deaf here: each one's version checks alone
//! catch the other's writes).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::*;
use creditgate_domain::{ActivityKind, Credits, ManualClock, PlanCatalog};
use creditgate_storage::testing::{Backend, TestDb};
use creditgate_storage::{CreditRequest, HoldRequest, Placement, Store, StoreError, UsageDetails};

/// Two stores (processes) on one database, and `user` with `credits`
/// granted (on top of their plan's monthly allocation of 100).
async fn two(backend: Backend, user: &str, credits: &str) -> (TestDb, Store, Store) {
    let db = TestDb::new(backend).await.expect("database");
    let clock = Arc::new(ManualClock::new(at("2026-12-07T10:00:00Z")));
    let a = db.store(clock.clone(), PlanCatalog::shipped()).await.expect("store a");
    let b = db.store(clock, PlanCatalog::shipped()).await.expect("store b");
    a.set_shared_caching(true);
    b.set_shared_caching(true);
    a.ensure_user(&member(user, "org")).await.expect("user");
    grant(&a, user, credits).await;
    (db, a, b)
}

async fn grant(store: &Store, user: &str, credits: &str) {
    store
        .add_credits(
            user,
            &CreditRequest {
                kind: ActivityKind::Grant,
                amount: cr(credits),
                description: None,
                reference: None,
                idempotency_key: None,
            },
        )
        .await
        .expect("grant");
}

/// Places a hold of `credits`: its id.
async fn hold(store: &Store, user: &str, credits: &str) -> Result<String, StoreError> {
    match store.place_hold(user, &HoldRequest::new(cr(credits))).await? {
        Placement::Placed { hold, .. } => Ok(hold.id),
        other => panic!("a new hold, not {other:?}"),
    }
}

/// A hold of `credits` placed and settled for all of it.
async fn spend(store: &Store, user: &str, credits: &str) {
    let id = hold(store, user, credits).await.expect("hold");
    store
        .settle_hold(user, &id, cr(credits), UsageDetails::default())
        .await
        .expect("settle");
}

async fn a_wallet_changed_elsewhere_is_read_again(backend: Backend) {
    let (_db, a, b) = two(backend, "ana", "10").await;
    // `a` has written the wallet (and keeps it as it left it).
    spend(&a, "ana", "4").await;
    // Another process grants 50: `a`'s own view would have 106.
    grant(&b, "ana", "50").await;
    let id = hold(&a, "ana", "130").await.expect("156 available: placed");
    let settled = a
        .settle_hold("ana", &id, cr("130"), UsageDetails::default())
        .await
        .expect("settle");
    assert_eq!(settled.wallet.total(), cr("26"));
    // Another process spends 25: `a`'s own view would have 26.
    spend(&b, "ana", "25").await;
    match hold(&a, "ana", "2").await {
        Err(StoreError::InsufficientCredits { available, .. }) => assert_eq!(available, cr("1")),
        other => panic!("1 credit left: refused, not {other:?}"),
    }
    spend(&a, "ana", "1").await;
    // What `a` kept was taken, and found stale after each of `b`'s writes.
    let (taken, stale) = a.ledger_mirror_counts();
    assert!(taken > stale && stale >= 2, "taken {taken}, stale {stale}");
    assert_eq!(a.wallet("ana").await.expect("wallet").total(), Credits::ZERO);
    assert_books_balance(&a, "ana").await;
    assert_books_balance(&b, "ana").await;
}

#[tokio::test]
async fn a_wallet_changed_elsewhere_is_read_again_sqlite() {
    a_wallet_changed_elsewhere_is_read_again(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_wallet_changed_elsewhere_is_read_again_postgres() {
    a_wallet_changed_elsewhere_is_read_again(Backend::Postgres).await;
}

async fn a_hold_resolved_elsewhere_is_not_resolved_again(backend: Backend) {
    let (_db, a, b) = two(backend, "bo", "10").await;
    spend(&a, "bo", "1").await;
    let id = hold(&a, "bo", "5").await.expect("hold");
    // Another process releases it (`a` placed it and kept it as open).
    b.release_hold("bo", &id, None).await.expect("released elsewhere");
    match a.settle_hold("bo", &id, cr("5"), UsageDetails::default()).await {
        Err(StoreError::HoldNotOpen { status, .. }) => assert_eq!(status, "RELEASED"),
        other => panic!("released: not settled again, not {other:?}"),
    }
    let w = a.wallet("bo").await.expect("wallet");
    assert_eq!((w.total(), w.held()), (cr("109"), Credits::ZERO));
    // And the wallet goes on from where it is.
    spend(&a, "bo", "109").await;
    assert_books_balance(&a, "bo").await;
}

#[tokio::test]
async fn a_hold_resolved_elsewhere_is_not_resolved_again_sqlite() {
    a_hold_resolved_elsewhere_is_not_resolved_again(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_hold_resolved_elsewhere_is_not_resolved_again_postgres() {
    a_hold_resolved_elsewhere_is_not_resolved_again(Backend::Postgres).await;
}

/// Holds and settles of one process, one after the other and many at
/// once, across wallets it keeps and wallets another process changes in
/// between: every answer is what the database says, and the books balance.
async fn kept_and_changed_wallets_interleaved(backend: Backend) {
    let (_db, a, b) = two(backend, "cy", "1000").await;
    a.ensure_user(&member("di", "org")).await.expect("user");
    grant(&a, "di", "1000").await;
    for round in 0..20 {
        let users = ["cy", "di"];
        let spends = (0..8).map(|i| spend(&a, users[i % 2], "3"));
        futures::future::join_all(spends).await;
        if round % 3 == 0 {
            spend(&b, "di", "7").await;
            grant(&b, "cy", "2").await;
        }
    }
    let (cy, di) = (a.wallet("cy").await.expect("cy"), a.wallet("di").await.expect("di"));
    // 1,100 each; 20 rounds of 4 spends of 3 each; 7 rounds of b's.
    assert_eq!(cy.total(), cr("874"));
    assert_eq!(di.total(), cr("811"));
    assert_books_balance(&a, "cy").await;
    assert_books_balance(&a, "di").await;
    let (taken, stale) = a.ledger_mirror_counts();
    assert!(taken > 40 && stale > 0, "taken {taken}, stale {stale}");
}

#[tokio::test]
async fn kept_and_changed_wallets_interleaved_sqlite() {
    kept_and_changed_wallets_interleaved(Backend::Sqlite).await;
}

#[tokio::test]
async fn kept_and_changed_wallets_interleaved_postgres() {
    kept_and_changed_wallets_interleaved(Backend::Postgres).await;
}
