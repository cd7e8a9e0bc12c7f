//! BYOK keys (ciphertext and hint only) and per-user AI settings.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, TransactionTrait};

use crate::cache::{Cached, announce_forget};
use crate::entities::{ai_settings, byok_keys};
use crate::error::StoreResult;
use crate::store::Store;

/// A write run inside a transaction that borrows it.
type TxnFuture<'t, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, DbErr>> + Send + 't>>;

/// A stored key, as anyone may see it: never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByokKeyRecord {
    pub provider: String,
    pub hint: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<byok_keys::Model> for ByokKeyRecord {
    fn from(m: byok_keys::Model) -> Self {
        ByokKeyRecord {
            provider: m.provider,
            hint: m.hint,
            created_at: m.created_at,
            last_used_at: m.last_used_at,
        }
    }
}

/// A user's AI settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AiSettings {
    /// Which key's provider serves a feature whose default provider the user
    /// has no key for, when they have several.
    pub preferred_provider: Option<String>,
    /// Whether a failing BYOK request may fall back to credits.
    pub fallback_to_credits: bool,
}

/// One stored ciphertext, for re-encryption under a new identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCiphertext {
    pub user_id: String,
    pub provider: String,
    pub ciphertext: String,
}

impl Store {
    /// Stores (or replaces) the user's key for a provider. The caller
    /// encrypts; only ciphertext and hint reach the database.
    pub async fn put_byok_key(
        &self,
        user_id: &str,
        provider: &str,
        ciphertext: String,
        hint: String,
    ) -> StoreResult<ByokKeyRecord> {
        let now = self.clock.now();
        // What the upsert writes is what the caller gets: no second read,
        // which a concurrent removal could answer with nothing.
        let record = ByokKeyRecord {
            provider: provider.to_owned(),
            hint: hint.clone(),
            created_at: now,
            last_used_at: None,
        };
        let row = byok_keys::ActiveModel {
            user_id: Set(user_id.to_owned()),
            provider: Set(provider.to_owned()),
            ciphertext: Set(ciphertext),
            hint: Set(hint),
            created_at: Set(now),
            last_used_at: Set(None),
        };
        let upsert = byok_keys::Entity::insert(row).on_conflict(
            OnConflict::columns([byok_keys::Column::UserId, byok_keys::Column::Provider])
                .update_columns([
                    byok_keys::Column::Ciphertext,
                    byok_keys::Column::Hint,
                    byok_keys::Column::CreatedAt,
                    byok_keys::Column::LastUsedAt,
                ])
                .to_owned(),
        );
        self.with_wallet_moved(user_id, |txn| {
            Box::pin(async move { upsert.exec_without_returning(txn).await.map(drop) })
        })
        .await?;
        Ok(record)
    }

    pub async fn byok_key(&self, user_id: &str, provider: &str) -> StoreResult<Option<ByokKeyRecord>> {
        Ok(byok_keys::Entity::find_by_id((user_id.to_owned(), provider.to_owned()))
            .one(&self.db)
            .await?
            .map(ByokKeyRecord::from))
    }

    /// Removes the user's key for a provider; whether there was one.
    pub async fn remove_byok_key(&self, user_id: &str, provider: &str) -> StoreResult<bool> {
        let delete = byok_keys::Entity::delete_many()
            .filter(byok_keys::Column::UserId.eq(user_id))
            .filter(byok_keys::Column::Provider.eq(provider));
        let removed = self
            .with_wallet_moved(user_id, |txn| {
                Box::pin(async move { delete.exec(txn).await.map(|r| r.rows_affected > 0) })
            })
            .await?;
        Ok(removed)
    }

    /// The user's keys (hints and dates), by provider.
    pub async fn byok_keys(&self, user_id: &str) -> StoreResult<Vec<ByokKeyRecord>> {
        Ok(byok_keys::Entity::find()
            .filter(byok_keys::Column::UserId.eq(user_id))
            .order_by_asc(byok_keys::Column::Provider)
            .all(&self.db)
            .await?
            .into_iter()
            .map(ByokKeyRecord::from)
            .collect())
    }

