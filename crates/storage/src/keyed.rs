//! Finding a request by its idempotency key before doing anything else, so
//! that a retry of a request that already finished gets its stored result
//! whatever has changed since (a key removed, a setting changed).

use creditgate_domain::HoldStatus;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::entities::holds;
use crate::error::{StoreError, StoreResult};
use crate::store::Store;

/// A hold found by its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedHold {
    pub id: String,
    pub status: HoldStatus,
    pub request_hash: Option<String>,
    /// The request's stored result, once settled.
    pub result: Option<String>,
}

impl Store {
    /// The user's hold with this idempotency key, if any. A read, no lock:
    /// placing a hold checks the key again in its own transaction.
    pub async fn keyed_hold(&self, user_id: &str, key: &str) -> StoreResult<Option<KeyedHold>> {
        let Some(row) = holds::Entity::find()
            .filter(holds::Column::UserId.eq(user_id))
            .filter(holds::Column::IdempotencyKey.eq(key))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(KeyedHold {
            status: row.status.parse().map_err(StoreError::corrupt)?,
            id: row.id,
            request_hash: row.request_hash,
            result: row.result,
        }))
    }
}
