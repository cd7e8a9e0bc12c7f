//! The idempotency-key indexes of holds and journal entries keep only the
//! rows that have a key. Most rows have none (an AI request sent without
//! one, every sweep's entry), and each of them put an entry, keyed by its
//! user, into a page of its own of these indexes: one more page written per
//! user per commit, for nothing. Uniqueness is unchanged (rows without a
//! key were never compared), and a lookup by key (`idempotency_key = ?`)
//! implies `IS NOT NULL`, so both databases still use the index for it.
//!
//! Rebuilding an index scans its table: on a large journal this migration
//! takes as long as that scan, once.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum JournalEntries {
    Table,
    UserId,
    IdempotencyKey,
}

#[derive(DeriveIden)]
enum Holds {
    Table,
    UserId,
    IdempotencyKey,
}

/// Drops the two indexes and makes them again, of the rows with a key only
/// (`partial`) or of every row.
async fn replace(manager: &SchemaManager<'_>, partial: bool) -> Result<(), DbErr> {
    let indexes = [
        (
            "journal_user_idempotency",
            JournalEntries::Table.into_iden(),
            JournalEntries::UserId.into_iden(),
            JournalEntries::IdempotencyKey.into_iden(),
        ),
        (
            "holds_user_idempotency",
            Holds::Table.into_iden(),
            Holds::UserId.into_iden(),
            Holds::IdempotencyKey.into_iden(),
        ),
    ];
    for (name, table, user_id, key) in indexes {
        manager
            .drop_index(Index::drop().name(name).table(table.clone()).to_owned())
            .await?;
        let mut index = Index::create();
        index.name(name).table(table).col(user_id).col(key.clone()).unique();
        if partial {
            index.and_where(Expr::col(key).is_not_null());
        }
        manager.create_index(index.to_owned()).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace(manager, true).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace(manager, false).await
    }
}
