//! Queries and mutations.

use async_graphql::{Context, ID, Object};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use creditgate_domain::{ActivityKind as DomainKind, Role as DomainRole};
use creditgate_storage::{ActivityFilter as StoreFilter, CreditRequest};

use crate::context::{caller_user, identity, require_role, services};
use crate::error::{ApiError, ApiResult};
use crate::scalars::CreditsScalar;
use crate::types::*;

const MAX_REASON_LEN: usize = 500;

pub(crate) fn encode_cursor(entry_id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("entry:{entry_id}"))
}

pub(crate) fn decode_cursor(cursor: &str) -> ApiResult<i64> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("entry:").and_then(|id| id.parse().ok()))
        .ok_or_else(|| ApiError::bad_input("`after` is not a cursor of this list"))
}

pub(crate) fn check_idempotency_key(key: &str) -> ApiResult<String> {
    Ok(creditgate_domain::check_key("idempotencyKey", key)?.to_owned())
}

/// A reason for a grant or a correction: 1 to 500 characters, trimmed.
fn check_reason(reason: &str) -> ApiResult<&str> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_LEN {
        return Err(ApiError::bad_input(format!(
            "reason must have 1 to {MAX_REASON_LEN} characters"
        )));
    }
    Ok(reason)
}

/// A grant or a correction by the back office (the caller checked the
/// SERVICE role): one entry on
/// the user's permanent credits, with its reason, once per key.
async fn change_permanent(
    ctx: &Context<'_>,
    kind: DomainKind,
    user_id: &ID,
    amount: CreditsScalar,
    reason: &str,
    idempotency_key: &str,
) -> ApiResult<ActivityEntry> {
    creditgate_domain::check_id("userId", user_id)?;
    let reason = check_reason(reason)?;
    let key = check_idempotency_key(idempotency_key)?;
    let entry = services(ctx)
        .store
        .add_credits(
            user_id,
            &CreditRequest {
                kind,
                amount: amount.0,
                description: Some(reason.to_owned()),
                reference: None,
                idempotency_key: Some(key),
            },
        )
        .await?;
    Ok(ActivityEntry::from(entry))
}

/// The wallet's queries.
#[derive(Default)]
pub struct WalletQuery;

#[Object]
impl WalletQuery {
    /// The caller.
    async fn me(&self, ctx: &Context<'_>) -> ApiResult<User> {
        Ok(User::from(caller_user(ctx).await?))
    }

    /// The caller's wallet.
    async fn wallet(&self, ctx: &Context<'_>) -> ApiResult<Wallet> {
        let user = caller_user(ctx).await?;
        Ok(Wallet::from(services(ctx).store.wallet(&user.id).await?))
    }

    /// The caller's activity log, newest first.
    async fn activity(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<ActivityFilter>,
    ) -> ApiResult<ActivityConnection> {
        let limits = &services(ctx).limits;
        let first = match first {
            None => limits.default_page_size,
            Some(n) if n < 0 => return Err(ApiError::bad_input("`first` must not be negative")),
            Some(n) => (n as u64).min(limits.max_page_size),
        };
        let after = after.as_deref().map(decode_cursor).transpose()?;
        let filter = filter.unwrap_or_default();
        if let (Some(from), Some(to)) = (filter.from, filter.to)
            && from > to
        {
            return Err(ApiError::bad_input("filter.from must not be after filter.to"));
        }
        let user = caller_user(ctx).await?;
        let store_filter = StoreFilter {
            kinds: filter.kinds.map(|k| k.into_iter().map(Into::into).collect()),
            features: filter.features.map(|f| f.into_iter().map(Into::into).collect()),
            from: filter.from.map(Into::into),
            to: filter.to.map(Into::into),
        };
        let page = services(ctx)
            .store
            .activity(&user.id, &store_filter, first, after)
            .await?;
        let edges: Vec<ActivityEdge> = page
            .entries
            .into_iter()
            .map(|e| ActivityEdge {
                cursor: encode_cursor(e.id),
                node: ActivityEntry::from(e),
            })
            .collect();
        Ok(ActivityConnection {
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                has_previous_page: after.is_some(),
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
            },
            edges,
        })
    }

    /// The plans an organization can be on.
    async fn plans(&self, ctx: &Context<'_>) -> ApiResult<Vec<Plan>> {
        identity(ctx)?;
        Ok(services(ctx).store.plans().all().iter().map(Plan::from).collect())
    }
}

/// The wallet's mutations (back office).
#[derive(Default)]
pub struct WalletMutation;

#[Object]
impl WalletMutation {
    /// SERVICE only: add permanent credits to a user (gamification, goodwill).
    async fn grant_credits(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        amount: CreditsScalar,
        reason: String,
        idempotency_key: String,
    ) -> ApiResult<ActivityEntry> {
        require_role(ctx, DomainRole::Service)?;
        if !amount.0.is_positive() {
            return Err(ApiError::bad_input(format!(
                "a grant must be positive, got {}",
                amount.0
            )));
        }
        change_permanent(ctx, DomainKind::Grant, &user_id, amount, &reason, &idempotency_key).await
    }

    /// SERVICE only: a correction, positive or negative, on permanent credits
    /// (never below 0: a negative one larger than what is left takes what is
    /// left, and its entry says so). Idempotent by key.
    async fn adjust_credits(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        amount: CreditsScalar,
        reason: String,
        idempotency_key: String,
    ) -> ApiResult<ActivityEntry> {
        require_role(ctx, DomainRole::Service)?;
        if amount.0.is_zero() {
            return Err(ApiError::bad_input("an adjustment must not be 0"));
        }
        change_permanent(ctx, DomainKind::Adjustment, &user_id, amount, &reason, &idempotency_key).await
    }

    /// SERVICE only: move an organization to another plan. An upgrade grants
    /// every member the difference for the current cycle at once; a
    /// downgrade applies from the next cycle.
    async fn set_organization_plan(
        &self,
        ctx: &Context<'_>,
        organization_id: ID,
        plan_id: ID,
    ) -> ApiResult<Organization> {
        require_role(ctx, DomainRole::Service)?;
        let org = services(ctx)
            .store
            .set_organization_plan(&organization_id, &plan_id)
            .await?;
        Ok(Organization::from(org))
    }
}
