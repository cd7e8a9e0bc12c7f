//! The members of an organization, as its admins see them.

use chrono::{DateTime, Utc};
use creditgate_domain::ActivityKind;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entities::{journal_entries, users};
use crate::error::StoreResult;
use crate::model::User;
use crate::store::Store;

/// One member and when they last used an AI feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub user: User,
    pub last_active_at: Option<DateTime<Utc>>,
}

/// A page of members, by user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPage {
    pub members: Vec<MemberRecord>,
    pub has_next_page: bool,
}

impl Store {
    /// The members of an organization ordered by id, `first` of them after
    /// the id `after` (keyset paging).
    pub async fn members(&self, org_id: &str, first: u64, after: Option<&str>) -> StoreResult<MemberPage> {
        let mut q = users::Entity::find()
            .filter(users::Column::OrgId.eq(org_id))
            .order_by_asc(users::Column::Id)
            .limit(first.saturating_add(1));
        if let Some(after) = after {
            q = q.filter(users::Column::Id.gt(after));
        }
        let mut rows = q.all(&self.db).await?;
        let has_next_page = rows.len() as u64 > first;
        rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
        let ids: Vec<String> = rows.iter().map(|u| u.id.clone()).collect();
        // The last AI interaction of each: its entry id, then its time.
        let last: Vec<(String, i64)> = if ids.is_empty() {
            Vec::new()
        } else {
            journal_entries::Entity::find()
                .select_only()
                .column(journal_entries::Column::UserId)
                .expr(Expr::cust("CAST(MAX(id) AS BIGINT)"))
                .filter(journal_entries::Column::UserId.is_in(ids.iter().cloned()))
                .filter(journal_entries::Column::Kind.eq(ActivityKind::AiUsage.as_str()))
                .group_by(journal_entries::Column::UserId)
                .into_tuple()
                .all(&self.db)
                .await?
        };
        let times: Vec<(String, DateTime<Utc>)> = if last.is_empty() {
            Vec::new()
        } else {
            journal_entries::Entity::find()
                .select_only()
                .column(journal_entries::Column::UserId)
                .column(journal_entries::Column::At)
                .filter(journal_entries::Column::Id.is_in(last.iter().map(|(_, id)| *id)))
                .into_tuple()
                .all(&self.db)
                .await?
        };
        let members = rows
            .into_iter()
            .map(|row| {
                let last_active_at = times.iter().find(|(u, _)| *u == row.id).map(|(_, at)| *at);
                Ok(MemberRecord {
                    user: User::try_from(row)?,
                    last_active_at,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(MemberPage { members, has_next_page })
    }
}
