//! Buying credits end to end: the dev provider, and Stripe against a mock
//! of its API on 127.0.0.1 with webhooks signed the way Stripe signs them;
//! on SQLite and PostgreSQL. The dev provider here, Stripe in `stripe.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod stripe;

use creditgate_domain::{ActivityKind, Clock, Credits};
use creditgate_e2e::{Backend, TestApp, on_both_databases};
use creditgate_storage::{ActivityFilter, HoldRequest, Placement, UsageDetails};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const BUY: &str = "mutation($p: ID!, $k: String!) { purchaseCredits(packId: $p, idempotencyKey: $k) { id status checkoutUrl createdAt completedAt pack { id name credits priceCents currency } } }";
const PURCHASES: &str = "{ purchases { id status checkoutUrl completedAt pack { id credits } } }";

// ------------------------------------------------------------------ helpers

async fn buy(app: &TestApp, token: &str, pack: &str, key: &str) -> creditgate_e2e::Gql {
    app.gql(Some(token), BUY, json!({"p": pack, "k": key})).await
}

async fn purchases(app: &TestApp, token: &str) -> Vec<Value> {
    app.gql(Some(token), PURCHASES, json!({})).await.data()["purchases"]
        .as_array()
        .unwrap()
        .clone()
}

/// The caller's activity of one kind, newest first.
async fn activity_of(app: &TestApp, token: &str, kind: &str) -> Vec<Value> {
    let q = "query($f: ActivityFilter) { activity(first: 50, filter: $f) { edges { node { kind permanentDelta monthlyDelta creditsConsumed balanceAfter description } } } }";
    app.gql(Some(token), q, json!({"f": {"kinds": [kind]}})).await.data()["activity"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

/// Spends `amount` through a hold settled for all of it, as an AI call does.
async fn spend(app: &TestApp, user: &str, amount: &str) {
    let amount: Credits = amount.parse().unwrap();
    let placed = app.app.store.place_hold(user, &HoldRequest::new(amount)).await.unwrap();
    let Placement::Placed { hold, .. } = placed else {
        panic!("expected a new hold")
    };
    app.app
        .store
        .settle_hold(user, &hold.id, amount, UsageDetails::default())
        .await
        .unwrap();
}

async fn assert_reconciles(app: &TestApp) {
    assert_eq!(app.app.store.reconcile().await.unwrap(), vec![]);
}

// --------------------------------------------------------------- dev provider

async fn dev_purchase_completes_at_once(backend: Backend) {
    let app = TestApp::new(backend).await;
    let alice = app.member("alice", "acme");
    let packs = app
        .gql(
            Some(&alice),
            "{ creditPacks { id name credits priceCents currency } }",
            json!({}),
        )
        .await;
    assert_eq!(
        packs.data()["creditPacks"],
        json!([
            {"id": "starter", "name": "Starter", "credits": "500", "priceCents": 500, "currency": "USD"},
            {"id": "plus", "name": "Plus", "credits": "2500", "priceCents": 2000, "currency": "USD"},
            {"id": "pro", "name": "Pro", "credits": "10000", "priceCents": 7000, "currency": "USD"},
        ])
    );

    let first = buy(&app, &alice, "starter", "buy-1").await;
    let p = first.data()["purchaseCredits"].clone();
    assert_eq!(p["status"], "COMPLETED");
    assert_eq!(p["checkoutUrl"], Value::Null);
    assert!(p["completedAt"].is_string());
    assert_eq!(p["pack"]["credits"], "500");
    let id = p["id"].as_str().unwrap().to_owned();

    let w = app.wallet(&alice).await;
    assert_eq!(
        (w["permanentBalance"].as_str(), w["available"].as_str()),
        (Some("500"), Some("600"))
    );
    let bought = activity_of(&app, &alice, "PURCHASE").await;
    assert_eq!(bought.len(), 1);
    assert_eq!(bought[0]["permanentDelta"], "500");
    assert_eq!(bought[0]["balanceAfter"], "600");
    let description = bought[0]["description"].as_str().unwrap();
    assert!(
        description.contains("Starter") && description.contains(&id),
        "{description}"
    );
    // The journal entry references the purchase.
    let page = app
        .app
        .store
        .activity(
            "alice",
            &ActivityFilter {
                kinds: Some(vec![ActivityKind::Purchase]),
                ..ActivityFilter::default()
            },
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(page.entries[0].reference.as_deref(), Some(id.as_str()));

    // The same key: the same purchase, nothing added.
    let again = buy(&app, &alice, "starter", "buy-1").await;
    assert_eq!(again.data()["purchaseCredits"]["id"], id.as_str());
    assert_eq!(again.data()["purchaseCredits"]["status"], "COMPLETED");
    assert_eq!(app.wallet(&alice).await["permanentBalance"], "500");
    // The same key for another pack.
    assert_eq!(buy(&app, &alice, "plus", "buy-1").await.code(), "IDEMPOTENCY_CONFLICT");
    // No such pack.
    assert_eq!(buy(&app, &alice, "gold", "buy-2").await.code(), "NOT_FOUND");
    assert_eq!(buy(&app, &alice, "starter", " ").await.code(), "BAD_USER_INPUT");

    // A second purchase is listed first.
    let second = buy(&app, &alice, "plus", "buy-3").await.data()["purchaseCredits"]["id"].clone();
    let list = purchases(&app, &alice).await;
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], second);
    assert_eq!(list[1]["id"], id.as_str());
    assert_eq!(app.wallet(&alice).await["permanentBalance"], "3000");

    // Another user sees none of it; their own key is theirs.
    let bob = app.member("bob", "acme");
    assert_eq!(purchases(&app, &bob).await, Vec::<Value>::new());
    let bobs = buy(&app, &bob, "starter", "buy-1").await;
    assert_ne!(bobs.data()["purchaseCredits"]["id"], id.as_str());
    assert_eq!(purchases(&app, &bob).await.len(), 1);
    assert_eq!(purchases(&app, &alice).await.len(), 2);
    assert_eq!(app.wallet(&bob).await["permanentBalance"], "500");

    // A service identity has no wallet to buy for; no token, no packs.
    let svc = app.service();
    assert_eq!(buy(&app, &svc, "starter", "svc-1").await.code(), "FORBIDDEN");
    assert_eq!(
        app.gql(None, "{ creditPacks { id } }", json!({})).await.code(),
        "UNAUTHENTICATED"
    );
    assert_reconciles(&app).await;
}

async fn monthly_credits_are_spent_before_purchased_ones(backend: Backend) {
    let app = TestApp::new(backend).await;
    let alice = app.member("alice", "acme");
    buy(&app, &alice, "starter", "k").await.data();
    spend(&app, "alice", "30").await;
    let w = app.wallet(&alice).await;
    assert_eq!(
        (w["monthlyBalance"].as_str(), w["permanentBalance"].as_str()),
        (Some("70"), Some("500"))
    );
    // Past the monthly credits, the purchased ones pay the rest.
    spend(&app, "alice", "100").await;
    let w = app.wallet(&alice).await;
    assert_eq!(
        (w["monthlyBalance"].as_str(), w["permanentBalance"].as_str()),
        (Some("0"), Some("470"))
    );
    assert_reconciles(&app).await;
}

async fn inactive_packs_are_not_sold(backend: Backend) {
    let app = TestApp::builder(backend)
        .config(
            r#"
[[payments.packs]]
id = "small"
name = "Small"
credits = "12.5"
price_cents = 199
currency = "eur"

[[payments.packs]]
id = "old"
name = "Old"
credits = "1"
price_cents = 100
currency = "EUR"
active = false
"#,
        )
        .start()
        .await;
    let alice = app.member("alice", "acme");
    let packs = app
        .gql(Some(&alice), "{ creditPacks { id credits currency } }", json!({}))
        .await;
    assert_eq!(
        packs.data()["creditPacks"],
        json!([{"id": "small", "credits": "12.5", "currency": "EUR"}])
    );
    assert_eq!(buy(&app, &alice, "old", "k1").await.code(), "NOT_FOUND");
    assert_eq!(buy(&app, &alice, "starter", "k2").await.code(), "NOT_FOUND");
    buy(&app, &alice, "small", "k3").await.data();
    assert_eq!(app.wallet(&alice).await["permanentBalance"], "12.5");
}

#[test]
fn dev_provider_is_refused_in_production() {
    let base = "environment = \"production\"\njwt_secret = \"production-secret-production-secret-0123\"\n[ai]\nidentity_file = \"/run/secrets/byok\"\n";
    let err = creditgate_server::Config::from_toml(base).unwrap_err().to_string();
    assert!(err.contains("payments.provider"), "{err}");
    let stripe = format!(
        "{base}[payments]\nprovider = \"stripe\"\n[payments.stripe]\nsuccess_url = \"https://a.example/ok\"\ncancel_url = \"https://a.example/no\"\n"
    );
    creditgate_server::Config::from_toml(&stripe).unwrap();
}

on_both_databases!(
    dev_purchase_completes_at_once,
    monthly_credits_are_spent_before_purchased_ones,
    inactive_packs_are_not_sold,
);
