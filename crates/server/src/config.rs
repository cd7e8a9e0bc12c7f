//! Configuration: shipped defaults, then a TOML file (`--config PATH` or
//! `CREDITGATE_CONFIG`), then the environment (`CREDITGATE_<KEY>`, nested
//! keys joined with `__`, e.g. `CREDITGATE_JWT__ISSUER`). A bad value stops
//! the start with a message that names its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use creditgate_domain::{Credits, Plan, PlanCatalog};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("configuration key `{key}`: {message}")]
    Key { key: &'static str, message: String },
    #[error("configuration: cannot use the data folder {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
}

fn key(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key,
        message: message.into(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    pub id: String,
    pub name: String,
    pub monthly_credits_per_user: Credits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    ES256,
    EdDSA,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    pub algorithm: JwtAlgorithm,
    /// PEM public key for RS256, ES256 and EdDSA.
    pub public_key_file: Option<PathBuf>,
    /// Checked when set.
    pub issuer: Option<String>,
    /// Checked when set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp`, in seconds.
    pub leeway_secs: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            algorithm: JwtAlgorithm::HS256,
            public_key_file: None,
            issuer: None,
            audience: None,
            leeway_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body, in bytes.
    pub body_bytes: usize,
    pub query_depth: usize,
    pub query_complexity: usize,
    /// How deep a query's brackets may nest (checked before parsing).
    pub query_nesting: usize,
    /// How many fragments a query may define.
    pub query_fragments: usize,
    /// Largest page of `activity`.
    pub max_page_size: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            body_bytes: 256 * 1024,
            query_depth: 16,
            query_complexity: 1_000,
            query_nesting: 64,
            query_fragments: 100,
            max_page_size: 100,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepConfig {
    /// Seconds between two sweeps (expired holds, ended cycles); 0 turns it off.
    pub interval_secs: u64,
    /// Rows one sweep handles at most.
    pub batch: u64,
    /// How long a hold may stay open before the sweep releases it.
    pub hold_ttl_secs: u64,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            interval_secs: 30,
            batch: 500,
            hold_ttl_secs: 600,
        }
    }
}

/// The metrics endpoint (`/metrics`, Prometheus text format). Off unless
/// `listen` or `token` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serves `/metrics` on this separate address, not on the public
    /// listener (a bearer `token`, when also set, is required there too).
    pub listen: Option<SocketAddr>,
    /// Without `listen`: serves `/metrics` on the public listener to
    /// requests bearing this token. A secret: never logged or printed.
    #[serde(skip_serializing)]
    pub token: Option<SecretString>,
    /// How long the open-holds count (a database query) is reused between
    /// scrapes, in seconds.
    pub holds_cache_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: None,
            token: None,
            holds_cache_secs: 5,
        }
    }
}

impl MetricsConfig {
    /// Whether `/metrics` is served at all.
    pub fn enabled(&self) -> bool {
        self.listen.is_some() || self.token.is_some()
    }
}

/// Balance alerts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// The thresholds on `available` of users who have not set their own
    /// (`setBalanceAlerts`): at most 5, none negative, distinct. 0 is the
    /// DEPLETED alert; an empty list turns default alerts off.
    pub default_thresholds: Vec<Credits>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            default_thresholds: creditgate_domain::Thresholds::shipped().levels().to_vec(),
        }
    }
}

impl AlertsConfig {
    /// The default thresholds, checked and ordered.
    pub fn thresholds(&self) -> Result<creditgate_domain::Thresholds, ConfigError> {
        creditgate_domain::Thresholds::new(self.default_thresholds.iter().copied())
            .map_err(|e| key("alerts.default_thresholds", e.to_string()))
    }
}

