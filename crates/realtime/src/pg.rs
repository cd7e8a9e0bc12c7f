//! Cross-replica fan-out: one LISTEN connection per replica on the notify
//! channel. Each notification names a change (`<version> <user_id>`); the
//! hub reads what it needs once. A lost connection is re-opened with
//! backoff, and every subscriber is then re-sent its user's current wallet
//! (with the entries it missed), since notifications sent meanwhile are gone.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::sqlx;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use crate::hub::Fanout;

/// The `application_name` of the LISTEN connection (to find it in
/// `pg_stat_activity`).
pub const LISTEN_APPLICATION_NAME: &str = "creditgate-realtime";

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A connection that stayed up this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);

async fn connect(url: &str, channel: &str) -> Result<(sqlx::PgPool, PgListener), sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.application_name(LISTEN_APPLICATION_NAME);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_with(options)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.eager_reconnect(false);
    listener.listen(channel).await?;
    Ok((pool, listener))
}

/// `<version> <user_id>`.
pub(crate) fn parse_payload(payload: &str) -> Option<(i64, &str)> {
    let (version, user_id) = payload.split_once(' ')?;
    let version = version.parse().ok()?;
    (!user_id.is_empty()).then_some((version, user_id))
}

pub(crate) async fn listen(url: String, channel: String, fanout: Arc<Fanout>, cancel: CancellationToken) {
    let mut backoff = FIRST_BACKOFF;
    let mut reconnect = false;
    loop {
        let connected = tokio::select! {
            _ = cancel.cancelled() => return,
            c = connect(&url, &channel) => c,
        };
        match connected {
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot LISTEN for wallet changes")
            }
            Ok((pool, mut listener)) => {
                tracing::info!(channel, "listening for wallet changes of other replicas");
                // Whatever committed while nobody listened: re-read it; after
                // a lost connection, re-send every subscriber its wallet.
                fanout.resync(reconnect);
                reconnect = true;
                let since = Instant::now();
                loop {
                    let next = tokio::select! {
                        _ = cancel.cancelled() => return,
                        next = listener.try_recv() => next,
                    };
                    match next {
                        Ok(Some(n)) => match parse_payload(n.payload()) {
                            Some((version, user_id)) => fanout.notified(user_id, version),
                            None => tracing::warn!(payload = n.payload(), "unexpected wallet notification"),
                        },
                        Ok(None) => {
                            tracing::warn!("the LISTEN connection was lost; reconnecting");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the LISTEN connection failed; reconnecting");
                            break;
                        }
                    }
                }
                drop(listener);
                drop(pool);
                if since.elapsed() >= STABLE {
                    backoff = FIRST_BACKOFF;
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::parse_payload;

    #[test]
    fn payloads() {
        assert_eq!(parse_payload("7 alice"), Some((7, "alice")));
        assert_eq!(parse_payload("7 a b"), Some((7, "a b")));
        assert_eq!(parse_payload("x alice"), None);
        assert_eq!(parse_payload("7 "), None);
        assert_eq!(parse_payload("7"), None);
    }
}
