//! Reading the journal: the activity log and the reconcile check.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement};

use crate::entities::{journal_entries, wallets};
use crate::error::StoreResult;
use crate::model::{ActivityFilter, ActivityPage, Discrepancy, Entry, Wallet};
use crate::store::Store;

impl Store {
    /// A page of the user's journal, newest first, after the entry `after`
    /// (an entry id from an earlier page).
    pub async fn activity(
        &self,
        user_id: &str,
        filter: &ActivityFilter,
        first: u64,
        after: Option<i64>,
    ) -> StoreResult<ActivityPage> {
        let mut q = journal_entries::Entity::find().filter(journal_entries::Column::UserId.eq(user_id));
        if let Some(after) = after {
            q = q.filter(journal_entries::Column::Id.lt(after));
        }
        if let Some(kinds) = &filter.kinds {
            q = q.filter(journal_entries::Column::Kind.is_in(kinds.iter().map(|k| k.as_str())));
        }
        if let Some(features) = &filter.features {
            q = q.filter(journal_entries::Column::Feature.is_in(features.iter().map(|f| f.as_str())));
        }
        if let Some(from) = filter.from {
            q = q.filter(journal_entries::Column::At.gte(from));
        }
        if let Some(to) = filter.to {
            q = q.filter(journal_entries::Column::At.lt(to));
        }
        let mut rows = q
            .order_by_desc(journal_entries::Column::Id)
            .limit(first.saturating_add(1))
            .all(&self.db)
            .await?;
        let has_next_page = rows.len() as u64 > first;
        rows.truncate(first as usize);
        let entries = rows.into_iter().map(Entry::try_from).collect::<StoreResult<Vec<_>>>()?;
        Ok(ActivityPage { entries, has_next_page })
    }

    /// Checks every wallet: its cached balances equal the sum of its journal,
    /// its held amounts equal its open holds, and its last entry's balance
    /// after equals its balance; and that every journal entry and hold is
    /// of a user who has a wallet. Returns what is off (nothing, normally).
    pub async fn reconcile(&self) -> StoreResult<Vec<Discrepancy>> {
        let backend = self.backend();
        let sums = self
            .db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT user_id, CAST(SUM(monthly_delta) AS BIGINT) AS m, CAST(SUM(permanent_delta) AS BIGINT) AS p \
                 FROM journal_entries GROUP BY user_id",
            ))
            .await?;
        let mut journal: HashMap<String, (i64, i64)> = HashMap::new();
        for r in sums {
            journal.insert(r.try_get("", "user_id")?, (r.try_get("", "m")?, r.try_get("", "p")?));
        }
        let holds = self
            .db
            .query_all_raw(Statement::from_string(
                backend,
                format!(
                    "SELECT user_id, CAST(SUM(monthly_part) AS BIGINT) AS m, CAST(SUM(permanent_part) AS BIGINT) AS p \
                     FROM holds WHERE {} GROUP BY user_id",
                    crate::holds::open_condition()
                ),
            ))
            .await?;
        let mut held: HashMap<String, (i64, i64)> = HashMap::new();
        for r in holds {
            held.insert(r.try_get("", "user_id")?, (r.try_get("", "m")?, r.try_get("", "p")?));
        }
        let lasts = self
            .db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT user_id, balance_after FROM journal_entries \
                 WHERE id IN (SELECT MAX(id) FROM journal_entries GROUP BY user_id)",
            ))
            .await?;
        let mut last: HashMap<String, i64> = HashMap::new();
        for r in lasts {
            last.insert(r.try_get("", "user_id")?, r.try_get("", "balance_after")?);
        }

        let mut out = Vec::new();
        let all = wallets::Entity::find()
            .order_by_asc(wallets::Column::UserId)
            .all(&self.db)
            .await?;
        for w in &all {
            let mut problems = Vec::new();
            let (jm, jp) = journal.get(&w.user_id).copied().unwrap_or((0, 0));
            if (jm, jp) != (w.monthly_balance, w.permanent_balance) {
                problems.push(format!(
                    "cached monthly/permanent {}/{} but the journal sums to {}/{}",
                    w.monthly_balance, w.permanent_balance, jm, jp
                ));
            }
            let (hm, hp) = held.get(&w.user_id).copied().unwrap_or((0, 0));
            if (hm, hp) != (w.held_monthly, w.held_permanent) {
                problems.push(format!(
                    "cached held monthly/permanent {}/{} but open holds sum to {}/{}",
                    w.held_monthly, w.held_permanent, hm, hp
                ));
            }
            let total = Wallet::from(w).total().millis();
            if let Some(after) = last.get(&w.user_id)
                && *after != total
            {
                problems.push(format!("balance {total} but the last entry's balance after is {after}"));
            }
            if !problems.is_empty() {
                out.push(Discrepancy {
                    user_id: w.user_id.clone(),
                    problem: problems.join("; "),
                });
            }
        }
        // Entries and holds are written only for a locked wallet; on
        // PostgreSQL no foreign key checks it (see the migration
        // `m20261210_000001_ledger_user_checks`), so this does.
        let orphans = self
            .db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT t.user_id, t.what FROM (\
                 SELECT DISTINCT user_id, 'journal entries' AS what FROM journal_entries \
                 UNION SELECT DISTINCT user_id, 'holds' AS what FROM holds) t \
                 LEFT JOIN wallets w ON w.user_id = t.user_id WHERE w.user_id IS NULL \
                 ORDER BY t.user_id, t.what",
            ))
            .await?;
        for r in orphans {
            let what: String = r.try_get("", "what")?;
            out.push(Discrepancy {
                user_id: r.try_get("", "user_id")?,
                problem: format!("{what} of a user who has no wallet"),
            });
        }
        Ok(out)
    }
}
