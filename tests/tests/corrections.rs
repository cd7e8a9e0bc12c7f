//! Corrections by the back office: `adjustCredits` adds or takes back
//! permanent credits with a reason, never below 0, once per key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use creditgate_e2e::{Backend, TestApp, on_both_databases};
use serde_json::json;

const ADJUST: &str = "mutation($u: ID!, $a: Credits!, $r: String!, $k: String!) { adjustCredits(userId: $u, amount: $a, reason: $r, idempotencyKey: $k) { id kind permanentDelta monthlyDelta balanceAfter description } }";

async fn adjustments_correct_permanent_credits_once(backend: Backend) {
    let app = TestApp::new(backend).await;
    let alice = app.member("alice", "acme");
    let svc = app.service();
    app.wallet(&alice).await;
    app.grant("alice", "30", "g").await.data();
    let adjust = |amount: &str, reason: &str, key: &str| {
        app.gql(
            Some(&svc),
            ADJUST,
            json!({"u": "alice", "a": amount, "r": reason, "k": key}),
        )
    };

    let up = adjust("12.5", "goodwill for the outage", "a1").await;
    let up = up.data()["adjustCredits"].clone();
    assert_eq!(
        (up["kind"].as_str(), up["permanentDelta"].as_str()),
        (Some("ADJUSTMENT"), Some("12.5"))
    );
    assert_eq!(up["balanceAfter"], "142.5");
    // The same key and request: the same entry, nothing moves again.
    let again = adjust("12.5", "goodwill for the outage", "a1").await;
    assert_eq!(again.data()["adjustCredits"], up);
    assert_eq!(
        adjust("13", "goodwill for the outage", "a1").await.code(),
        "IDEMPOTENCY_CONFLICT"
    );

    let down = adjust("-2.5", "duplicate grant", "a2").await;
    let down = down.data()["adjustCredits"].clone();
    assert_eq!(
        (down["permanentDelta"].as_str(), down["monthlyDelta"].as_str()),
        (Some("-2.5"), Some("0"))
    );
    assert_eq!(down["description"], "duplicate grant");

    // More than is left: takes what is left (40), never below 0, and says so.
    let all = adjust("-100", "chargeback", "a3").await;
    let all = all.data()["adjustCredits"].clone();
    assert_eq!(all["permanentDelta"], "-40");
    assert_eq!(
        all["description"],
        "chargeback (100 requested; only 40 left, all of it taken)"
    );
    let w = app.wallet(&alice).await;
    assert_eq!(
        (w["permanentBalance"].as_str(), w["monthlyBalance"].as_str()),
        (Some("0"), Some("100"))
    );
    // Nothing left: an entry of 0 that says so.
    let none = adjust("-1", "again", "a4").await;
    assert_eq!(none.data()["adjustCredits"]["permanentDelta"], "0");

    // Refused: zero, a member, a bad key, an unknown user.
    assert_eq!(adjust("0", "x", "a5").await.code(), "BAD_USER_INPUT");
    assert_eq!(
        app.gql(
            Some(&alice),
            ADJUST,
            json!({"u": "alice", "a": "5", "r": "me", "k": "a6"})
        )
        .await
        .code(),
        "FORBIDDEN"
    );
    assert_eq!(adjust("5", "x", " ").await.code(), "BAD_USER_INPUT");
    assert_eq!(
        app.gql(Some(&svc), ADJUST, json!({"u": "ghost", "a": "5", "r": "x", "k": "a7"}))
            .await
            .code(),
        "NOT_FOUND"
    );
    assert_eq!(app.app.store.reconcile().await.unwrap(), vec![]);
}

on_both_databases!(adjustments_correct_permanent_credits_once);
