use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "wallets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    pub org_id: String,
    pub monthly_balance: i64,
    pub permanent_balance: i64,
    pub held_monthly: i64,
    pub held_permanent: i64,
    pub monthly_allocation: i64,
    pub cycle_start: DateTimeUtc,
    pub cycle_end: DateTimeUtc,
    pub version: i64,
    pub updated_at: DateTimeUtc,
    /// Balance-alert thresholds: JSON array of milli-credits, highest
    /// first; `None`: the configured default.
    pub alert_thresholds: Option<String>,
    /// Balance-alert state: JSON array of `[milli-credits, fired]` pairs;
    /// `None`: nothing stored yet (what `available` says).
    pub alert_state: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
