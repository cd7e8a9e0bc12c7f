//! Buying credits: the credit pack catalog, the payment providers behind
//! [`PaymentProvider`] (the embedded `dev` provider and Stripe Checkout),
//! and Stripe's webhook signatures and events.
//!
//! [`PurchaseService`] is the one service of purchases: the GraphQL API
//! starts them through it, the server's Stripe webhook applies payment
//! events through it, and it records them and moves credits through the
//! store.

mod catalog;
mod config;
mod provider;
mod service;
mod stripe;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

pub use catalog::{CatalogError, CreditPack, PackCatalog};
pub use config::{PaymentsConfig, PaymentsConfigError, ProviderKind, StripeConfig};
pub use provider::{Checkout, CheckoutRequest, DevProvider, PaymentError, PaymentProvider};
pub use service::{Buyer, EventRefusal, PurchaseError, PurchaseService};
pub use stripe::StripeClient;
pub use webhook::{
    EventAction, EventError, SessionRef, SignatureError, StripeEvent, WebhookVerifier, parse_event, sign,
};

/// What purchases need at run time: the packs, the provider and (with
/// Stripe) the webhook's verifier. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Payments {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    catalog: PackCatalog,
    provider: Arc<dyn PaymentProvider>,
    webhook: Option<WebhookVerifier>,
}

impl Payments {
    pub fn new(catalog: PackCatalog, provider: Arc<dyn PaymentProvider>, webhook: Option<WebhookVerifier>) -> Self {
        Payments {
            inner: Arc::new(Inner {
                catalog,
                provider,
                webhook,
            }),
        }
    }

    /// Builds the configured provider, reading its secrets (from the
    /// configuration or their environment variables).
    pub fn from_config(config: &PaymentsConfig, production: bool) -> Result<Payments, PaymentsConfigError> {
        config.validate(production)?;
        let catalog = PackCatalog::new(config.packs.clone())?;
        match config.provider {
            ProviderKind::Dev => Ok(Payments::new(catalog, Arc::new(DevProvider), None)),
            ProviderKind::Stripe => {
                let s = &config.stripe;
                let secret_key = StripeConfig::secret(&s.secret_key, "payments.stripe.secret_key", &s.secret_key_env)?;
                let webhook_secret = StripeConfig::secret(
                    &s.webhook_secret,
                    "payments.stripe.webhook_secret",
                    &s.webhook_secret_env,
                )?;
                let (Some(success), Some(cancel)) = (&s.success_url, &s.cancel_url) else {
                    return Err(PaymentsConfigError::Missing("payments.stripe.success_url"));
                };
                let client = StripeClient::new(
                    &s.api_base,
                    secret_key,
                    success.clone(),
                    cancel.clone(),
                    Duration::from_secs(s.timeout_secs),
                )
                .map_err(|e| PaymentsConfigError::Client(e.to_string()))?;
                Ok(Payments::new(
                    catalog,
                    Arc::new(client),
                    Some(WebhookVerifier::new(webhook_secret, s.tolerance_secs)),
                ))
            }
        }
    }

    pub fn catalog(&self) -> &PackCatalog {
        &self.inner.catalog
    }

    pub fn provider(&self) -> &dyn PaymentProvider {
        self.inner.provider.as_ref()
    }

    /// The verifier of Stripe's webhook; `None` unless the provider is Stripe.
    pub fn stripe_webhook(&self) -> Option<&WebhookVerifier> {
        self.inner.webhook.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn builds_each_provider() {
        let dev = Payments::from_config(&PaymentsConfig::default(), false).unwrap();
        assert_eq!(dev.provider().kind(), ProviderKind::Dev);
        assert!(dev.stripe_webhook().is_none());
        assert!(Payments::from_config(&PaymentsConfig::default(), true).is_err());

        let mut config = PaymentsConfig {
            provider: ProviderKind::Stripe,
            ..PaymentsConfig::default()
        };
        config.stripe.success_url = Some("https://app.example.com/ok".into());
        config.stripe.cancel_url = Some("https://app.example.com/no".into());
        config.stripe.secret_key_env = "CREDITGATE_TEST_UNSET_STRIPE_KEY".into();
        let err = Payments::from_config(&config, true).unwrap_err();
        assert_eq!(err.key(), "payments.stripe.secret_key");
        config.stripe.secret_key = Some(SecretString::from("sk_test_x"));
        config.stripe.webhook_secret = Some(SecretString::from("whsec_x"));
        let stripe = Payments::from_config(&config, true).unwrap();
        assert_eq!(stripe.provider().kind(), ProviderKind::Stripe);
        assert!(stripe.stripe_webhook().is_some());
        assert!(!format!("{stripe:?}").contains("sk_test_x"));
    }
}
