//! Buying credits: the packs on sale, the caller's purchases, and
//! `purchaseCredits`, which starts a payment with the configured provider
//! (the dev provider completes at once; Stripe returns a checkout URL and
//! completes through its webhook).

use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use creditgate_payments::{Buyer, CreditPack as PackConfig, PaymentError, Payments, PurchaseError, PurchaseService};
use creditgate_storage::Purchase as StoredPurchase;

use crate::context::{caller_user, identity, services};
use crate::error::{ApiError, ApiResult, Code};
use crate::scalars::CreditsScalar;
use crate::schema::check_idempotency_key;

/// A pack of permanent credits for sale.
#[derive(SimpleObject, Clone, Debug)]
pub struct CreditPack {
    pub id: ID,
    pub name: String,
    pub credits: CreditsScalar,
    /// The price in the smallest unit of `currency` (cents).
    pub price_cents: i32,
    /// ISO 4217, upper case.
    pub currency: String,
}

impl From<&PackConfig> for CreditPack {
    fn from(p: &PackConfig) -> Self {
        CreditPack {
            id: ID(p.id.clone()),
            name: p.name.clone(),
            credits: p.credits.into(),
            price_cents: i32::try_from(p.price_cents).unwrap_or(i32::MAX),
            currency: p.currency.clone(),
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "creditgate_storage::PurchaseStatus")]
pub enum PurchaseStatus {
    /// Waiting for the payment.
    Pending,
    /// Paid; the pack's credits were added.
    Completed,
    /// The payment failed or was abandoned; nothing was added.
    Failed,
    /// Refunded; the credits were taken back as far as they were left.
    Refunded,
}

/// A purchase of a credit pack.
#[derive(SimpleObject, Clone, Debug)]
pub struct Purchase {
    pub id: ID,
    /// The pack as it was sold.
    pub pack: CreditPack,
    pub status: PurchaseStatus,
    pub created_at: crate::scalars::Timestamp,
    pub completed_at: Option<crate::scalars::Timestamp>,
    /// Where the user completes payment, when the payment provider needs it.
    pub checkout_url: Option<String>,
}

impl From<StoredPurchase> for Purchase {
    fn from(p: StoredPurchase) -> Self {
        let pending = p.status == creditgate_storage::PurchaseStatus::Pending;
        Purchase {
            id: ID(p.id),
            pack: CreditPack {
                id: ID(p.pack_id),
                name: p.pack_name,
                credits: p.credits.into(),
                price_cents: i32::try_from(p.price_cents).unwrap_or(i32::MAX),
                currency: p.currency,
            },
            status: p.status.into(),
            created_at: p.created_at.into(),
            completed_at: p.completed_at.map(Into::into),
            // Only useful while the payment is open.
            checkout_url: p.checkout_url.filter(|_| pending),
        }
    }
}

fn payments<'a>(ctx: &Context<'a>) -> ApiResult<&'a Payments> {
    ctx.data::<Payments>()
        .map_err(|_| ApiError::internal(&"the schema was built without its payments data"))
}

fn purchase_service<'a>(ctx: &Context<'a>) -> ApiResult<&'a PurchaseService> {
    ctx.data::<PurchaseService>()
        .map_err(|_| ApiError::internal(&"the schema was built without its purchase service"))
}

fn payment_error(e: &PaymentError) -> ApiError {
    tracing::warn!(error = %e, "starting a payment failed");
    if e.is_transient() {
        ApiError::new(
            Code::ProviderUnavailable,
            "the payment provider is unavailable; retry with the same idempotencyKey",
        )
    } else {
        ApiError::new(Code::ProviderError, "the payment provider refused the purchase")
    }
}

/// Buying credits: queries.
#[derive(Default)]
pub struct PurchaseQuery;

#[Object]
impl PurchaseQuery {
    /// The credit packs on sale.
    async fn credit_packs(&self, ctx: &Context<'_>) -> ApiResult<Vec<CreditPack>> {
        identity(ctx)?;
        Ok(payments(ctx)?.catalog().active().map(CreditPack::from).collect())
    }

    /// The caller's purchases, newest first.
    async fn purchases(&self, ctx: &Context<'_>) -> ApiResult<Vec<Purchase>> {
        let user = caller_user(ctx).await?;
        let list = services(ctx).store.purchases(&user.id).await?;
        Ok(list.into_iter().map(Purchase::from).collect())
    }
}

/// Buying credits: mutations.
#[derive(Default)]
pub struct PurchaseMutation;

#[Object]
impl PurchaseMutation {
    /// Buys a credit pack. With the dev provider the purchase completes at
    /// once; otherwise it is PENDING and `checkoutUrl` is where the user
    /// pays. The same idempotencyKey returns the same purchase; used for
    /// another pack it is IDEMPOTENCY_CONFLICT.
    async fn purchase_credits(&self, ctx: &Context<'_>, pack_id: ID, idempotency_key: String) -> ApiResult<Purchase> {
        let user = caller_user(ctx).await?;
        let key = check_idempotency_key(&idempotency_key)?;
        let buyer = Buyer {
            user_id: &user.id,
            email: user.email.as_deref(),
        };
        match purchase_service(ctx)?.start(buyer, &pack_id, key).await {
            Ok(purchase) => Ok(Purchase::from(purchase)),
            Err(PurchaseError::PackNotOnSale(id)) => {
                Err(ApiError::not_found(format!("credit pack `{id}` is not on sale")))
            }
            Err(PurchaseError::Payment(e)) => Err(payment_error(&e)),
            Err(PurchaseError::Store(e)) => Err(e.into()),
        }
    }
}
