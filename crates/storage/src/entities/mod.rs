//! SeaORM entities, one per table of the migrations.

pub mod holds;
pub mod journal_entries;
pub mod organizations;
pub mod users;
pub mod wallets;
