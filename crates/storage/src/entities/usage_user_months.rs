use sea_orm::entity::prelude::*;

/// Sums of the AI usage of one rolled-up UTC month (see `usage_rollup_months`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_user_months")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub org_id: String,
    /// Midnight UTC starting the month.
    #[sea_orm(primary_key, auto_increment = false)]
    pub month: DateTimeUtc,
    /// The user the sums are of.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// Millicredits charged.
    pub credits: i64,
    pub credits_avoided: i64,
    pub requests: i64,
    pub byok_requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Millicredits paid from permanent balances.
    pub permanent_spent: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
