//! The `[realtime]` section of the server's configuration.

use serde::{Deserialize, Serialize};

/// How wallet events reach subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RealtimeConfig {
    /// The PostgreSQL channel every committed wallet change is announced on
    /// (`NOTIFY <channel>, '<version> <user_id>'`).
    pub notify_channel: String,
    /// Fan out across replicas through LISTEN/NOTIFY. Unset: on when the
    /// database is PostgreSQL (it is ignored on SQLite, which has one replica).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_replica: Option<bool>,
    /// Where the LISTEN connection goes (`postgres://...`), when not to
    /// `database_url`: e.g. straight to PostgreSQL while the pool goes
    /// through a transaction-mode pgbouncer, which cannot LISTEN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_url: Option<String>,
    /// Seconds between two heartbeats: this replica NOTIFYs itself through
    /// the pool and expects to hear it on its LISTEN connection.
    pub listen_heartbeat_secs: u64,
    /// Seconds a heartbeat has to come back once sent; else the LISTEN
    /// connection counts as dead (half-open) and is replaced.
    pub listen_heartbeat_timeout_secs: u64,
    /// Open WebSocket connections this replica accepts; more are refused
    /// with 503 before the upgrade.
    pub max_connections: usize,
    /// Open WebSocket connections one user may hold on this replica; more are
    /// closed after `connection_init` with 4429.
    pub max_connections_per_user: usize,
    /// Seconds between two WebSocket pings; a connection that sends nothing
    /// (not even a pong) for three intervals is closed. 0 turns pings off.
    pub keepalive_secs: u64,
    /// Seconds a new connection has to send `connection_init` (else 4408).
    pub init_timeout_secs: u64,
    /// Events buffered per user for its subscribers; a subscriber further
    /// behind skips to the current wallet (and the entries it missed).
    pub buffer: usize,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            notify_channel: "creditgate_wallets".to_owned(),
            cross_replica: None,
            listen_url: None,
            listen_heartbeat_secs: 10,
            listen_heartbeat_timeout_secs: 5,
            max_connections: 20_000,
            max_connections_per_user: 16,
            keepalive_secs: 15,
            init_timeout_secs: 10,
            buffer: 64,
        }
    }
}

impl RealtimeConfig {
    /// Whether changes cross replicas, for a database URL.
    pub fn cross_replica_for(&self, database_url: &str) -> bool {
        let postgres = database_url.starts_with("postgres://") || database_url.starts_with("postgresql://");
        postgres && self.cross_replica.unwrap_or(true)
    }

    /// The URL the LISTEN connection uses, for a database URL.
    pub fn listen_url_for<'a>(&'a self, database_url: &'a str) -> &'a str {
        self.listen_url.as_deref().unwrap_or(database_url)
    }

    /// The channel to give `StoreOptions::notify_channel`, for a database URL.
    pub fn notify_channel_for(&self, database_url: &str) -> Option<String> {
        self.cross_replica_for(database_url)
            .then(|| self.notify_channel.clone())
    }

    /// Why the section is invalid: `(key, message)`.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        let ok_channel = !self.notify_channel.is_empty()
            && self.notify_channel.len() <= 63
            && self
                .notify_channel
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok_channel {
            return Err((
                "realtime.notify_channel",
                "must be 1 to 63 ASCII letters, digits or underscores",
            ));
        }
        if let Some(url) = &self.listen_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(("realtime.listen_url", "must start with postgres:// or postgresql://"));
        }
        if self.listen_heartbeat_secs == 0 {
            return Err(("realtime.listen_heartbeat_secs", "must be at least 1"));
        }
        if self.listen_heartbeat_timeout_secs == 0 {
            return Err(("realtime.listen_heartbeat_timeout_secs", "must be at least 1"));
        }
        if self.max_connections == 0 {
            return Err(("realtime.max_connections", "must be at least 1"));
        }
        if self.max_connections_per_user == 0 {
            return Err(("realtime.max_connections_per_user", "must be at least 1"));
        }
        if self.buffer == 0 {
            return Err(("realtime.buffer", "must be at least 1"));
        }
        if self.init_timeout_secs == 0 {
            return Err(("realtime.init_timeout_secs", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listen_connection_goes_to_listen_url_when_set() {
        let db = "postgres://app@pgbouncer/creditgate";
        let mut config = RealtimeConfig::default();
        assert_eq!(config.listen_url_for(db), db);
        config.listen_url = Some("postgres://app@db/creditgate".into());
        assert_eq!(config.listen_url_for(db), "postgres://app@db/creditgate");
        assert_eq!(config.validate(), Ok(()));
        config.listen_url = Some("mysql://app@db/creditgate".into());
        assert_eq!(config.validate().map_err(|e| e.0), Err("realtime.listen_url"));
    }

    #[test]
    fn heartbeats_need_an_interval_and_a_timeout() {
        let zero_interval = RealtimeConfig {
            listen_heartbeat_secs: 0,
            ..RealtimeConfig::default()
        };
        assert_eq!(
            zero_interval.validate().map_err(|e| e.0),
            Err("realtime.listen_heartbeat_secs")
        );
        let zero_timeout = RealtimeConfig {
            listen_heartbeat_timeout_secs: 0,
            ..RealtimeConfig::default()
        };
        assert_eq!(
            zero_timeout.validate().map_err(|e| e.0),
            Err("realtime.listen_heartbeat_timeout_secs")
        );
    }
}
