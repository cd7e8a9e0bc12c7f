//! SeaORM entities, one per table of the migrations.

pub mod ai_settings;
pub mod balance_alerts;
pub mod byok_keys;
pub mod holds;
pub mod journal_entries;
pub mod organizations;
pub mod purchases;
pub mod spend_limits;
pub mod usage_org_days;
pub mod usage_rollup_days;
pub mod usage_rollup_months;
pub mod usage_user_days;
pub mod usage_user_months;
pub mod users;
pub mod wallets;
pub mod webhook_attempts;
pub mod webhook_events;
pub mod webhook_outbox;