    /// The user's keys with their ciphertexts, by provider, in one read:
    /// a request routes by this list and uses the ciphertext it read, so a
    /// key removed meanwhile cannot vanish between the two. Only ever asked
    /// for the user's own request.
    ///
    /// Served from this replica's cache when it can (see [`crate::cache`]).
    pub async fn byok_routes(&self, user_id: &str) -> StoreResult<Arc<Vec<StoredCiphertext>>> {
        if let Some(keys) = self.cache.keys(user_id) {
            return Ok(keys);
        }
        let ticket = self.cache.ticket();
        let keys: Vec<StoredCiphertext> = byok_keys::Entity::find()
            .filter(byok_keys::Column::UserId.eq(user_id))
            .order_by_asc(byok_keys::Column::Provider)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| StoredCiphertext {
                user_id: m.user_id,
                provider: m.provider,
                ciphertext: m.ciphertext,
            })
            .collect();
        let keys = Arc::new(keys);
        self.cache.keep_keys(ticket, user_id, keys.clone());
        Ok(keys)
    }

    pub async fn touch_byok_key(&self, user_id: &str, provider: &str) -> StoreResult<()> {
        byok_keys::Entity::update_many()
            .col_expr(byok_keys::Column::LastUsedAt, Expr::value(Some(self.clock.now())))
            .filter(byok_keys::Column::UserId.eq(user_id))
            .filter(byok_keys::Column::Provider.eq(provider))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Every stored ciphertext (for `rotate-key`).
    pub async fn all_byok_ciphertexts(&self) -> StoreResult<Vec<StoredCiphertext>> {
        Ok(byok_keys::Entity::find()
            .order_by_asc(byok_keys::Column::UserId)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| StoredCiphertext {
                user_id: m.user_id,
                provider: m.provider,
                ciphertext: m.ciphertext,
            })
            .collect())
    }

    /// Replaces ciphertexts in one transaction: all or nothing. A key whose
    /// ciphertext changed since it was read is left alone and reported.
    pub async fn replace_byok_ciphertexts(
        &self,
        replacements: &[(StoredCiphertext, String)],
    ) -> StoreResult<Vec<StoredCiphertext>> {
        let txn = self.db.begin().await?;
        let mut skipped = Vec::new();
        for (old, new) in replacements {
            let res = byok_keys::Entity::update_many()
                .col_expr(byok_keys::Column::Ciphertext, Expr::value(new.clone()))
                .filter(byok_keys::Column::UserId.eq(old.user_id.as_str()))
                .filter(byok_keys::Column::Provider.eq(old.provider.as_str()))
                .filter(byok_keys::Column::Ciphertext.eq(old.ciphertext.as_str()))
                .exec(&txn)
                .await?;
            if res.rows_affected == 0 {
                skipped.push(old.clone());
            } else {
                announce_forget(&txn, self.notify_channel.as_deref(), Cached::Keys, &old.user_id).await?;
            }
        }
        txn.commit().await?;
        for (old, _) in replacements {
            self.cache.forget(Cached::Keys, &old.user_id);
        }
        Ok(skipped)
    }

    pub async fn ai_settings(&self, user_id: &str) -> StoreResult<AiSettings> {
        Ok(ai_settings::Entity::find_by_id(user_id.to_owned())
            .one(&self.db)
            .await?
            .map(|m| AiSettings {
                preferred_provider: m.preferred_provider,
                fallback_to_credits: m.fallback_to_credits,
            })
            .unwrap_or_default())
    }

    pub async fn set_ai_settings(&self, user_id: &str, settings: &AiSettings) -> StoreResult<AiSettings> {
        let row = ai_settings::ActiveModel {
            user_id: Set(user_id.to_owned()),
            preferred_provider: Set(settings.preferred_provider.clone()),
            fallback_to_credits: Set(settings.fallback_to_credits),
            updated_at: Set(self.clock.now()),
        };
        let upsert = ai_settings::Entity::insert(row).on_conflict(
            OnConflict::column(ai_settings::Column::UserId)
                .update_columns([
                    ai_settings::Column::PreferredProvider,
                    ai_settings::Column::FallbackToCredits,
                    ai_settings::Column::UpdatedAt,
                ])
                .to_owned(),
        );
        self.with_wallet_moved(user_id, |txn| {
            Box::pin(async move { upsert.exec_without_returning(txn).await.map(drop) })
        })
        .await?;
        Ok(settings.clone())
    }

    /// Runs `write` in the transaction that moves the user's wallet version,
    /// so that subscribers (on every replica) see the wallet again: a key or
    /// a setting changes how AI is paid (`billingMode`). A user without a
    /// wallet yet has nothing to announce: the write runs on its own.
    async fn with_wallet_moved<T>(
        &self,
        user_id: &str,
        write: impl for<'t> FnOnce(&'t crate::group::LedgerTxn) -> TxnFuture<'t, T>,
    ) -> StoreResult<T> {
        let channel = self.notify_channel.as_deref();
        let out = match self.lock_wallet(user_id, false).await? {
            Some(locked) => match write(&locked.txn).await {
                Ok(out) => {
                    if let Err(e) = announce_forget(&*locked.txn, channel, Cached::Keys, user_id).await {
                        locked.rollback().await?;
                        return Err(e);
                    }
                    locked.commit_and_publish(self).await?;
                    Ok(out)
                }
                Err(e) => {
                    locked.rollback().await?;
                    Err(e.into())
                }
            },
            None => {
                let txn = crate::group::LedgerTxn::from(self.db.begin().await?);
                let out = write(&txn).await?;
                announce_forget(&txn, channel, Cached::Keys, user_id).await?;
                txn.commit().await?;
                Ok(out)
            }
        };
        // This replica's own, at once (the notification follows).
        self.cache.forget(Cached::Keys, user_id);
        out
    }
}
