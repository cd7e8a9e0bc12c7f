//! Balance alerts: the caller's thresholds on `available`
//! (`Wallet.alertThresholds`, `setBalanceAlerts`) and the alerts as they
//! are raised (`balanceAlert`). Raising them is storage's job, in the
//! transaction of each wallet change; this is only the API.

use async_graphql::{Context, Enum, Object, SimpleObject, Subscription};
use creditgate_domain::Thresholds;
use creditgate_storage::BalanceAlert as StoredAlert;
use futures::{Stream, StreamExt};

use crate::context::{caller_user, services};
use crate::error::{ApiError, ApiResult};
use crate::scalars::CreditsScalar;
use crate::subscriptions::{api_error, hub};
use crate::types::Wallet;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "creditgate_domain::AlertKind")]
pub enum BalanceAlertKind {
    /// available fell to or below a threshold.
    Low,
    /// available reached 0.
    Depleted,
    /// available rose above a threshold it had fallen below.
    Recovered,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct BalanceAlert {
    pub kind: BalanceAlertKind,
    pub threshold: CreditsScalar,
    pub available: CreditsScalar,
    pub at: crate::scalars::Timestamp,
}

impl From<StoredAlert> for BalanceAlert {
    fn from(a: StoredAlert) -> Self {
        BalanceAlert {
            kind: a.kind.into(),
            threshold: a.threshold.into(),
            available: a.available.into(),
            at: a.at.into(),
        }
    }
}

/// `Wallet.alertThresholds`: the user's own thresholds, or the default.
pub(crate) async fn thresholds_of(ctx: &Context<'_>, user_id: &str) -> ApiResult<Vec<CreditsScalar>> {
    let thresholds = services(ctx).store.alert_thresholds(user_id).await?;
    Ok(thresholds.levels().iter().map(|c| (*c).into()).collect())
}

/// The balance alerts' mutations.
#[derive(Default)]
pub struct AlertMutation;

#[Object]
impl AlertMutation {
    /// The caller's alert thresholds on available credits (at most 5).
    async fn set_balance_alerts(&self, ctx: &Context<'_>, thresholds: Vec<CreditsScalar>) -> ApiResult<Wallet> {
        let thresholds = Thresholds::new(thresholds.into_iter().map(|c| c.0))
            .map_err(|e| ApiError::bad_input(format!("thresholds: {e}")))?;
        let user = caller_user(ctx).await?;
        let wallet = services(ctx).store.set_alert_thresholds(&user.id, &thresholds).await?;
        Ok(Wallet::from(wallet))
    }
}

/// The balance alerts' subscription.
#[derive(Default)]
pub struct AlertSubscription;

#[Subscription]
impl AlertSubscription {
    /// The caller's balance alerts, as they happen.
    async fn balance_alert(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<BalanceAlert>>> {
        let user = caller_user(ctx).await?;
        let stream = hub(ctx)?.balance_alerts(&user.id).await.map_err(api_error)?;
        Ok(stream.map(|a| a.map(BalanceAlert::from).map_err(|e| api_error(e).into())))
    }
}
