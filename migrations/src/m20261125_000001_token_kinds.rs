//! The kinds of tokens an AI entry was charged for: of its input, those read
//! from the provider's prompt cache and those written to it; of its output,
//! the reasoning tokens. Nullable: entries written before this migration, and
//! entries that are not AI interactions, have none.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum JournalEntries {
    Table,
    CachedInputTokens,
    CacheWriteTokens,
    ReasoningTokens,
}

const COLUMNS: [JournalEntries; 3] = [
    JournalEntries::CachedInputTokens,
    JournalEntries::CacheWriteTokens,
    JournalEntries::ReasoningTokens,
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in COLUMNS {
            manager
                .alter_table(
                    Table::alter()
                        .table(JournalEntries::Table)
                        .add_column(ColumnDef::new(column).big_integer().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in COLUMNS.into_iter().rev() {
            manager
                .alter_table(
                    Table::alter()
                        .table(JournalEntries::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
