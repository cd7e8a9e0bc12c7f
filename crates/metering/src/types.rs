//! What the API hands to metering and what it gets back.

use creditgate_domain::{AiFeature, BillingMode, Credits};
use creditgate_storage::Wallet;
use serde::{Deserialize, Serialize};

/// One message of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AiMessage {
    /// system, user or assistant
    pub role: String,
    pub content: String,
}

/// An AI request as the API receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiRequest {
    pub feature: AiFeature,
    pub messages: Vec<AiMessage>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub max_output_tokens: Option<i64>,
    pub idempotency_key: Option<String>,
}

/// The result of a request (also kept with its hold for idempotent retries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiOutcome {
    pub id: String,
    pub content: String,
    pub billing_mode: BillingMode,
    pub provider: String,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub credits_charged: Credits,
    #[serde(skip)]
    pub wallet: Option<Wallet>,
}

/// What a request would hold, and what it would cost paid with credits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// What is held while it runs: 0 when the user's own key pays.
    pub max_credits: Credits,
    /// The most it would cost if paid with credits, whoever pays.
    pub credits_if_paid: Credits,
    pub billing_mode: BillingMode,
}

/// One item of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    Delta(String),
    Done(Box<AiOutcome>),
}

/// A feature as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureInfo {
    pub feature: AiFeature,
    pub description: String,
    pub default_provider: String,
    pub default_model: String,
}
