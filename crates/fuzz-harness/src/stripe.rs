//! Stripe webhook deliveries, through the router: `POST /webhooks/stripe`
//! on a server configured for Stripe (its API is never called), whose
//! database holds pending Stripe purchases with checkout sessions
//! `cs_fuzz_0` to `cs_fuzz_7` (the starter pack: 500 credits, 500 USD cents).
//!
//! Input: one mode byte, then
//! * even mode: a body, delivered with a correct `Stripe-Signature` made
//!   now with the test secret (the interesting case);
//! * odd mode: a `Stripe-Signature` value, a newline, then the body.
//!
//! Oracles: no panic and no 5xx (the server answers 500 only for its own
//! failures, and Stripe's input must not cause one); a correctly signed body
//! is never refused for its signature; an accepted event is one
//! `parse_event` reads; after an accepted event every wallet still
//! reconciles with its journal.

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use creditgate_domain::{Credits, Role};
use creditgate_payments::{SignatureError, parse_event, sign};
use creditgate_storage::{Identity, NewPurchase, PurchaseStart, Store};
use secrecy::SecretString;
use serde_json::Value;
use tower::ServiceExt;

use crate::support::{self, WEBHOOK_SECRET};

/// How many pending purchases the database starts with.
pub const PURCHASES: usize = 8;

struct Setup {
    router: Router,
    store: Store,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let app = support::build_app(
            "stripe",
            &format!(
                r#"[payments]
provider = "stripe"
[payments.stripe]
api_base = "http://127.0.0.1:9"
secret_key = "sk_test_fuzz"
webhook_secret = {WEBHOOK_SECRET:?}
success_url = "https://app.example.com/credits?purchase={{PURCHASE_ID}}"
cancel_url = "https://app.example.com/credits"
"#
            ),
        );
        let store = app.store.clone();
        support::run(seed(store.clone()));
        Setup {
            router: app.router(),
            store,
        }
    })
}

async fn seed(store: Store) {
    let buyer = Identity {
        user_id: "buyer".into(),
        org_id: "acme".into(),
        role: Role::Member,
        name: None,
        email: None,
        team: None,
        org_name: None,
        expires_at: None,
    };
    store.ensure_user(&buyer).await.expect("user");
    for i in 0..PURCHASES {
        let start = store
            .create_purchase(&NewPurchase {
                user_id: "buyer".into(),
                pack_id: "starter".into(),
                pack_name: "Starter".into(),
                credits: Credits::from_whole(500).expect("credits"),
                price_cents: 500,
                currency: "USD".into(),
                provider: "stripe".into(),
                idempotency_key: format!("fuzz-{i}"),
            })
            .await
            .expect("purchase");
        let id = match start {
            PurchaseStart::Created(p) => p.id,
            other => panic!("a fresh database replayed a purchase: {other:?}"),
        };
        store
            .attach_checkout(&id, &format!("cs_fuzz_{i}"), "https://checkout.stripe.test/c")
            .await
            .expect("checkout session");
    }
}

pub fn target(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let s = setup();
    let signed = mode % 2 == 0;
    let (signature, body) = if signed {
        let now = s.store.now().timestamp();
        (sign(&SecretString::from(WEBHOOK_SECRET), now, rest), rest)
    } else {
        let at = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let header = String::from_utf8_lossy(&rest[..at]).into_owned();
        (header, rest.get(at + 1..).unwrap_or_default())
    };
    let body = body.to_vec();
    let router = s.router.clone();
    let store = s.store.clone();
    support::run(async move {
        let mut req = Request::builder()
            .method("POST")
            .uri("/webhooks/stripe")
            .header(header::CONTENT_TYPE, "application/json");
        // A header value the HTTP layer cannot carry is no delivery at all.
        if axum::http::HeaderValue::from_str(&signature).is_ok() {
            req = req.header("stripe-signature", signature.as_str());
        }
        let req = req.body(Body::from(body.clone())).expect("request");
        let resp = router.oneshot(req).await.expect("the router is infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("response body");
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert!(
            status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
            "the webhook answered {status}: {answer}"
        );
        if signed {
            let error = answer["error"].as_str().unwrap_or_default();
            for refusal in [
                SignatureError::Missing,
                SignatureError::Malformed,
                SignatureError::OutsideTolerance,
                SignatureError::Mismatch,
            ] {
                assert_ne!(error, refusal.to_string(), "a correctly signed body was refused");
            }
        }
        if status == StatusCode::OK {
            assert!(parse_event(&body).is_ok(), "an event that does not parse was accepted");
            let off = store.reconcile().await.expect("reconcile");
            assert!(off.is_empty(), "a wallet no longer reconciles: {off:?}");
        }
    });
}
