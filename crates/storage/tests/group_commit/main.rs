//! Group commit: holds and settles that share a transaction give each
//! caller exactly what it would have got alone, on SQLite and PostgreSQL.
//! Here, any sequence of operations cut into any batches against the same
//! operations one at a time (property tests); in `batches.rs`, concurrent
//! requests through the writers, failures, retries and what each batch
//! answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod batches;
#[path = "../common/mod.rs"]
mod common;

use std::sync::Arc;

use common::*;
use creditgate_domain::{ActivityKind, Credits, ManualClock, PlanCatalog};
use creditgate_storage::testing::{Backend, TestDb};
use creditgate_storage::{
    BatchAnswer, BatchOp, CreditRequest, HoldRequest, Placement, Store, StoreError, StoreResult, UsageDetails,
};
use futures::future::join_all;
use proptest::prelude::*;

const USERS: [&str; 3] = ["ana", "bo", "cy"];

#[derive(Debug, Clone)]
enum Step {
    Hold {
        user: usize,
        millis: i64,
    },
    /// Settles the hold the `of`-th step placed (if it placed one).
    Settle {
        of: usize,
        millis: i64,
    },
    Release {
        of: usize,
    },
    /// A hold nobody placed.
    Stray {
        user: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..USERS.len(), 1i64..60_000).prop_map(|(user, millis)| Step::Hold { user, millis }),
        3 => (0usize..64, 0i64..70_000).prop_map(|(of, millis)| Step::Settle { of, millis }),
        1 => (0usize..64).prop_map(|of| Step::Release { of }),
        1 => (0..USERS.len()).prop_map(|user| Step::Stray { user }),
    ]
}

/// What a caller sees of an answer, without ids and versions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Held(Credits),
    Charged(Credits, bool, Option<Credits>),
    Refused(String),
}

fn seen(answer: &StoreResult<BatchAnswer>) -> Seen {
    match answer {
        Ok(BatchAnswer::Hold(Placement::Placed { hold, wallet })) => {
            assert!(wallet.held() >= hold.amount, "the wallet answered includes the hold");
            Seen::Held(hold.amount)
        }
        Ok(BatchAnswer::Hold(p)) => panic!("no idempotency key was given: {p:?}"),
        Ok(BatchAnswer::Resolution(r)) => {
            Seen::Charged(r.charged, r.overrun, r.entry.as_ref().map(|e| e.balance_after))
        }
        Err(e) => Seen::Refused(
            match e {
                StoreError::InsufficientCredits { .. } => "insufficient",
                StoreError::HoldNotOpen { .. } => "not open",
                StoreError::NotFound { .. } => "not found",
                other => panic!("unexpected error {other:?}"),
            }
            .to_owned(),
        ),
    }
}

async fn funded(db: &TestDb, writers: usize) -> Store {
    let clock = Arc::new(ManualClock::new(at("2025-03-10T12:00:00Z")));
    let store = db
        .store_with(clock, PlanCatalog::shipped(), |o| o.ledger_writers = Some(writers))
        .await
        .unwrap();
    // As a PostgreSQL replica runs while it hears the others: the ledger's
    // mirror on (SQLite's always is; the other storage tests run
    // PostgreSQL's ledger with it off).
    store.set_shared_caching(true);
    for user in USERS {
        store.ensure_user(&member(user, "org")).await.unwrap();
        let grant = CreditRequest {
            kind: ActivityKind::Grant,
            amount: cr("20"),
            description: None,
            reference: None,
            idempotency_key: None,
        };
        store.add_credits(user, &grant).await.unwrap();
    }
    store
}

/// The user and hold id of a step that placed a hold.
type Placed = Option<(String, String)>;

/// The operation a step is, given the hold ids the earlier steps got.
fn op_of(step: &Step, holds: &[Placed]) -> BatchOp {
    let placed = |of: usize| {
        holds
            .get(of)
            .cloned()
            .flatten()
            .unwrap_or_else(|| (USERS[of % USERS.len()].to_owned(), format!("never-placed-{of}")))
    };
    match step {
        Step::Hold { user, millis } => BatchOp::Hold {
            user_id: USERS[*user].to_owned(),
            req: HoldRequest::new(Credits::from_millis(*millis)),
        },
        Step::Settle { of, millis } => {
            let (user_id, hold_id) = placed(*of);
            BatchOp::Settle {
                user_id,
                hold_id,
                cost: Credits::from_millis(*millis),
            }
        }
        Step::Release { of } => {
            let (user_id, hold_id) = placed(*of);
            BatchOp::Release { user_id, hold_id }
        }
        Step::Stray { user } => BatchOp::Settle {
            user_id: USERS[*user].to_owned(),
            hold_id: "stray".into(),
            cost: Credits::ZERO,
        },
    }
}

