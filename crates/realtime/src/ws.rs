//! The graphql-transport-ws connection loop (also the legacy graphql-ws
//! protocol): async-graphql's protocol machine, plus what production needs
//! around it: WebSocket pings and a dead-peer timeout, a deadline for
//! `connection_init` (4408), the protocol's close codes for a refused
//! `connection_init` (4403 Forbidden, 4429 for too many connections), a
//! connection that ends when its token expires (4403), and the connection
//! permits that enforce the limits.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_graphql::http::{WebSocket as ProtocolMachine, WebSocketProtocols, WsMessage};
use async_graphql::{Data, Executor};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt, future};
use tokio::time::Instant;

use crate::config::RealtimeConfig;
use crate::limits::{ConnectionPermit, UserPermit};

/// Closes a connection whose `connection_init` was refused, or whose token expired.
pub const CLOSE_FORBIDDEN: u16 = 4403;
/// Closes a connection that did not send `connection_init` in time.
pub const CLOSE_INIT_TIMEOUT: u16 = 4408;
/// Closes a connection beyond the user's connection limit.
pub const CLOSE_TOO_MANY_CONNECTIONS: u16 = 4429;
/// Closes a connection that went silent (no pong, no message).
pub const CLOSE_TIMEOUT: u16 = 3008;
/// Closes every connection when the server shuts down ("going away"), so
/// that clients reconnect at once (to another replica).
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// What `connection_init` decided.
pub enum InitOutcome {
    Accepted {
        /// The connection's data (the caller's identity).
        data: Data,
        /// When the credentials expire: the connection closes then (4403).
        expires_at: Option<DateTime<Utc>>,
        /// The user's place among their connections.
        permit: Option<UserPermit>,
    },
    Refused {
        code: u16,
        reason: String,
    },
}

impl std::fmt::Debug for InitOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitOutcome::Accepted { expires_at, .. } => f
                .debug_struct("Accepted")
                .field("expires_at", expires_at)
                .finish_non_exhaustive(),
            InitOutcome::Refused { code, reason } => f
                .debug_struct("Refused")
                .field("code", code)
                .field("reason", reason)
                .finish(),
        }
    }
}

/// Timings of a connection.
#[derive(Debug, Clone, Copy)]
pub struct WsSettings {
    /// Between two pings; `None`: no pings and no silence timeout.
    pub keepalive: Option<Duration>,
    pub init_timeout: Duration,
}

impl WsSettings {
    pub fn from_config(config: &RealtimeConfig) -> Self {
        WsSettings {
            keepalive: (config.keepalive_secs > 0).then(|| Duration::from_secs(config.keepalive_secs)),
            init_timeout: Duration::from_secs(config.init_timeout_secs.max(1)),
        }
    }
}

#[derive(Default)]
struct InitState {
    refused: Option<(u16, String)>,
    accepted: bool,
    expires_at: Option<DateTime<Utc>>,
    permit: Option<UserPermit>,
}

/// The protocol the upgrade agreed on (`graphql-transport-ws` unless the
/// client asked for the legacy `graphql-ws`).
pub fn negotiated_protocol(socket: &WebSocket) -> WebSocketProtocols {
    match socket.protocol().and_then(|p| p.to_str().ok()) {
        Some(p) if p.eq_ignore_ascii_case("graphql-ws") => WebSocketProtocols::SubscriptionsTransportWS,
        _ => WebSocketProtocols::GraphQLWS,
    }
}

fn until(at: DateTime<Utc>) -> Instant {
    let left = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Instant::now() + left
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Serves one WebSocket until either side ends it, or the server shuts
/// down (`shutdown`: closed with 1001). `permit` is this connection's place
/// on the replica; `on_init` authenticates the `connection_init` payload.
pub async fn serve<E, F, Fut>(
    socket: WebSocket,
    executor: E,
    settings: WsSettings,
    permit: ConnectionPermit,
    on_init: F,
    shutdown: tokio_util::sync::CancellationToken,
) where
    E: Executor,
    F: FnOnce(serde_json::Value) -> Fut + Send + 'static,
    Fut: Future<Output = InitOutcome> + Send + 'static,
{
    let protocol = negotiated_protocol(&socket);
    let (mut sink, stream) = socket.split();
    let last_seen = Arc::new(Mutex::new(Instant::now()));
    let seen = last_seen.clone();
    let input = stream.take_while(|m| future::ready(m.is_ok())).filter_map(move |m| {
        *seen.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        future::ready(match m {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => Some(m.into_data()),
            _ => None,
        })
    });
    let state = Arc::new(Mutex::new(InitState::default()));
    let init_state = state.clone();
    let machine = ProtocolMachine::new(executor, input, protocol).on_connection_init(move |payload| {
        let fut = on_init(payload);
        async move {
            let outcome = fut.await;
            let mut st = init_state.lock().unwrap_or_else(PoisonError::into_inner);
            match outcome {
                InitOutcome::Accepted {
                    data,
                    expires_at,
                    permit,
                } => {
                    st.accepted = true;
                    st.expires_at = expires_at;
                    st.permit = permit;
                    Ok(data)
                }
                InitOutcome::Refused { code, reason } => {
                    st.refused = Some((code, reason.clone()));
                    Err(async_graphql::Error::new(reason))
                }
            }
        }
    });
    futures::pin_mut!(machine);

    let started = Instant::now();
    let far = Duration::from_secs(365 * 24 * 3600);
    let mut ping = settings.keepalive.map(|every| {
        let mut t = tokio::time::interval_at(Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        let (accepted, expires) = {
            let st = state.lock().unwrap_or_else(PoisonError::into_inner);
            (st.accepted, st.expires_at.map(until))
        };
        let init_deadline = if accepted {
            started + far
        } else {
            started + settings.init_timeout
        };
        let expiry = expires.unwrap_or(started + far);
        let tick = async {
            match ping.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => future::pending::<()>().await,
            }
        };
        tokio::select! {
            msg = machine.next() => {
                let Some(msg) = msg else { break };
                let out = match msg {
                    WsMessage::Text(text) => Message::Text(text.into()),
                    WsMessage::Close(code, reason) => {
                        let refused = state.lock().unwrap_or_else(PoisonError::into_inner).refused.take();
                        let sent = match refused {
                            Some((code, reason)) => close(code, &reason),
                            None => close(code, &reason),
                        };
                        let _ = sink.send(sent).await;
                        break;
                    }
                };
                if sink.send(out).await.is_err() {
                    break;
                }
            }
            () = shutdown.cancelled() => {
                let _ = sink.send(close(CLOSE_GOING_AWAY, "the server is shutting down; reconnect")).await;
                break;
            }
            _ = tokio::time::sleep_until(init_deadline) => {
                let _ = sink.send(close(CLOSE_INIT_TIMEOUT, "Connection initialisation timeout")).await;
                break;
            }
            _ = tokio::time::sleep_until(expiry) => {
                let _ = sink.send(close(CLOSE_FORBIDDEN, "Forbidden: the token has expired")).await;
                break;
            }
            _ = tick => {
                let silent = last_seen.lock().unwrap_or_else(PoisonError::into_inner).elapsed();
                let limit = settings.keepalive.map(|k| k * 3).unwrap_or(far);
                if silent > limit {
                    let _ = sink.send(close(CLOSE_TIMEOUT, "timeout")).await;
                    break;
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = sink.close().await;
    drop(permit);
}
