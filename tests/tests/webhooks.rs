//! Outgoing webhooks end to end, on SQLite and PostgreSQL: a receiver on
//! 127.0.0.1 that verifies every delivery with an independent Standard
//! Webhooks implementation (the `standardwebhooks` crate) gets each event
//! exactly once, across replicas, after being down, after a replica was
//! killed mid-delivery, and whatever a dead endpoint does; every attempt is
//! recorded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use creditgate_domain::ManualClock;
use creditgate_e2e::openai::{OpenAiApp, mock_openai};
use creditgate_e2e::{Backend, TestApp, on_both_databases};
use creditgate_storage::{RefundShare, event_types};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PLATFORM_KEY: &str = "sk-platform-0123456789abcdef";
const ALICE_KEY: &str = "sk-alice-SECRET-9f8e7d6c5b4a";
const BUY: &str = "mutation($p: ID!, $k: String!) { purchaseCredits(packId: $p, idempotencyKey: $k) { id status } }";

// ----------------------------------------------------------------- receiver

const ACCEPT: u8 = 0;
const UNAVAILABLE: u8 = 1;
const HANG: u8 = 2;

#[derive(Debug, Clone)]
struct Delivered {
    id: String,
    body: Value,
}

struct Inner {
    verifier: standardwebhooks::Webhook,
    mode: AtomicU8,
    hits: AtomicUsize,
    bad_signatures: AtomicUsize,
    accepted: Mutex<Vec<Delivered>>,
}

/// A webhook receiver on 127.0.0.1: verifies the signature, then accepts
/// (200), refuses (503) or hangs, as told.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    inner.hits.fetch_add(1, Ordering::SeqCst);
    if inner.verifier.verify(&body, &headers).is_err() {
        inner.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::BAD_REQUEST;
    }
    match inner.mode.load(Ordering::SeqCst) {
        HANG => std::future::pending().await,
        UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
        _ => {
            let id = headers["webhook-id"].to_str().unwrap().to_owned();
            let body: Value = serde_json::from_slice(&body).unwrap();
            inner.accepted.lock().unwrap().push(Delivered { id, body });
            StatusCode::OK
        }
    }
}

impl Receiver {
    async fn start(mode: u8) -> Receiver {
        let inner = Arc::new(Inner {
            verifier: standardwebhooks::Webhook::new(SECRET).unwrap(),
            mode: AtomicU8::new(mode),
            hits: AtomicUsize::new(0),
            bad_signatures: AtomicUsize::new(0),
            accepted: Mutex::new(Vec::new()),
        });
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver { addr, inner }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn set(&self, mode: u8) {
        self.inner.mode.store(mode, Ordering::SeqCst);
    }

    fn accepted(&self) -> Vec<Delivered> {
        self.inner.accepted.lock().unwrap().clone()
    }

    fn hits(&self) -> usize {
        self.inner.hits.load(Ordering::SeqCst)
    }

    /// Every event at most once, every signature good.
    fn assert_once_each(&self) {
        let accepted = self.accepted();
        let ids: HashSet<&str> = accepted.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids.len(), accepted.len(), "an event was delivered twice: {accepted:?}");
        assert_eq!(
            self.inner.bad_signatures.load(Ordering::SeqCst),
            0,
            "a signature did not verify"
        );
    }

    fn types(&self) -> Vec<String> {
        let mut types: Vec<String> = self
            .accepted()
            .iter()
            .map(|d| d.body["type"].as_str().unwrap().to_owned())
            .collect();
        types.sort();
        types
    }
}

// ------------------------------------------------------------------ helpers

/// `[webhooks]` with short timings and the given endpoints.
fn webhooks_toml(urls: &[String], timeout_ms: u64, lease_secs: u64) -> String {
    let mut toml = format!(
        "[webhooks]\npoll_interval_ms = 20\ntimeout_ms = {timeout_ms}\nlease_secs = {lease_secs}\nbackoff_initial_secs = 1\nbackoff_max_secs = 4\ngive_up_after_secs = 3600\nmax_in_flight_per_endpoint = 2\n"
    );
    for url in urls {
        toml.push_str(&format!("[[webhooks.endpoints]]\nurl = {url:?}\nsecret = {SECRET:?}\n"));
    }
    toml
}

