#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Every wallet change is announced to the other replicas (PostgreSQL's
//! notify channel, `<version> <user id>`) when it commits, and only then:
//! a batch's wallets each once, with the version the batch wrote (also
//! when the batch writes its wallets in several statements), a change
//! outside the ledger's batches too, and a rolled-back change never.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use creditgate_domain::{ActivityKind, PlanCatalog};
use creditgate_storage::testing::{Backend, TestDb};
use creditgate_storage::{BatchAnswer, BatchOp, CreditRequest, HoldRequest, Placement, Store};
use sea_orm::sqlx::postgres::PgListener;

const CHANNEL: &str = "creditgate_announcements_test";

/// Users of the batch: more wallets than one statement writes.
const USERS: usize = 120;

/// The announcements heard until `want` have arrived (any more within a
/// short wait are included, to catch extras).
async fn heard(listener: &mut PgListener, want: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < want {
        let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {want} announcements: {got:?}", got.len()))
            .unwrap();
        got.push(n.payload().to_owned());
    }
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await {
        got.push(n.payload().to_owned());
    }
    got
}

fn grant(amount: &str) -> CreditRequest {
    CreditRequest {
        kind: ActivityKind::Grant,
        amount: cr(amount),
        description: None,
        reference: None,
        idempotency_key: None,
    }
}

/// A settle of each of `users`' `holds` (in the same order).
fn settles(users: &[String], holds: &[String]) -> Vec<BatchOp> {
    users
        .iter()
        .zip(holds)
        .map(|(user, hold)| BatchOp::Settle {
            user_id: user.clone(),
            hold_id: hold.clone(),
            cost: cr("0.5"),
        })
        .collect()
}

async fn store(db: &TestDb) -> Store {
    db.store_with(
        std::sync::Arc::new(creditgate_domain::ManualClock::new(at("2025-03-10T12:00:00Z"))),
        PlanCatalog::shipped(),
        |o| {
            o.ledger_writers = Some(1);
            o.notify_channel = Some(CHANNEL.to_owned());
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_each_committed_wallet_change_is_announced_once_with_its_version() {
    let db = TestDb::new(Backend::Postgres).await.unwrap();
    let store = store(&db).await;
    let users: Vec<String> = (0..USERS).map(|i| format!("user-{i:03}")).collect();
    for user in &users {
        store.ensure_user(&member(user, "org")).await.unwrap();
    }
    let mut listener = PgListener::connect(&db.url).await.unwrap();
    listener.listen(CHANNEL).await.unwrap();

    // A change outside the batches: a grant.
    store.add_credits(&users[0], &grant("50")).await.unwrap();
    let version = store.wallet(&users[0]).await.unwrap().version;
    assert_eq!(heard(&mut listener, 1).await, vec![format!("{version} {}", users[0])]);

    // A batch of a hold per user, and one for a user who does not exist
    // (refused: no wallet written, nothing announced).
    let mut ops: Vec<BatchOp> = users
        .iter()
        .map(|user| BatchOp::Hold {
            user_id: user.clone(),
            req: HoldRequest::new(cr("1")),
        })
        .collect();
    ops.push(BatchOp::Hold {
        user_id: "nobody".to_owned(),
        req: HoldRequest::new(cr("1")),
    });
    let answers = store.run_batch_for_test(ops).await;
    let mut want = BTreeSet::new();
    let mut holds = Vec::new();
    for (answer, user) in answers.iter().zip(&users) {
        match answer {
            Ok(BatchAnswer::Hold(Placement::Placed { hold, wallet })) => {
                want.insert(format!("{} {user}", wallet.version));
                holds.push(hold.id.clone());
            }
            other => panic!("a new hold: {other:?}"),
        }
    }
    assert!(answers.last().unwrap().is_err(), "no such user");
    let got = heard(&mut listener, USERS).await;
    assert_eq!(got.len(), USERS, "each wallet once: {got:?}");
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want);

    // Their settles, in one batch: announced with the versions they wrote.
    let ops = settles(&users, &holds);
    let mut want = BTreeSet::new();
    for (answer, user) in store.run_batch_for_test(ops).await.iter().zip(&users) {
        match answer {
            Ok(BatchAnswer::Resolution(r)) => {
                want.insert(format!("{} {user}", r.wallet.version));
            }
            other => panic!("a settle: {other:?}"),
        }
    }
    let got = heard(&mut listener, USERS).await;
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want);

    // A batch that changes nothing (each settle refused: already settled)
    // announces nothing.
    let ops = settles(&users[..3], &holds[..3]);
    for answer in store.run_batch_for_test(ops).await {
        assert!(answer.is_err(), "already settled: {answer:?}");
    }
    let quiet = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await;
    assert!(quiet.is_err(), "nothing changed, nothing announced: {quiet:?}");
}
