//! `[webhooks]`: the endpoints events are delivered to, and how delivery
//! retries.

use creditgate_storage::{WebhookRoute, WebhookRoutes, event_types};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::sign::Signer;

/// One receiver of outgoing webhooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Where events are POSTed (http or https).
    pub url: String,
    /// The endpoint's signing secret, `whsec_<base64>`. Never logged.
    #[serde(skip_serializing)]
    pub secret: SecretString,
    /// The event types it receives; all when absent.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    pub endpoints: Vec<EndpointConfig>,
    /// How often each replica looks for due deliveries, in milliseconds.
    pub poll_interval_ms: u64,
    /// How long one attempt may take, in milliseconds.
    pub timeout_ms: u64,
    /// How long a replica holds a row it is delivering; another replica
    /// takes it over after that (the first one died). Must exceed the timeout.
    pub lease_secs: u64,
    /// The wait after the first failed attempt; it doubles with each
    /// failure (with jitter) up to `backoff_max_secs`.
    pub backoff_initial_secs: u64,
    pub backoff_max_secs: u64,
    /// Attempts stop (and the event is recorded as given up) once this long
    /// has passed since the event. At least a day in production.
    pub give_up_after_secs: u64,
    /// Deliveries in flight per endpoint and replica: a slow endpoint uses
    /// only its own.
    pub max_in_flight_per_endpoint: usize,
    /// Delivered and given-up rows (and their attempts) are deleted by the
    /// periodic sweep after this many days.
    pub retention_days: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            endpoints: Vec::new(),
            poll_interval_ms: 1_000,
            timeout_ms: 10_000,
            lease_secs: 60,
            backoff_initial_secs: 5,
            backoff_max_secs: 6 * 3_600,
            give_up_after_secs: 3 * 86_400,
            max_in_flight_per_endpoint: 4,
            retention_days: 30,
        }
    }
}

/// A bad value: its key and why.
pub type Invalid = (&'static str, String);

fn bad(key: &'static str, message: impl Into<String>) -> Invalid {
    (key, message.into())
}

impl WebhooksConfig {
    /// Checks every value; the message names the endpoint (by position and
    /// URL), never its secret.
    pub fn validate(&self, production: bool) -> Result<(), Invalid> {
        let mut seen = std::collections::HashSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let ok = url::Url::parse(&e.url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if !ok {
                return Err(bad(
                    "webhooks.endpoints.url",
                    format!("endpoint {i}: `{}` is not an http(s) URL", e.url),
                ));
            }
            if !seen.insert(e.url.as_str()) {
                return Err(bad(
                    "webhooks.endpoints.url",
                    format!("endpoint {i}: `{}` is configured twice", e.url),
                ));
            }
            if let Err(why) = Signer::from_secret(&e.secret) {
                return Err(bad(
                    "webhooks.endpoints.secret",
                    format!("endpoint {i} ({}): the secret {why}", e.url),
                ));
            }
            if let Some(types) = &e.event_types {
                if types.is_empty() {
                    return Err(bad(
                        "webhooks.endpoints.event_types",
                        format!(
                            "endpoint {i} ({}): must name at least one event type, or be left out",
                            e.url
                        ),
                    ));
                }
                if let Some(unknown) = types.iter().find(|t| !event_types::ALL.contains(&t.as_str())) {
                    return Err(bad(
                        "webhooks.endpoints.event_types",
                        format!(
                            "endpoint {i} ({}): `{unknown}` is not one of {}",
                            e.url,
                            event_types::ALL.join(", ")
                        ),
                    ));
                }
            }
        }
        if self.poll_interval_ms < 10 {
            return Err(bad("webhooks.poll_interval_ms", "must be at least 10"));
        }
        if self.timeout_ms < 100 {
            return Err(bad("webhooks.timeout_ms", "must be at least 100"));
        }
        if self.lease_secs.saturating_mul(1_000) <= self.timeout_ms {
            return Err(bad("webhooks.lease_secs", "must be longer than webhooks.timeout_ms"));
        }
        if self.backoff_initial_secs == 0 {
            return Err(bad("webhooks.backoff_initial_secs", "must be at least 1"));
        }
        if self.backoff_max_secs < self.backoff_initial_secs {
            return Err(bad(
                "webhooks.backoff_max_secs",
                "must be at least webhooks.backoff_initial_secs",
            ));
        }
        let floor = if production { 86_400 } else { 1 };
        if self.give_up_after_secs < floor {
            return Err(bad("webhooks.give_up_after_secs", format!("must be at least {floor}")));
        }
        if self.max_in_flight_per_endpoint == 0 {
            return Err(bad("webhooks.max_in_flight_per_endpoint", "must be at least 1"));
        }
        if self.retention_days == 0 {
            return Err(bad("webhooks.retention_days", "must be at least 1"));
        }
        Ok(())
    }

    /// Which endpoint takes which events, for the outbox.
    pub fn routes(&self) -> WebhookRoutes {
        WebhookRoutes::new(
            self.endpoints
                .iter()
                .map(|e| WebhookRoute {
                    url: e.url.clone(),
                    event_types: e.event_types.clone(),
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(endpoint: &str) -> WebhooksConfig {
        let mut c: WebhooksConfig = toml::from_str(endpoint).unwrap();
        c.give_up_after_secs = 86_400;
        c
    }

    #[test]
    fn a_bad_endpoint_names_its_key_and_never_its_secret() {
        let good = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        assert!(
            with(&format!(
                "[[endpoints]]\nurl = \"https://example.com/h\"\nsecret = \"{good}\""
            ))
            .validate(true)
            .is_ok()
        );
        for (toml, key) in [
            (
                "[[endpoints]]\nurl = \"https://example.com/h\"\nsecret = \"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"",
                "webhooks.endpoints.secret",
            ),
            (
                "[[endpoints]]\nurl = \"https://example.com/h\"\nsecret = \"whsec_c2VjcmV0\"",
                "webhooks.endpoints.secret",
            ),
            (
                &format!("[[endpoints]]\nurl = \"ftp://example.com\"\nsecret = \"{good}\""),
                "webhooks.endpoints.url",
            ),
            (
                &format!(
                    "[[endpoints]]\nurl = \"https://example.com/h\"\nsecret = \"{good}\"\nevent_types = [\"purchase.done\"]"
                ),
                "webhooks.endpoints.event_types",
            ),
        ] {
            let (k, message) = with(toml).validate(true).unwrap_err();
            assert_eq!(k, key, "{toml}");
            assert!(
                !message.contains("MfKQ9r8") && !message.contains("c2VjcmV0"),
                "{message}"
            );
        }
        let short = WebhooksConfig {
            give_up_after_secs: 60,
            ..WebhooksConfig::default()
        };
        assert_eq!(short.validate(true).unwrap_err().0, "webhooks.give_up_after_secs");
        assert!(short.validate(false).is_ok());
    }
}
