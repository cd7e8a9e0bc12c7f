//! BYOK keys (ciphertext only) and per-user AI settings.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ByokKeys {
    Table,
    UserId,
    Provider,
    Ciphertext,
    Hint,
    CreatedAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum AiSettings {
    Table,
    UserId,
    PreferredProvider,
    FallbackToCredits,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ByokKeys::Table)
                    .col(ColumnDef::new(ByokKeys::UserId).string().not_null())
                    .col(ColumnDef::new(ByokKeys::Provider).string().not_null())
                    .col(ColumnDef::new(ByokKeys::Ciphertext).text().not_null())
                    .col(ColumnDef::new(ByokKeys::Hint).string().not_null())
                    .col(
                        ColumnDef::new(ByokKeys::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ByokKeys::LastUsedAt).timestamp_with_time_zone().null())
                    .primary_key(Index::create().col(ByokKeys::UserId).col(ByokKeys::Provider))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ByokKeys::Table, ByokKeys::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AiSettings::Table)
                    .col(ColumnDef::new(AiSettings::UserId).string().not_null().primary_key())
                    .col(ColumnDef::new(AiSettings::PreferredProvider).string().null())
                    .col(
                        ColumnDef::new(AiSettings::FallbackToCredits)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(AiSettings::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(AiSettings::Table, AiSettings::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AiSettings::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ByokKeys::Table).to_owned())
            .await
    }
}
