//! Cross-replica fan-out: one LISTEN connection per replica on the notify
//! channel. Each notification names a change (`<version> <user_id>`); the
//! hub reads what it needs once. A lost connection is re-opened with
//! backoff, and every subscriber is then re-sent its user's current wallet
//! (with the entries it missed), since notifications sent meanwhile are gone.
//!
//! A connection can also die silently (half-open: a dropped NAT entry, a
//! paused VM; no reset ever arrives). sqlx's `PgConnectOptions` offers no
//! client-side TCP keepalive, so a heartbeat finds it: every interval the
//! replica NOTIFYs itself on the same channel through its ordinary pool
//! (`heartbeat <token> <seq>`, with a random token per replica) and expects
//! to hear it on the LISTEN connection within a deadline; when it does not,
//! the connection is replaced as if it had dropped.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::{PgConnectOptions, PgListener, PgNotification, PgPoolOptions};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, sqlx};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use creditgate_storage::{Cached, FORGET, Store};

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

/// What a notification on the channel says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payload<'a> {
    /// `<version> <user_id>`: a committed wallet change.
    Change { version: i64, user_id: &'a str },
    /// `heartbeat <token> <seq>`: a replica checking its own LISTEN connection.
    Heartbeat { token: &'a str, seq: u64 },
    /// `forget <what> <user_id>`: a write of something replicas cache.
    Forget { what: Cached, user_id: &'a str },
}

const HEARTBEAT: &str = "heartbeat";

pub(crate) fn parse_payload(payload: &str) -> Option<Payload<'_>> {
    let (head, rest) = payload.split_once(' ')?;
    if head == HEARTBEAT {
        let (token, seq) = rest.split_once(' ')?;
        let seq = seq.parse().ok()?;
        return (!token.is_empty()).then_some(Payload::Heartbeat { token, seq });
    }
    if head == FORGET {
        let (what, user_id) = rest.split_once(' ')?;
        let what = Cached::parse(what)?;
        return (!user_id.is_empty()).then_some(Payload::Forget { what, user_id });
    }
    let version = head.parse().ok()?;
    (!rest.is_empty()).then_some(Payload::Change { version, user_id: rest })
}

fn heartbeat_payload(token: &str, seq: u64) -> String {
    format!("{HEARTBEAT} {token} {seq}")
}

/// Where and how one replica listens.
#[derive(Debug, Clone)]
pub(crate) struct ListenSettings {
    /// The LISTEN connection's URL.
    pub url: String,
    pub channel: String,
    /// Between two heartbeats.
    pub heartbeat: Duration,
    /// From a heartbeat's commit to its arrival, at most.
    pub heartbeat_timeout: Duration,
}

/// Sends a heartbeat every `every` through `db` (the pool, not the LISTEN
/// connection, so that it proves the round trip through the server) and
/// reports each committed one's number on `sent`.
async fn send_heartbeats(
    db: DatabaseConnection,
    channel: String,
    token: String,
    every: Duration,
    seq: Arc<AtomicU64>,
    sent: mpsc::Sender<u64>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let n = seq.fetch_add(1, Ordering::Relaxed) + 1;
        let notify = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [channel.clone().into(), heartbeat_payload(&token, n).into()],
        );
        match db.execute_raw(notify).await {
            Ok(_) => {
                if sent.send(n).await.is_err() {
                    return;
                }
            }
            // The pool cannot reach the database: that says nothing of the
            // LISTEN connection; try again at the next tick.
            Err(e) => tracing::warn!(error = %e, "cannot send the LISTEN heartbeat"),
        }
    }
}

/// Heartbeats sent and not heard yet, oldest first.
#[derive(Debug, Default)]
struct Outstanding {
    waiting: VecDeque<(u64, Instant)>,
    /// The newest heartbeat heard.
    newest: u64,
}

impl Outstanding {
    fn sent(&mut self, seq: u64, deadline: Instant) {
        if seq > self.newest {
            self.waiting.push_back((seq, deadline));
        }
    }

    fn heard(&mut self, seq: u64) {
        self.newest = self.newest.max(seq);
        while self.waiting.front().is_some_and(|(s, _)| *s <= seq) {
            self.waiting.pop_front();
        }
    }

    /// When the oldest unanswered heartbeat is overdue.
    fn deadline(&self) -> Option<Instant> {
        self.waiting.front().map(|(_, d)| *d)
    }
}

enum Next {
    Cancelled,
    Sent(u64),
    Silent,
    Notification(Result<Option<PgNotification>, sqlx::Error>),
}

