//! Batches as requests make them: concurrent requests share commits, a
//! failing operation fails alone, a retry sees a settle of its own batch,
//! and every answer is what the journal keeps.

use super::*;

/// Many concurrent requests through the writers: they are committed
/// together, each is charged exactly, and the books balance.
async fn concurrent_requests_share_commits(backend: Backend) {
    let db = TestDb::new(backend).await.unwrap();
    let store = funded(&db, if backend == Backend::Sqlite { 1 } else { 2 }).await;
    let requests = (0..300).map(|i| {
        let store = store.clone();
        let user = USERS[i % USERS.len()];
        tokio::spawn(async move {
            let Placement::Placed { hold, .. } = store.place_hold(user, &HoldRequest::new(cr("0.5"))).await? else {
                panic!("a new hold")
            };
            store
                .settle_hold(
                    user,
                    &hold.id,
                    Credits::from_millis(100 + (i as i64 % 7)),
                    UsageDetails::default(),
                )
                .await
        })
    });
    let results: Vec<_> = join_all(requests).await.into_iter().map(|r| r.unwrap()).collect();
    let mut charged = [0i64; USERS.len()];
    for (i, r) in results.iter().enumerate() {
        let r = r.as_ref().unwrap_or_else(|e| panic!("request {i}: {e:?}"));
        assert_eq!(r.charged.millis(), 100 + (i as i64 % 7));
        charged[i % USERS.len()] += r.charged.millis();
    }
    for (u, user) in USERS.iter().enumerate() {
        let w = store.wallet(user).await.unwrap();
        assert_eq!(w.held(), Credits::ZERO);
        // 100 monthly from the free plan and 20 granted.
        assert_eq!(w.total().millis(), 120_000 - charged[u], "{user}");
        assert_books_balance(&store, user).await;
    }
    let (ops, batches) = store.group_commit_counts();
    assert_eq!(ops, 600, "every hold and settle went through a writer");
    assert!(batches < ops / 2, "{ops} operations took {batches} commits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_requests_share_commits() {
    concurrent_requests_share_commits(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_requests_share_commits() {
    concurrent_requests_share_commits(Backend::Postgres).await;
}

/// An operation that the database refuses (PostgreSQL text cannot hold a
/// NUL) fails alone: the batch is run again one by one and the others land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_failing_operation_fails_alone() {
    let db = TestDb::new(Backend::Postgres).await.unwrap();
    let store = funded(&db, 1).await;
    let mut bad = HoldRequest::new(cr("1"));
    bad.idempotency_key = Some("nul\0key".into());
    let ops = vec![
        BatchOp::Hold {
            user_id: "ana".into(),
            req: HoldRequest::new(cr("2")),
        },
        BatchOp::Hold {
            user_id: "bo".into(),
            req: bad,
        },
        BatchOp::Hold {
            user_id: "cy".into(),
            req: HoldRequest::new(cr("3")),
        },
        BatchOp::Hold {
            user_id: "bo".into(),
            req: HoldRequest::new(cr("4")),
        },
    ];
    let answers = store.run_batch_for_test(ops).await;
    assert!(matches!(answers[1], Err(StoreError::Database(_))), "{:?}", answers[1]);
    for (i, held) in [(0, "2"), (2, "3"), (3, "4")] {
        assert!(
            matches!(&answers[i], Ok(BatchAnswer::Hold(Placement::Placed { hold, .. })) if hold.amount == cr(held)),
            "{:?}",
            answers[i]
        );
    }
    for (user, held) in [("ana", "2"), ("bo", "4"), ("cy", "3")] {
        assert_eq!(store.wallet(user).await.unwrap().held(), cr(held), "{user}");
        assert_eq!(store.open_holds(user).await.unwrap().len(), 1, "{user}");
        assert_books_balance(&store, user).await;
    }
}

/// A retry with the key of a hold settled earlier in the same batch gets
/// that hold with its entry, as it would have one call later.
async fn a_retry_sees_a_settle_of_its_own_batch(backend: Backend) {
    let db = TestDb::new(backend).await.unwrap();
    let store = funded(&db, 1).await;
    let mut keyed = HoldRequest::new(cr("5"));
    keyed.idempotency_key = Some("retry-me".into());
    keyed.request_hash = Some("same".into());
    let Placement::Placed { hold, .. } = store.place_hold("ana", &keyed).await.unwrap() else {
        panic!("a new hold")
    };
    let answers = store
        .run_batch_for_test(vec![
            BatchOp::Hold {
                user_id: "bo".into(),
                req: HoldRequest::new(cr("1")),
            },
            BatchOp::Settle {
                user_id: "ana".into(),
                hold_id: hold.id.clone(),
                cost: cr("2"),
            },
            BatchOp::Hold {
                user_id: "ana".into(),
                req: keyed,
            },
        ])
        .await;
    assert!(
        matches!(&answers[1], Ok(BatchAnswer::Resolution(r)) if r.charged == cr("2")),
        "{:?}",
        answers[1]
    );
    match &answers[2] {
        Ok(BatchAnswer::Hold(Placement::Existing { hold: h, entry, .. })) => {
            assert_eq!(h.id, hold.id);
            assert_eq!(entry.as_ref().map(|e| e.credits_consumed), Some(cr("2")));
        }
        other => panic!("the settled hold, with its entry: {other:?}"),
    }
    assert!(matches!(&answers[0], Ok(BatchAnswer::Hold(Placement::Placed { .. }))));
    for user in USERS {
        assert_books_balance(&store, user).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_retry_sees_a_settle_of_its_own_batch() {
    a_retry_sees_a_settle_of_its_own_batch(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_retry_sees_a_settle_of_its_own_batch() {
    a_retry_sees_a_settle_of_its_own_batch(Backend::Postgres).await;
}

/// What a batch's resolutions keep with their holds, claimed together: a
/// settle's result for retries, a failed call's freed key, and a second
/// resolution of the same hold refused.
async fn a_batch_keeps_what_each_resolution_keeps(backend: Backend) {
    let db = TestDb::new(backend).await.unwrap();
    let store = funded(&db, 1).await;
    let keyed = |key: &str| {
        let mut req = HoldRequest::new(cr("3"));
        req.idempotency_key = Some(key.into());
        req.request_hash = Some(format!("hash-{key}"));
        req
    };
    let mut holds = Vec::new();
    for user in USERS {
        let Placement::Placed { hold, .. } = store.place_hold(user, &keyed(user)).await.unwrap() else {
            panic!("a new hold")
        };
        holds.push(hold.id);
    }
    let answers = store
        .run_batch_for_test(vec![
            BatchOp::SettleWithResult {
                user_id: "ana".into(),
                hold_id: holds[0].clone(),
                cost: cr("1"),
                result: r#"{"text":"Paris"}"#.into(),
            },
            BatchOp::ReleaseFailed {
                user_id: "bo".into(),
                hold_id: holds[1].clone(),
            },
            BatchOp::Settle {
                user_id: "cy".into(),
                hold_id: holds[2].clone(),
                cost: cr("2"),
            },
            BatchOp::Settle {
                user_id: "ana".into(),
                hold_id: holds[0].clone(),
                cost: cr("1"),
            },
        ])
        .await;
    let charged: Vec<Option<Credits>> = answers
        .iter()
        .take(3)
        .map(|a| match a {
            Ok(BatchAnswer::Resolution(r)) => Some(r.charged),
            _ => None,
        })
        .collect();
    assert_eq!(charged, vec![Some(cr("1")), Some(Credits::ZERO), Some(cr("2"))]);
    assert!(
        matches!(&answers[3], Err(StoreError::HoldNotOpen { status, .. }) if status == "SETTLED"),
        "a second settle of one hold is refused: {:?}",
        answers[3]
    );
    match store.place_hold("ana", &keyed("ana")).await.unwrap() {
        Placement::Existing { hold, result, .. } => {
            assert_eq!(hold.id, holds[0]);
            assert_eq!(result.as_deref(), Some(r#"{"text":"Paris"}"#));
        }
        other => panic!("the settled hold with its result: {other:?}"),
    }
    assert!(
        matches!(
            store.place_hold("bo", &keyed("bo")).await.unwrap(),
            Placement::Placed { .. }
        ),
        "a failed call's key is free again"
    );
    match store.place_hold("cy", &keyed("cy")).await.unwrap() {
        Placement::Existing { hold, result, .. } => {
            assert_eq!(hold.id, holds[2]);
            assert_eq!(result, None);
        }
        other => panic!("the settled hold, without a result: {other:?}"),
    }
    for user in USERS {
        assert_books_balance(&store, user).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_batch_keeps_what_each_resolution_keeps() {
    a_batch_keeps_what_each_resolution_keeps(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_batch_keeps_what_each_resolution_keeps() {
    a_batch_keeps_what_each_resolution_keeps(Backend::Postgres).await;
}

/// The entries a change answers with are the entries the journal keeps,
/// field for field (ids, times to the microsecond, usage), whether the
/// change ran alone or in a batch: nothing is read back after it is
/// written, so what is answered must be exactly what was written.
async fn answered_entries_are_the_journals(backend: Backend) {
    let db = TestDb::new(backend).await.unwrap();
    // A time with nanoseconds, which neither database keeps.
    let clock = Arc::new(ManualClock::new(at("2025-03-10T12:00:00.123456789Z")));
    let store = db
        .store_with(clock.clone(), PlanCatalog::shipped(), |o| o.ledger_writers = Some(1))
        .await
        .unwrap();
    let mut answered = Vec::new();
    for user in USERS {
        store.ensure_user(&member(user, "org")).await.unwrap();
        let grant = CreditRequest {
            kind: ActivityKind::Grant,
            amount: cr("20"),
            description: Some("welcome".into()),
            reference: Some(format!("grant-{user}")),
            idempotency_key: Some(format!("grant-{user}")),
        };
        answered.push(store.add_credits(user, &grant).await.unwrap());
    }
    let usage = |n: i64| UsageDetails {
        feature: Some(creditgate_domain::AiFeature::Chat),
        billing_mode: Some(creditgate_domain::BillingMode::Credits),
        status: Some(creditgate_domain::AiRequestStatus::Succeeded),
        provider: Some("openai".into()),
        model: Some("gpt-4o-mini".into()),
        input_tokens: Some(100 + n),
        output_tokens: Some(20 + n),
        pricing_version: Some("2025-03".into()),
        cached_input_tokens: Some(n),
        reasoning_tokens: Some(3),
        actor: Some("back-office".into()),
        ..UsageDetails::default()
    };
    // Two holds per user in one batch.
    let holds: Vec<BatchOp> = USERS
        .iter()
        .chain(USERS.iter())
        .map(|u| BatchOp::Hold {
            user_id: (*u).to_owned(),
            req: HoldRequest::new(cr("2")),
        })
        .collect();
    let placed: Vec<(String, String)> = store
        .run_batch_for_test(holds.clone())
        .await
        .iter()
        .zip(&holds)
        .map(|(answer, op)| hold_of(op, answer).expect("placed"))
        .collect();
    clock.advance(chrono::Duration::nanoseconds(987_654_321));
    // The first hold of each user settled in one batch, several entries
    // of one statement; the second of each settled alone.
    let (batched, alone) = placed.split_at(USERS.len());
    let settles: Vec<BatchOp> = batched
        .iter()
        .map(|(user_id, hold_id)| BatchOp::Settle {
            user_id: user_id.clone(),
            hold_id: hold_id.clone(),
            cost: cr("1.5"),
        })
        .collect();
    for answer in store.run_batch_for_test(settles).await {
        match answer {
            Ok(BatchAnswer::Resolution(r)) => answered.push(r.entry.expect("a settle writes an entry")),
            other => panic!("settled: {other:?}"),
        }
    }
    for (n, (user_id, hold_id)) in (0..).zip(alone) {
        let r = store.settle_hold(user_id, hold_id, cr("0.75"), usage(n)).await.unwrap();
        answered.push(r.entry.expect("a settle writes an entry"));
    }

    let mut kept = Vec::new();
    for user in USERS {
        kept.extend(journal(&store, user).await);
    }
    assert_eq!(
        kept.len(),
        answered.len() + USERS.len(),
        "one entry per change, and each wallet's opening allocation"
    );
    for entry in &answered {
        assert!(
            entry.at.timestamp_subsec_nanos() % 1_000 == 0,
            "times are kept to the microsecond: {}",
            entry.at
        );
        assert_eq!(
            kept.iter().find(|k| k.id == entry.id),
            Some(entry),
            "the entry answered is the entry kept"
        );
    }
    assert!(answered.iter().any(|e| e.provider.as_deref() == Some("openai")));
}

#[tokio::test]
async fn sqlite_answered_entries_are_the_journals() {
    answered_entries_are_the_journals(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_answered_entries_are_the_journals() {
    answered_entries_are_the_journals(Backend::Postgres).await;
}
