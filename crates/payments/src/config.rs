//! The `[payments]` section of the server's configuration.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogError, CreditPack, PackCatalog};

/// Which payment provider takes the money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Embedded default: a purchase completes at once, nothing is charged.
    /// For trying the product and for tests; refused in production.
    Dev,
    /// Stripe Checkout, completed by Stripe's webhook.
    Stripe,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    pub provider: ProviderKind,
    /// Replaces the shipped packs when given.
    pub packs: Vec<CreditPack>,
    pub stripe: StripeConfig,
    /// Days a processed webhook event is remembered (so that a redelivery
    /// is recognised) before the periodic sweep deletes it.
    pub webhook_event_retention_days: u64,
    /// Seconds after which the periodic sweep marks FAILED a PENDING
    /// purchase that never got a checkout session (its call to the payment
    /// provider failed or never happened).
    pub abandoned_purchase_secs: u64,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig {
            provider: ProviderKind::Dev,
            packs: PackCatalog::shipped_packs(),
            stripe: StripeConfig::default(),
            webhook_event_retention_days: 30,
            abandoned_purchase_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StripeConfig {
    /// Stripe's REST API; tests point it at a mock.
    pub api_base: String,
    /// The secret API key (`sk_...`). Prefer `secret_key_env`.
    #[serde(skip_serializing)]
    pub secret_key: Option<SecretString>,
    /// The environment variable holding the secret API key, read at start
    /// when `secret_key` is not set.
    pub secret_key_env: String,
    /// The webhook endpoint's signing secret (`whsec_...`). Prefer
    /// `webhook_secret_env`.
    #[serde(skip_serializing)]
    pub webhook_secret: Option<SecretString>,
    /// The environment variable holding the webhook signing secret.
    pub webhook_secret_env: String,
    /// Where Stripe sends the user after paying; `{PURCHASE_ID}` is replaced
    /// by the purchase's id (and Stripe fills in `{CHECKOUT_SESSION_ID}`).
    pub success_url: Option<String>,
    /// Where Stripe sends the user who gives up.
    pub cancel_url: Option<String>,
    /// How old (or how far ahead) a webhook's signed timestamp may be.
    pub tolerance_secs: u64,
    /// Timeout of one call to Stripe's API.
    pub timeout_secs: u64,
}

impl Default for StripeConfig {
    fn default() -> Self {
        StripeConfig {
            api_base: "https://api.stripe.com".into(),
            secret_key: None,
            secret_key_env: "STRIPE_SECRET_KEY".into(),
            webhook_secret: None,
            webhook_secret_env: "STRIPE_WEBHOOK_SECRET".into(),
            success_url: None,
            cancel_url: None,
            tolerance_secs: 300,
            timeout_secs: 20,
        }
    }
}

/// A bad `[payments]` setting; [`PaymentsConfigError::key`] names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentsConfigError {
    #[error("{0}")]
    Packs(#[from] CatalogError),
    #[error("the `dev` payment provider completes purchases without payment and is refused in production")]
    DevInProduction,
    #[error("is required with the stripe provider")]
    Missing(&'static str),
    #[error("must be an http(s) URL")]
    NotAUrl(&'static str),
    #[error("must be at least 1")]
    Zero(&'static str),
    #[error("must be at least {min}")]
    AtLeast { key: &'static str, min: u64 },
    #[error("the environment variable `{var}` is not set (or empty)")]
    SecretNotSet { key: &'static str, var: String },
    #[error("cannot build the Stripe client: {0}")]
    Client(String),
}

impl PaymentsConfigError {
    /// The configuration key at fault.
    pub fn key(&self) -> &'static str {
        match self {
            PaymentsConfigError::Packs(_) => "payments.packs",
            PaymentsConfigError::DevInProduction => "payments.provider",
            PaymentsConfigError::Missing(k) | PaymentsConfigError::NotAUrl(k) | PaymentsConfigError::Zero(k) => k,
            PaymentsConfigError::SecretNotSet { key, .. } | PaymentsConfigError::AtLeast { key, .. } => key,
            PaymentsConfigError::Client(_) => "payments.stripe",
        }
    }
}

fn is_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
}

impl PaymentsConfig {
    /// Checks the settings (not the secrets, which are read when the
    /// provider is built).
    pub fn validate(&self, production: bool) -> Result<(), PaymentsConfigError> {
        PackCatalog::new(self.packs.clone())?;
        if self.webhook_event_retention_days == 0 {
            return Err(PaymentsConfigError::Zero("payments.webhook_event_retention_days"));
        }
        if self.abandoned_purchase_secs < 60 {
            return Err(PaymentsConfigError::AtLeast {
                key: "payments.abandoned_purchase_secs",
                min: 60,
            });
        }
        match self.provider {
            ProviderKind::Dev if production => Err(PaymentsConfigError::DevInProduction),
            ProviderKind::Dev => Ok(()),
            ProviderKind::Stripe => self.stripe.validate(),
        }
    }
}

impl StripeConfig {
    fn validate(&self) -> Result<(), PaymentsConfigError> {
        if !is_http_url(&self.api_base) {
            return Err(PaymentsConfigError::NotAUrl("payments.stripe.api_base"));
        }
        for (key, value) in [
            ("payments.stripe.success_url", &self.success_url),
            ("payments.stripe.cancel_url", &self.cancel_url),
        ] {
            match value {
                None => return Err(PaymentsConfigError::Missing(key)),
                // The placeholders are not URL syntax; check what they stand in.
                Some(v) if !is_http_url(&v.replace(['{', '}'], "")) => {
                    return Err(PaymentsConfigError::NotAUrl(key));
                }
                Some(_) => {}
            }
        }
        if self.tolerance_secs == 0 {
            return Err(PaymentsConfigError::Zero("payments.stripe.tolerance_secs"));
        }
        if self.timeout_secs == 0 {
            return Err(PaymentsConfigError::Zero("payments.stripe.timeout_secs"));
        }
        Ok(())
    }

    /// A secret: configured directly, else from its environment variable.
    pub(crate) fn secret(
        configured: &Option<SecretString>,
        key: &'static str,
        var: &str,
    ) -> Result<SecretString, PaymentsConfigError> {
        use secrecy::ExposeSecret;
        if let Some(s) = configured
            && !s.expose_secret().is_empty()
        {
            return Ok(s.clone());
        }
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(SecretString::from(v.trim().to_owned())),
            _ => Err(PaymentsConfigError::SecretNotSet {
                key,
                var: var.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripe() -> PaymentsConfig {
        PaymentsConfig {
            provider: ProviderKind::Stripe,
            stripe: StripeConfig {
                success_url: Some("https://app.example.com/credits?purchase={PURCHASE_ID}".into()),
                cancel_url: Some("https://app.example.com/credits".into()),
                ..StripeConfig::default()
            },
            ..PaymentsConfig::default()
        }
    }

    #[test]
    fn dev_is_refused_in_production_only() {
        let dev = PaymentsConfig::default();
        assert_eq!(dev.validate(false), Ok(()));
        assert_eq!(dev.validate(true), Err(PaymentsConfigError::DevInProduction));
        assert_eq!(stripe().validate(true), Ok(()));
    }

    #[test]
    fn stripe_needs_its_urls() {
        let mut c = stripe();
        c.stripe.cancel_url = None;
        assert_eq!(c.validate(true).unwrap_err().key(), "payments.stripe.cancel_url");
        let mut c = stripe();
        c.stripe.api_base = "api.stripe.com".into();
        assert_eq!(c.validate(true).unwrap_err().key(), "payments.stripe.api_base");
        let mut c = stripe();
        c.stripe.tolerance_secs = 0;
        assert_eq!(c.validate(true).unwrap_err().key(), "payments.stripe.tolerance_secs");
    }

    #[test]
    fn a_missing_secret_names_its_variable_not_a_value() {
        let err = StripeConfig::secret(&None, "payments.stripe.secret_key", "CREDITGATE_TEST_NO_SUCH_VAR").unwrap_err();
        assert_eq!(err.key(), "payments.stripe.secret_key");
        assert!(err.to_string().contains("CREDITGATE_TEST_NO_SUCH_VAR"));
    }

    #[test]
    fn secrets_never_print() {
        let mut c = stripe();
        c.stripe.secret_key = Some(SecretString::from("sk_test_very_secret"));
        c.stripe.webhook_secret = Some(SecretString::from("whsec_very_secret"));
        let shown = format!("{c:?} {}", serde_json::to_string(&c).unwrap());
        assert!(!shown.contains("very_secret"), "{shown}");
    }
}
