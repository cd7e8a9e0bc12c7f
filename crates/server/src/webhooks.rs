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
use creditgate_payments::{EventRefusal, Payments, parse_event};
use serde_json::json;

use crate::app::App;
use crate::config::{Config, ConfigError};

/// The configured payment provider, its secrets read (from the
/// configuration or their environment variables).
pub(crate) fn payments_from_config(config: &Config) -> Result<Payments, ConfigError> {
    Payments::from_config(&config.payments, config.environment == "production").map_err(|e| ConfigError::Key {
        key: e.key(),
        message: e.to_string(),
    })
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
    match app.purchases.apply_stripe_event(&event).await {
        Ok(outcome) => {
            tracing::info!(event_id = event.id, event_type = event.kind, outcome, "Stripe webhook");
            (StatusCode::OK, Json(json!({ "received": true, "outcome": outcome }))).into_response()
        }
        Err(EventRefusal::Bad(why)) => {
            tracing::warn!(
                event_id = event.id,
                event_type = event.kind,
                reason = why,
                "refused a Stripe event"
            );
            answer(StatusCode::BAD_REQUEST, &why)
        }
        Err(EventRefusal::Internal(e)) => {
            tracing::error!(event_id = event.id, event_type = event.kind, error = %e, "applying a Stripe event failed");
            answer(StatusCode::INTERNAL_SERVER_ERROR, "internal error; it has been logged")
        }
    }
}
