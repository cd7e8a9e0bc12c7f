//! What storage hands out: plain records, decoded from rows.

use chrono::{DateTime, Utc};
use creditgate_domain::{
    ActivityKind, AiFeature, AiRequestStatus, BillingMode, Credits, Cycle, Role, TokenUsage, WalletState,
};
use serde::{Deserialize, Serialize};

use crate::entities::{journal_entries, organizations, users, wallets};
use crate::error::StoreError;

fn parse<T: std::str::FromStr>(s: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(StoreError::corrupt)
}

fn parse_opt<T: std::str::FromStr>(s: &Option<String>) -> Result<Option<T>, StoreError>
where
    T::Err: std::fmt::Display,
{
    s.as_deref().map(parse).transpose()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub plan_id: String,
    pub billing_anchor: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl From<organizations::Model> for Organization {
    fn from(m: organizations::Model) -> Self {
        Organization {
            id: m.id,
            name: m.name,
            plan_id: m.plan_id,
            billing_anchor: m.billing_anchor,
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub org_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub team: Option<String>,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<users::Model> for User {
    type Error = StoreError;
    fn try_from(m: users::Model) -> Result<Self, StoreError> {
        Ok(User {
            role: parse(&m.role)?,
            id: m.id,
            org_id: m.org_id,
            name: m.name,
            email: m.email,
            team: m.team,
            created_at: m.created_at,
        })
    }
}

/// Who is calling, as their token says; creates them on first sight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub org_id: String,
    pub role: Role,
    pub name: Option<String>,
    pub email: Option<String>,
    pub team: Option<String>,
    pub org_name: Option<String>,
    /// When the verified token stops being valid (its `exp`, without
    /// leeway); `None` for callers without a token.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A wallet as of one committed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    pub user_id: String,
    pub org_id: String,
    pub monthly_balance: Credits,
    pub monthly_allocation: Credits,
    pub permanent_balance: Credits,
    pub held_monthly: Credits,
    pub held_permanent: Credits,
    pub cycle_start: DateTime<Utc>,
    pub cycle_end: DateTime<Utc>,
    /// Grows with every committed change of this wallet: orders its events.
    pub version: i64,
}

impl Wallet {
    pub fn held(&self) -> Credits {
        Credits::from_millis(self.held_monthly.millis() + self.held_permanent.millis())
    }

    pub fn total(&self) -> Credits {
        Credits::from_millis(
            self.monthly_balance
                .millis()
                .saturating_add(self.permanent_balance.millis()),
        )
    }

    pub fn available(&self) -> Credits {
        Credits::from_millis(self.total().millis() - self.held().millis())
    }

    pub fn state(&self) -> WalletState {
        WalletState {
            monthly: self.monthly_balance,
            permanent: self.permanent_balance,
            held_monthly: self.held_monthly,
            held_permanent: self.held_permanent,
            monthly_allocation: self.monthly_allocation,
            cycle: Cycle {
                start: self.cycle_start,
                end: self.cycle_end,
            },
        }
    }

    pub(crate) fn from_state(user_id: &str, org_id: &str, s: &WalletState, version: i64) -> Self {
        Wallet {
            user_id: user_id.to_owned(),
            org_id: org_id.to_owned(),
            monthly_balance: s.monthly,
            monthly_allocation: s.monthly_allocation,
            permanent_balance: s.permanent,
            held_monthly: s.held_monthly,
            held_permanent: s.held_permanent,
            cycle_start: s.cycle.start,
            cycle_end: s.cycle.end,
            version,
        }
    }
}

impl From<&wallets::Model> for Wallet {
    fn from(m: &wallets::Model) -> Self {
        Wallet {
            user_id: m.user_id.clone(),
            org_id: m.org_id.clone(),
            monthly_balance: Credits::from_millis(m.monthly_balance),
            monthly_allocation: Credits::from_millis(m.monthly_allocation),
            permanent_balance: Credits::from_millis(m.permanent_balance),
            held_monthly: Credits::from_millis(m.held_monthly),
            held_permanent: Credits::from_millis(m.held_permanent),
            cycle_start: m.cycle_start,
            cycle_end: m.cycle_end,
            version: m.version,
        }
    }
}

/// What an AI interaction's journal entry says besides its amounts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageDetails {
    pub feature: Option<AiFeature>,
    pub billing_mode: Option<BillingMode>,
    pub status: Option<AiRequestStatus>,
    pub provider: Option<String>,
    pub model: Option<String>,
    /// All input tokens, cache reads and writes included.
    pub input_tokens: Option<i64>,
    /// All output tokens, reasoning included.
    pub output_tokens: Option<i64>,
    pub pricing_version: Option<String>,
    /// What a BYOK request would have cost in credits (the admin's savings view).
    #[serde(default)]
    pub credits_avoided: Credits,
    pub description: Option<String>,
    /// Of `input_tokens`, those read from the provider's prompt cache.
    #[serde(default)]
    pub cached_input_tokens: Option<i64>,
    /// Of `input_tokens`, those written to the provider's prompt cache.
    #[serde(default)]
    pub cache_write_tokens: Option<i64>,
    /// Of `output_tokens`, the reasoning tokens.
    #[serde(default)]
    pub reasoning_tokens: Option<i64>,
    /// The SERVICE id that made the request for the wallet's owner.
    #[serde(default)]
    pub actor: Option<String>,
}

fn count(n: u64) -> Option<i64> {
    Some(i64::try_from(n).unwrap_or(i64::MAX))
}

impl UsageDetails {
    /// Records the tokens an entry was charged for: both totals and each
    /// kind (the kinds are parts of the totals, as in [`TokenUsage`]).
    #[must_use]
    pub fn with_tokens(mut self, tokens: &TokenUsage) -> Self {
        self.input_tokens = count(tokens.input());
        self.output_tokens = count(tokens.output());
        self.cached_input_tokens = count(tokens.cached_input());
        self.cache_write_tokens = count(tokens.cache_write());
        self.reasoning_tokens = count(tokens.reasoning());
        self
    }
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub user_id: String,
    pub org_id: String,
    pub at: DateTime<Utc>,
    pub kind: ActivityKind,
    pub feature: Option<AiFeature>,
    pub billing_mode: Option<BillingMode>,
    pub status: Option<AiRequestStatus>,
    pub provider: Option<String>,
    pub model: Option<String>,
    /// All input tokens, cache reads and writes included.
    pub input_tokens: Option<i64>,
    /// All output tokens, reasoning included.
    pub output_tokens: Option<i64>,
    /// Of `input_tokens`, read from the prompt cache (None before they were recorded).
    pub cached_input_tokens: Option<i64>,
    /// Of `input_tokens`, written to the prompt cache.
    pub cache_write_tokens: Option<i64>,
    /// Of `output_tokens`, reasoning.
    pub reasoning_tokens: Option<i64>,
    pub credits_consumed: Credits,
    pub credits_avoided: Credits,
    pub monthly_delta: Credits,
    pub permanent_delta: Credits,
    pub balance_after: Credits,
    pub pricing_version: Option<String>,
    pub idempotency_key: Option<String>,
    pub hold_id: Option<String>,
    pub reference: Option<String>,
    pub description: Option<String>,
    pub wallet_version: i64,
    /// The SERVICE id that made the request for the wallet's owner.
    pub actor: Option<String>,
}

impl TryFrom<journal_entries::Model> for Entry {
    type Error = StoreError;
    fn try_from(m: journal_entries::Model) -> Result<Self, StoreError> {
        Ok(Entry {
            kind: parse(&m.kind)?,
            feature: parse_opt(&m.feature)?,
            billing_mode: parse_opt(&m.billing_mode)?,
            status: parse_opt(&m.status)?,
            id: m.id,
            user_id: m.user_id,
            org_id: m.org_id,
            at: m.at,
            provider: m.provider,
            model: m.model,
            input_tokens: m.input_tokens,
            output_tokens: m.output_tokens,
            cached_input_tokens: m.cached_input_tokens,
            cache_write_tokens: m.cache_write_tokens,
            reasoning_tokens: m.reasoning_tokens,
            actor: m.actor,
            credits_consumed: Credits::from_millis(m.credits_consumed),
            credits_avoided: Credits::from_millis(m.credits_avoided),
            monthly_delta: Credits::from_millis(m.monthly_delta),
            permanent_delta: Credits::from_millis(m.permanent_delta),
            balance_after: Credits::from_millis(m.balance_after),
            pricing_version: m.pricing_version,
            idempotency_key: m.idempotency_key,
            hold_id: m.hold_id,
            reference: m.reference,
            description: m.description,
            wallet_version: m.wallet_version,
        })
    }
}

/// A hold as placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub id: String,
    pub user_id: String,
    pub amount: Credits,
    pub monthly_part: Credits,
    pub permanent_part: Credits,
    pub cycle_start: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
}

/// A committed change of one wallet: its new state and the entries written.
/// Handed to the [`crate::WalletListener`] after the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletChange {
    pub wallet: Wallet,
    pub entries: Vec<Entry>,
    /// The balance alerts the change raised.
    pub alerts: Vec<crate::alerts::BalanceAlert>,
}

/// The result of resolving a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub charged: Credits,
    /// The cost asked for was more than the hold; the hold was charged.
    pub overrun: bool,
    /// The AI_USAGE entry, when one was written.
    pub entry: Option<Entry>,
    pub wallet: Wallet,
}

/// Filters of the activity log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityFilter {
    pub kinds: Option<Vec<ActivityKind>>,
    pub features: Option<Vec<AiFeature>>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// One page of the activity log, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityPage {
    pub entries: Vec<Entry>,
    pub has_next_page: bool,
}

/// A wallet whose cache disagrees with its journal or its holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    pub user_id: String,
    pub problem: String,
}
