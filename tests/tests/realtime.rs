//! Real-time balances end to end: graphql-transport-ws subscriptions
//! (`walletUpdated`, `activityAdded`) against a running server, on one
//! replica and across two replicas on one PostgreSQL database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::Duration;
use creditgate_domain::{Credits, Role};
use creditgate_e2e::ws::{ACTIVITY_ADDED, WALLET_UPDATED, WsClient, live_subscriptions};
use creditgate_e2e::{Backend, TestApp, on_both_databases};
use creditgate_server::TokenRequest;
use creditgate_storage::{HoldRequest, Placement, UsageDetails};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn credits(v: &str) -> Credits {
    v.parse().unwrap()
}

/// Waits for the next wallet of `id` and returns it.
async fn wallet(c: &mut WsClient, id: &str) -> Value {
    c.next(id, "walletUpdated").await
}

async fn entry(c: &mut WsClient, id: &str) -> Value {
    c.next(id, "activityAdded").await
}

async fn every_kind_of_change_reaches_the_subscriber(backend: Backend) {
    let app = TestApp::new(backend).await;
    let alice = app.member("alice", "acme");
    let mut c = WsClient::connect(app.addr, &alice).await;
    let w_id = c.subscribe(WALLET_UPDATED).await;
    let a_id = c.subscribe(ACTIVITY_ADDED).await;

    // First the wallet as it is (the user is created on first sight).
    let w = wallet(&mut c, &w_id).await;
    assert_eq!(
        (s(&w["monthlyBalance"]), s(&w["permanentBalance"]), s(&w["available"])),
        ("100", "0", "100")
    );
    live_subscriptions(&app.app, 2).await;

    // A grant (API).
    app.grant("alice", "25", "g1").await.data();
    let w = wallet(&mut c, &w_id).await;
    assert_eq!((s(&w["permanentBalance"]), s(&w["available"])), ("25", "125"));
    let e = entry(&mut c, &a_id).await;
    assert_eq!(
        (s(&e["kind"]), s(&e["permanentDelta"]), s(&e["balanceAfter"])),
        ("GRANT", "25", "125")
    );

    // A plan change (API): the upgrade's difference now.
    let r = app
        .gql(
            Some(&app.service()),
            "mutation { setOrganizationPlan(organizationId: \"acme\", planId: \"team\") { id } }",
            json!({}),
        )
        .await;
    r.data();
    let w = wallet(&mut c, &w_id).await;
    assert_eq!(
        (s(&w["monthlyAllocation"]), s(&w["monthlyBalance"]), s(&w["available"])),
        ("1000", "1000", "1025")
    );
    let e = entry(&mut c, &a_id).await;
    assert_eq!((s(&e["kind"]), s(&e["monthlyDelta"])), ("MONTHLY_ALLOCATION", "900"));

    // Hold and settle (store): `held` and `available` move, then the charge.
    let store = &app.app.store;
    let Placement::Placed { hold, .. } = store
        .place_hold("alice", &HoldRequest::new(credits("10")))
        .await
        .unwrap()
    else {
        panic!("a new hold")
    };
    let w = wallet(&mut c, &w_id).await;
    assert_eq!((s(&w["held"]), s(&w["available"])), ("10", "1015"));
    store
        .settle_hold("alice", &hold.id, credits("4"), UsageDetails::default())
        .await
        .unwrap();
    let w = wallet(&mut c, &w_id).await;
    assert_eq!(
        (s(&w["held"]), s(&w["monthlyBalance"]), s(&w["available"])),
        ("0", "996", "1021")
    );
    let e = entry(&mut c, &a_id).await;
    assert_eq!(
        (s(&e["kind"]), s(&e["creditsConsumed"]), s(&e["balanceAfter"])),
        ("AI_USAGE", "4", "1021")
    );

    // Hold and release (store): no entry, but the wallet moves twice.
    let Placement::Placed { hold, .. } = store
        .place_hold("alice", &HoldRequest::new(credits("5")))
        .await
        .unwrap()
    else {
        panic!("a new hold")
    };
    let w = wallet(&mut c, &w_id).await;
    assert_eq!((s(&w["held"]), s(&w["available"])), ("5", "1016"));
    store.release_hold("alice", &hold.id, None).await.unwrap();
    let w = wallet(&mut c, &w_id).await;
    assert_eq!((s(&w["held"]), s(&w["available"])), ("0", "1021"));

    // The cycle ends; the sweep closes it (store, moved clock).
    let cycle_end = chrono::DateTime::parse_from_rfc3339(s(&w["cycleEnd"])).unwrap();
    app.clock
        .set(cycle_end.with_timezone(&chrono::Utc) + Duration::hours(1));
    assert_eq!(store.close_ended_cycles(100).await.unwrap(), 1);
    let w2 = wallet(&mut c, &w_id).await;
    assert_eq!(
        (
            s(&w2["monthlyBalance"]),
            s(&w2["permanentBalance"]),
            s(&w2["available"])
        ),
        ("1000", "25", "1025")
    );
    assert_eq!(w2["cycleStart"], w["cycleEnd"]);
    let e = entry(&mut c, &a_id).await;
    assert_eq!((s(&e["kind"]), s(&e["monthlyDelta"])), ("MONTHLY_EXPIRY", "-996"));
    let e = entry(&mut c, &a_id).await;
    assert_eq!(
        (s(&e["kind"]), s(&e["monthlyDelta"]), s(&e["balanceAfter"])),
        ("MONTHLY_ALLOCATION", "1000", "1025")
    );

    // complete ends one subscription; the other goes on.
    c.complete(&a_id).await;
    app.grant("alice", "1", "g2").await.data();
    let w = wallet(&mut c, &w_id).await;
    assert_eq!(s(&w["permanentBalance"]), "26");
}