/// Waits until `done` (polling every 20 ms, moving the clock `step` each
/// time so that retries come due), at most 20 seconds.
async fn wait_for<F, Fut>(clock: &ManualClock, step: chrono::Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        clock.advance(step);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn buy(app: &TestApp, user: &str, key: &str) -> String {
    let token = app.member(user, "acme");
    let r = app.gql(Some(&token), BUY, json!({"p": "starter", "k": key})).await;
    assert_eq!(r.data()["purchaseCredits"]["status"], "COMPLETED");
    r.data()["purchaseCredits"]["id"].as_str().unwrap().to_owned()
}

/// Outbox rows (all of them) with their attempts.
async fn outbox(app: &TestApp) -> Vec<(creditgate_storage::OutboxRow, Vec<creditgate_storage::AttemptRow>)> {
    let store = &app.app.store;
    let mut rows = Vec::new();
    for row in store.webhook_outbox(None).await.unwrap() {
        let attempts = store.webhook_attempts(&row.id).await.unwrap();
        rows.push((row, attempts));
    }
    rows
}

async fn all_delivered(app: &TestApp, expected: usize) -> bool {
    let rows = app.app.store.webhook_outbox(None).await.unwrap();
    rows.len() == expected && rows.iter().all(|r| r.delivered_at.is_some())
}

fn step() -> chrono::Duration {
    chrono::Duration::seconds(1)
}

// -------------------------------------------------------------------- tests

async fn every_event_reaches_the_receiver_once_and_signed(backend: Backend) {
    let receiver = Receiver::start(ACCEPT).await;
    let mock = mock_openai(&[PLATFORM_KEY], None).await;
    // The provider accepts Alice's key when she saves it, and refuses it later.
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("authorization", format!("Bearer {ALICE_KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            creditgate_e2e::openai::openai_fixture("models-list.json"),
            "application/json",
        ))
        .with_priority(1)
        .mount(&mock)
        .await;
    let env = OpenAiApp::start(
        backend,
        &mock,
        PLATFORM_KEY,
        &webhooks_toml(&[receiver.url()], 2_000, 30),
    )
    .await;
    let app = &env.app;
    let stop = CancellationToken::new();
    let worker = app.app.spawn_webhooks(stop.clone());
    let alice = app.member("alice", "acme");

    let purchase = buy(app, "alice", "buy-1").await;
    app.gql(
        Some(&alice),
        "mutation($k: String!) { setByokKey(provider: \"openai\", apiKey: $k) { hint } }",
        json!({"k": ALICE_KEY}),
    )
    .await
    .data();
    let run = app
        .gql(
            Some(&alice),
            "mutation($i: AiRequestInput!) { runAi(input: $i) { id } }",
            json!({"i": {"feature": "CHAT", "provider": "openai", "model": "gpt-4o-mini",
                         "messages": [{"role": "user", "content": "Hello"}]}}),
        )
        .await;
    assert_eq!(run.code(), "BYOK_KEY_INVALID");
    let share = RefundShare {
        amount_refunded: 500,
        amount: 500,
        fully: true,
    };
    app.app.store.refund_purchase(&purchase, share, None).await.unwrap();
    // Recorded as delivered before the clock jumps a month (past any lease).
    wait_for(&app.clock, step(), "three events", || all_delivered(app, 3)).await;

    // The month ends: the sweep closes Alice's cycle.
    app.clock.advance(chrono::Duration::days(32));
    assert_eq!(app.app.store.close_ended_cycles(100).await.unwrap(), 1);
    wait_for(&app.clock, step(), "the cycle reset", || all_delivered(app, 4)).await;
    // Nothing more comes, however long one waits.
    for _ in 0..10 {
        app.clock.advance(chrono::Duration::minutes(5));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    receiver.assert_once_each();
    assert_eq!(
        receiver.types(),
        [
            event_types::BYOK_KEY_FAILED,
            event_types::CYCLE_RESET,
            event_types::PURCHASE_COMPLETED,
            event_types::PURCHASE_REFUNDED
        ]
    );
    let by_type: BTreeMap<String, Value> = receiver
        .accepted()
        .into_iter()
        .map(|d| (d.body["type"].as_str().unwrap().to_owned(), d.body))
        .collect();
    for body in by_type.values() {
        assert_eq!(body["data"]["userId"], "alice", "{body}");
        assert!(body["data"]["orgId"].as_str().is_some_and(|o| !o.is_empty()), "{body}");
        assert!(body["timestamp"].as_str().is_some(), "{body}");
    }
    let completed = &by_type[event_types::PURCHASE_COMPLETED]["data"];
    assert_eq!(completed["purchaseId"], purchase.as_str());
    assert_eq!(completed["credits"], "500");
    assert_eq!(completed["status"], "COMPLETED");
    let refunded = &by_type[event_types::PURCHASE_REFUNDED]["data"];
    assert_eq!(refunded["status"], "REFUNDED");
    assert_eq!(refunded["creditsTakenBack"], "500");
    let failed = &by_type[event_types::BYOK_KEY_FAILED];
    assert_eq!(failed["data"]["provider"], "openai");
    assert!(!failed.to_string().contains(ALICE_KEY));
    let reset = &by_type[event_types::CYCLE_RESET]["data"];
    assert_eq!(reset["monthlyAllocation"], reset["monthlyBalance"], "{reset}");
    assert_ne!(reset["cycleStart"], reset["previousCycleStart"]);

    // Each row was delivered by its first attempt, which is recorded.
    for (row, attempts) in outbox(app).await {
        assert!(row.delivered_at.is_some() && row.gave_up_at.is_none(), "{row:?}");
        assert_eq!(row.attempts, 1);
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].status_code, Some(200));
        assert!(attempts[0].error.is_none());
    }
    // A month after, the sweep forgets them.
    app.clock.advance(chrono::Duration::days(31));
    creditgate_server::housekeeping::Housekeeping::from_config(&app.app.config)
        .run(&app.app.store, 100)
        .await;
    assert!(outbox(app).await.is_empty());
    stop.cancel();
    worker.await.unwrap();
}

