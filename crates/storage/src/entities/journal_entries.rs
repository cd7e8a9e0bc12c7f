use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "journal_entries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: String,
    pub org_id: String,
    pub at: DateTimeUtc,
    pub kind: String,
    pub feature: Option<String>,
    pub billing_mode: Option<String>,
    pub status: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub credits_consumed: i64,
    pub credits_avoided: i64,
    pub monthly_delta: i64,
    pub permanent_delta: i64,
    pub balance_after: i64,
    pub pricing_version: Option<String>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub hold_id: Option<String>,
    pub reference: Option<String>,
    pub description: Option<String>,
    pub wallet_version: i64,
    pub cached_input_tokens: Option<i64>,
    pub cache_write_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    /// The SERVICE id that made the request for the wallet's owner.
    pub actor: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
