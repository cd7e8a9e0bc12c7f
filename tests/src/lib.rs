//! The TestApp every end-to-end test starts from: a real creditgate server
//! on 127.0.0.1 (an ephemeral port), on a fresh SQLite or PostgreSQL
//! database, with a clock the test moves, and a client that speaks GraphQL
//! over HTTP to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use creditgate_domain::{ManualClock, Role};
use creditgate_server::{App, Config, TokenRequest};
pub use creditgate_storage::testing::Backend;
use creditgate_storage::testing::TestDb;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const TEST_SECRET: &str = "test-secret-test-secret-test-secret-0123";

pub struct TestApp {
    pub app: App,
    pub addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
    /// The whole configuration the server started with, as TOML.
    pub toml: String,
    stop: CancellationToken,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

pub struct TestAppBuilder {
    backend: Backend,
    start: DateTime<Utc>,
    toml: String,
}

impl TestAppBuilder {
    /// When the clock starts.
    pub fn at(mut self, rfc3339: &str) -> Self {
        self.start = DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc);
        self
    }

    /// Extra configuration, as TOML.
    pub fn config(mut self, toml: &str) -> Self {
        self.toml.push('\n');
        self.toml.push_str(toml);
        self
    }

    pub async fn start(self) -> TestApp {
        let db = TestDb::new(self.backend).await.expect("test database");
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            "data_dir = {:?}\ndatabase_url = {:?}\njwt_secret = {:?}\n[sweep]\ninterval_secs = 0\n{}",
            dir.path().display().to_string(),
            db.url,
            TEST_SECRET,
            self.toml
        );
        let config = Config::from_toml(&toml).expect("test configuration");
        let full_toml = toml.clone();
        let clock = Arc::new(ManualClock::new(self.start));
        let app = App::build(config, clock.clone()).await.expect("app");
        let (addr, stop) = serve_in_background(&app).await;
        TestApp {
            app,
            addr,
            clock,
            http: reqwest::Client::new(),
            toml: full_toml,
            stop,
            _db: db,
            _dir: dir,
        }
    }
}

impl TestApp {
    /// Begins a graceful shutdown of the server (as SIGTERM does).
    pub fn shutdown(&self) {
        self.stop.cancel();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serves `app` on an ephemeral port of 127.0.0.1 until the token is cancelled.
async fn serve_in_background(app: &App) -> (SocketAddr, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let served = app.clone();
    let signal = stop.clone();
    tokio::spawn(async move {
        let _ = served.serve(listener, async move { signal.cancelled().await }).await;
    });
    (addr, stop)
}

/// A GraphQL response: `data` and `errors`.
#[derive(Debug, Clone)]
pub struct Gql(pub Value);

impl Gql {
    pub fn data(&self) -> &Value {
        assert!(
            self.0.get("errors").is_none_or(|e| e.is_null()),
            "unexpected errors: {}",
            self.0
        );
        &self.0["data"]
    }

    /// The `extensions.code` of the first error (the test fails if none).
    pub fn code(&self) -> String {
        self.0["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error, got {}", self.0))
            .to_owned()
    }

    pub fn message(&self) -> String {
        self.0["errors"][0]["message"].as_str().unwrap_or("").to_owned()
    }
}

impl TestApp {
    pub fn builder(backend: Backend) -> TestAppBuilder {
        TestAppBuilder {
            backend,
            start: Utc::now(),
            toml: String::new(),
        }
    }

    pub async fn new(backend: Backend) -> TestApp {
        Self::builder(backend).start().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A token signed with the test secret.
    pub fn token(&self, sub: &str, org: &str, role: Role) -> String {
        self.app
            .auth
            .issue(&TokenRequest {
                sub: sub.into(),
                org: org.into(),
                role,
                name: Some(format!("{sub} name")),
                email: Some(format!("{sub}@example.com")),
                team: None,
                org_name: None,
                ttl: chrono::Duration::hours(1),
            })
            .unwrap()
    }

    pub fn member(&self, sub: &str, org: &str) -> String {
        self.token(sub, org, Role::Member)
    }

    pub fn service(&self) -> String {
        self.token("back-office", "platform", Role::Service)
    }

    /// Sends a GraphQL request with a bearer token (or none).
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Gql {
        self.gql_body(token, &json!({"query": query, "variables": variables}))
            .await
    }

    /// Sends a GraphQL request body as it is (an `operationName`, an
    /// `extensions` entry...) with a bearer token (or none).
    pub async fn gql_body(&self, token: Option<&str>, body: &Value) -> Gql {
        let mut req = self.http.post(self.url("/graphql")).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        Gql(resp.json().await.expect("JSON response"))
    }

    /// Grants permanent credits through the API, as the back office does.
    pub async fn grant(&self, user: &str, amount: &str, key: &str) -> Gql {
        self.gql(
            Some(&self.service()),
            "mutation($u: ID!, $a: Credits!, $k: String!) { grantCredits(userId: $u, amount: $a, reason: \"test\", idempotencyKey: $k) { id kind permanentDelta balanceAfter } }",
            json!({"u": user, "a": amount, "k": key}),
        )
        .await
    }

    pub async fn wallet(&self, token: &str) -> Value {
        self.gql(
            Some(token),
            "{ wallet { monthlyBalance monthlyAllocation permanentBalance held available cycleStart cycleEnd billingMode } }",
            json!({}),
        )
        .await
        .data()["wallet"]
            .clone()
    }
}

/// Runs an async test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::Backend::Sqlite).await } )+
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::Backend::Postgres).await } )+
        }
    };
}

/// The folder of the built provider plugins (`target/<profile>`): the test
/// binary lives in `target/<profile>/deps`. Fails loudly when the plugins
/// are not built (`cargo build --workspace` first; scripts/test.sh does).
pub fn plugin_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps")
        .to_owned();
    for plugin in ["creditgate_plugin_demo", "creditgate_plugin_openai"] {
        let file = dir.join(format!(
            "{}{plugin}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ));
        assert!(
            file.is_file(),
            "{} is not built: run `cargo build --workspace` first",
            file.display()
        );
    }
    dir
}

/// Configuration (TOML) serving the demo provider and an OpenAI-compatible
/// mock at `openai_base` (e.g. `http://127.0.0.1:1234/v1`) whose platform
/// key is read from `key_file`.
pub fn providers_toml(openai_base: &str, key_file: &std::path::Path, timeout_ms: u64) -> String {
    format!(
        "[providers]\nplugin_dir = {:?}\n[providers.providers.demo]\n[providers.providers.openai]\nbase_url = {:?}\napi_key_file = {:?}\ntimeout_ms = {timeout_ms}\n",
        plugin_dir().display().to_string(),
        openai_base,
        key_file.display().to_string(),
    )
}

/// Another server (replica) on the database of a [`TestApp`], with the same
/// secret and clock; stops when dropped.
pub struct Replica {
    pub app: App,
    pub addr: SocketAddr,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// Starts another replica on this app's database, with extra TOML.
    pub async fn replica(&self, toml: &str) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            "data_dir = {:?}\ndatabase_url = {:?}\njwt_secret = {:?}\n[sweep]\ninterval_secs = 0\n{}",
            dir.path().display().to_string(),
            self.app.config.database_url(),
            TEST_SECRET,
            toml
        );
        let config = Config::from_toml(&toml).expect("replica configuration");
        let app = App::build(config, self.clock.clone()).await.expect("replica");
        let (addr, stop) = serve_in_background(&app).await;
        Replica {
            app,
            addr,
            stop,
            _dir: dir,
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub mod logs;
pub mod openai;
pub mod ws;
