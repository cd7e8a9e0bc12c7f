//! The open holds' indexes made again for the open status the store
//! writes, `'OPEN'`. `m20261209_000001_open_hold_indexes` made them for
//! `status = 'open'`, which no hold ever has: they stayed empty, and every
//! query of open holds (the sweep's expired holds, a user's open holds,
//! what a member's limit has on hold, the open holds gauge, `reconcile`)
//! read every hold there ever was, or every hold's key, instead.
//!
//! Building each index scans the holds table once.

use sea_orm_migration::prelude::*;

use crate::m20261209_000001_open_hold_indexes::{OPEN, OPEN_HOLDS, replace};

/// The open status, as the store writes it (`HoldStatus::Open`; the
/// storage crate's tests check that the two agree).
pub const OPEN_STATUS: &str = "OPEN";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace(manager, &OPEN_HOLDS, &OPEN_HOLDS, OPEN_STATUS).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace(manager, &OPEN_HOLDS, &OPEN_HOLDS, OPEN).await
    }
}