fn hold_of(op: &BatchOp, answer: &StoreResult<BatchAnswer>) -> Placed {
    match (op, answer) {
        (BatchOp::Hold { user_id, .. }, Ok(BatchAnswer::Hold(Placement::Placed { hold, .. }))) => {
            Some((user_id.clone(), hold.id.clone()))
        }
        _ => None,
    }
}

/// Runs `steps` in batches cut at `cuts` on one store and one at a time on
/// another: every answer, every wallet and every entry are the same.
async fn batches_match_one_at_a_time(backend: Backend, steps: Vec<Step>, cuts: Vec<usize>) {
    let (db_batched, db_alone) = (TestDb::new(backend).await.unwrap(), TestDb::new(backend).await.unwrap());
    let (batched, alone) = (funded(&db_batched, 1).await, funded(&db_alone, 0).await);

    let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c > 0 && c < steps.len()).collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts.push(steps.len());
    // A step refers to holds placed in earlier batches: their ids are
    // known when its batch is sent.
    let (mut batched_seen, mut alone_seen) = (Vec::new(), Vec::new());
    let (mut batched_holds, mut alone_holds): (Vec<Placed>, Vec<Placed>) = (Vec::new(), Vec::new());
    let mut start = 0;
    for end in cuts {
        let ops: Vec<BatchOp> = steps[start..end].iter().map(|s| op_of(s, &batched_holds)).collect();
        let answers = batched.run_batch_for_test(ops.clone()).await;
        assert_eq!(answers.len(), ops.len());
        for (op, answer) in ops.iter().zip(&answers) {
            batched_seen.push(seen(answer));
            batched_holds.push(hold_of(op, answer));
        }

        let ops: Vec<BatchOp> = steps[start..end].iter().map(|s| op_of(s, &alone_holds)).collect();
        for op in ops {
            let answer = match &op {
                BatchOp::Hold { user_id, req } => alone.place_hold(user_id, req).await.map(BatchAnswer::Hold),
                BatchOp::Settle { user_id, hold_id, cost } => alone
                    .settle_hold(user_id, hold_id, *cost, UsageDetails::default())
                    .await
                    .map(BatchAnswer::Resolution),
                BatchOp::Release { user_id, hold_id } => alone
                    .release_hold(user_id, hold_id, Some(UsageDetails::default()))
                    .await
                    .map(BatchAnswer::Resolution),
                BatchOp::SettleWithResult {
                    user_id,
                    hold_id,
                    cost,
                    result,
                } => alone
                    .settle_hold_with_result(user_id, hold_id, *cost, UsageDetails::default(), result.clone())
                    .await
                    .map(BatchAnswer::Resolution),
                BatchOp::ReleaseFailed { user_id, hold_id } => alone
                    .release_failed_hold(user_id, hold_id, UsageDetails::default())
                    .await
                    .map(BatchAnswer::Resolution),
            };
            alone_seen.push(seen(&answer));
            alone_holds.push(hold_of(&op, &answer));
        }
        start = end;
    }
    assert_eq!(
        batched_seen, alone_seen,
        "every caller sees what it would have seen alone"
    );

    for user in USERS {
        let (a, b) = (batched.wallet(user).await.unwrap(), alone.wallet(user).await.unwrap());
        assert_eq!(
            (a.monthly_balance, a.permanent_balance, a.held_monthly, a.held_permanent),
            (b.monthly_balance, b.permanent_balance, b.held_monthly, b.held_permanent),
            "wallet of {user}"
        );
        let entries = |es: Vec<creditgate_storage::Entry>| {
            es.into_iter()
                .map(|e| {
                    (
                        e.kind,
                        e.monthly_delta,
                        e.permanent_delta,
                        e.credits_consumed,
                        e.balance_after,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            entries(journal(&batched, user).await),
            entries(journal(&alone, user).await),
            "journal of {user}"
        );
        assert_books_balance(&batched, user).await;
    }
    let (ops, batches) = batched.group_commit_counts();
    assert_eq!((ops, batches), (0, 0), "run_batch_for_test bypasses the queue");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn sqlite_batches_match_one_at_a_time(
        steps in proptest::collection::vec(step(), 1..48),
        cuts in proptest::collection::vec(0usize..48, 0..6),
    ) {
        runtime().block_on(batches_match_one_at_a_time(Backend::Sqlite, steps, cuts));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]
    #[test]
    fn postgres_batches_match_one_at_a_time(
        steps in proptest::collection::vec(step(), 1..48),
        cuts in proptest::collection::vec(0usize..48, 0..6),
    ) {
        runtime().block_on(batches_match_one_at_a_time(Backend::Postgres, steps, cuts));
    }
}
