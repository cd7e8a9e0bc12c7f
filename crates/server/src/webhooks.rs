//! The payment provider's webhook: `POST /webhooks/stripe`.
//!
//! A delivery is accepted only with a valid `Stripe-Signature` over its raw
//! body, within the tolerance of the server's clock; anything else is 400
//! and changes nothing. Each event is applied once (its id is recorded in
//! the transaction that applies it), so Stripe's retries and duplicate
//! deliveries are harmless. Events creditgate does not act on are
//! acknowledged and ignored.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use creditgate_payments::{EventAction, Payments, SessionRef, StripeEvent, parse_event};
use creditgate_storage::{ProviderEvent, Purchase, PurchaseUpdate, RefundShare, Store, StoreError};
use serde_json::json;

use crate::app::App;
use crate::config::{Config, ConfigError};

const STRIPE: &str = "stripe";

/// The configured payment provider, its secrets read (from the
/// configuration or their environment variables).
pub(crate) fn payments_from_config(config: &Config) -> Result<Payments, ConfigError> {
    Payments::from_config(&config.payments, config.environment == "production").map_err(|e| ConfigError::Key {
        key: e.key(),
        message: e.to_string(),
    })
}

/// Why a delivery was not applied.
#[derive(Debug)]
enum Refusal {
    /// The delivery is wrong (signature, body, unknown session): 400.
    Bad(String),
    /// Our failure: 500, so that Stripe delivers it again later.
    Internal(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Internal(e)
    }
}

fn answer(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// `POST /webhooks/stripe`.
pub async fn stripe_webhook(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(verifier) = app.payments.stripe_webhook() else {
        return answer(StatusCode::NOT_FOUND, "the Stripe payment provider is not configured");
    };
    let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    if let Err(e) = verifier.verify(signature, &body, app.store.now().timestamp()) {
        tracing::warn!(reason = %e, "refused a Stripe webhook delivery");
        return answer(StatusCode::BAD_REQUEST, &e.to_string());
    }
    let event = match parse_event(&body) {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(reason = %e, "refused a signed Stripe webhook that does not parse");
            return answer(StatusCode::BAD_REQUEST, "the event does not parse");
        }
    };
    match apply(&app.store, &event).await {
        Ok(outcome) => {
            tracing::info!(event_id = event.id, event_type = event.kind, outcome, "Stripe webhook");
            (StatusCode::OK, Json(json!({ "received": true, "outcome": outcome }))).into_response()
        }
        Err(Refusal::Bad(why)) => {
            tracing::warn!(
                event_id = event.id,
                event_type = event.kind,
                reason = why,
                "refused a Stripe event"
            );
            answer(StatusCode::BAD_REQUEST, &why)
        }
        Err(Refusal::Internal(e)) => {
            tracing::error!(event_id = event.id, event_type = event.kind, error = %e, "applying a Stripe event failed");
            answer(StatusCode::INTERNAL_SERVER_ERROR, "internal error; it has been logged")
        }
    }
}

fn describe(update: &PurchaseUpdate) -> &'static str {
    match update {
        PurchaseUpdate::Applied(_) => "applied",
        PurchaseUpdate::Unchanged(_) => "unchanged",
        PurchaseUpdate::AlreadyProcessed => "duplicate",
    }
}

async fn apply(store: &Store, event: &StripeEvent) -> Result<&'static str, Refusal> {
    let record = ProviderEvent {
        id: &event.id,
        provider: STRIPE,
        event_type: &event.kind,
    };
    let update = match &event.action {
        EventAction::Ignored => return Ok("ignored"),
        EventAction::AwaitingPayment(session) => {
            // Its async payment events follow; only check it is ours.
            purchase_of(store, session).await?;
            return Ok("awaiting payment");
        }
        EventAction::Paid(session) => {
            let purchase = purchase_of(store, session).await?;
            if let Some(total) = session.amount_total
                && total != purchase.price_cents
            {
                return Err(Refusal::Bad(format!(
                    "the session's amount {total} is not the purchase's price {}",
                    purchase.price_cents
                )));
            }
            if let Some(currency) = &session.currency
                && !currency.eq_ignore_ascii_case(&purchase.currency)
            {
                return Err(Refusal::Bad("the session's currency is not the purchase's".into()));
            }
            store
                .complete_purchase(
                    &purchase.id,
                    Some(&session.session_id),
                    session.payment_intent.as_deref(),
                    Some(record),
                )
                .await?
        }
        EventAction::Failed(session) => {
            let purchase = purchase_of(store, session).await?;
            store.fail_purchase(&purchase.id, Some(record)).await?
        }
        EventAction::Refunded {
            payment_intent,
            amount,
            amount_refunded,
            fully,
        } => {
            let Some(purchase) = store.purchase_by_payment_intent(payment_intent).await? else {
                return Err(Refusal::Bad("no purchase was paid with this payment".into()));
            };
            let share = RefundShare {
                amount_refunded: *amount_refunded,
                amount: *amount,
                fully: *fully,
            };
            store.refund_purchase(&purchase.id, share, Some(record)).await?
        }
    };
    Ok(describe(&update))
}

/// The purchase a checkout session belongs to: by the session's id, or
/// (when the server stopped between Stripe's answer and recording it) by
/// the purchase id the session carries, if that purchase has no session
/// yet. Any other session is refused.
async fn purchase_of(store: &Store, session: &SessionRef) -> Result<Purchase, Refusal> {
    if let Some(purchase) = store.purchase_by_session(&session.session_id).await? {
        if session.purchase_id.as_ref().is_some_and(|id| *id != purchase.id) {
            return Err(Refusal::Bad("the session names another purchase".into()));
        }
        return Ok(purchase);
    }
    if let Some(id) = &session.purchase_id
        && let Some(purchase) = store.purchase(id).await?
        && purchase.provider_session_id.is_none()
        && purchase.provider == STRIPE
    {
        return Ok(purchase);
    }
    Err(Refusal::Bad("unknown checkout session".into()))
}