async fn users_never_see_each_others_events(backend: Backend) {
    let app = TestApp::new(backend).await;
    let mut alice = WsClient::connect(app.addr, &app.member("alice", "acme")).await;
    let mut bob = WsClient::connect(app.addr, &app.member("bob", "acme")).await;
    let aw = alice.subscribe(WALLET_UPDATED).await;
    let aa = alice.subscribe(ACTIVITY_ADDED).await;
    let bw = bob.subscribe(WALLET_UPDATED).await;
    let ba = bob.subscribe(ACTIVITY_ADDED).await;
    assert_eq!(s(&wallet(&mut alice, &aw).await["permanentBalance"]), "0");
    assert_eq!(s(&wallet(&mut bob, &bw).await["permanentBalance"]), "0");
    live_subscriptions(&app.app, 4).await;

    app.grant("alice", "7", "a1").await.data();
    app.grant("bob", "11", "b1").await.data();
    app.grant("alice", "3", "a2").await.data();
    // Each sees only their own changes, in order: bob's first event is his
    // own grant, not alice's.
    assert_eq!(s(&wallet(&mut bob, &bw).await["permanentBalance"]), "11");
    assert_eq!(s(&entry(&mut bob, &ba).await["permanentDelta"]), "11");
    // Alice's wallet after each grant, or (when the second committed before
    // the first was read from a notification) only the latest one; her
    // entries all arrive, in order.
    let first = wallet(&mut alice, &aw).await;
    if s(&first["permanentBalance"]) == "7" {
        assert_eq!(s(&wallet(&mut alice, &aw).await["permanentBalance"]), "10");
    } else {
        assert_eq!(s(&first["permanentBalance"]), "10");
    }
    assert_eq!(s(&entry(&mut alice, &aa).await["permanentDelta"]), "7");
    assert_eq!(s(&entry(&mut alice, &aa).await["permanentDelta"]), "3");
    app.grant("bob", "2", "b2").await.data();
    assert_eq!(s(&wallet(&mut bob, &bw).await["permanentBalance"]), "13");
}

