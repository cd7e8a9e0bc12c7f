use sea_orm::entity::prelude::*;

/// A user's balance-alert thresholds and the state of each.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "balance_alert_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    pub org_id: String,
    /// JSON array of milli-credits, highest first; `None`: the configured default.
    pub thresholds: Option<String>,
    /// JSON array of `[milli-credits, fired]` pairs.
    pub state: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
