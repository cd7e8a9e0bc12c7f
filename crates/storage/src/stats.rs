//! Figures the metrics endpoint reads at scrape time: open holds (from the
//! database, so every replica reports the same number) and this replica's
//! connection pool.

use sea_orm::{DbBackend, EntityTrait, PaginatorTrait, QueryFilter};

use crate::entities::holds;
use crate::error::StoreResult;
use crate::store::Store;

/// This replica's database connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open (in use or idle).
    pub open: u32,
    /// Open connections that are idle.
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

impl PoolStats {
    /// Connections in use.
    pub fn in_use(&self) -> u32 {
        self.open.saturating_sub(self.idle)
    }
}

impl Store {
    /// How many holds are open, across every replica.
    pub async fn count_open_holds(&self) -> StoreResult<u64> {
        Ok(holds::Entity::find()
            .filter(crate::holds::is_open())
            .count(&self.db)
            .await?)
    }

    /// The connection pool of this replica.
    pub fn pool_stats(&self) -> PoolStats {
        fn of<DB: sea_orm::sqlx::Database>(pool: &sea_orm::sqlx::Pool<DB>) -> PoolStats {
            PoolStats {
                open: pool.size(),
                idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                max: pool.options().get_max_connections(),
            }
        }
        match self.backend() {
            DbBackend::Postgres => of(self.db.get_postgres_connection_pool()),
            DbBackend::Sqlite => of(self.db.get_sqlite_connection_pool()),
            // Not a backend the store connects to.
            _ => PoolStats {
                open: 0,
                idle: 0,
                max: 0,
            },
        }
    }
}
