//! What every resolver knows about the request: who calls, and the
//! services behind the API.

use async_graphql::Context;
use creditgate_domain::Role;
use creditgate_storage::{Identity, Store, User};
use tokio::sync::OnceCell;

use crate::error::{ApiError, ApiResult};

/// Limits of the API.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// The largest page of `activity`.
    pub max_page_size: u64,
    /// The page size when `first` is absent.
    pub default_page_size: u64,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_page_size: 100,
            default_page_size: 20,
        }
    }
}

/// Shared by every request.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub limits: ApiLimits,
}

/// The outcome of authenticating one request (or one WebSocket connection).
#[derive(Debug, Clone)]
pub enum Auth {
    Caller(Identity),
    /// Why the credentials were refused (safe to show: names no secret).
    Refused(String),
    Missing,
}

/// Per request: the caller's user record, loaded (or created) once.
#[derive(Default)]
pub struct CallerUser(OnceCell<User>);

pub(crate) fn services<'a>(ctx: &Context<'a>) -> &'a Services {
    ctx.data_unchecked::<Services>()
}

/// Who calls; UNAUTHENTICATED without valid credentials.
pub(crate) fn identity<'a>(ctx: &Context<'a>) -> ApiResult<&'a Identity> {
    match ctx.data_opt::<Auth>() {
        Some(Auth::Caller(id)) => Ok(id),
        Some(Auth::Refused(why)) => Err(ApiError::unauthenticated(why.clone())),
        Some(Auth::Missing) | None => Err(ApiError::unauthenticated(
            "authentication required: send `Authorization: Bearer <JWT>`",
        )),
    }
}

pub(crate) fn require_role<'a>(ctx: &Context<'a>, role: Role) -> ApiResult<&'a Identity> {
    let id = identity(ctx)?;
    if id.role != role {
        return Err(ApiError::forbidden(format!(
            "only the {} role may do this",
            role.as_str()
        )));
    }
    Ok(id)
}

/// The calling member or admin, created with their wallet on first sight.
/// SERVICE identities have no wallet of their own.
pub(crate) async fn caller_user(ctx: &Context<'_>) -> ApiResult<User> {
    let id = identity(ctx)?;
    let load = || wallet_user(&services(ctx).store, id);
    match ctx.data_opt::<CallerUser>() {
        Some(cell) => cell.0.get_or_try_init(load).await.cloned(),
        None => load().await,
    }
}

/// The member or admin `id` names, created with their wallet on first
/// sight; FORBIDDEN for a SERVICE identity, which has no wallet. Every
/// door that acts for the caller (GraphQL, the OpenAI-compatible
/// endpoint) resolves its user here.
pub async fn wallet_user(store: &Store, id: &Identity) -> ApiResult<User> {
    if id.role == Role::Service {
        return Err(ApiError::forbidden(
            "a SERVICE identity has no wallet; act on users by id",
        ));
    }
    store.ensure_user(id).await.map_err(ApiError::from)
}
