//! The object types of the API.

use async_graphql::{ComplexObject, Context, Enum, ID, SimpleObject};
use creditgate_domain::Plan as DomainPlan;
use creditgate_storage::{Entry, Organization as StoredOrganization, User as StoredUser, Wallet as StoredWallet};

use crate::context::services;
use crate::error::{ApiError, ApiResult};
use crate::scalars::CreditsScalar;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "creditgate_domain::Role")]
pub enum Role {
    Member,
    Admin,
    Service,
}

/// The AI capabilities that consume credits.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "creditgate_domain::AiFeature")]
pub enum AiFeature {
    Chat,
    ExecutiveAnalysis,
    StandupSynthesis,
    AutoScheduling,
}

/// How an AI request is paid for.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "creditgate_domain::BillingMode")]
pub enum BillingMode {
    /// From the credit wallet.
    Credits,
    /// Through the user's own provider key; no credits are consumed.
    Byok,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "creditgate_domain::ActivityKind")]
pub enum ActivityKind {
    /// An AI interaction: charged, paid through BYOK, or failed.
    AiUsage,
    /// The monthly allocation granted at the start of a billing cycle.
    MonthlyAllocation,
    /// Unused monthly credits removed at the end of a billing cycle.
    MonthlyExpiry,
    /// A credit pack bought; adds permanent credits.
    Purchase,
    /// Permanent credits granted, e.g. earned through gamification.
    Grant,
    /// A purchase refunded: its credits are taken back, as far as they are left.
    Refund,
    /// A correction made by the platform.
    Adjustment,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "creditgate_domain::AiRequestStatus")]
pub enum AiRequestStatus {
    Succeeded,
    Failed,
    Cancelled,
}

/// A plan an organization can be on.
#[derive(SimpleObject, Clone, Debug)]
pub struct Plan {
    pub id: ID,
    pub name: String,
    pub monthly_credits_per_user: CreditsScalar,
}

