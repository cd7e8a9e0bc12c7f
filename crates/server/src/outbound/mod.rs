//! Outgoing webhooks: every replica runs a delivery worker over the
//! outbox. Each poll it claims the due rows of each endpoint (as many as
//! that endpoint has free delivery slots), POSTs them signed per Standard
//! Webhooks, concurrently and each with its own timeout, and records every
//! attempt. A 2xx marks the row delivered; anything else schedules the next
//! attempt with exponential backoff and jitter until `give_up_after_secs`
//! has passed, then the row is recorded as given up. A replica killed
//! mid-delivery leaves its lease to expire; another replica then delivers
//! the row (receivers deduplicate by `webhook-id`).

pub mod config;
pub mod sign;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use creditgate_storage::{AfterAttempt, Store, WebhookAttempt, WebhookDelivery};
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::config::WebhooksConfig;
use self::sign::{SecretError, Signer};

/// When to try again after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub give_up_after: Duration,
}

impl Backoff {
    /// The wait before attempt `failed + 1`: `initial * 2^(failed-1)`, at most
    /// `max`, of which a random half is taken off (so that retries of many
    /// events spread out).
    pub fn delay(&self, failed: u32, rng: &mut impl Rng) -> Duration {
        let doublings = failed.saturating_sub(1).min(30);
        let full = self.initial.saturating_mul(1u32 << doublings).min(self.max);
        let half = full / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rng.random_range(0..=jitter_ms))
    }

    /// What follows the `failed`-th failed attempt of an event raised at `created_at`.
    pub fn after_failure(
        &self,
        failed: u32,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
        rng: &mut impl Rng,
    ) -> AfterAttempt {
        let give_up_after = chrono::Duration::from_std(self.give_up_after).unwrap_or(chrono::Duration::MAX);
        if now.signed_duration_since(created_at) >= give_up_after {
            return AfterAttempt::GiveUp;
        }
        let wait = chrono::Duration::from_std(self.delay(failed, rng)).unwrap_or(chrono::Duration::MAX);
        AfterAttempt::RetryAt(now.checked_add_signed(wait).unwrap_or(DateTime::<Utc>::MAX_UTC))
    }
}

struct Endpoint {
    url: String,
    signer: Signer,
    /// Its deliveries in flight on this replica.
    slots: Arc<Semaphore>,
}

struct Shared {
    store: Store,
    http: reqwest::Client,
    timeout: Duration,
    backoff: Backoff,
}

/// The delivery worker of one replica.
pub struct Outbound {
    shared: Arc<Shared>,
    endpoints: Vec<Arc<Endpoint>>,
    poll: Duration,
    lease: chrono::Duration,
}

/// Why the worker cannot start.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("webhooks.endpoints.secret: endpoint {index} ({url}): the secret {source}")]
    Secret {
        index: usize,
        url: String,
        source: SecretError,
    },
    #[error("webhooks: cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl Outbound {
    pub fn new(store: Store, config: &WebhooksConfig) -> Result<Outbound, OutboundError> {
        let endpoints = config
            .endpoints
            .iter()
            .enumerate()
            .map(|(index, e)| {
                let signer = Signer::from_secret(&e.secret).map_err(|source| OutboundError::Secret {
                    index,
                    url: e.url.clone(),
                    source,
                })?;
                Ok(Arc::new(Endpoint {
                    url: e.url.clone(),
                    signer,
                    slots: Arc::new(Semaphore::new(config.max_in_flight_per_endpoint)),
                }))
            })
            .collect::<Result<Vec<_>, OutboundError>>()?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("creditgate-webhooks/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_millis(config.timeout_ms))
            // A redirect would send the signed body somewhere not configured.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Outbound {
            shared: Arc::new(Shared {
                store,
                http,
                timeout: Duration::from_millis(config.timeout_ms),
                backoff: Backoff {
                    initial: Duration::from_secs(config.backoff_initial_secs),
                    max: Duration::from_secs(config.backoff_max_secs),
                    give_up_after: Duration::from_secs(config.give_up_after_secs),
                },
            }),
            endpoints,
            poll: Duration::from_millis(config.poll_interval_ms),
            lease: chrono::Duration::seconds(i64::try_from(config.lease_secs).unwrap_or(i64::MAX / 1_000)),
        })
    }

    /// Delivers until `cancel` fires; then the deliveries in flight give
    /// their rows back (the next poll of any replica takes them).
    pub fn spawn(self: Arc<Self>, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move { self.run(cancel).await })
    }

    async fn run(&self, cancel: CancellationToken) {
        if self.endpoints.is_empty() {
            return;
        }
        let mut tasks = JoinSet::new();
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            while tasks.try_join_next().is_some() {}
            for endpoint in &self.endpoints {
                self.poll_endpoint(endpoint, &mut tasks, &cancel).await;
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Claims as many due rows of `endpoint` as it has free slots, and
    /// starts their deliveries.
    async fn poll_endpoint(&self, endpoint: &Arc<Endpoint>, tasks: &mut JoinSet<()>, cancel: &CancellationToken) {
        let free = endpoint.slots.available_permits();
        if free == 0 {
            return;
        }
        let claimed = match self
            .shared
            .store
            .claim_webhooks(&endpoint.url, u64::try_from(free).unwrap_or(u64::MAX), self.lease)
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, endpoint = endpoint.url, "claiming webhook deliveries failed");
                return;
            }
        };
        for delivery in claimed {
            let Ok(permit) = endpoint.slots.clone().try_acquire_owned() else {
                // Only this loop takes slots: cannot happen; give the row back.
                if let Err(e) = self.shared.store.release_webhook(&delivery).await {
                    tracing::warn!(error = %e, "giving a webhook delivery back failed");
                }
                continue;
            };
            let (shared, endpoint, cancel) = (self.shared.clone(), endpoint.clone(), cancel.clone());
            tasks.spawn(async move { deliver(&shared, &endpoint, delivery, permit, &cancel).await });
        }
    }
}