/// Traces exported with OpenTelemetry (OTLP over HTTP/protobuf).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL (e.g. `http://otel-collector:4318`);
    /// spans go to `<otlp_endpoint>/v1/traces`. Off when unset.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: "creditgate".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the embedded defaults live: the SQLite file, the generated JWT secret.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default: a SQLite file in `data_dir`.
    pub database_url: Option<String>,
    /// Pool size on PostgreSQL.
    pub database_max_connections: u32,
    /// Writer tasks that commit concurrent holds and settles together
    /// (group commit); 0 turns it off. Default: 1.
    pub ledger_writers: Option<usize>,
    pub listen: SocketAddr,
    /// HS256 secret; default: generated into `data_dir` on first start.
    #[serde(skip_serializing)]
    pub jwt_secret: Option<SecretString>,
    pub jwt: JwtConfig,
    pub plans: Vec<PlanConfig>,
    pub default_plan: String,
    pub limits: LimitsConfig,
    pub sweep: SweepConfig,
    /// Subscriptions: cross-replica fan-out, connection limits, keep-alive, buffers.
    pub realtime: creditgate_realtime::RealtimeConfig,
    pub log_format: LogFormat,
    /// `development` or `production`.
    pub environment: String,
    /// Buying credits: the packs and the payment provider.
    pub payments: creditgate_payments::PaymentsConfig,
    /// Provider plugins and how each provider is reached.
    pub providers: creditgate_gateway::ProvidersConfig,
    /// Metered AI: pricing, BYOK identity, rate limits.
    pub ai: creditgate_metering::AiConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// OpenTelemetry traces.
    pub telemetry: TelemetryConfig,
    /// Cross-origin SPAs.
    pub cors: crate::cors::CorsConfig,
    /// Outgoing webhooks: endpoints and delivery.
    pub webhooks: crate::outbound::config::WebhooksConfig,
    /// Balance alerts: the default thresholds.
    pub alerts: AlertsConfig,
}

impl Default for Config {
    fn default() -> Self {
        let shipped = PlanCatalog::shipped();
        Config {
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_max_connections: 16,
            ledger_writers: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            jwt_secret: None,
            jwt: JwtConfig::default(),
            plans: shipped
                .all()
                .iter()
                .map(|p| PlanConfig {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    monthly_credits_per_user: p.monthly_credits_per_user,
                })
                .collect(),
            default_plan: shipped.default_plan().id.clone(),
            limits: LimitsConfig::default(),
            sweep: SweepConfig::default(),
            realtime: creditgate_realtime::RealtimeConfig::default(),
            log_format: LogFormat::Pretty,
            environment: "development".into(),
            payments: creditgate_payments::PaymentsConfig::default(),
            providers: creditgate_gateway::ProvidersConfig::default(),
            ai: creditgate_metering::AiConfig::default(),
            metrics: MetricsConfig::default(),
            telemetry: TelemetryConfig::default(),
            cors: crate::cors::CorsConfig::default(),
            webhooks: crate::outbound::config::WebhooksConfig::default(),
            alerts: AlertsConfig::default(),
        }
    }
}

/// The top-level configuration keys.
fn known_keys() -> Vec<String> {
    let mut keys: Vec<String> = match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    };
    keys.push("jwt_secret".to_owned());
    keys
}

