//! A replica killed (SIGKILL) in the middle of group commits loses no
//! operation it acknowledged, and the books still balance: on SQLite and
//! PostgreSQL. The replica is this test binary run again as a child
//! process (`crash_worker`), hammering the store through its writers and
//! printing each acknowledgement as it gets it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::*;
use creditgate_domain::{ActivityKind, Credits, ManualClock, PlanCatalog, SystemClock};
use creditgate_storage::testing::{Backend, TestDb};
use creditgate_storage::{CreditRequest, HoldRequest, Placement, Store, StoreOptions, UsageDetails};

const USERS: usize = 16;
const WORKER_URL: &str = "CREDITGATE_CRASH_WORKER_DB";

fn user(i: usize) -> String {
    format!("crash-user-{i}")
}

/// The child: runs 64 request loops (hold, then settle) until killed,
/// printing `held <user> <hold>` and `settled <user> <hold>` once each is
/// acknowledged, and how many operations its writers batched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the crash tests run it as their child process"]
async fn crash_worker() {
    let url = std::env::var(WORKER_URL).expect("the database to hammer");
    let store = Store::connect(
        &StoreOptions::new(url),
        Arc::new(SystemClock),
        Arc::new(PlanCatalog::shipped()),
    )
    .await
    .unwrap();
    // As a PostgreSQL replica runs while it hears the others: its ledger
    // takes the wallets and holds it last committed from its mirror (a
    // batch is then one statement, its own transaction). SQLite's is on.
    store.set_shared_caching(true);
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let say = move |line: String| {
        let mut out = out.lock().unwrap();
        // Written straight to the pipe, one line at a time, so the parent
        // reads each acknowledgement as soon as it is given.
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    };
    let say = Arc::new(say);
    let loops = (0..64).map(|i| {
        let (store, say) = (store.clone(), say.clone());
        tokio::spawn(async move {
            let user = user(i % USERS);
            loop {
                let Placement::Placed { hold, .. } = store.place_hold(&user, &HoldRequest::new(cr("1"))).await.unwrap()
                else {
                    panic!("a new hold")
                };
                say(format!("held {user} {}", hold.id));
                store
                    .settle_hold(&user, &hold.id, cr("0.25"), UsageDetails::default())
                    .await
                    .unwrap();
                let (ops, batches) = store.group_commit_counts();
                say(format!("settled {user} {} {ops} {batches}", hold.id));
            }
        })
    });
    futures::future::join_all(loops).await;
}

async fn kill_nine_mid_batch(backend: Backend) {
    let db = TestDb::new(backend).await.unwrap();
    let mut initial = Vec::new();
    {
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let store = db.store(clock, PlanCatalog::shipped()).await.unwrap();
        for i in 0..USERS {
            store.ensure_user(&member(&user(i), "org")).await.unwrap();
            let grant = CreditRequest {
                kind: ActivityKind::Grant,
                amount: cr("100000"),
                description: None,
                reference: None,
                idempotency_key: None,
            };
            store.add_credits(&user(i), &grant).await.unwrap();
            initial.push(store.wallet(&user(i)).await.unwrap().total().millis());
        }
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_worker",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WORKER_URL, &db.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut held = HashSet::new();
    let mut settled = HashSet::new();
    let mut batching = (0, 0);
    let mut record = |line: &str, held: &mut HashSet<(String, String)>, settled: &mut HashSet<(String, String)>| {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["held", user, hold] => {
                held.insert((user.to_string(), hold.to_string()));
            }
            ["settled", user, hold, ops, batches] => {
                settled.insert((user.to_string(), hold.to_string()));
                batching = (ops.parse::<u64>().unwrap(), batches.parse::<u64>().unwrap());
            }
            _ => {}
        }
    };
    // Well into the run, with 64 requests in flight: kill it.
    for line in lines.by_ref() {
        record(&line.unwrap(), &mut held, &mut settled);
        if settled.len() >= 1_500 {
            break;
        }
    }
    child.kill().unwrap();
    // What was acknowledged before the kill and still in the pipe.
    for line in lines {
        let Ok(line) = line else { break };
        record(&line, &mut held, &mut settled);
    }
    child.wait().unwrap();
    let (ops, batches) = batching;
    assert!(
        batches > 0 && ops >= 2 * batches,
        "the worker committed {ops} operations in {batches} batches: not batching"
    );

    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let store = db.store(clock, PlanCatalog::shipped()).await.unwrap();
    let mut charged = [0i64; USERS];
    for i in 0..USERS {
        let user = user(i);
        let entries = journal(&store, &user).await;
        let settled_here: HashSet<&str> = entries.iter().filter_map(|e| e.hold_id.as_deref()).collect();
        for (u, hold) in settled.iter().filter(|(u, _)| *u == user) {
            assert!(
                settled_here.contains(hold.as_str()),
                "acknowledged settle of {hold} ({u}) was lost"
            );
        }
        let open: HashSet<String> = store
            .open_holds(&user)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect();
        for (_, hold) in held.iter().filter(|(u, _)| *u == user) {
            assert!(
                open.contains(hold) || settled_here.contains(hold.as_str()),
                "acknowledged hold {hold} of {user} was lost"
            );
        }
        for e in &entries {
            if e.kind == ActivityKind::AiUsage {
                assert_eq!(e.credits_consumed, cr("0.25"));
                charged[i] += e.credits_consumed.millis();
            }
        }
        let w = store.wallet(&user).await.unwrap();
        assert_eq!(
            w.held(),
            Credits::from_millis(open.len() as i64 * 1_000),
            "{user}: held is its open holds"
        );
        assert_eq!(
            w.total().millis(),
            initial[i] - charged[i],
            "{user}: charged its settles only"
        );
        assert_books_balance(&store, &user).await;
    }
}

#[test]
fn sqlite_kill_nine_mid_batch_loses_nothing_acknowledged() {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(kill_nine_mid_batch(Backend::Sqlite));
}

#[test]
fn postgres_kill_nine_mid_batch_loses_nothing_acknowledged() {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(kill_nine_mid_batch(Backend::Postgres));
}
