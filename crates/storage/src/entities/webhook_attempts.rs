use sea_orm::entity::prelude::*;

/// One delivery attempt of an outbox row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_attempts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub outbox_id: String,
    /// 1 for the first attempt.
    pub attempt: i32,
    pub at: DateTimeUtc,
    /// The HTTP status the endpoint answered, if it answered.
    pub status_code: Option<i32>,
    /// Why the attempt failed, when it did.
    pub error: Option<String>,
    pub duration_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
