//! Reads for real-time fan-out: the committed state of a wallet and the
//! journal entries of its recent versions. Plain reads: they never close a
//! billing cycle or write anything.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entities::{journal_entries, wallets};
use crate::error::StoreResult;
use crate::model::{Entry, Wallet, WalletChange};
use crate::store::Store;

impl Store {
    /// The user's wallet as last committed (no cycle close); `None` when the
    /// user has no wallet.
    pub async fn committed_wallet(&self, user_id: &str) -> StoreResult<Option<Wallet>> {
        Ok(wallets::Entity::find_by_id(user_id.to_owned())
            .one(&self.db)
            .await?
            .map(|row| Wallet::from(&row)))
    }

    /// The wallets of these users as last committed (those that exist).
    pub async fn committed_wallets(&self, user_ids: &[String]) -> StoreResult<Vec<Wallet>> {
        let mut out = Vec::with_capacity(user_ids.len());
        for chunk in user_ids.chunks(500) {
            let rows = wallets::Entity::find()
                .filter(wallets::Column::UserId.is_in(chunk.iter().cloned()))
                .all(&self.db)
                .await?;
            out.extend(rows.iter().map(Wallet::from));
        }
        Ok(out)
    }

    /// The user's journal entries written by the wallet versions in
    /// `(after_version, up_to_version]`, oldest first; at most `limit` (the
    /// newest ones when there are more).
    pub async fn entries_of_versions(
        &self,
        user_id: &str,
        after_version: i64,
        up_to_version: i64,
        limit: u64,
    ) -> StoreResult<Vec<Entry>> {
        if up_to_version <= after_version {
            return Ok(Vec::new());
        }
        let rows = journal_entries::Entity::find()
            .filter(journal_entries::Column::UserId.eq(user_id))
            .filter(journal_entries::Column::WalletVersion.gt(after_version))
            .filter(journal_entries::Column::WalletVersion.lte(up_to_version))
            .order_by_desc(journal_entries::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        rows.into_iter().rev().map(Entry::try_from).collect()
    }

    /// The wallet as last committed, with the entries of the versions after
    /// `after_version` up to it (`after_version` `None`: the entries of its
    /// current version only), and the balance alerts of those versions.
    /// `None` when the user has no wallet. The wallet
    /// is read first: every entry of a version up to its version has
    /// committed with it, so the two reads agree.
    pub async fn committed_change(
        &self,
        user_id: &str,
        after_version: Option<i64>,
        limit: u64,
    ) -> StoreResult<Option<WalletChange>> {
        let Some(wallet) = self.committed_wallet(user_id).await? else {
            return Ok(None);
        };
        let after = after_version.unwrap_or(wallet.version - 1);
        let entries = self.entries_of_versions(user_id, after, wallet.version, limit).await?;
        let alerts = self.alerts_of_versions(user_id, after, wallet.version, limit).await?;
        Ok(Some(WalletChange {
            wallet,
            entries,
            alerts,
        }))
    }
}
