//! On PostgreSQL, the journal entries and the holds no longer check their
//! user with a foreign key: the ledger writes them only in the
//! transaction that locked that user's wallet (whose own foreign key keeps
//! its user), and users are never deleted, so the check could never fail;
//! `reconcile` reports any entry or hold whose user is missing.
//!
//! What the check cost: PostgreSQL checks a foreign key per row, with a
//! lookup of the user that also locks their row (`FOR KEY SHARE`, a write
//! to the user's row and to the WAL), on the two tables a batch appends
//! to. Four entries per transaction: 3,300 and 2,970 transactions per
//! second without it against 2,520 and 2,310 with it (`pgbench`, see the
//! README's benchmarks). SQLite's check is a lookup without a lock, and
//! dropping a constraint there means rebuilding the table: it stays.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum JournalEntries {
    Table,
    UserId,
}

#[derive(DeriveIden, Clone, Copy)]
enum Holds {
    Table,
    UserId,
}

/// The tables whose foreign key to `users` goes, with its name (as
/// PostgreSQL named it when the first migration created it).
fn keys() -> [(TableRef, DynIden, &'static str); 2] {
    [
        (
            JournalEntries::Table.into_table_ref(),
            JournalEntries::UserId.into_iden(),
            "journal_entries_user_id_fkey",
        ),
        (
            Holds::Table.into_table_ref(),
            Holds::UserId.into_iden(),
            "holds_user_id_fkey",
        ),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        for (table, _, name) in keys() {
            manager
                .drop_foreign_key(ForeignKey::drop().table(table).name(name).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        for (table, column, name) in keys() {
            manager
                .create_foreign_key(
                    ForeignKey::create()
                        .name(name)
                        .from_tbl(table)
                        .from_col(column)
                        .to(Users::Table, Users::Id)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
