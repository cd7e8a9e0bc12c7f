use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "spend_limits")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub org_id: String,
    /// `user:<id>` or `team:<name>`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope: String,
    pub user_id: Option<String>,
    pub team: Option<String>,
    /// Millicredits per billing cycle.
    pub monthly_credits: i64,
    /// Millicredits consumed or held in the cycle starting at `cycle_start`.
    pub spent: i64,
    pub cycle_start: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
