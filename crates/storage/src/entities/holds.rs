use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "holds")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub user_id: String,
    pub monthly_part: i64,
    pub permanent_part: i64,
    pub cycle_start: DateTimeUtc,
    pub status: String,
    pub created_at: DateTimeUtc,
    pub deadline: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub journal_entry_id: Option<i64>,
    /// JSON of the usage details the hold was placed for (feature,
    /// provider, model, billing mode), so that a sweep can log what it
    /// released.
    pub details: Option<String>,
    /// JSON of what the call returned, so a retry with the same
    /// idempotency key gets the first result.
    pub result: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