/// Balance alerts go out as `balance.low` and `balance.recovered` (and
/// `balance.depleted` at 0), once per crossing, signed like every event.
async fn balance_alerts_go_out_as_webhooks(backend: Backend) {
    let receiver = Receiver::start(ACCEPT).await;
    let app = TestApp::builder(backend)
        .config(&webhooks_toml(&[receiver.url()], 2_000, 30))
        .start()
        .await;
    let stop = CancellationToken::new();
    let worker = app.app.spawn_webhooks(stop.clone());
    let alice = app.member("alice", "acme");
    let r = app
        .gql(
            Some(&alice),
            "mutation { setBalanceAlerts(thresholds: [\"50\", \"0\"]) { alertThresholds } }",
            json!({}),
        )
        .await;
    assert_eq!(r.data()["setBalanceAlerts"]["alertThresholds"], json!(["50", "0"]));

    // A hold of 60 takes available from 100 to 40 (LOW at 50); its release
    // brings it back (RECOVERED); a second hold of 60 is LOW once more.
    let store = &app.app.store;
    let hold = |amount: &str| creditgate_storage::HoldRequest::new(amount.parse().unwrap());
    let creditgate_storage::Placement::Placed { hold: h, .. } = store.place_hold("alice", &hold("60")).await.unwrap()
    else {
        panic!("a new hold")
    };
    store.release_hold("alice", &h.id, None).await.unwrap();
    store.place_hold("alice", &hold("60")).await.unwrap();
    wait_for(&app.clock, step(), "three alerts", || all_delivered(&app, 3)).await;
    for _ in 0..10 {
        app.clock.advance(chrono::Duration::minutes(5));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    receiver.assert_once_each();
    let mut seen: Vec<(String, String, String)> = receiver
        .accepted()
        .into_iter()
        .map(|d| {
            let data = &d.body["data"];
            assert_eq!(data["userId"], "alice", "{}", d.body);
            (
                d.body["type"].as_str().unwrap().to_owned(),
                data["threshold"].as_str().unwrap().to_owned(),
                data["available"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let t = |k: &str, th: &str, av: &str| (k.to_owned(), th.to_owned(), av.to_owned());
    assert_eq!(
        seen,
        [
            t(event_types::BALANCE_LOW, "50", "40"),
            t(event_types::BALANCE_LOW, "50", "40"),
            t(event_types::BALANCE_RECOVERED, "50", "100"),
        ]
    );
    stop.cancel();
    worker.await.unwrap();
}

async fn two_replicas_deliver_every_event_exactly_once(backend: Backend) {
    let receiver = Receiver::start(ACCEPT).await;
    let toml = webhooks_toml(&[receiver.url()], 2_000, 30);
    let app = TestApp::builder(backend).config(&toml).start().await;
    let replica = app.replica(&toml).await;
    let stop = CancellationToken::new();
    let workers = [
        app.app.spawn_webhooks(stop.clone()),
        replica.app.spawn_webhooks(stop.clone()),
    ];
    let users: Vec<String> = (0..12).map(|i| format!("user-{i}")).collect();
    let buys = users.iter().map(|u| buy(&app, u, "k"));
    futures::future::join_all(buys).await;
    wait_for(&app.clock, step(), "twelve deliveries", || all_delivered(&app, 12)).await;
    // Let both replicas poll a while longer: nothing is sent again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    receiver.assert_once_each();
    assert_eq!(receiver.accepted().len(), 12);
    assert_eq!(receiver.hits(), 12);
    for (row, attempts) in outbox(&app).await {
        assert_eq!((row.attempts, attempts.len()), (1, 1), "{row:?}");
    }
    stop.cancel();
    for w in workers {
        w.await.unwrap();
    }
}

async fn a_receiver_down_for_a_while_gets_everything_after(backend: Backend) {
    let receiver = Receiver::start(UNAVAILABLE).await;
    let app = TestApp::builder(backend)
        .config(&webhooks_toml(&[receiver.url()], 2_000, 30))
        .start()
        .await;
    let stop = CancellationToken::new();
    let worker = app.app.spawn_webhooks(stop.clone());
    for user in ["ann", "bob", "cid"] {
        buy(&app, user, "k").await;
    }
    // Down for three attempts of each event...
    wait_for(&app.clock, step(), "three failed attempts each", || async {
        let rows = app.app.store.webhook_outbox(None).await.unwrap();
        rows.len() == 3 && rows.iter().all(|r| r.attempts >= 3)
    })
    .await;
    assert!(receiver.accepted().is_empty());
    // ...then back.
    receiver.set(ACCEPT);
    wait_for(&app.clock, step(), "every delivery", || all_delivered(&app, 3)).await;
    receiver.assert_once_each();
    assert_eq!(receiver.accepted().len(), 3);
    for (row, attempts) in outbox(&app).await {
        assert_eq!(usize::try_from(row.attempts).unwrap(), attempts.len());
        let (last, failed) = attempts.split_last().unwrap();
        assert_eq!(last.status_code, Some(200));
        assert!(failed.len() >= 3);
        assert!(failed.iter().all(|a| a.status_code == Some(503)), "{failed:?}");
        // Backed off: each retry later than the one before.
        for pair in attempts.windows(2) {
            assert!(pair[1].at > pair[0].at, "{attempts:?}");
        }
    }
    stop.cancel();
    worker.await.unwrap();
}

async fn a_replica_killed_mid_delivery_loses_no_event(backend: Backend) {
    let receiver = Receiver::start(HANG).await;
    let toml = webhooks_toml(&[receiver.url()], 20_000, 30);
    let app = TestApp::builder(backend).config(&toml).start().await;
    let worker = app.app.spawn_webhooks(CancellationToken::new());
    buy(&app, "ann", "k").await;
    let started = Instant::now();
    while receiver.hits() == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the delivery never began");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The replica dies mid-delivery: nothing is recorded, the lease stays.
    worker.abort();
    assert!(worker.await.unwrap_err().is_cancelled());
    app.shutdown();
    receiver.set(ACCEPT);
    let replica = app.replica(&toml).await;
    let stop = CancellationToken::new();
    let other = replica.app.spawn_webhooks(stop.clone());
    // Within the lease nobody else takes the row...
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.accepted().is_empty());
    // ...after it, the other replica delivers it.
    app.clock.advance(chrono::Duration::seconds(31));
    wait_for(&app.clock, step(), "the delivery", || all_delivered(&app, 1)).await;
    receiver.assert_once_each();
    assert_eq!(receiver.accepted().len(), 1);
    assert_eq!(receiver.accepted()[0].body["type"], event_types::PURCHASE_COMPLETED);
    let rows = outbox(&app).await;
    assert_eq!(rows[0].0.event_id, receiver.accepted()[0].id);
    assert_eq!(rows[0].1.len(), 1, "only the finished attempt is recorded");
    stop.cancel();
    other.await.unwrap();
}

async fn a_dead_endpoint_does_not_delay_a_live_one(backend: Backend) {
    let live = Receiver::start(ACCEPT).await;
    let stuck = Receiver::start(HANG).await;
    // Nothing listens there: connections are refused.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    let app = TestApp::builder(backend)
        .config(&webhooks_toml(&[stuck.url(), refused.clone(), live.url()], 5_000, 30))
        .start()
        .await;
    let stop = CancellationToken::new();
    let worker = app.app.spawn_webhooks(stop.clone());
    let began = Instant::now();
    for i in 0..6 {
        buy(&app, &format!("user-{i}"), "k").await;
    }
    while live.accepted().len() < 6 {
        assert!(
            began.elapsed() < Duration::from_secs(4),
            "the live endpoint waited for the dead ones"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    live.assert_once_each();
    // The stuck endpoint holds only its own slots (2 per replica).
    assert!(stuck.hits() <= 2, "{}", stuck.hits());
    // The refused endpoint's attempts are recorded, and retried later.
    let refused_tried = || async {
        let rows = app.app.store.webhook_outbox(None).await.unwrap();
        rows.iter().filter(|r| r.endpoint == refused && r.attempts > 0).count() == 6
    };
    wait_for(
        &app.clock,
        chrono::Duration::zero(),
        "attempts on the dead endpoint",
        refused_tried,
    )
    .await;
    let rows = app.app.store.webhook_outbox(None).await.unwrap();
    assert_eq!(rows.len(), 18);
    for row in rows.iter().filter(|r| r.endpoint == refused) {
        assert!(row.delivered_at.is_none() && row.gave_up_at.is_none());
        assert!(row.next_attempt_at > app.app.store.now(), "{row:?}");
        let attempts = app.app.store.webhook_attempts(&row.id).await.unwrap();
        assert_eq!(attempts[0].status_code, None);
        assert_eq!(attempts[0].error.as_deref(), Some("could not connect"));
    }
    stop.cancel();
    worker.await.unwrap();
}

on_both_databases!(
    every_event_reaches_the_receiver_once_and_signed,
    two_replicas_deliver_every_event_exactly_once,
    a_receiver_down_for_a_while_gets_everything_after,
    a_replica_killed_mid_delivery_loses_no_event,
    a_dead_endpoint_does_not_delay_a_live_one,
    balance_alerts_go_out_as_webhooks,
);

#[test]
fn a_bad_webhook_secret_refuses_the_start_naming_its_key() {
    let toml = "[[webhooks.endpoints]]\nurl = \"https://hooks.example.com/in\"\nsecret = \"whsec_c2hvcnQtc2VjcmV0\"";
    let err = creditgate_server::Config::from_toml(toml).unwrap_err().to_string();
    assert!(err.contains("webhooks.endpoints.secret"), "{err}");
    assert!(!err.contains("c2hvcnQtc2VjcmV0"), "the secret is shown: {err}");
    let ok = format!("[[webhooks.endpoints]]\nurl = \"https://hooks.example.com/in\"\nsecret = {SECRET:?}");
    let config = creditgate_server::Config::from_toml(&ok).unwrap();
    assert!(!format!("{config:?}").contains("MfKQ9r8"));
}
