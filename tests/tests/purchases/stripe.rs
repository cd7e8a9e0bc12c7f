//! Buying credits through Stripe: a mock of its API on 127.0.0.1, webhooks
//! signed the way Stripe signs them, refunds, failed and expired sessions,
//! and an outage retried with the same idempotency key.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wiremock::{Request, Respond};

use super::*;

const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef";

/// Plays Stripe's API: each Checkout Session is `cs_<purchase id>`.
struct Sessions {
    created: Arc<AtomicUsize>,
}

fn form_value(body: &[u8], key: &str) -> Option<String> {
    let body = String::from_utf8_lossy(body);
    body.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_owned())
    })
}

impl Respond for Sessions {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let auth = req.headers.get("authorization").and_then(|v| v.to_str().ok());
        if auth != Some("Bearer sk_test_creditgate") {
            return ResponseTemplate::new(401)
                .set_body_json(json!({"error": {"type": "invalid_request_error", "message": "bad key"}}));
        }
        let Some(purchase) = form_value(&req.body, "client_reference_id") else {
            return ResponseTemplate::new(400).set_body_json(json!({"error": {"type": "invalid_request_error"}}));
        };
        assert_eq!(form_value(&req.body, "mode").as_deref(), Some("payment"));
        assert_eq!(
            form_value(&req.body, "metadata%5Bpurchase_id%5D"),
            Some(purchase.clone())
        );
        self.created.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(200).set_body_json(json!({
            "id": format!("cs_{purchase}"),
            "object": "checkout.session",
            "url": format!("https://checkout.stripe.test/c/cs_{purchase}"),
            "payment_intent": null,
        }))
    }
}

struct StripeApp {
    app: TestApp,
    _stripe: MockServer,
    sessions_created: Arc<AtomicUsize>,
}

async fn stripe_app(backend: Backend) -> StripeApp {
    let stripe = MockServer::start().await;
    let created = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(Sessions {
            created: created.clone(),
        })
        .mount(&stripe)
        .await;
    let app = TestApp::builder(backend)
        .config(&format!(
            r#"
[payments]
provider = "stripe"
[payments.stripe]
api_base = "{}"
secret_key = "sk_test_creditgate"
webhook_secret = "{WEBHOOK_SECRET}"
success_url = "https://app.example.com/credits?purchase={{PURCHASE_ID}}"
cancel_url = "https://app.example.com/credits"
"#,
            stripe.uri()
        ))
        .start()
        .await;
    StripeApp {
        app,
        _stripe: stripe,
        sessions_created: created,
    }
}

