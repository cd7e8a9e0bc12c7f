//! Why an AI request failed; each variant maps to one API code (in the
//! graphql crate's one error mapping).

use creditgate_domain::{Credits, PricingError};
use creditgate_gateway::{ErrorKind, ProviderError};
use creditgate_storage::StoreError;

use crate::vault::VaultError;

#[derive(Debug, thiserror::Error)]
pub enum AiError {
    #[error("{0}")]
    BadInput(String),
    #[error("insufficient credits: {needed} needed for the shortest useful answer, {available} available")]
    InsufficientCredits { needed: Credits, available: Credits },
    #[error("this idempotency key was already used for a different request")]
    IdempotencyConflict,
    /// An admin's spend limit (the member's or their team's) does not
    /// afford the shortest useful answer.
    #[error("spend limit reached: {needed} needed for the shortest useful answer, {left} left this billing cycle")]
    SpendLimitReached { needed: Credits, left: Credits },
    /// The provider refused the user's key, or the server can no longer
    /// read the stored key (BYOK_KEY_INVALID either way: set it again).
    #[error("{0}")]
    KeyInvalid(String),
    #[error("{0}")]
    Provider(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    RateLimited(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl From<PricingError> for AiError {
    fn from(e: PricingError) -> Self {
        match e {
            PricingError::UnknownModel { .. } => AiError::BadInput(e.to_string()),
            _ => AiError::Internal(e.to_string()),
        }
    }
}

impl From<creditgate_domain::TextError> for AiError {
    fn from(e: creditgate_domain::TextError) -> Self {
        AiError::BadInput(e.to_string())
    }
}

impl AiError {
    /// A stored key that no configured identity decrypts: the user's to fix
    /// (save the key again), not an internal failure.
    pub(crate) fn from_vault(e: VaultError, provider: &str) -> Self {
        match e {
            VaultError::Decrypt => AiError::KeyInvalid(format!(
                "your saved {provider} key can no longer be read by this server; save it again"
            )),
            other => AiError::Internal(other.to_string()),
        }
    }

    /// A provider's failure, by its kind.
    pub(crate) fn from_provider(e: &ProviderError) -> Self {
        let msg = e.to_string();
        match e.kind() {
            ErrorKind::KeyInvalid => AiError::KeyInvalid(msg),
            ErrorKind::RateLimited => AiError::RateLimited(msg),
            ErrorKind::Unavailable => AiError::Unavailable(msg),
            ErrorKind::ProviderError => AiError::Provider(msg),
            ErrorKind::UnknownProviderOrModel => AiError::BadInput(msg),
        }
    }

    /// Whether a failing BYOK request may be retried with credits (when the
    /// user allows it).
    pub(crate) fn allows_fallback(&self) -> bool {
        matches!(
            self,
            AiError::KeyInvalid(_) | AiError::Provider(_) | AiError::Unavailable(_) | AiError::RateLimited(_)
        )
    }

    /// The journal's words for a failed request.
    pub(crate) fn failure_description(&self) -> String {
        let what = match self {
            AiError::KeyInvalid(_) => "the provider refused the key",
            AiError::RateLimited(_) => "the provider is rate limiting",
            AiError::Unavailable(_) => "the provider is unavailable",
            _ => "the provider returned an error",
        };
        format!("Failed: {what}; nothing was charged")
    }
}
