//! Subscriptions to the caller's wallet: `walletUpdated` (the wallet now,
//! then after each committed change) and `activityAdded` (each new journal
//! entry). Events come from the replica's real-time hub.

use async_graphql::{Context, Subscription};
use creditgate_realtime::{Hub, RealtimeError};
use futures::{Stream, StreamExt};

use crate::context::caller_user;
use crate::error::{ApiError, ApiResult};
use crate::types::{ActivityEntry, Wallet};

/// The wallet's subscriptions.
#[derive(Default)]
pub struct WalletSubscription;

pub(crate) fn hub<'a>(ctx: &Context<'a>) -> ApiResult<&'a Hub> {
    ctx.data::<Hub>()
        .map_err(|_| ApiError::internal(&"the real-time hub is not configured"))
}

pub(crate) fn api_error(e: RealtimeError) -> ApiError {
    match e {
        RealtimeError::Store(e) => e.into(),
        RealtimeError::NoWallet(user) => ApiError::not_found(format!("user `{user}` has no wallet")),
    }
}

#[Subscription]
impl WalletSubscription {
    /// The caller's wallet, each time it changes (first: as it is now).
    async fn wallet_updated(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Wallet>>> {
        let user = caller_user(ctx).await?;
        let stream = hub(ctx)?.wallet_updates(&user.id).await.map_err(api_error)?;
        Ok(stream.map(|w| w.map(Wallet::from).map_err(|e| api_error(e).into())))
    }

    /// The caller's new activity entries, as they are written.
    async fn activity_added(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ActivityEntry>>> {
        let user = caller_user(ctx).await?;
        let stream = hub(ctx)?.activity(&user.id).await.map_err(api_error)?;
        Ok(stream.map(|e| e.map(ActivityEntry::from).map_err(|e| api_error(e).into())))
    }
}