/// The `Stripe-Signature` header for `body` at unix time `t`, computed the
/// way Stripe does: HMAC-SHA256 of "{t}.{body}" under the signing secret.
fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn deliver_raw(app: &TestApp, signature: Option<String>, body: String) -> (u16, Value) {
    let mut req = app
        .http
        .post(app.url("/webhooks/stripe"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(s) = signature {
        req = req.header("Stripe-Signature", s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Delivers `event` signed now with the endpoint's secret.
async fn deliver(app: &TestApp, event: &Value) -> u16 {
    let body = event.to_string();
    let t = app.clock.now().timestamp();
    deliver_raw(app, Some(signature(WEBHOOK_SECRET, t, &body)), body)
        .await
        .0
}

fn session_event(event_id: &str, kind: &str, purchase_id: &str, payment_status: &str) -> Value {
    json!({
        "id": event_id,
        "object": "event",
        "type": kind,
        "livemode": false,
        "data": {"object": {
            "id": format!("cs_{purchase_id}"),
            "object": "checkout.session",
            "client_reference_id": purchase_id,
            "metadata": {"purchase_id": purchase_id},
            "payment_status": payment_status,
            "payment_intent": format!("pi_{purchase_id}"),
            "amount_total": 500,
            "currency": "usd",
        }}
    })
}

fn refund_event(event_id: &str, purchase_id: &str, amount_refunded: i64) -> Value {
    json!({
        "id": event_id,
        "object": "event",
        "type": "charge.refunded",
        "data": {"object": {
            "id": format!("ch_{purchase_id}"),
            "object": "charge",
            "payment_intent": format!("pi_{purchase_id}"),
            "amount": 500,
            "amount_refunded": amount_refunded,
            "refunded": amount_refunded >= 500,
        }}
    })
}

/// Starts a Stripe purchase of the starter pack (500 credits, 5 USD).
async fn pending_purchase(s: &StripeApp, token: &str, key: &str) -> String {
    let r = buy(&s.app, token, "starter", key).await;
    let p = &r.data()["purchaseCredits"];
    assert_eq!(p["status"], "PENDING");
    let id = p["id"].as_str().unwrap().to_owned();
    assert_eq!(
        p["checkoutUrl"].as_str().unwrap(),
        format!("https://checkout.stripe.test/c/cs_{id}")
    );
    id
}

async fn stripe_purchase_completes_through_the_webhook(backend: Backend) {
    let s = stripe_app(backend).await;
    let app = &s.app;
    let alice = app.member("alice", "acme");
    let id = pending_purchase(&s, &alice, "buy-1").await;
    assert_eq!(app.wallet(&alice).await["permanentBalance"], "0");
    assert_eq!(purchases(app, &alice).await[0]["status"], "PENDING");
    // A retry returns the pending purchase and its URL; no second session.
    let again = buy(app, &alice, "starter", "buy-1").await;
    assert_eq!(again.data()["purchaseCredits"]["id"], id.as_str());
    assert!(again.data()["purchaseCredits"]["checkoutUrl"].is_string());
    assert_eq!(s.sessions_created.load(Ordering::SeqCst), 1);

    // Completed, but the payment is still processing: nothing yet.
    let unpaid = session_event("evt_unpaid", "checkout.session.completed", &id, "unpaid");
    assert_eq!(deliver(app, &unpaid).await, 200);
    assert_eq!(app.wallet(&alice).await["permanentBalance"], "0");

    let paid = session_event("evt_paid", "checkout.session.completed", &id, "paid");
    assert_eq!(deliver(app, &paid).await, 200);
    let list = purchases(app, &alice).await;
    assert_eq!(list[0]["status"], "COMPLETED");
    assert_eq!(list[0]["checkoutUrl"], Value::Null);
    assert!(list[0]["completedAt"].is_string());
    assert_eq!(app.wallet(&alice).await["permanentBalance"], "500");
    let bought = activity_of(app, &alice, "PURCHASE").await;
    assert_eq!(bought.len(), 1);
    assert!(bought[0]["description"].as_str().unwrap().contains(&id));

    // The same event again, and another event for the same session: once.
    assert_eq!(deliver(app, &paid).await, 200);
    let async_ok = session_event("evt_async", "checkout.session.async_payment_succeeded", &id, "paid");
    assert_eq!(deliver(app, &async_ok).await, 200);
    // A late expiry does not undo it.
    let expired = session_event("evt_expired", "checkout.session.expired", &id, "unpaid");
    assert_eq!(deliver(app, &expired).await, 200);
    assert_eq!(purchases(app, &alice).await[0]["status"], "COMPLETED");
    assert_eq!(app.wallet(&alice).await["permanentBalance"], "500");
    assert_eq!(activity_of(app, &alice, "PURCHASE").await.len(), 1);

    // Unknown event types are acknowledged and ignored.
    let other = json!({"id": "evt_other", "type": "customer.created", "data": {"object": {"id": "cus_1"}}});
    assert_eq!(deliver(app, &other).await, 200);
    // Bob cannot see it.
    let bob = app.member("bob", "acme");
    assert_eq!(purchases(app, &bob).await, Vec::<Value>::new());
    assert_reconciles(app).await;
}

async fn bad_deliveries_are_rejected_and_change_nothing(backend: Backend) {
    let s = stripe_app(backend).await;
    let app = &s.app;
    let alice = app.member("alice", "acme");
    let id = pending_purchase(&s, &alice, "buy-1").await;
    let event = session_event("evt_1", "checkout.session.completed", &id, "paid");
    let body = event.to_string();
    let now = app.clock.now().timestamp();

    let unknown = session_event("evt_1", "checkout.session.completed", "no-such-purchase", "paid").to_string();
    let malformed = r#"{"id":"evt_1","type":"checkout.session.completed","data":{"object":{"payment_status":"paid"}}}"#;
    let cases: Vec<(&str, Option<String>, String)> = vec![
        ("no signature", None, body.clone()),
        ("garbage header", Some("nonsense".into()), body.clone()),
        (
            "another secret",
            Some(signature("whsec_wrong", now, &body)),
            body.clone(),
        ),
        (
            "an old timestamp",
            Some(signature(WEBHOOK_SECRET, now - 301, &body)),
            body.clone(),
        ),
        (
            "from the future",
            Some(signature(WEBHOOK_SECRET, now + 301, &body)),
            body.clone(),
        ),
        (
            "the body changed after signing",
            Some(signature(WEBHOOK_SECRET, now, &body)),
            body.replace("\"paid\"", "\"paid\" "),
        ),
        (
            "another timestamp than signed",
            Some(signature(WEBHOOK_SECRET, now, &body).replace(&format!("t={now}"), &format!("t={}", now - 1))),
            body.clone(),
        ),
        (
            "an unknown session",
            Some(signature(WEBHOOK_SECRET, now, &unknown)),
            unknown.clone(),
        ),
        (
            "a malformed body",
            Some(signature(WEBHOOK_SECRET, now, malformed)),
            malformed.to_owned(),
        ),
        (
            "not JSON",
            Some(signature(WEBHOOK_SECRET, now, "not json")),
            "not json".to_owned(),
        ),
    ];
    for (what, sig, body) in cases {
        let (status, answer) = deliver_raw(app, sig, body).await;
        assert_eq!(status, 400, "{what}: {answer}");
        assert!(!answer.to_string().contains(WEBHOOK_SECRET), "{what}: {answer}");
    }
    // A refund for a payment no purchase was made with.
    assert_eq!(deliver(app, &refund_event("evt_2", "nobody", 500)).await, 400);
    // An amount that is not the purchase's price.
    let mut cheaper = session_event("evt_3", "checkout.session.completed", &id, "paid");
    cheaper["data"]["object"]["amount_total"] = json!(1);
    assert_eq!(deliver(app, &cheaper).await, 400);

    assert_eq!(purchases(app, &alice).await[0]["status"], "PENDING");
    assert_eq!(app.wallet(&alice).await["permanentBalance"], "0");
    assert_eq!(activity_of(app, &alice, "PURCHASE").await.len(), 0);
    // None of them consumed the event: the genuine delivery still applies.
    assert_eq!(deliver(app, &event).await, 200);
    assert_eq!(app.wallet(&alice).await["permanentBalance"], "500");
    assert_reconciles(app).await;
}

async fn concurrent_duplicate_deliveries_credit_once(backend: Backend) {
    let s = stripe_app(backend).await;
    let app = &s.app;
    let alice = app.member("alice", "acme");
    let id = pending_purchase(&s, &alice, "buy-1").await;
    let paid = session_event("evt_paid", "checkout.session.completed", &id, "paid");
    let async_ok = session_event("evt_async", "checkout.session.async_payment_succeeded", &id, "paid");
    let deliveries = (0..12).map(|i| {
        let event = if i % 3 == 0 { &async_ok } else { &paid };
        deliver(app, event)
    });
    let statuses = futures::future::join_all(deliveries).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(app.wallet(&alice).await["permanentBalance"], "500");
    assert_eq!(activity_of(app, &alice, "PURCHASE").await.len(), 1);
    assert_eq!(purchases(app, &alice).await[0]["status"], "COMPLETED");
    assert_reconciles(app).await;
}

async fn a_refund_takes_back_only_what_is_left(backend: Backend) {
    let s = stripe_app(backend).await;
    let app = &s.app;
    let alice = app.member("alice", "acme");
    let id = pending_purchase(&s, &alice, "buy-1").await;
    assert_eq!(
        deliver(
            app,
            &session_event("evt_paid", "checkout.session.completed", &id, "paid")
        )
        .await,
        200
    );
    // 100 monthly and 400 of the 500 purchased are spent: 100 are left.
    spend(app, "alice", "500").await;
    let w = app.wallet(&alice).await;
    assert_eq!(
        (w["monthlyBalance"].as_str(), w["permanentBalance"].as_str()),
        (Some("0"), Some("100"))
    );

    // A refund of 40% stands for 200 credits; 100 are left to take back.
    assert_eq!(deliver(app, &refund_event("evt_r1", &id, 200)).await, 200);
    assert_eq!(app.wallet(&alice).await["permanentBalance"], "0");
    assert_eq!(purchases(app, &alice).await[0]["status"], "COMPLETED");
    // Delivered again: nothing more.
    assert_eq!(deliver(app, &refund_event("evt_r1", &id, 200)).await, 200);
    // Then refunded in full: nothing is left, the balance stays at 0.
    assert_eq!(deliver(app, &refund_event("evt_r2", &id, 500)).await, 200);
    assert_eq!(purchases(app, &alice).await[0]["status"], "REFUNDED");
    let w = app.wallet(&alice).await;
    assert_eq!(
        (w["permanentBalance"].as_str(), w["available"].as_str()),
        (Some("0"), Some("0"))
    );
    let refunds = activity_of(app, &alice, "REFUND").await;
    let deltas: Vec<&str> = refunds.iter().map(|r| r["permanentDelta"].as_str().unwrap()).collect();
    assert_eq!(deltas, ["0", "-100"]);
    assert!(refunds[1]["description"].as_str().unwrap().contains(&id));
    let stored = app.app.store.purchase(&id).await.unwrap().unwrap();
    assert_eq!(stored.credits_taken_back.to_string(), "100");
    assert_eq!(stored.refunded_credits.to_string(), "500");
    // A refund after the full refund changes nothing.
    assert_eq!(deliver(app, &refund_event("evt_r3", &id, 500)).await, 200);
    assert_eq!(activity_of(app, &alice, "REFUND").await.len(), 2);
    assert_reconciles(app).await;
}

async fn failed_and_expired_sessions_fail(backend: Backend) {
    let s = stripe_app(backend).await;
    let app = &s.app;
    let alice = app.member("alice", "acme");
    let expired = pending_purchase(&s, &alice, "buy-1").await;
    let declined = pending_purchase(&s, &alice, "buy-2").await;
    let e = session_event("evt_exp", "checkout.session.expired", &expired, "unpaid");
    assert_eq!(deliver(app, &e).await, 200);
    let f = session_event("evt_fail", "checkout.session.async_payment_failed", &declined, "unpaid");
    assert_eq!(deliver(app, &f).await, 200);
    let list = purchases(app, &alice).await;
    assert_eq!(
        list.iter().map(|p| p["status"].as_str().unwrap()).collect::<Vec<_>>(),
        ["FAILED", "FAILED"]
    );
    assert!(list.iter().all(|p| p["checkoutUrl"].is_null()));
    // A completion after it failed adds nothing.
    let late = session_event("evt_late", "checkout.session.completed", &expired, "paid");
    assert_eq!(deliver(app, &late).await, 200);
    assert_eq!(app.wallet(&alice).await["permanentBalance"], "0");
    // The failed purchase's key returns it; a new key buys again.
    let again = buy(app, &alice, "starter", "buy-1").await;
    assert_eq!(again.data()["purchaseCredits"]["status"], "FAILED");
    pending_purchase(&s, &alice, "buy-3").await;
}

async fn stripe_outage_is_retried_with_the_same_key(backend: Backend) {
    // A Stripe that is down: nothing listens on its port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let app = TestApp::builder(backend)
        .config(&format!(
            r#"
[payments]
provider = "stripe"
[payments.stripe]
api_base = "http://127.0.0.1:{port}"
secret_key = "sk_test_creditgate"
webhook_secret = "{WEBHOOK_SECRET}"
success_url = "https://app.example.com/ok"
cancel_url = "https://app.example.com/no"
"#
        ))
        .start()
        .await;
    let alice = app.member("alice", "acme");
    let r = buy(&app, &alice, "starter", "buy-1").await;
    assert_eq!(r.code(), "PROVIDER_UNAVAILABLE");
    assert!(!r.0.to_string().contains("sk_test"), "{}", r.0);
    let list = purchases(&app, &alice).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "PENDING");
    assert_eq!(list[0]["checkoutUrl"], Value::Null);
    // The retry (same key) tries Stripe again, still for one purchase.
    assert_eq!(
        buy(&app, &alice, "starter", "buy-1").await.code(),
        "PROVIDER_UNAVAILABLE"
    );
    assert_eq!(purchases(&app, &alice).await.len(), 1);
}

on_both_databases!(
    stripe_purchase_completes_through_the_webhook,
    bad_deliveries_are_rejected_and_change_nothing,
    concurrent_duplicate_deliveries_credit_once,
    a_refund_takes_back_only_what_is_left,
    failed_and_expired_sessions_fail,
    stripe_outage_is_retried_with_the_same_key,
);
