//! The one place that turns failures into GraphQL errors with a stable
//! `extensions.code`. Internal details go to the log, never to the client.

use async_graphql::{ErrorExtensions, ServerError};
use creditgate_storage::StoreError;

/// The codes clients can rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unauthenticated,
    Forbidden,
    BadUserInput,
    NotFound,
    InsufficientCredits,
    IdempotencyConflict,
    ByokKeyInvalid,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    /// An admin's spend limit does not afford the request.
    SpendLimitReached,
    /// The query is not GraphQL.
    GraphqlParseFailed,
    /// The query does not fit the schema or its limits.
    GraphqlValidationFailed,
    /// An automatic persisted query's hash is unknown: send the query with it.
    PersistedQueryNotFound,
    Internal,
}

impl Code {
    /// Every code, for documentation and for the test that proves each is
    /// reachable.
    pub const ALL: [Code; 15] = [
        Code::Unauthenticated,
        Code::Forbidden,
        Code::BadUserInput,
        Code::NotFound,
        Code::InsufficientCredits,
        Code::IdempotencyConflict,
        Code::ByokKeyInvalid,
        Code::ProviderError,
        Code::ProviderUnavailable,
        Code::RateLimited,
        Code::SpendLimitReached,
        Code::GraphqlParseFailed,
        Code::GraphqlValidationFailed,
        Code::PersistedQueryNotFound,
        Code::Internal,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::BadUserInput => "BAD_USER_INPUT",
            Code::NotFound => "NOT_FOUND",
            Code::InsufficientCredits => "INSUFFICIENT_CREDITS",
            Code::IdempotencyConflict => "IDEMPOTENCY_CONFLICT",
            Code::ByokKeyInvalid => "BYOK_KEY_INVALID",
            Code::ProviderError => "PROVIDER_ERROR",
            Code::ProviderUnavailable => "PROVIDER_UNAVAILABLE",
            Code::RateLimited => "RATE_LIMITED",
            Code::SpendLimitReached => "SPEND_LIMIT_REACHED",
            Code::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            Code::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            Code::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            Code::Internal => "INTERNAL",
        }
    }

    /// The HTTP status of a request that failed with this code, for the
    /// doors that answer in plain HTTP (the OpenAI-compatible endpoint);
    /// GraphQL itself answers 200 with the code in the body.
    pub const fn http_status(self) -> u16 {
        match self {
            Code::Unauthenticated => 401,
            Code::Forbidden => 403,
            Code::BadUserInput | Code::GraphqlParseFailed | Code::GraphqlValidationFailed => 400,
            Code::NotFound | Code::PersistedQueryNotFound => 404,
            Code::InsufficientCredits | Code::SpendLimitReached => 402,
            Code::IdempotencyConflict => 409,
            // The provider refused the user's own key: an upstream failure.
            Code::ByokKeyInvalid | Code::ProviderError => 502,
            Code::ProviderUnavailable => 503,
            Code::RateLimited => 429,
            Code::Internal => 500,
        }
    }
}

/// An error as the API shows it. (Deliberately not `Display`: it reaches
/// clients only through its own conversion, which keeps the code.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Code::Forbidden, message)
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(Code::BadUserInput, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    /// An internal failure: logged in full, shown as a bare INTERNAL.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(Code::Internal, "internal error; it has been logged")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, id } => ApiError::not_found(format!("{what} `{id}` not found")),
            StoreError::Forbidden(m) => ApiError::forbidden(m),
            StoreError::InsufficientCredits { requested, available } => ApiError::new(
                Code::InsufficientCredits,
                format!("insufficient credits: {requested} needed, {available} available"),
            ),
            StoreError::SpendLimitReached { requested, left } => ApiError::new(
                Code::SpendLimitReached,
                format!("spend limit reached: {requested} needed, {left} left this billing cycle"),
            ),
            StoreError::IdempotencyConflict => ApiError::new(
                Code::IdempotencyConflict,
                "this idempotency key was already used for a different request",
            ),
            StoreError::InvalidInput(m) => ApiError::bad_input(m),
            StoreError::HoldNotOpen { .. } => ApiError::bad_input(e.to_string()),
            StoreError::Unavailable(_) | StoreError::Database(_) | StoreError::Corrupt(_) => ApiError::internal(&e),
        }
    }
}

impl From<creditgate_domain::TextError> for ApiError {
    fn from(e: creditgate_domain::TextError) -> Self {
        ApiError::bad_input(e.to_string())
    }
}

impl From<creditgate_metering::AiError> for ApiError {
    fn from(e: creditgate_metering::AiError) -> Self {
        use creditgate_metering::AiError as E;
        match e {
            E::BadInput(m) => ApiError::bad_input(m),
            E::InsufficientCredits { .. } => ApiError::new(Code::InsufficientCredits, e.to_string()),
            E::SpendLimitReached { .. } => ApiError::new(Code::SpendLimitReached, e.to_string()),
            E::IdempotencyConflict => ApiError::new(Code::IdempotencyConflict, e.to_string()),
            E::KeyInvalid(m) => ApiError::new(Code::ByokKeyInvalid, m),
            E::Provider(m) => ApiError::new(Code::ProviderError, m),
            E::Unavailable(m) => ApiError::new(Code::ProviderUnavailable, m),
            E::RateLimited(m) => ApiError::new(Code::RateLimited, m),
            E::Store(s) => ApiError::from(s),
            E::Internal(m) => ApiError::internal(&m),
        }
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(e: ApiError) -> Self {
        async_graphql::Error::new(e.message).extend_with(|_, ext| ext.set("code", e.code.as_str()))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Gives every error that has no code one: errors of the query itself
/// (syntax, validation, an argument that does not parse) are
/// BAD_USER_INPUT. Applied to every response and subscription event.
pub(crate) fn fill_in_codes(errors: &mut [ServerError]) {
    for e in errors {
        let has_code = e.extensions.as_ref().is_some_and(|x| x.get("code").is_some());
        if !has_code {
            let code = if e.message == "PersistedQueryNotFound" {
                Code::PersistedQueryNotFound
            } else {
                Code::BadUserInput
            };
            e.extensions
                .get_or_insert_with(Default::default)
                .set("code", code.as_str());
        }
    }
}

/// The async-graphql extension that applies [`fill_in_codes`].
pub(crate) struct ErrorCodes;

impl async_graphql::extensions::ExtensionFactory for ErrorCodes {
    fn create(&self) -> std::sync::Arc<dyn async_graphql::extensions::Extension> {
        std::sync::Arc::new(ErrorCodesExtension)
    }
}

struct ErrorCodesExtension;

#[async_graphql::async_trait::async_trait]
impl async_graphql::extensions::Extension for ErrorCodesExtension {
    async fn request(
        &self,
        ctx: &async_graphql::extensions::ExtensionContext<'_>,
        next: async_graphql::extensions::NextRequest<'_>,
    ) -> async_graphql::Response {
        let mut resp = next.run(ctx).await;
        fill_in_codes(&mut resp.errors);
        resp
    }

    fn subscribe<'s>(
        &self,
        ctx: &async_graphql::extensions::ExtensionContext<'_>,
        stream: futures::stream::BoxStream<'s, async_graphql::Response>,
        next: async_graphql::extensions::NextSubscribe<'_>,
    ) -> futures::stream::BoxStream<'s, async_graphql::Response> {
        use futures::StreamExt;
        next.run(ctx, stream)
            .map(|mut resp| {
                fill_in_codes(&mut resp.errors);
                resp
            })
            .boxed()
    }
}