/// One attempt: POST, then record it and what follows.
async fn deliver(
    shared: &Shared,
    endpoint: &Endpoint,
    delivery: WebhookDelivery,
    _slot: OwnedSemaphorePermit,
    cancel: &CancellationToken,
) {
    let at = shared.store.now();
    // The signature's timestamp is the wall clock's: receivers compare it
    // with theirs to refuse replays.
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let signature = endpoint.signer.sign(&delivery.event_id, timestamp, &delivery.payload);
    let started = Instant::now();
    let request = shared
        .http
        .post(&endpoint.url)
        .timeout(shared.timeout)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &delivery.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(delivery.payload.clone())
        .send();
    let sent = tokio::select! {
        sent = request => sent,
        () = cancel.cancelled() => {
            // Shutting down: the row goes back at once, unrecorded.
            if let Err(e) = shared.store.release_webhook(&delivery).await {
                tracing::warn!(error = %e, "giving a webhook delivery back failed");
            }
            return;
        }
    };
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let (status_code, error) = match sent {
        Ok(resp) => (Some(resp.status().as_u16()), None),
        Err(e) => (e.status().map(|s| s.as_u16()), Some(describe(&e))),
    };
    let delivered = error.is_none() && status_code.is_some_and(|s| (200..300).contains(&s));
    let failed = u32::try_from(delivery.attempts.saturating_add(1)).unwrap_or(u32::MAX);
    let after = if delivered {
        AfterAttempt::Delivered
    } else {
        shared
            .backoff
            .after_failure(failed, delivery.created_at, shared.store.now(), &mut rand::rng())
    };
    let attempt = WebhookAttempt {
        at,
        status_code,
        error,
        duration_ms,
    };
    match after {
        AfterAttempt::Delivered => tracing::debug!(
            event_id = delivery.event_id,
            event_type = delivery.event_type,
            endpoint = endpoint.url,
            "webhook delivered"
        ),
        AfterAttempt::RetryAt(next) => tracing::info!(
            event_id = delivery.event_id,
            endpoint = endpoint.url,
            status = ?attempt.status_code,
            error = ?attempt.error,
            attempt = failed,
            %next,
            "webhook delivery failed; will retry"
        ),
        AfterAttempt::GiveUp => tracing::warn!(
            event_id = delivery.event_id,
            endpoint = endpoint.url,
            status = ?attempt.status_code,
            error = ?attempt.error,
            attempts = failed,
            "webhook delivery given up"
        ),
    }
    match shared.store.record_webhook_attempt(&delivery, &attempt, after).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            event_id = delivery.event_id,
            endpoint = endpoint.url,
            "a webhook delivery outlasted its lease; another replica took the row over"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            event_id = delivery.event_id,
            "recording a webhook attempt failed; the row is retried when its lease ends"
        ),
    }
}

/// Why a request failed, without its URL's details.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_redirect() {
        "redirected (not followed)".into()
    } else {
        let mut msg = String::from("the request failed");
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            msg = format!("{msg}: {s}");
            source = s.source();
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_gives_up_after_its_time() {
        let b = Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(3_600),
            give_up_after: Duration::from_secs(86_400),
        };
        let mut rng = rand::rng();
        for _ in 0..100 {
            let d1 = b.delay(1, &mut rng);
            assert!(d1 >= Duration::from_secs(5) && d1 <= Duration::from_secs(10), "{d1:?}");
            let d4 = b.delay(4, &mut rng);
            assert!(d4 >= Duration::from_secs(40) && d4 <= Duration::from_secs(80), "{d4:?}");
            let d40 = b.delay(40, &mut rng);
            assert!(
                d40 >= Duration::from_secs(1_800) && d40 <= Duration::from_secs(3_600),
                "{d40:?}"
            );
        }
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        assert!(matches!(
            b.after_failure(3, t0, t0 + chrono::Duration::hours(23), &mut rng),
            AfterAttempt::RetryAt(_)
        ));
        assert_eq!(
            b.after_failure(30, t0, t0 + chrono::Duration::hours(24), &mut rng),
            AfterAttempt::GiveUp
        );
    }
}
