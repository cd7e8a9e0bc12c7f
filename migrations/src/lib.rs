//! The database schema of creditgate, as sea-orm-migration migrations.
//! They run on SQLite and PostgreSQL alike.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_ledger;
mod m20261124_000002_purchases;
mod m20261124_000003_byok;
mod m20261125_000001_token_kinds;
mod m20261201_000001_operations_indexes;
mod m20261202_000001_actor;
mod m20261203_000001_balance_alerts;
mod m20261204_000001_webhooks;
mod m20261205_000001_spend_limits;
mod m20261206_000001_usage_rollups;
mod m20261207_000001_wallet_alerts;
mod m20261208_000001_partial_idempotency;
mod m20261209_000001_open_hold_indexes;
mod m20261210_000001_ledger_user_checks;
mod m20261211_000001_open_hold_status;

pub use m20261211_000001_open_hold_status::OPEN_STATUS;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_ledger::Migration),
            Box::new(m20261124_000002_purchases::Migration),
            Box::new(m20261124_000003_byok::Migration),
            Box::new(m20261125_000001_token_kinds::Migration),
            Box::new(m20261201_000001_operations_indexes::Migration),
            Box::new(m20261202_000001_actor::Migration),
            Box::new(m20261203_000001_balance_alerts::Migration),
            Box::new(m20261204_000001_webhooks::Migration),
            Box::new(m20261205_000001_spend_limits::Migration),
            Box::new(m20261206_000001_usage_rollups::Migration),
            Box::new(m20261207_000001_wallet_alerts::Migration),
            Box::new(m20261208_000001_partial_idempotency::Migration),
            Box::new(m20261209_000001_open_hold_indexes::Migration),
            Box::new(m20261210_000001_ledger_user_checks::Migration),
            Box::new(m20261211_000001_open_hold_status::Migration),
        ]
    }
}
