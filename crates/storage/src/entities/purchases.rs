use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "purchases")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub user_id: String,
    pub org_id: String,
    pub pack_id: String,
    pub pack_name: String,
    /// Milli-credits the pack adds.
    pub credits: i64,
    pub price_cents: i64,
    pub currency: String,
    pub status: String,
    pub provider: String,
    pub provider_session_id: Option<String>,
    pub payment_intent: Option<String>,
    pub idempotency_key: String,
    pub request_hash: String,
    pub checkout_url: Option<String>,
    pub created_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
    /// Milli-credits the refunds so far stand for.
    pub refunded_credits: i64,
    /// Milli-credits actually taken back by those refunds.
    pub credits_taken_back: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
