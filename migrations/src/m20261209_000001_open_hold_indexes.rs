//! The holds' indexes by status keep only the open holds. Every query that
//! reads holds by status asks for the open ones (the sweep's expired
//! holds, a user's open holds, what a member's limit has on hold, the open
//! holds gauge, `reconcile`), and a resolved hold is never looked up by
//! status again. Before, resolving a hold moved its entry in both indexes
//! (out of the open range, into the resolved one), and `holds_user_status`
//! put each user's entries in a page of their own: a batch of holds across
//! many users wrote a page per user in an index that only grew. Now the
//! indexes hold the holds in flight (as many as requests under way), a few
//! pages that stay in cache, and resolving a hold only takes its entry out.
//!
//! A query uses these indexes only when its condition visibly implies
//! theirs: the store writes its open status as a literal, not a bound
//! parameter (see `creditgate_storage::holds::is_open`). This migration
//! wrote the wrong one (`'open'`; the store writes `'OPEN'`), so the
//! indexes it made were always empty and never used:
//! `m20261211_000001_open_hold_status` makes them again for `'OPEN'`.
//!
//! Rebuilding an index scans its table: on a large holds table this
//! migration takes as long as that scan, once.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Holds {
    Table,
    UserId,
    Status,
    Deadline,
}

/// An index of holds: its name, its columns, and whether it keeps only the
/// open holds.
pub(crate) struct HoldIndex {
    name: &'static str,
    columns: &'static [Holds],
    open_only: bool,
}

/// The indexes before this migration: every hold, by status.
const EVERY_HOLD: [HoldIndex; 2] = [
    HoldIndex {
        name: "holds_status_deadline",
        columns: &[Holds::Status, Holds::Deadline],
        open_only: false,
    },
    HoldIndex {
        name: "holds_user_status",
        columns: &[Holds::UserId, Holds::Status],
        open_only: false,
    },
];

/// The indexes after it: the open holds only.
pub(crate) const OPEN_HOLDS: [HoldIndex; 2] = [
    HoldIndex {
        name: "holds_open_deadline",
        columns: &[Holds::Deadline],
        open_only: true,
    },
    HoldIndex {
        name: "holds_open_user",
        columns: &[Holds::UserId],
        open_only: true,
    },
];

/// The open status as this migration wrote it (not as the store does: see
/// the module's documentation).
pub(crate) const OPEN: &str = "open";

/// Drops the indexes `from` and makes the indexes `to`, those of open holds
/// only for `status = open`.
pub(crate) async fn replace(
    manager: &SchemaManager<'_>,
    from: &[HoldIndex],
    to: &[HoldIndex],
    open: &str,
) -> Result<(), DbErr> {
    for index in from {
        manager
            .drop_index(Index::drop().name(index.name).table(Holds::Table).to_owned())
            .await?;
    }
    for index in to {
        let mut create = Index::create();
        create.name(index.name).table(Holds::Table);
        for &column in index.columns {
            create.col(column);
        }
        if index.open_only {
            create.and_where(Expr::col(Holds::Status).eq(open));
        }
        manager.create_index(create.to_owned()).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace(manager, &EVERY_HOLD, &OPEN_HOLDS, OPEN).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace(manager, &OPEN_HOLDS, &EVERY_HOLD, OPEN).await
    }
}
