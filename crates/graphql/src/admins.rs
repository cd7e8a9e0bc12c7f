//! ADMIN only: the members of the caller's organization and their spend
//! limits.

use async_graphql::{ComplexObject, Context, ID, Object, SimpleObject};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use creditgate_domain::Role as DomainRole;
use creditgate_storage::{LimitTarget, SpendLimit as StoredLimit};

use crate::context::{require_role, services};
use crate::error::{ApiError, ApiResult};
use crate::scalars::CreditsScalar;
use crate::types::{BillingMode, PageInfo, User};

/// A monthly cap on credits consumed, per member or per team.
#[derive(SimpleObject, Clone, Debug)]
pub struct SpendLimit {
    /// The member it applies to; null for a team limit.
    pub user_id: Option<ID>,
    /// The team it applies to; null for a member limit.
    pub team: Option<String>,
    pub monthly_credits: CreditsScalar,
    /// Credits consumed against it in the current billing cycle.
    pub spent: CreditsScalar,
}

impl From<StoredLimit> for SpendLimit {
    fn from(l: StoredLimit) -> Self {
        SpendLimit {
            user_id: l.user_id.map(ID),
            team: l.team,
            monthly_credits: l.monthly.into(),
            spent: l.spent.into(),
        }
    }
}

/// A member of the caller's organization, as an admin sees them.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct Member {
    pub user: User,
    pub last_active_at: Option<crate::scalars::Timestamp>,
}

#[ComplexObject]
impl Member {
    async fn billing_mode(&self, ctx: &Context<'_>) -> ApiResult<BillingMode> {
        match ctx.data_opt::<creditgate_metering::AiService>() {
            Some(ai) => Ok(ai.billing_mode(&self.user.id).await?.into()),
            None => Ok(BillingMode::Credits),
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct MemberEdge {
    pub cursor: String,
    pub node: Member,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct MemberConnection {
    pub edges: Vec<MemberEdge>,
    pub page_info: PageInfo,
}

fn encode_cursor(user_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("member:{user_id}"))
}

fn decode_cursor(cursor: &str) -> ApiResult<String> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("member:").map(str::to_owned))
        .ok_or_else(|| ApiError::bad_input("`after` is not a cursor of this list"))
}

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// ADMIN only: the members of the caller's organization, with their wallets.
    async fn members(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<MemberConnection> {
        let who = require_role(ctx, DomainRole::Admin)?;
        let limits = &services(ctx).limits;
        let first = match first {
            None => limits.default_page_size,
            Some(n) if n < 0 => return Err(ApiError::bad_input("`first` must not be negative")),
            Some(n) => (n as u64).min(limits.max_page_size),
        };
        let after = after.as_deref().map(decode_cursor).transpose()?;
        let page = services(ctx)
            .store
            .members(&who.org_id, first, after.as_deref())
            .await?;
        let edges: Vec<MemberEdge> = page
            .members
            .into_iter()
            .map(|m| MemberEdge {
                cursor: encode_cursor(&m.user.id),
                node: Member {
                    user: User::from(m.user),
                    last_active_at: m.last_active_at.map(Into::into),
                },
            })
            .collect();
        Ok(MemberConnection {
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                has_previous_page: after.is_some(),
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
            },
            edges,
        })
    }

    /// ADMIN only: the spend limits of the caller's organization.
    async fn spend_limits(&self, ctx: &Context<'_>) -> ApiResult<Vec<SpendLimit>> {
        let who = require_role(ctx, DomainRole::Admin)?;
        Ok(services(ctx)
            .store
            .spend_limits(&who.org_id)
            .await?
            .into_iter()
            .map(SpendLimit::from)
            .collect())
    }
}

#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// ADMIN only: set (or, with monthlyCredits null, remove) a member's or a
    /// team's monthly spend limit. Exactly one of userId and team.
    async fn set_spend_limit(
        &self,
        ctx: &Context<'_>,
        user_id: Option<ID>,
        team: Option<String>,
        monthly_credits: Option<CreditsScalar>,
    ) -> ApiResult<Option<SpendLimit>> {
        let who = require_role(ctx, DomainRole::Admin)?;
        let target = match (user_id, team) {
            (Some(id), None) => LimitTarget::Member(creditgate_domain::check_id("userId", &id)?.to_owned()),
            (None, Some(team)) => LimitTarget::Team(creditgate_domain::check_id("team", &team)?.to_owned()),
            _ => return Err(ApiError::bad_input("give exactly one of `userId` and `team`")),
        };
        if let Some(m) = monthly_credits
            && m.0.is_negative()
        {
            return Err(ApiError::bad_input("monthlyCredits must not be negative"));
        }
        Ok(services(ctx)
            .store
            .set_spend_limit(&who.org_id, &target, monthly_credits.map(|m| m.0))
            .await?
            .map(SpendLimit::from))
    }
}
