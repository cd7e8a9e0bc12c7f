//! The payment provider: what starts a payment for a purchase. The dev
//! provider completes at once; Stripe redirects to a Checkout Session and
//! completes through its webhook.

use async_trait::async_trait;

use crate::catalog::CreditPack;
use crate::config::ProviderKind;

/// What a provider needs to start the payment of one purchase.
#[derive(Debug, Clone, Copy)]
pub struct CheckoutRequest<'a> {
    /// The purchase's id: the provider carries it back in its events.
    pub purchase_id: &'a str,
    pub user_id: &'a str,
    pub user_email: Option<&'a str>,
    pub pack: &'a CreditPack,
}

/// How the payment proceeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkout {
    /// Paid already: complete the purchase now.
    Completed,
    /// The user pays at `url`; the provider's webhook completes the purchase.
    Redirect { session_id: String, url: String },
}

/// Why a payment could not be started. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// Worth retrying (network, timeout, the provider's own failure).
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider refused this request; a retry will not help.
    #[error("the payment provider refused the request (HTTP {status}{})", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Refused { status: u16, code: Option<String> },
    /// The provider answered something that is not what its API promises.
    #[error("the payment provider answered unexpectedly: {0}")]
    Protocol(String),
}

impl PaymentError {
    /// Whether a retry of the same request can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, PaymentError::Unavailable(_))
    }
}

/// Takes the money for a purchase.
#[async_trait]
pub trait PaymentProvider: Send + Sync + std::fmt::Debug {
    fn kind(&self) -> ProviderKind;

    /// Starts the payment. Called again for the same purchase after a
    /// transient failure, so it must be idempotent per purchase.
    async fn start_checkout(&self, req: &CheckoutRequest<'_>) -> Result<Checkout, PaymentError>;
}

/// The embedded default: every purchase is paid at once. Refused in
/// production by the configuration.
#[derive(Debug, Clone, Default)]
pub struct DevProvider;

#[async_trait]
impl PaymentProvider for DevProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Dev
    }

    async fn start_checkout(&self, req: &CheckoutRequest<'_>) -> Result<Checkout, PaymentError> {
        tracing::info!(
            purchase_id = req.purchase_id,
            pack = req.pack.id,
            "dev payment provider: completing the purchase without payment"
        );
        Ok(Checkout::Completed)
    }
}
