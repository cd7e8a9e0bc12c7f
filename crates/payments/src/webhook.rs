//! Stripe webhooks: the `Stripe-Signature` check and the events creditgate
//! acts on.
//!
//! Stripe signs `"{timestamp}.{raw body}"` with HMAC-SHA256 under the
//! endpoint's signing secret and sends `Stripe-Signature: t=<unix>,v1=<hex>`
//! (possibly several `v1`, during a secret's rotation).

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery is not accepted. Safe to show: names no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    #[error("the signature's timestamp is outside the tolerance")]
    OutsideTolerance,
    #[error("no signature matches")]
    Mismatch,
}

/// Checks Stripe's signatures with the endpoint's secret.
pub struct WebhookVerifier {
    secret: SecretString,
    tolerance_secs: i64,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("tolerance_secs", &self.tolerance_secs)
            .finish_non_exhaustive()
    }
}

impl WebhookVerifier {
    pub fn new(secret: SecretString, tolerance_secs: u64) -> Self {
        WebhookVerifier {
            secret,
            tolerance_secs: i64::try_from(tolerance_secs).unwrap_or(i64::MAX),
        }
    }

    /// Accepts `body` when `header` carries a `v1` signature of it made with
    /// the secret at a timestamp within the tolerance of `now` (unix
    /// seconds). Compares in constant time.
    pub fn verify(&self, header: Option<&str>, body: &[u8], now: i64) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let mut timestamp: Option<i64> = None;
        let mut signatures: Vec<Vec<u8>> = Vec::new();
        for part in header.split(',') {
            let Some((k, v)) = part.trim().split_once('=') else {
                return Err(SignatureError::Malformed);
            };
            match k {
                "t" => {
                    if timestamp.is_some() {
                        return Err(SignatureError::Malformed);
                    }
                    timestamp = Some(v.parse().map_err(|_| SignatureError::Malformed)?);
                }
                // A v1 that is not hex can never match; others may.
                "v1" => signatures.extend(hex::decode(v).ok().filter(|s| s.len() == 32)),
                // v0 (test mode scheme) and future schemes are ignored.
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
        if signatures.is_empty() {
            return Err(SignatureError::Mismatch);
        }
        if now.abs_diff(timestamp) > self.tolerance_secs.unsigned_abs() {
            return Err(SignatureError::OutsideTolerance);
        }
        let mut mac =
            HmacSha256::new_from_slice(self.secret.expose_secret().as_bytes()).map_err(|_| SignatureError::Mismatch)?;
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        // verify_slice compares in constant time.
        if signatures.iter().any(|s| mac.clone().verify_slice(s).is_ok()) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// A verified event creditgate acts on, or one it ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEvent {
    /// `evt_...`: each event is applied once.
    pub id: String,
    /// Its `type`, e.g. `checkout.session.completed`.
    pub kind: String,
    pub action: EventAction,
}

/// A Checkout Session as its events carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRef {
    pub session_id: String,
    /// `client_reference_id` or `metadata.purchase_id`.
    pub purchase_id: Option<String>,
    pub payment_intent: Option<String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
}

/// What an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventAction {
    /// The session is paid: complete its purchase.
    Paid(SessionRef),
    /// The session completed but its payment is still processing
    /// (`payment_status` `unpaid`): wait for the async payment events.
    AwaitingPayment(SessionRef),
    /// Expired or its payment failed: the purchase failed.
    Failed(SessionRef),
    /// Money went back to the customer: `amount_refunded` of `amount` so far.
    Refunded {
        payment_intent: String,
        amount: i64,
        amount_refunded: i64,
        fully: bool,
    },
    /// An event creditgate does not act on: acknowledged, ignored.
    Ignored,
}

/// Why a (verified) body is not an event creditgate can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the event does not parse: {0}")]
pub struct EventError(String);

#[derive(Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    object: serde_json::Value,
}

#[derive(Deserialize)]
struct RawSession {
    id: String,
    payment_status: Option<String>,
    client_reference_id: Option<String>,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
    #[serde(default)]
    payment_intent: Option<IdOrObject>,
    amount_total: Option<i64>,
    currency: Option<String>,
}

#[derive(Deserialize)]
struct RawCharge {
    payment_intent: Option<IdOrObject>,
    amount: i64,
    amount_refunded: i64,
    #[serde(default)]
    refunded: bool,
}

/// An id, or the object it names when the event expands it.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdOrObject {
    Id(String),
    Object { id: String },
}

impl IdOrObject {
    fn id(self) -> String {
        match self {
            IdOrObject::Id(id) | IdOrObject::Object { id } => id,
        }
    }
}

