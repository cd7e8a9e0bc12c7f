#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! A batch too large for one message: on PostgreSQL its holds, claims and
//! journal entries are written by several statements each (see
//! `group/chunks.rs`), and it must land as a smaller batch does: every
//! operation answered, each with its own entry, the entries as the
//! journal keeps them, the results kept for retries, the books balanced.

mod common;

use common::*;
use creditgate_domain::{ActivityKind, PlanCatalog};
use creditgate_storage::testing::{Backend, TestDb};
use creditgate_storage::{BatchAnswer, BatchOp, CreditRequest, HoldRequest, Placement};

/// Users of the batch: each holds and settles once.
const USERS: usize = 48;

fn keyed(i: usize) -> HoldRequest {
    let mut req = HoldRequest::new(cr("2"));
    // Long keys and results: the batch's rows of each kind come to several
    // times the most one statement sends.
    req.idempotency_key = Some(format!("key-{i}-{}", "k".repeat(200)));
    req.request_hash = Some(format!("hash-{i}-{}", "h".repeat(200)));
    req
}

fn result_of(i: usize) -> String {
    format!(r#"{{"text":"answer {i} {}"}}"#, "r".repeat(1_000))
}

async fn a_large_batch_lands_whole(backend: Backend) {
    let db = TestDb::new(backend).await.unwrap();
    let store = db
        .store_with(
            std::sync::Arc::new(creditgate_domain::ManualClock::new(at("2025-03-10T12:00:00Z"))),
            PlanCatalog::shipped(),
            |o| o.ledger_writers = Some(1),
        )
        .await
        .unwrap();
    let users: Vec<String> = (0..USERS).map(|i| format!("user-{i:02}")).collect();
    for user in &users {
        store.ensure_user(&member(user, "org")).await.unwrap();
        let grant = CreditRequest {
            kind: ActivityKind::Grant,
            amount: cr("20"),
            description: Some("d".repeat(300)),
            reference: None,
            idempotency_key: None,
        };
        store.add_credits(user, &grant).await.unwrap();
    }

    let before = store.wallet(&users[0]).await.unwrap().total();
    let placed = store
        .run_batch_for_test(
            users
                .iter()
                .enumerate()
                .map(|(i, user)| BatchOp::Hold {
                    user_id: user.clone(),
                    req: keyed(i),
                })
                .collect(),
        )
        .await;
    let holds: Vec<String> = placed
        .into_iter()
        .map(|a| match a {
            Ok(BatchAnswer::Hold(Placement::Placed { hold, wallet })) => {
                assert_eq!(wallet.total(), before, "a hold keeps the credits, held");
                hold.id
            }
            other => panic!("a new hold: {other:?}"),
        })
        .collect();

    let settled = store
        .run_batch_for_test(
            users
                .iter()
                .zip(&holds)
                .enumerate()
                .map(|(i, (user, hold))| BatchOp::SettleWithResult {
                    user_id: user.clone(),
                    hold_id: hold.clone(),
                    cost: cr("1.5"),
                    result: result_of(i),
                })
                .collect(),
        )
        .await;
    let mut last_id = 0;
    for (answer, user) in settled.into_iter().zip(&users) {
        let Ok(BatchAnswer::Resolution(r)) = answer else {
            panic!("a settle: {answer:?}")
        };
        assert_eq!(r.charged, cr("1.5"));
        assert_eq!(r.wallet.total().millis(), before.millis() - 1_500);
        let entry = r.entry.expect("the settle's entry");
        assert_eq!(&entry.user_id, user, "each settle answers its own entry");
        assert!(entry.id > last_id, "entries numbered in the batch's order");
        last_id = entry.id;
        assert_eq!(
            journal(&store, user).await.last(),
            Some(&entry),
            "the answered entry is the journal's"
        );
    }

    for (i, user) in users.iter().enumerate() {
        match store.place_hold(user, &keyed(i)).await.unwrap() {
            Placement::Existing { hold, result, .. } => {
                assert_eq!(hold.id, holds[i]);
                assert_eq!(result, Some(result_of(i)), "the result kept for retries");
            }
            other => panic!("the settled hold: {other:?}"),
        }
        assert_books_balance(&store, user).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_large_batch_lands_whole() {
    a_large_batch_lands_whole(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_large_batch_lands_whole() {
    a_large_batch_lands_whole(Backend::Postgres).await;
}