async fn a_bad_token_is_refused(backend: Backend) {
    let app = TestApp::new(backend).await;
    let mut none = WsClient::open(app.addr).await.unwrap();
    assert_eq!(none.init(json!({})).await.unwrap_err().0, 4403);
    let mut garbage = WsClient::open(app.addr).await.unwrap();
    assert_eq!(
        garbage
            .init(json!({"Authorization": "Bearer not.a.jwt"}))
            .await
            .unwrap_err()
            .0,
        4403
    );
    // Signed with another secret.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "mallory", "org": "acme", "role": "member", "exp": chrono::Utc::now().timestamp() + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret-another-secret"),
    )
    .unwrap();
    let mut c = WsClient::open(app.addr).await.unwrap();
    let (code, reason) = c
        .init(json!({"Authorization": format!("Bearer {forged}")}))
        .await
        .unwrap_err();
    assert_eq!(code, 4403, "{reason}");
    // A SERVICE identity has no wallet to subscribe to.
    let mut svc = WsClient::connect(app.addr, &app.service()).await;
    let id = svc.subscribe(WALLET_UPDATED).await;
    let m = svc.message(&id).await;
    assert_eq!(m["type"], "next", "{m}");
    assert_eq!(m["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN", "{m}");
}

async fn an_expired_token_ends_the_subscription(backend: Backend) {
    let app = TestApp::builder(backend).config("[jwt]\nleeway_secs = 0").start().await;
    let token = app
        .app
        .auth
        .issue(&TokenRequest {
            sub: "erin".into(),
            org: "acme".into(),
            role: Role::Member,
            name: None,
            email: None,
            team: None,
            org_name: None,
            ttl: Duration::seconds(2),
        })
        .unwrap();
    let mut c = WsClient::connect(app.addr, &token).await;
    let id = c.subscribe(WALLET_UPDATED).await;
    assert_eq!(s(&wallet(&mut c, &id).await["available"]), "100");
    let (code, reason) = c.closed().await;
    assert_eq!(code, 4403, "{reason}");
}

