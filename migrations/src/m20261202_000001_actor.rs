//! Who made a request when it was not the wallet's owner: the SERVICE id
//! of the back office acting for a user. Nullable: the owner's own entries,
//! and entries written before this migration, have none.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum JournalEntries {
    Table,
    Actor,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(JournalEntries::Table)
                    .add_column(ColumnDef::new(JournalEntries::Actor).string().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(JournalEntries::Table)
                    .drop_column(JournalEntries::Actor)
                    .to_owned(),
            )
            .await
    }
}