impl Config {
    /// Defaults, then the file (when given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        // Only variables that name a configuration key: others with the
        // prefix (CREDITGATE_LOG, CREDITGATE_CONFIG, a test's variables)
        // belong to someone else.
        let known = known_keys();
        figment = figment.merge(Env::prefixed("CREDITGATE_").split("__").filter(move |k| {
            let top = k.as_str().split('.').next().unwrap_or("");
            known.iter().any(|key| key.eq_ignore_ascii_case(top))
        }));
        Self::extract(figment)
    }

    /// Defaults plus the given TOML text (tests and tools).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::extract(Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text)))
    }

    fn extract(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract().map_err(|e| {
            let mut msgs = Vec::new();
            for err in e {
                msgs.push(err.to_string());
            }
            ConfigError::Invalid(msgs.join("; "))
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.plan_catalog()?;
        self.payments
            .validate(self.environment == "production")
            .map_err(|e| key(e.key(), e.to_string()))?;
        self.ai.pricing.table().map_err(|e| key("ai.pricing", e.to_string()))?;
        self.cors.validate().map_err(|m| key("cors.allowed_origins", m))?;
        self.webhooks
            .validate(self.environment == "production")
            .map_err(|(k, m)| key(k, m))?;
        self.alerts.thresholds()?;
        if self.limits.body_bytes < 1024 {
            return Err(key("limits.body_bytes", "must be at least 1024"));
        }
        if self.limits.max_page_size == 0 {
            return Err(key("limits.max_page_size", "must be at least 1"));
        }
        if self.sweep.hold_ttl_secs == 0 {
            return Err(key("sweep.hold_ttl_secs", "must be at least 1"));
        }
        if self.database_max_connections == 0 {
            return Err(key("database_max_connections", "must be at least 1"));
        }
        if self.ledger_writers.is_some_and(|w| w > 64) {
            return Err(key("ledger_writers", "must be 0 to 64"));
        }
        if !matches!(self.environment.as_str(), "development" | "production") {
            return Err(key("environment", "must be `development` or `production`"));
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(key(
                "database_url",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        self.validate_operations()?;
        if self.jwt.algorithm != JwtAlgorithm::HS256 && self.jwt.public_key_file.is_none() {
            return Err(key("jwt.public_key_file", "is required for RS256, ES256 and EdDSA"));
        }
        if self.environment == "production" && self.ai.identity_env.is_none() && self.ai.identity_file.is_none() {
            // Generated per data folder, an identity would differ between
            // replicas: a key saved through one could not be read by another.
            return Err(key(
                "ai.identity_file",
                "must be configured in production (no generated identity; or set ai.identity_env)",
            ));
        }
        if self.environment == "production" && self.jwt.algorithm == JwtAlgorithm::HS256 && self.jwt_secret.is_none() {
            return Err(key(
                "jwt_secret",
                "must be configured in production (no generated secret)",
            ));
        }
        Ok(())
    }

    fn validate_operations(&self) -> Result<(), ConfigError> {
        use secrecy::ExposeSecret;
        if let Some(token) = &self.metrics.token
            && token.expose_secret().trim().len() < 16
        {
            return Err(key("metrics.token", "must be at least 16 characters"));
        }
        if self.metrics.listen.is_some_and(|l| l == self.listen) {
            return Err(key("metrics.listen", "must differ from `listen`"));
        }
        if let Some(endpoint) = &self.telemetry.otlp_endpoint {
            let ok = url::Url::parse(endpoint).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if !ok {
                return Err(key("telemetry.otlp_endpoint", "must be an http(s) URL"));
            }
        }
        if self.telemetry.service_name.trim().is_empty() {
            return Err(key("telemetry.service_name", "must not be empty"));
        }
        Ok(())
    }

    pub fn plan_catalog(&self) -> Result<PlanCatalog, ConfigError> {
        let plans = self
            .plans
            .iter()
            .map(|p| Plan {
                id: p.id.clone(),
                name: p.name.clone(),
                monthly_credits_per_user: p.monthly_credits_per_user,
            })
            .collect();
        PlanCatalog::new(plans, self.default_plan.clone()).map_err(|e| match e {
            creditgate_domain::PlanCatalogError::UnknownDefault(_) => key("default_plan", e.to_string()),
            _ => key("plans", e.to_string()),
        })
    }

    /// The database URL, defaulting to a SQLite file in the data folder.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join("creditgate.db").display()),
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url().starts_with("sqlite:")
    }

    /// Creates the data folder (owner-only) when missing.
    pub fn ensure_data_dir(&self) -> Result<(), ConfigError> {
        let err = |source| ConfigError::DataDir {
            path: self.data_dir.clone(),
            source,
        };
        if !self.data_dir.exists() {
            std::fs::create_dir_all(&self.data_dir).map_err(err)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&self.data_dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_defaults_are_valid() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.is_sqlite());
        assert_eq!(c.plan_catalog().unwrap().default_plan().id, "free");
    }

    #[test]
    fn operations_are_off_by_default_and_the_token_never_prints() {
        let c = Config::from_toml("").unwrap();
        assert!(!c.metrics.enabled());
        assert!(c.telemetry.otlp_endpoint.is_none());
        assert_eq!(c.payments.webhook_event_retention_days, 30);
        let c = Config::from_toml("[metrics]\ntoken = \"a-long-scrape-token-0123\"").unwrap();
        assert!(c.metrics.enabled());
        let shown = format!("{c:?} {}", serde_json::to_string(&c).unwrap());
        assert!(!shown.contains("a-long-scrape-token-0123"), "{shown}");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        for (toml, k) in [
            ("listen = \"nowhere\"", "listen"),
            ("default_plan = \"gold\"", "default_plan"),
            ("[limits]\nbody_bytes = 3", "limits.body_bytes"),
            ("database_url = \"mysql://x\"", "database_url"),
            (
                "[[plans]]\nid = \"x\"\nname = \"X\"\nmonthly_credits_per_user = \"1.2345\"",
                "monthly_credits_per_user",
            ),
            ("unknown_key = 1", "unknown_key"),
            ("ledger_writers = 65", "ledger_writers"),
            ("[metrics]\ntoken = \"short\"", "metrics.token"),
            ("[metrics]\nlisten = \"127.0.0.1:8080\"", "metrics.listen"),
            ("[metrics]\nlisten = \"nowhere\"", "listen"),
            (
                "[telemetry]\notlp_endpoint = \"collector:4318\"",
                "telemetry.otlp_endpoint",
            ),
            (
                "[payments]\nwebhook_event_retention_days = 0",
                "payments.webhook_event_retention_days",
            ),
            (
                "[payments]\nabandoned_purchase_secs = 0",
                "payments.abandoned_purchase_secs",
            ),
        ] {
            let err = Config::from_toml(toml).unwrap_err().to_string();
            assert!(err.contains(k), "{toml:?} gave {err}");
        }
    }
}
