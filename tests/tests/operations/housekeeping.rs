//! The payment housekeeping of the periodic sweep: processed webhook events
//! pruned, purchases that never reached the provider failed.

use chrono::Duration;
use creditgate_e2e::{Backend, TestApp, on_both_databases};
use creditgate_server::housekeeping::Housekeeping;
use creditgate_storage::entities::webhook_events;
use creditgate_storage::{NewPurchase, ProviderEvent, PurchaseStart, PurchaseUpdate};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A PENDING purchase of the starter pack made through the store (as
/// purchaseCredits does before it calls the payment provider).
async fn pending(app: &TestApp, user: &str, key: &str) -> String {
    match app
        .app
        .store
        .create_purchase(&NewPurchase {
            user_id: user.into(),
            pack_id: "starter".into(),
            pack_name: "Starter".into(),
            credits: "500".parse().unwrap(),
            price_cents: 500,
            currency: "USD".into(),
            provider: "stripe".into(),
            idempotency_key: key.into(),
        })
        .await
        .unwrap()
    {
        PurchaseStart::Created(p) => p.id,
        PurchaseStart::Existing(p) => panic!("{p:?} existed"),
    }
}

async fn event_count(app: &TestApp) -> u64 {
    webhook_events::Entity::find()
        .count(app.app.store.connection())
        .await
        .unwrap()
}

async fn processed_webhook_events_are_pruned_after_their_retention(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[payments]\nwebhook_event_retention_days = 30\n")
        .start()
        .await;
    let alice = app.member("alice", "acme");
    app.wallet(&alice).await;
    let sweep = Housekeeping::from_config(&app.app.config);
    let event = |id| ProviderEvent {
        id,
        provider: "stripe",
        event_type: "checkout.session.completed",
    };
    let old = pending(&app, "alice", "buy-old").await;
    let applied = app
        .app
        .store
        .complete_purchase(&old, None, None, Some(event("evt_old")))
        .await
        .unwrap();
    assert!(matches!(applied, PurchaseUpdate::Applied(_)));
    app.clock.advance(Duration::days(20));
    let recent = pending(&app, "alice", "buy-recent").await;
    app.app
        .store
        .complete_purchase(&recent, None, None, Some(event("evt_recent")))
        .await
        .unwrap();
    assert_eq!(event_count(&app).await, 2);

    // Day 29 for the old one: kept.
    app.clock.advance(Duration::days(9));
    sweep.run(&app.app.store, 500).await;
    assert_eq!(event_count(&app).await, 2);
    // Day 31: the old one goes, the recent one (day 11) stays.
    app.clock.advance(Duration::days(2));
    let replica = app.replica("").await;
    tokio::join!(sweep.run(&app.app.store, 500), sweep.run(&replica.app.store, 500));
    assert_eq!(event_count(&app).await, 1);
    assert!(
        webhook_events::Entity::find_by_id("evt_recent".to_owned())
            .one(app.app.store.connection())
            .await
            .unwrap()
            .is_some()
    );

    // A late redelivery of the forgotten event changes nothing: the
    // purchase is no longer PENDING, and the credits were added once.
    let again = app
        .app
        .store
        .complete_purchase(&old, None, None, Some(event("evt_old")))
        .await
        .unwrap();
    assert!(matches!(again, PurchaseUpdate::Unchanged(_)), "{again:?}");
    assert_eq!(app.wallet(&alice).await["permanentBalance"], "1000");
    assert_eq!(app.app.store.reconcile().await.unwrap(), vec![]);
}

const PURCHASES: &str = "{ purchases { id status } }";

async fn status_of(app: &TestApp, token: &str, id: &str) -> String {
    let r = app.gql(Some(token), PURCHASES, json!({})).await;
    r.data()["purchases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .map(|p| p["status"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no purchase {id}"))
}

async fn purchases_that_never_reached_the_provider_fail_after_an_hour(backend: Backend) {
    // Stripe is down for the first purchase, up for the second.
    let stripe = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({"error": {"type": "api_error"}})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "cs_reached", "object": "checkout.session",
            "url": "https://checkout.stripe.test/c/cs_reached", "payment_intent": null,
        })))
        .with_priority(2)
        .mount(&stripe)
        .await;
    let app = TestApp::builder(backend)
        .config(&format!(
            r#"
[payments]
provider = "stripe"
abandoned_purchase_secs = 3600
[payments.stripe]
api_base = "{}"
secret_key = "sk_test_creditgate"
webhook_secret = "whsec_test"
success_url = "https://app.example.com/credits"
cancel_url = "https://app.example.com/credits"
"#,
            stripe.uri()
        ))
        .start()
        .await;
    let alice = app.member("alice", "acme");
    let buy = "mutation($k: String!) { purchaseCredits(packId: \"starter\", idempotencyKey: $k) { id status } }";
    let failed = app.gql(Some(&alice), buy, json!({"k": "buy-1"})).await;
    assert!(failed.0["errors"].is_array(), "{}", failed.0);
    let stranded = app.app.store.purchases("alice").await.unwrap()[0].clone();
    assert_eq!(stranded.provider_session_id, None);
    let reached = app.gql(Some(&alice), buy, json!({"k": "buy-2"})).await;
    let reached = reached.data()["purchaseCredits"]["id"].as_str().unwrap().to_owned();

    let sweep = Housekeeping::from_config(&app.app.config);
    app.clock.advance(Duration::minutes(59));
    sweep.run(&app.app.store, 500).await;
    assert_eq!(status_of(&app, &alice, &stranded.id).await, "PENDING");

    app.clock.advance(Duration::minutes(2));
    // Every replica sweeps at once: the purchase fails once.
    let replica = app.replica("").await;
    let before = app.app.store.now() - Duration::hours(1);
    let (a, b) = tokio::join!(
        app.app.store.fail_abandoned_purchases(before, 500),
        replica.app.store.fail_abandoned_purchases(before, 500)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    sweep.run(&app.app.store, 500).await;
    assert_eq!(status_of(&app, &alice, &stranded.id).await, "FAILED");
    // A checkout that comes back after the sweep is not attached: nobody
    // is sent to pay for a FAILED purchase.
    let late = app
        .app
        .store
        .attach_checkout(&stranded.id, "cs_late", "https://checkout.stripe.test/c/cs_late")
        .await;
    assert!(late.is_err(), "{late:?}");
    assert_eq!(status_of(&app, &alice, &stranded.id).await, "FAILED");
    // One that reached Stripe is left for Stripe's webhook.
    assert_eq!(status_of(&app, &alice, &reached).await, "PENDING");
    // A retry with the first key returns the failed purchase; no new checkout.
    let retried = app.gql(Some(&alice), buy, json!({"k": "buy-1"})).await;
    assert_eq!(retried.data()["purchaseCredits"]["status"], "FAILED");
    assert_eq!(app.wallet(&alice).await["permanentBalance"], "0");
}

on_both_databases!(
    processed_webhook_events_are_pruned_after_their_retention,
    purchases_that_never_reached_the_provider_fail_after_an_hour,
);