async fn connection_limits_apply(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[realtime]\nmax_connections = 2\nmax_connections_per_user = 1")
        .start()
        .await;
    let alice = app.member("alice", "acme");
    let mut first = WsClient::connect(app.addr, &alice).await;
    let mut second = WsClient::open(app.addr).await.unwrap();
    let (code, _) = second
        .init(json!({"Authorization": format!("Bearer {alice}")}))
        .await
        .unwrap_err();
    assert_eq!(code, 4429);
    // Once the second is gone, a second user may connect; a third socket is
    // refused before the upgrade.
    drop(second);
    let mut bob = None;
    for _ in 0..100 {
        match WsClient::open(app.addr).await {
            Ok(mut c) => {
                c.init(json!({"Authorization": format!("Bearer {}", app.member("bob", "acme"))}))
                    .await
                    .unwrap();
                bob = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let _bob = bob.expect("a place once the refused connection closed");
    let refused = WsClient::open(app.addr).await;
    assert!(refused.is_err(), "the replica is full");
    let id = first.subscribe(WALLET_UPDATED).await;
    assert_eq!(s(&wallet(&mut first, &id).await["available"]), "100");
}

/// A saved or removed key, or new AI settings, change how AI is paid
/// (`billingMode`): subscribers see the wallet again without asking.
async fn key_changes_show_the_new_billing_mode_live(backend: Backend) {
    let app = TestApp::new(backend).await;
    let alice = app.member("alice", "acme");
    let mut c = WsClient::connect(app.addr, &alice).await;
    let id = c
        .subscribe("subscription { walletUpdated { id billingMode available } }")
        .await;
    assert_eq!(s(&c.next(&id, "walletUpdated").await["billingMode"]), "CREDITS");
    live_subscriptions(&app.app, 1).await;

    let store = &app.app.store;
    store
        .put_byok_key("alice", "openai", "ciphertext".to_owned(), "sk-…cdef".to_owned())
        .await
        .unwrap();
    let w = c.next(&id, "walletUpdated").await;
    assert_eq!((s(&w["billingMode"]), s(&w["available"])), ("BYOK", "100"));

    let r = app
        .gql(
            Some(&alice),
            "mutation { setAiSettings(preferredProvider: \"openai\", fallbackToCredits: false) { fallbackToCredits } }",
            json!({}),
        )
        .await;
    assert_eq!(r.data()["setAiSettings"]["fallbackToCredits"], false);
    assert_eq!(s(&c.next(&id, "walletUpdated").await["billingMode"]), "BYOK");

    assert!(store.remove_byok_key("alice", "openai").await.unwrap());
    assert_eq!(s(&c.next(&id, "walletUpdated").await["billingMode"]), "CREDITS");
    // Removing a key that is not there changes nothing and says so.
    assert!(!store.remove_byok_key("alice", "openai").await.unwrap());
}

on_both_databases!(
    every_kind_of_change_reaches_the_subscriber,
    users_never_see_each_others_events,
    a_bad_token_is_refused,
    an_expired_token_ends_the_subscription,
    connection_limits_apply,
    key_changes_show_the_new_billing_mode_live,
);

/// Two replicas on one PostgreSQL database: a grant on one reaches a
/// subscriber on the other, also after the LISTEN connections are killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_fan_out_through_listen_notify() {
    let a = TestApp::new(Backend::Postgres).await;
    let b = a.replica("").await;
    let token = a.member("alice", "acme");
    // Subscriber on B; changes on A.
    let mut c = WsClient::connect(b.addr, &token).await;
    let wid = c.subscribe(WALLET_UPDATED).await;
    let act = c.subscribe(ACTIVITY_ADDED).await;
    assert_eq!(s(&wallet(&mut c, &wid).await["available"]), "100");
    live_subscriptions(&b.app, 2).await;
    a.grant("alice", "5", "x1").await.data();
    assert_eq!(s(&wallet(&mut c, &wid).await["permanentBalance"]), "5");
    assert_eq!(s(&entry(&mut c, &act).await["permanentDelta"]), "5");
    a.grant("alice", "6", "x2").await.data();
    assert_eq!(s(&wallet(&mut c, &wid).await["permanentBalance"]), "11");
    assert_eq!(s(&entry(&mut c, &act).await["permanentDelta"]), "6");

    // Kill every LISTEN connection of this database, then grant on A.
    let db = a.app.store.connection();
    let killed = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity \
             WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
        ))
        .await
        .unwrap();
    assert!(!killed.is_empty(), "the replicas LISTEN");
    a.grant("alice", "7", "x3").await.data();
    // The event arrives: through the notification once B listens again, or
    // through the resync that follows its reconnection (possibly as a
    // re-sent wallet first).
    loop {
        let w = wallet(&mut c, &wid).await;
        if s(&w["permanentBalance"]) == "18" {
            break;
        }
        assert_eq!(s(&w["permanentBalance"]), "11", "no other state in between");
    }
    assert_eq!(s(&entry(&mut c, &act).await["permanentDelta"]), "7");
    // And notifications flow again after the reconnection.
    a.grant("alice", "1", "x4").await.data();
    loop {
        let w = wallet(&mut c, &wid).await;
        if s(&w["permanentBalance"]) == "19" {
            break;
        }
        assert_eq!(s(&w["permanentBalance"]), "18");
    }
    assert_eq!(s(&entry(&mut c, &act).await["permanentDelta"]), "1");

    // A change made on B's side reaches a subscriber on A too.
    let mut on_a = WsClient::connect(a.addr, &token).await;
    let wa = on_a.subscribe(WALLET_UPDATED).await;
    assert_eq!(s(&wallet(&mut on_a, &wa).await["permanentBalance"]), "19");
    b.app
        .store
        .add_credits(
            "alice",
            &creditgate_storage::CreditRequest {
                kind: creditgate_domain::ActivityKind::Grant,
                amount: credits("2"),
                description: None,
                reference: None,
                idempotency_key: None,
            },
        )
        .await
        .unwrap();
    loop {
        let w = wallet(&mut on_a, &wa).await;
        if s(&w["permanentBalance"]) == "21" {
            break;
        }
    }
}