fn object<T: serde::de::DeserializeOwned>(kind: &str, value: serde_json::Value) -> Result<T, EventError> {
    serde_json::from_value(value).map_err(|e| EventError(format!("{kind}: {e}")))
}

/// An id of the event, by the documented text rules (what is stored must
/// store the same on both databases).
fn checked_id(kind: &str, field: &'static str, id: String) -> Result<String, EventError> {
    creditgate_domain::check_id(field, &id).map_err(|e| EventError(format!("{kind}: {e}")))?;
    Ok(id)
}

fn session(kind: &str, value: serde_json::Value) -> Result<(SessionRef, Option<String>), EventError> {
    let mut s: RawSession = object(kind, value)?;
    if s.id.is_empty() {
        return Err(EventError(format!("{kind}: the session has no id")));
    }
    s.id = checked_id(kind, "id", s.id)?;
    let purchase_id = s
        .client_reference_id
        .filter(|c| !c.is_empty())
        .or_else(|| s.metadata.and_then(|mut m| m.remove("purchase_id")))
        .map(|p| checked_id(kind, "client_reference_id", p))
        .transpose()?;
    let payment_intent = s
        .payment_intent
        .map(|p| checked_id(kind, "payment_intent", p.id()))
        .transpose()?;
    let currency = s.currency.map(|c| checked_id(kind, "currency", c)).transpose()?;
    Ok((
        SessionRef {
            session_id: s.id,
            purchase_id,
            payment_intent,
            amount_total: s.amount_total,
            currency,
        },
        s.payment_status,
    ))
}

/// Reads a verified body.
pub fn parse_event(body: &[u8]) -> Result<StripeEvent, EventError> {
    let raw: RawEvent = serde_json::from_slice(body).map_err(|e| EventError(e.to_string()))?;
    if raw.id.is_empty() {
        return Err(EventError("the event has no id".into()));
    }
    let id = checked_id("event", "id", raw.id)?;
    let event_type = checked_id("event", "type", raw.kind)?;
    let kind = event_type.as_str();
    let action = match kind {
        "checkout.session.completed" => match session(kind, raw.data.object)? {
            (s, Some(status)) if status == "paid" => EventAction::Paid(s),
            (s, _) => EventAction::AwaitingPayment(s),
        },
        "checkout.session.async_payment_succeeded" => EventAction::Paid(session(kind, raw.data.object)?.0),
        "checkout.session.expired" | "checkout.session.async_payment_failed" => {
            EventAction::Failed(session(kind, raw.data.object)?.0)
        }
        "charge.refunded" => {
            let c: RawCharge = object(kind, raw.data.object)?;
            let payment_intent = c
                .payment_intent
                .map(IdOrObject::id)
                .filter(|p| !p.is_empty())
                .ok_or_else(|| EventError("charge.refunded: the charge has no payment_intent".into()))?;
            let payment_intent = checked_id(kind, "payment_intent", payment_intent)?;
            if c.amount <= 0 || c.amount_refunded < 0 {
                return Err(EventError("charge.refunded: amounts out of range".into()));
            }
            EventAction::Refunded {
                payment_intent,
                amount: c.amount,
                amount_refunded: c.amount_refunded.min(c.amount),
                fully: c.refunded || c.amount_refunded >= c.amount,
            }
        }
        _ => EventAction::Ignored,
    };
    Ok(StripeEvent {
        id,
        kind: event_type,
        action,
    })
}

