use creditgate_domain::{Credits, LedgerError};

/// Why a storage operation failed. Whatever the error, nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("insufficient credits: {requested} requested, {available} available")]
    InsufficientCredits { requested: Credits, available: Credits },
    #[error("the idempotency key was already used for a different request")]
    IdempotencyConflict,
    /// A spend limit set by an admin does not afford the request.
    #[error("spend limit reached: {requested} needed, {left} left this billing cycle")]
    SpendLimitReached { requested: Credits, left: Credits },
    #[error("{0}")]
    InvalidInput(String),
    #[error("hold `{id}` is already {status}")]
    HoldNotOpen { id: String, status: String },
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl From<LedgerError> for StoreError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::InsufficientCredits { requested, available } => {
                StoreError::InsufficientCredits { requested, available }
            }
            LedgerError::NonPositiveAmount(_) | LedgerError::Overflow => StoreError::InvalidInput(e.to_string()),
        }
    }
}

impl StoreError {
    pub(crate) fn corrupt(what: impl std::fmt::Display) -> Self {
        StoreError::Corrupt(what.to_string())
    }

    /// A unique constraint refused the write (a concurrent writer won).
    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(e) if matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
