//! Concurrent operations on one wallet, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use creditgate_domain::{ActivityKind, Credits};
use creditgate_storage::testing::Backend;
use creditgate_storage::{CreditRequest, HoldRequest, Placement, StoreError, UsageDetails};
use futures::future::join_all;

fn grant(amount: &str, key: &str) -> CreditRequest {
    CreditRequest {
        kind: ActivityKind::Grant,
        amount: cr(amount),
        description: Some("concurrency".into()),
        reference: None,
        idempotency_key: Some(key.into()),
    }
}

/// A user whose wallet holds exactly `credits` (monthly 100 from the free
/// plan is spent down first... simpler: the org is on free, so we use a
/// fresh wallet and take the monthly part into account).
async fn wallet_with(env: &Env, user: &str, credits: &str) {
    env.store.ensure_user(&member(user, "org")).await.unwrap();
    // Use up the monthly allocation so only permanent credits remain.
    let w = env.store.wallet(user).await.unwrap();
    if w.monthly_balance.is_positive() {
        let Placement::Placed { hold, .. } = env
            .store
            .place_hold(user, &HoldRequest::new(w.monthly_balance))
            .await
            .unwrap()
        else {
            panic!()
        };
        env.store
            .settle_hold(user, &hold.id, w.monthly_balance, UsageDetails::default())
            .await
            .unwrap();
    }
    env.store.add_credits(user, &grant(credits, "setup")).await.unwrap();
    assert_eq!(env.store.wallet(user).await.unwrap().available(), cr(credits));
}

async fn holds_never_exceed_the_balance(backend: Backend) {
    let env = env(backend, "2025-03-10T12:00:00Z").await;
    wallet_with(&env, "u", "50").await;
    let attempts = (0..200).map(|_| {
        let store = env.store.clone();
        tokio::spawn(async move { store.place_hold("u", &HoldRequest::new(cr("1"))).await })
    });
    let results: Vec<_> = join_all(attempts).await.into_iter().map(|r| r.unwrap()).collect();
    let placed = results
        .iter()
        .filter(|r| matches!(r, Ok(Placement::Placed { .. })))
        .count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::InsufficientCredits { .. })))
        .count();
    assert_eq!(
        (placed, refused),
        (50, 150),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    let w = env.store.wallet("u").await.unwrap();
    assert_eq!((w.held(), w.available()), (cr("50"), Credits::ZERO));
    assert_books_balance(&env.store, "u").await;
}

async fn one_key_grants_once(backend: Backend) {
    let env = env(backend, "2025-03-10T12:00:00Z").await;
    wallet_with(&env, "u", "1").await;
    let attempts = (0..100).map(|_| {
        let store = env.store.clone();
        tokio::spawn(async move { store.add_credits("u", &grant("7.5", "same-key")).await })
    });
    let results: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert!(
        results.iter().all(|e| e.id == results[0].id),
        "every call returns the one entry"
    );
    assert_eq!(env.store.wallet("u").await.unwrap().permanent_balance, cr("8.5"));
    // The same key for another amount is a conflict and changes nothing.
    let conflict = env.store.add_credits("u", &grant("2", "same-key")).await;
    assert!(matches!(conflict, Err(StoreError::IdempotencyConflict)), "{conflict:?}");
    assert_eq!(env.store.wallet("u").await.unwrap().permanent_balance, cr("8.5"));
    assert_books_balance(&env.store, "u").await;
}

async fn a_hold_resolves_once(backend: Backend) {
    let env = env(backend, "2025-03-10T12:00:00Z").await;
    wallet_with(&env, "u", "100").await;
    for round in 0..5 {
        let Placement::Placed { hold, .. } = env.store.place_hold("u", &HoldRequest::new(cr("10"))).await.unwrap()
        else {
            panic!()
        };
        let attempts = (0..20).map(|i| {
            let store = env.store.clone();
            let id = hold.id.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    store.settle_hold("u", &id, cr("3"), UsageDetails::default()).await
                } else {
                    store.release_hold("u", &id, None).await
                }
            })
        });
        let results: Vec<_> = join_all(attempts).await.into_iter().map(|r| r.unwrap()).collect();
        let won = results.iter().filter(|r| r.is_ok()).count();
        let lost = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::HoldNotOpen { .. })))
            .count();
        assert_eq!((won, lost), (1, 19), "round {round}");
        assert_eq!(env.store.wallet("u").await.unwrap().held(), Credits::ZERO);
    }
    assert_books_balance(&env.store, "u").await;
}

macro_rules! on_both {
    ($($name:ident),+) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await
                }
            )+
        }
    };
}

on_both!(
    holds_never_exceed_the_balance,
    one_key_grants_once,
    a_hold_resolves_once
);
