//! The purchases service: the one place that starts a purchase (for the
//! GraphQL API) and applies a payment provider's event (for the Stripe
//! webhook). The store completes, fails and refunds purchases each in one
//! transaction, which also writes the `purchase.completed` and
//! `purchase.refunded` webhooks into the outbox.

use creditgate_storage::{
    NewPurchase, ProviderEvent, Purchase, PurchaseStart, PurchaseStatus, PurchaseUpdate, RefundShare, Store, StoreError,
};

use crate::{Checkout, CheckoutRequest, EventAction, PaymentError, Payments, ProviderKind, SessionRef, StripeEvent};

const STRIPE: &str = "stripe";

/// Who buys.
#[derive(Debug, Clone, Copy)]
pub struct Buyer<'a> {
    pub user_id: &'a str,
    pub email: Option<&'a str>,
}

/// Why a purchase could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PurchaseError {
    #[error("credit pack `{0}` is not on sale")]
    PackNotOnSale(String),
    /// The provider failed; transient ones may be retried with the same key.
    #[error("the payment provider failed: {0}")]
    Payment(#[source] PaymentError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a provider's event was not applied.
#[derive(Debug, thiserror::Error)]
pub enum EventRefusal {
    /// The event is wrong (unknown session, amounts that do not match).
    #[error("{0}")]
    Bad(String),
    /// Our failure: the provider should deliver it again later.
    #[error(transparent)]
    Internal(#[from] StoreError),
}

/// Buying credits. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PurchaseService {
    store: Store,
    payments: Payments,
}

fn provider_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Dev => "dev",
        ProviderKind::Stripe => STRIPE,
    }
}

impl PurchaseService {
    pub fn new(store: Store, payments: Payments) -> Self {
        PurchaseService { store, payments }
    }

    pub fn payments(&self) -> &Payments {
        &self.payments
    }

    /// Buys a pack: a PENDING purchase, then the provider's checkout. The
    /// dev provider completes it at once; Stripe gives a checkout URL. The
    /// same idempotency key returns the same purchase (going on from where
    /// an interrupted first call stopped).
    pub async fn start(
        &self,
        buyer: Buyer<'_>,
        pack_id: &str,
        idempotency_key: String,
    ) -> Result<Purchase, PurchaseError> {
        let pack = self
            .payments
            .catalog()
            .active_pack(pack_id)
            .ok_or_else(|| PurchaseError::PackNotOnSale(pack_id.to_owned()))?;
        let provider = self.payments.provider();
        let start = self
            .store
            .create_purchase(&NewPurchase {
                user_id: buyer.user_id.to_owned(),
                pack_id: pack.id.clone(),
                pack_name: pack.name.clone(),
                credits: pack.credits,
                price_cents: pack.price_cents,
                currency: pack.currency.clone(),
                provider: provider_name(provider.kind()).to_owned(),
                idempotency_key,
            })
            .await?;
        let purchase = match start {
            PurchaseStart::Created(p) => p,
            // A retry: the first call's purchase, unless that call never got
            // as far as the provider (then it goes on from there).
            PurchaseStart::Existing(p) if p.status != PurchaseStatus::Pending || p.provider_session_id.is_some() => {
                return Ok(p);
            }
            PurchaseStart::Existing(p) => p,
        };
        let checkout = provider
            .start_checkout(&CheckoutRequest {
                purchase_id: &purchase.id,
                user_id: buyer.user_id,
                user_email: buyer.email,
                pack,
            })
            .await;
        match checkout {
            Ok(Checkout::Completed) => {
                match self.store.complete_purchase(&purchase.id, None, None, None).await? {
                    PurchaseUpdate::Applied(p) | PurchaseUpdate::Unchanged(p) => Ok(p),
                    PurchaseUpdate::AlreadyProcessed => self.store.purchase(&purchase.id).await?.ok_or_else(|| {
                        PurchaseError::Store(StoreError::Corrupt("a completed purchase vanished".into()))
                    }),
                }
            }
            Ok(Checkout::Redirect { session_id, url }) => {
                Ok(self.store.attach_checkout(&purchase.id, &session_id, &url).await?)
            }
            Err(e) => {
                if !e.is_transient() {
                    // A retry cannot succeed: the purchase failed.
                    self.store.fail_purchase(&purchase.id, None).await?;
                }
                Err(PurchaseError::Payment(e))
            }
        }
    }

    /// Applies a verified Stripe event once; says what it did (`applied`,
    /// `unchanged`, `duplicate`, `ignored`, `awaiting payment`).
    pub async fn apply_stripe_event(&self, event: &StripeEvent) -> Result<&'static str, EventRefusal> {
        let store = &self.store;
        let record = ProviderEvent {
            id: &event.id,
            provider: STRIPE,
            event_type: &event.kind,
        };
        let update = match &event.action {
            EventAction::Ignored => return Ok("ignored"),
            EventAction::AwaitingPayment(session) => {
                // Its async payment events follow; only check it is ours.
                self.purchase_of(session).await?;
                return Ok("awaiting payment");
            }
            EventAction::Paid(session) => {
                let purchase = self.purchase_of(session).await?;
                if let Some(total) = session.amount_total
                    && total != purchase.price_cents
                {
                    return Err(EventRefusal::Bad(format!(
                        "the session's amount {total} is not the purchase's price {}",
                        purchase.price_cents
                    )));
                }
                if let Some(currency) = &session.currency
                    && !currency.eq_ignore_ascii_case(&purchase.currency)
                {
                    return Err(EventRefusal::Bad("the session's currency is not the purchase's".into()));
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
                let purchase = self.purchase_of(session).await?;
                store.fail_purchase(&purchase.id, Some(record)).await?
            }
            EventAction::Refunded {
                payment_intent,
                amount,
                amount_refunded,
                fully,
            } => {
                let Some(purchase) = store.purchase_by_payment_intent(payment_intent).await? else {
                    return Err(EventRefusal::Bad("no purchase was paid with this payment".into()));
                };
                let share = RefundShare {
                    amount_refunded: *amount_refunded,
                    amount: *amount,
                    fully: *fully,
                };
                store.refund_purchase(&purchase.id, share, Some(record)).await?
            }
        };
        Ok(match update {
            PurchaseUpdate::Applied(_) => "applied",
            PurchaseUpdate::Unchanged(_) => "unchanged",
            PurchaseUpdate::AlreadyProcessed => "duplicate",
        })
    }

    /// The purchase a checkout session belongs to: by the session's id, or
    /// (when the server stopped between Stripe's answer and recording it)
    /// by the purchase id the session carries, if that purchase has no
    /// session yet. Any other session is refused.
    async fn purchase_of(&self, session: &SessionRef) -> Result<Purchase, EventRefusal> {
        if let Some(purchase) = self.store.purchase_by_session(&session.session_id).await? {
            if session.purchase_id.as_ref().is_some_and(|id| *id != purchase.id) {
                return Err(EventRefusal::Bad("the session names another purchase".into()));
            }
            return Ok(purchase);
        }
        if let Some(id) = &session.purchase_id
            && let Some(purchase) = self.store.purchase(id).await?
            && purchase.provider_session_id.is_none()
            && purchase.provider == STRIPE
        {
            return Ok(purchase);
        }
        Err(EventRefusal::Bad("unknown checkout session".into()))
    }
}