/// The `Stripe-Signature` header for `body` at `timestamp`, as Stripe
/// makes it (for tools and tests that play Stripe).
pub fn sign(secret: &SecretString, timestamp: i64, body: &[u8]) -> String {
    let mut mac = match HmacSha256::new_from_slice(secret.expose_secret().as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length.
        Err(_) => return format!("t={timestamp}"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"checkout.session.completed"}"#;
    // Computed independently:
    //   printf '%s' '1700000000.{"id":"evt_1","type":"checkout.session.completed"}' \
    //     | openssl dgst -sha256 -hmac whsec_test_secret
    const KNOWN_V1: &str = "a13d4b1f9003bc2fb6c06224e878b6056185eaa50d40e1e7dc05517f8af41d7b";

    fn verifier() -> WebhookVerifier {
        WebhookVerifier::new(SecretString::from(SECRET), 300)
    }

    #[test]
    fn a_signature_made_as_stripe_makes_it_is_accepted() {
        let header = format!("t=1700000000,v1={KNOWN_V1}");
        assert_eq!(verifier().verify(Some(&header), BODY, 1_700_000_100), Ok(()));
        assert_eq!(sign(&SecretString::from(SECRET), 1_700_000_000, BODY), header);
        // Other schemes and a second, rotated-out signature are fine.
        let rotated = format!("t=1700000000,v0=abcd,v1={},v1={KNOWN_V1}", "00".repeat(32));
        assert_eq!(verifier().verify(Some(&rotated), BODY, 1_700_000_000), Ok(()));
    }

    #[test]
    fn everything_else_is_refused() {
        let v = verifier();
        let good = format!("t=1700000000,v1={KNOWN_V1}");
        assert_eq!(v.verify(None, BODY, 1_700_000_000), Err(SignatureError::Missing));
        assert_eq!(
            v.verify(Some("garbage"), BODY, 1_700_000_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            v.verify(Some(&format!("v1={KNOWN_V1}")), BODY, 1_700_000_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            v.verify(Some("t=1700000000"), BODY, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        // Too old, and too far ahead.
        assert_eq!(
            v.verify(Some(&good), BODY, 1_700_000_301),
            Err(SignatureError::OutsideTolerance)
        );
        assert_eq!(
            v.verify(Some(&good), BODY, 1_699_999_699),
            Err(SignatureError::OutsideTolerance)
        );
        // The body changed after signing.
        let mut changed = BODY.to_vec();
        changed[8] = b'2';
        assert_eq!(
            v.verify(Some(&good), &changed, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        // Another secret.
        let other = WebhookVerifier::new(SecretString::from("whsec_other"), 300);
        assert_eq!(
            other.verify(Some(&good), BODY, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is part of what is signed.
        let moved = format!("t=1700000001,v1={KNOWN_V1}");
        assert_eq!(
            v.verify(Some(&moved), BODY, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        assert!(!format!("{v:?}").contains(SECRET));
    }

    #[test]
    fn events_parse() {
        let paid = serde_json::json!({
            "id": "evt_1", "type": "checkout.session.completed",
            "data": {"object": {"id": "cs_1", "object": "checkout.session", "payment_status": "paid",
                "client_reference_id": "p1", "payment_intent": "pi_1", "amount_total": 500, "currency": "usd",
                "metadata": {"purchase_id": "p1"}}}
        });
        let e = parse_event(paid.to_string().as_bytes()).unwrap();
        assert_eq!(e.id, "evt_1");
        assert_eq!(
            e.action,
            EventAction::Paid(SessionRef {
                session_id: "cs_1".into(),
                purchase_id: Some("p1".into()),
                payment_intent: Some("pi_1".into()),
                amount_total: Some(500),
                currency: Some("usd".into()),
            })
        );
        let unpaid = serde_json::json!({
            "id": "evt_2", "type": "checkout.session.completed",
            "data": {"object": {"id": "cs_1", "payment_status": "unpaid", "payment_intent": {"id": "pi_1"},
                "metadata": {"purchase_id": "p1"}}}
        });
        let e = parse_event(unpaid.to_string().as_bytes()).unwrap();
        assert!(
            matches!(e.action, EventAction::AwaitingPayment(ref s) if s.purchase_id.as_deref() == Some("p1") && s.payment_intent.as_deref() == Some("pi_1"))
        );
        let expired =
            serde_json::json!({"id": "evt_3", "type": "checkout.session.expired", "data": {"object": {"id": "cs_1"}}});
        assert!(matches!(
            parse_event(expired.to_string().as_bytes()).unwrap().action,
            EventAction::Failed(_)
        ));
        let refund = serde_json::json!({"id": "evt_4", "type": "charge.refunded", "data": {"object": {
            "id": "ch_1", "payment_intent": "pi_1", "amount": 500, "amount_refunded": 200, "refunded": false}}});
        assert_eq!(
            parse_event(refund.to_string().as_bytes()).unwrap().action,
            EventAction::Refunded {
                payment_intent: "pi_1".into(),
                amount: 500,
                amount_refunded: 200,
                fully: false
            }
        );
        let other = serde_json::json!({"id": "evt_5", "type": "customer.created", "data": {"object": {"id": "cus_1"}}});
        assert_eq!(
            parse_event(other.to_string().as_bytes()).unwrap().action,
            EventAction::Ignored
        );
        for bad in [
            &b"not json"[..],
            br#"{"id":"evt_6","type":"checkout.session.completed"}"#,
            br#"{"id":"evt_6","type":"checkout.session.completed","data":{"object":{"payment_status":"paid"}}}"#,
            br#"{"id":"evt_7","type":"charge.refunded","data":{"object":{"id":"ch_1","amount":5,"amount_refunded":5}}}"#,
            br#"{"id":"","type":"customer.created","data":{"object":{}}}"#,
        ] {
            assert!(parse_event(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
