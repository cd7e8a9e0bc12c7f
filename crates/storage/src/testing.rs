//! Test support: a fresh, migrated database per test, on SQLite or on
//! PostgreSQL. PostgreSQL comes from `CREDITGATE_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`); each test gets a
//! database of its own, created from it and dropped afterwards.

use std::sync::Arc;

use creditgate_domain::{Clock, PlanCatalog, Role};
use sea_orm::{ConnectionTrait, Database};

use crate::{Identity, Store, StoreError, StoreOptions};

/// A member of `org` named by nothing but its id.
pub fn member(user: &str, org: &str) -> Identity {
    Identity {
        user_id: user.to_owned(),
        org_id: org.to_owned(),
        role: Role::Member,
        name: None,
        email: None,
        team: None,
        org_name: None,
        expires_at: None,
    }
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
}

pub fn postgres_admin_url() -> String {
    std::env::var("CREDITGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    backend: Backend,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Result<TestDb, StoreError> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().map_err(|e| StoreError::Unavailable(e.to_string()))?;
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("creditgate.db").display());
                Ok(TestDb {
                    url,
                    backend,
                    name: String::new(),
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let admin = Database::connect(&admin_url).await.map_err(|e| {
                    StoreError::Unavailable(format!(
                        "PostgreSQL tests need a server at CREDITGATE_TEST_POSTGRES_URL ({admin_url}): {e}"
                    ))
                })?;
                let name = format!("creditgate_test_{}", uuid::Uuid::new_v4().simple());
                admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
                admin.close().await?;
                let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin_url);
                Ok(TestDb {
                    url: format!("{base}/{name}"),
                    backend,
                    name,
                    _dir: None,
                })
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A migrated store on this database.
    pub async fn store(&self, clock: Arc<dyn Clock>, plans: PlanCatalog) -> Result<Store, StoreError> {
        self.store_with(clock, plans, |_| ()).await
    }

    /// [`TestDb::store`] with options of the test's own (group commit off,
    /// say).
    pub async fn store_with(
        &self,
        clock: Arc<dyn Clock>,
        plans: PlanCatalog,
        options_for: impl FnOnce(&mut StoreOptions),
    ) -> Result<Store, StoreError> {
        let mut options = StoreOptions::new(&self.url);
        options.max_connections = 32;
        options_for(&mut options);
        let store = Store::connect(&options, clock, Arc::new(plans)).await?;
        store.migrate().await?;
        Ok(store)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.backend != Backend::Postgres {
            return;
        }
        // Best effort, off the test's runtime: a leftover database is only
        // disk space.
        let name = self.name.clone();
        let admin_url = postgres_admin_url();
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = Database::connect(&admin_url).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        });
    }
}