impl From<&DomainPlan> for Plan {
    fn from(p: &DomainPlan) -> Self {
        Plan {
            id: ID(p.id.clone()),
            name: p.name.clone(),
            monthly_credits_per_user: p.monthly_credits_per_user.into(),
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct Organization {
    /// The JWT org claim.
    pub id: ID,
    pub name: String,
    #[graphql(skip)]
    pub plan_id: String,
}

#[ComplexObject]
impl Organization {
    async fn plan(&self, ctx: &Context<'_>) -> Plan {
        let plans = services(ctx).store.plans();
        Plan::from(plans.get(&self.plan_id).unwrap_or(plans.default_plan()))
    }
}

impl From<StoredOrganization> for Organization {
    fn from(o: StoredOrganization) -> Self {
        Organization {
            id: ID(o.id),
            name: o.name,
            plan_id: o.plan_id,
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct User {
    /// The JWT subject.
    pub id: ID,
    pub name: Option<String>,
    pub email: Option<String>,
    pub role: Role,
    pub team: Option<String>,
    #[graphql(skip)]
    pub org_id: String,
}

#[ComplexObject]
impl User {
    async fn organization(&self, ctx: &Context<'_>) -> ApiResult<Organization> {
        services(ctx)
            .store
            .organization(&self.org_id)
            .await?
            .map(Organization::from)
            .ok_or_else(|| ApiError::not_found("organization not found"))
    }

    async fn wallet(&self, ctx: &Context<'_>) -> ApiResult<Wallet> {
        Ok(Wallet::from(services(ctx).store.wallet(&self.id).await?))
    }
}

impl From<StoredUser> for User {
    fn from(u: StoredUser) -> Self {
        User {
            id: ID(u.id),
            name: u.name,
            email: u.email,
            role: u.role.into(),
            team: u.team,
            org_id: u.org_id,
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct Wallet {
    /// Monthly credits left in the current billing cycle.
    pub monthly_balance: CreditsScalar,
    /// Monthly credits granted at the start of the current cycle.
    pub monthly_allocation: CreditsScalar,
    /// Purchased or earned credits; they never expire.
    pub permanent_balance: CreditsScalar,
    /// Credits held by AI requests still in flight.
    pub held: CreditsScalar,
    /// monthlyBalance + permanentBalance - held.
    pub available: CreditsScalar,
    pub cycle_start: crate::scalars::Timestamp,
    /// When the monthly allocation next resets.
    pub cycle_end: crate::scalars::Timestamp,
    /// Grows with every change of this wallet.
    pub version: i64,
    #[graphql(skip)]
    pub user_id: String,
}

#[ComplexObject]
impl Wallet {
    /// Stable for a user's wallet (the user's id), so client caches can
    /// apply walletUpdated to the cached wallet.
    async fn id(&self) -> async_graphql::ID {
        async_graphql::ID(self.user_id.clone())
    }

    /// How AI features are paid for right now: BYOK when the user has a key
    /// that serves their requests, else CREDITS.
    async fn billing_mode(&self, ctx: &Context<'_>) -> ApiResult<BillingMode> {
        match ctx.data_opt::<creditgate_metering::AiService>() {
            Some(ai) => Ok(ai.billing_mode(&self.user_id).await?.into()),
            None => Ok(BillingMode::Credits),
        }
    }

    /// The available balances at which this user is alerted, highest first.
    async fn alert_thresholds(&self, ctx: &Context<'_>) -> ApiResult<Vec<CreditsScalar>> {
        crate::alerts::thresholds_of(ctx, &self.user_id).await
    }

    /// The monthly spend limit that applies to this user now, if any.
    async fn spend_limit(&self, ctx: &Context<'_>) -> ApiResult<Option<crate::admins::SpendLimit>> {
        Ok(services(ctx)
            .store
            .spend_limit_for(&self.user_id)
            .await?
            .map(crate::admins::SpendLimit::from))
    }
}

impl From<StoredWallet> for Wallet {
    fn from(w: StoredWallet) -> Self {
        Wallet {
            monthly_balance: w.monthly_balance.into(),
            monthly_allocation: w.monthly_allocation.into(),
            permanent_balance: w.permanent_balance.into(),
            held: w.held().into(),
            available: w.available().into(),
            cycle_start: w.cycle_start.into(),
            cycle_end: w.cycle_end.into(),
            version: w.version,
            user_id: w.user_id,
        }
    }
}

fn tokens(n: Option<i64>) -> Option<i32> {
    n.map(|n| i32::try_from(n).unwrap_or(i32::MAX))
}

#[derive(SimpleObject, Clone, Debug)]
pub struct ActivityEntry {
    pub id: ID,
    pub at: crate::scalars::Timestamp,
    pub kind: ActivityKind,
    pub feature: Option<AiFeature>,
    pub billing_mode: Option<BillingMode>,
    pub status: Option<AiRequestStatus>,
    pub provider: Option<String>,
    pub model: Option<String>,
    /// All input tokens, cache reads and writes included.
    pub input_tokens: Option<i32>,
    /// All output tokens, reasoning included.
    pub output_tokens: Option<i32>,
    /// Of `inputTokens`, those read from the provider's prompt cache (billed
    /// at the model's cached-input price). Null on entries that are not AI
    /// interactions and on entries recorded before token kinds were.
    pub cached_input_tokens: Option<i32>,
    /// Of `inputTokens`, those written to the provider's prompt cache (billed
    /// at the model's cache-write price).
    pub cache_write_tokens: Option<i32>,
    /// Of `outputTokens`, the reasoning tokens (billed at the model's
    /// reasoning price).
    pub reasoning_tokens: Option<i32>,
    /// Credits this entry took from the wallet (0 for BYOK and failed requests).
    pub credits_consumed: CreditsScalar,
    pub monthly_delta: CreditsScalar,
    pub permanent_delta: CreditsScalar,
    /// monthlyBalance + permanentBalance right after this entry.
    pub balance_after: CreditsScalar,
    pub description: Option<String>,
    /// The pricing version an AI entry was charged with.
    pub pricing_version: Option<String>,
    /// Who made the request when it was not the wallet's owner (a SERVICE id).
    pub actor: Option<String>,
}

impl From<Entry> for ActivityEntry {
    fn from(e: Entry) -> Self {
        ActivityEntry {
            id: ID(e.id.to_string()),
            at: e.at.into(),
            kind: e.kind.into(),
            feature: e.feature.map(Into::into),
            billing_mode: e.billing_mode.map(Into::into),
            status: e.status.map(Into::into),
            provider: e.provider,
            model: e.model,
            input_tokens: tokens(e.input_tokens),
            output_tokens: tokens(e.output_tokens),
            cached_input_tokens: tokens(e.cached_input_tokens),
            cache_write_tokens: tokens(e.cache_write_tokens),
            reasoning_tokens: tokens(e.reasoning_tokens),
            credits_consumed: e.credits_consumed.into(),
            monthly_delta: e.monthly_delta.into(),
            permanent_delta: e.permanent_delta.into(),
            balance_after: e.balance_after.into(),
            description: e.description,
            pricing_version: e.pricing_version,
            actor: e.actor,
        }
    }
}

#[derive(SimpleObject, Clone, Debug, Default)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct ActivityEdge {
    pub cursor: String,
    pub node: ActivityEntry,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct ActivityConnection {
    pub edges: Vec<ActivityEdge>,
    pub page_info: PageInfo,
}

#[derive(async_graphql::InputObject, Clone, Debug, Default)]
pub struct ActivityFilter {
    pub kinds: Option<Vec<ActivityKind>>,
    pub features: Option<Vec<AiFeature>>,
    pub from: Option<crate::scalars::Timestamp>,
    pub to: Option<crate::scalars::Timestamp>,
}
