//! Balance alerts: each user's thresholds on `available` with the state of
//! each (fired or armed), and the append-only log of the alerts raised.
//! Both are written in the transaction of the wallet change that caused
//! them, so an alert is neither lost nor doubled by a crash.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BalanceAlertSettings {
    Table,
    UserId,
    OrgId,
    /// JSON array of milli-credits, highest first; NULL: the configured default.
    Thresholds,
    /// JSON array of [milli-credits, fired] pairs: the state after the last change.
    State,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum BalanceAlerts {
    Table,
    Id,
    UserId,
    OrgId,
    Kind,
    Threshold,
    Available,
    /// The wallet version whose change raised it (orders real-time delivery).
    WalletVersion,
    CreatedAt,
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
                    .table(BalanceAlertSettings::Table)
                    .col(
                        ColumnDef::new(BalanceAlertSettings::UserId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(BalanceAlertSettings::OrgId).string().not_null())
                    .col(ColumnDef::new(BalanceAlertSettings::Thresholds).text().null())
                    .col(ColumnDef::new(BalanceAlertSettings::State).text().not_null())
                    .col(
                        ColumnDef::new(BalanceAlertSettings::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(BalanceAlertSettings::Table, BalanceAlertSettings::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BalanceAlerts::Table)
                    .col(
                        ColumnDef::new(BalanceAlerts::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(BalanceAlerts::UserId).string().not_null())
                    .col(ColumnDef::new(BalanceAlerts::OrgId).string().not_null())
                    .col(ColumnDef::new(BalanceAlerts::Kind).string().not_null())
                    .col(ColumnDef::new(BalanceAlerts::Threshold).big_integer().not_null())
                    .col(ColumnDef::new(BalanceAlerts::Available).big_integer().not_null())
                    .col(ColumnDef::new(BalanceAlerts::WalletVersion).big_integer().not_null())
                    .col(
                        ColumnDef::new(BalanceAlerts::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(BalanceAlerts::Table, BalanceAlerts::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("balance_alerts_user_version")
                    .table(BalanceAlerts::Table)
                    .col(BalanceAlerts::UserId)
                    .col(BalanceAlerts::WalletVersion)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BalanceAlerts::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(BalanceAlertSettings::Table).to_owned())
            .await
    }
}
