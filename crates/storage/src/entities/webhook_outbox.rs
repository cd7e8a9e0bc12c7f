use sea_orm::entity::prelude::*;

/// One event for one endpoint, until it is delivered or given up.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_outbox")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The `webhook-id`: the same for every endpoint of one event.
    pub event_id: String,
    pub event_type: String,
    /// The endpoint's URL.
    pub endpoint: String,
    /// The exact body sent (and signed) on every attempt.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    pub created_at: DateTimeUtc,
    pub next_attempt_at: DateTimeUtc,
    pub attempts: i32,
    pub delivered_at: Option<DateTimeUtc>,
    pub gave_up_at: Option<DateTimeUtc>,
    pub last_error: Option<String>,
    pub lease_until: Option<DateTimeUtc>,
    pub lease_token: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
