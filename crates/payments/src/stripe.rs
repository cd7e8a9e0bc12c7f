//! Stripe Checkout through Stripe's REST API: one form-encoded
//! `POST /v1/checkout/sessions` per purchase.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::ProviderKind;
use crate::provider::{Checkout, CheckoutRequest, PaymentError, PaymentProvider};

/// Creates Checkout Sessions. Holds the secret key; prints without it.
pub struct StripeClient {
    http: reqwest::Client,
    sessions_url: String,
    secret_key: SecretString,
    success_url: String,
    cancel_url: String,
}

impl std::fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient")
            .field("sessions_url", &self.sessions_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Session {
    id: String,
    url: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
}

impl StripeClient {
    /// `api_base` is Stripe's API (`https://api.stripe.com`) or a mock of it.
    pub fn new(
        api_base: &str,
        secret_key: SecretString,
        success_url: String,
        cancel_url: String,
        timeout: Duration,
    ) -> Result<Self, PaymentError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| PaymentError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
        Ok(StripeClient {
            http,
            sessions_url: format!("{}/v1/checkout/sessions", api_base.trim_end_matches('/')),
            secret_key,
            success_url,
            cancel_url,
        })
    }

    /// The form Stripe receives for a purchase.
    fn form(&self, req: &CheckoutRequest<'_>) -> Vec<(&'static str, String)> {
        let pack = req.pack;
        let fill = |url: &str| url.replace("{PURCHASE_ID}", req.purchase_id);
        let mut form = vec![
            ("mode", "payment".to_owned()),
            ("line_items[0][quantity]", "1".to_owned()),
            (
                "line_items[0][price_data][currency]",
                pack.currency.to_ascii_lowercase(),
            ),
            ("line_items[0][price_data][unit_amount]", pack.price_cents.to_string()),
            (
                "line_items[0][price_data][product_data][name]",
                format!("{} ({} credits)", pack.name, pack.credits),
            ),
            ("success_url", fill(&self.success_url)),
            ("cancel_url", fill(&self.cancel_url)),
            ("client_reference_id", req.purchase_id.to_owned()),
            ("metadata[purchase_id]", req.purchase_id.to_owned()),
            ("metadata[user_id]", req.user_id.to_owned()),
            ("metadata[pack_id]", pack.id.clone()),
            ("payment_intent_data[metadata][purchase_id]", req.purchase_id.to_owned()),
        ];
        if let Some(email) = req.user_email {
            form.push(("customer_email", email.to_owned()));
        }
        form
    }
}

#[async_trait]
impl PaymentProvider for StripeClient {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Stripe
    }

    async fn start_checkout(&self, req: &CheckoutRequest<'_>) -> Result<Checkout, PaymentError> {
        let resp = self
            .http
            .post(&self.sessions_url)
            .bearer_auth(self.secret_key.expose_secret())
            // A retry for the same purchase gets the same session.
            .header("Idempotency-Key", format!("creditgate-purchase-{}", req.purchase_id))
            .form(&self.form(req))
            .send()
            .await
            .map_err(|e| PaymentError::Unavailable(describe(e)))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| PaymentError::Unavailable(describe(e)))?;
        if status.is_success() {
            let session: Session = serde_json::from_slice(&body)
                .map_err(|e| PaymentError::Protocol(format!("a Checkout Session that does not parse: {e}")))?;
            let url = session
                .url
                .filter(|u| !u.is_empty())
                .ok_or_else(|| PaymentError::Protocol("a Checkout Session without a url".into()))?;
            return Ok(Checkout::Redirect {
                session_id: session.id,
                url,
            });
        }
        // Only Stripe's error type and code are kept: its message may quote
        // (part of) the key.
        let detail = serde_json::from_slice::<ErrorBody>(&body).ok().map(|b| b.error);
        let code = detail.and_then(|d| match (d.kind, d.code) {
            (Some(k), Some(c)) => Some(format!("{k}/{c}")),
            (k, c) => k.or(c),
        });
        tracing::warn!(status = status.as_u16(), code = ?code, "Stripe refused to create a Checkout Session");
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 409 {
            return Err(PaymentError::Unavailable(format!(
                "Stripe answered HTTP {}",
                status.as_u16()
            )));
        }
        Err(PaymentError::Refused {
            status: status.as_u16(),
            code,
        })
    }
}

/// What kind of failure a reqwest error was, without its URL.
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        format!("request failed: {}", e.without_url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PackCatalog;
    use wiremock::matchers::{body_string_contains, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn client(base: &str) -> StripeClient {
        StripeClient::new(
            base,
            SecretString::from("sk_test_unit"),
            "https://app.example.com/ok?p={PURCHASE_ID}".into(),
            "https://app.example.com/cancel".into(),
            Duration::from_secs(5),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn creates_a_checkout_session() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/checkout/sessions"))
            .and(header("authorization", "Bearer sk_test_unit"))
            .and(header("idempotency-key", "creditgate-purchase-p1"))
            .and(header("content-type", "application/x-www-form-urlencoded"))
            .and(body_string_contains("mode=payment"))
            .and(body_string_contains("client_reference_id=p1"))
            .and(body_string_contains("metadata%5Bpurchase_id%5D=p1"))
            .and(body_string_contains(
                "line_items%5B0%5D%5Bprice_data%5D%5Bunit_amount%5D=500",
            ))
            .and(body_string_contains(
                "line_items%5B0%5D%5Bprice_data%5D%5Bcurrency%5D=usd",
            ))
            .and(body_string_contains(
                "success_url=https%3A%2F%2Fapp.example.com%2Fok%3Fp%3Dp1",
            ))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"id": "cs_1", "url": "https://checkout.example/cs_1"})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let packs = PackCatalog::shipped_packs();
        let out = client(&server.uri())
            .start_checkout(&CheckoutRequest {
                purchase_id: "p1",
                user_id: "alice",
                user_email: None,
                pack: &packs[0],
            })
            .await
            .unwrap();
        assert_eq!(
            out,
            Checkout::Redirect {
                session_id: "cs_1".into(),
                url: "https://checkout.example/cs_1".into()
            }
        );
    }

    #[tokio::test]
    async fn errors_keep_no_message_and_tell_transient_from_refused() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
                "error": {"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_unit"}
            })))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        let packs = PackCatalog::shipped_packs();
        let req = CheckoutRequest {
            purchase_id: "p1",
            user_id: "alice",
            user_email: Some("a@example.com"),
            pack: &packs[0],
        };
        let c = client(&server.uri());
        let refused = c.start_checkout(&req).await.unwrap_err();
        assert!(!refused.is_transient());
        assert!(!refused.to_string().contains("sk_test"), "{refused}");
        let down = c.start_checkout(&req).await.unwrap_err();
        assert!(down.is_transient(), "{down:?}");
        assert!(!format!("{c:?}").contains("sk_test"));
    }
}