pub(crate) async fn listen(settings: ListenSettings, store: Store, fanout: Arc<Fanout>, cancel: CancellationToken) {
    let ListenSettings {
        url,
        channel,
        heartbeat,
        heartbeat_timeout,
    } = settings;
    let db = store.connection().clone();
    let token = format!("{:016x}", rand::random::<u64>());
    let seq = Arc::new(AtomicU64::new(0));
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
                // From now on every replica's writes of cached things are heard.
                store.set_shared_caching(true);
                let since = Instant::now();
                let (sent_tx, mut sent_rx) = mpsc::channel(4);
                let beats = AbortOnDrop(tokio::spawn(send_heartbeats(
                    db.clone(),
                    channel.clone(),
                    token.clone(),
                    heartbeat,
                    seq.clone(),
                    sent_tx,
                )));
                let mut outstanding = Outstanding::default();
                loop {
                    let overdue = outstanding.deadline();
                    let next = tokio::select! {
                        _ = cancel.cancelled() => Next::Cancelled,
                        Some(n) = sent_rx.recv() => Next::Sent(n),
                        _ = sleep_until(overdue) => Next::Silent,
                        n = listener.try_recv() => Next::Notification(n),
                    };
                    match next {
                        Next::Cancelled => return,
                        Next::Sent(n) => outstanding.sent(n, Instant::now() + heartbeat_timeout),
                        Next::Silent => {
                            tracing::warn!(
                                timeout_ms = heartbeat_timeout.as_millis() as u64,
                                "the LISTEN connection did not deliver this replica's heartbeat in time; reconnecting"
                            );
                            break;
                        }
                        Next::Notification(Ok(Some(n))) => match parse_payload(n.payload()) {
                            Some(Payload::Change { version, user_id }) => {
                                store.wallet_changed(user_id, version);
                                fanout.notified(user_id, version);
                            }
                            Some(Payload::Forget { what, user_id }) => store.forget_cached(what, user_id),
                            Some(Payload::Heartbeat { token: t, seq }) => {
                                if t == token {
                                    outstanding.heard(seq);
                                }
                            }
                            None => tracing::warn!(payload = n.payload(), "unexpected wallet notification"),
                        },
                        Next::Notification(Ok(None)) => {
                            tracing::warn!("the LISTEN connection was lost; reconnecting");
                            break;
                        }
                        Next::Notification(Err(e)) => {
                            tracing::warn!(error = %e, "the LISTEN connection failed; reconnecting");
                            break;
                        }
                    }
                }
                // Deaf until reconnected: what others write may go unheard.
                store.set_shared_caching(false);
                drop(beats);
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

/// Sleeps until `at`; forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        let change = |version, user_id| Some(Payload::Change { version, user_id });
        assert_eq!(parse_payload("7 alice"), change(7, "alice"));
        assert_eq!(parse_payload("7 a b"), change(7, "a b"));
        assert_eq!(parse_payload("x alice"), None);
        assert_eq!(parse_payload("7 "), None);
        assert_eq!(parse_payload("7"), None);
        assert_eq!(
            parse_payload(&heartbeat_payload("00ff", 3)),
            Some(Payload::Heartbeat { token: "00ff", seq: 3 })
        );
        assert_eq!(parse_payload("heartbeat 00ff"), None);
        assert_eq!(
            parse_payload("forget keys a b"),
            Some(Payload::Forget {
                what: Cached::Keys,
                user_id: "a b"
            })
        );
        assert_eq!(
            parse_payload("forget user alice"),
            Some(Payload::Forget {
                what: Cached::User,
                user_id: "alice"
            })
        );
        assert_eq!(parse_payload("forget wallet alice"), None);
        assert_eq!(parse_payload("forget keys "), None);
        assert_eq!(parse_payload("heartbeat 00ff x"), None);
        assert_eq!(parse_payload("heartbeat  3"), None);
    }

    #[test]
    fn the_oldest_unheard_heartbeat_sets_the_deadline() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut o = Outstanding::default();
        assert_eq!(o.deadline(), None);
        o.sent(1, at(5));
        o.sent(2, at(15));
        assert_eq!(o.deadline(), Some(at(5)));
        o.heard(1);
        assert_eq!(o.deadline(), Some(at(15)));
        // Heard before its commit was reported: never waited for.
        o.heard(3);
        o.sent(3, at(25));
        assert_eq!(o.deadline(), None);
        o.sent(4, at(35));
        assert_eq!(o.deadline(), Some(at(35)));
    }
}
