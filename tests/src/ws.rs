//! A small graphql-transport-ws client for the tests: `connection_init`,
//! `subscribe`, `next`, `complete`, answering pings, and the close code when
//! the server closes.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for an event that must come.
pub const WAIT: Duration = Duration::from_secs(30);

/// What the server sent: a protocol message, or the close frame.
#[derive(Debug, Clone)]
pub enum Incoming {
    Message(Value),
    Closed(u16, String),
}

pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pending: VecDeque<Value>,
    next_id: u64,
}

impl WsClient {
    /// Opens the socket (no `connection_init` yet).
    pub async fn open(addr: SocketAddr) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        let mut req = format!("ws://{addr}/graphql/ws").into_client_request()?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(WsClient {
            ws,
            pending: VecDeque::new(),
            next_id: 0,
        })
    }

    /// Opens the socket and authenticates it; panics unless acknowledged.
    pub async fn connect(addr: SocketAddr, token: &str) -> WsClient {
        let mut c = WsClient::open(addr).await.expect("WebSocket upgrade");
        if let Err((code, reason)) = c.init(json!({"Authorization": format!("Bearer {token}")})).await {
            panic!("connection_init refused: {code} {reason}");
        }
        c
    }

    /// Sends `connection_init` and waits for `connection_ack` (Ok) or the
    /// close frame (Err).
    pub async fn init(&mut self, payload: Value) -> Result<(), (u16, String)> {
        self.send(json!({"type": "connection_init", "payload": payload})).await;
        loop {
            match self.recv().await {
                Incoming::Message(m) if m["type"] == "connection_ack" => return Ok(()),
                Incoming::Message(m) => self.pending.push_back(m),
                Incoming::Closed(code, reason) => return Err((code, reason)),
            }
        }
    }

    pub async fn send(&mut self, msg: Value) {
        self.send_raw(msg.to_string()).await;
    }

    /// Sends a text frame as it is (it need not be JSON).
    pub async fn send_raw(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// Starts a subscription; returns its id.
    pub async fn subscribe(&mut self, query: &str) -> String {
        self.next_id += 1;
        let id = self.next_id.to_string();
        self.send(json!({"id": id, "type": "subscribe", "payload": {"query": query}}))
            .await;
        id
    }

    pub async fn complete(&mut self, id: &str) {
        self.send(json!({"id": id, "type": "complete"})).await;
    }

    /// The next protocol message or the close (pings are answered).
    pub async fn recv(&mut self) -> Incoming {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for the server");
            match frame {
                None => return Incoming::Closed(1006, "connection dropped".into()),
                Some(Err(e)) => return Incoming::Closed(1006, e.to_string()),
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("JSON message");
                    if v["type"] == "ping" {
                        self.send(json!({"type": "pong"})).await;
                        continue;
                    }
                    return Incoming::Message(v);
                }
                Some(Ok(Message::Close(frame))) => {
                    return match frame {
                        Some(f) => Incoming::Closed(u16::from(f.code), f.reason.to_string()),
                        None => Incoming::Closed(1005, String::new()),
                    };
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next message of subscription `id` (`next`, `error` or `complete`).
    pub async fn message(&mut self, id: &str) -> Value {
        if let Some(i) = self.pending.iter().position(|m| m["id"] == id) {
            return self.pending.remove(i).unwrap();
        }
        loop {
            match self.recv().await {
                Incoming::Message(m) if m["id"] == id => return m,
                Incoming::Message(m) => self.pending.push_back(m),
                Incoming::Closed(code, reason) => panic!("closed while waiting for {id}: {code} {reason}"),
            }
        }
    }

    /// The data of the next `next` of subscription `id`, at `field`.
    pub async fn next(&mut self, id: &str, field: &str) -> Value {
        let m = self.message(id).await;
        assert_eq!(m["type"], "next", "expected a `next` for {id}, got {m}");
        assert!(m["payload"]["errors"].is_null(), "unexpected errors in {m}");
        m["payload"]["data"][field].clone()
    }

    /// Waits for the server to close the connection; its code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            if let Incoming::Closed(code, reason) = self.recv().await {
                return (code, reason);
            }
        }
    }
}

/// The fields of `walletUpdated` the tests look at.
pub const WALLET_UPDATED: &str = "subscription { walletUpdated { monthlyBalance monthlyAllocation permanentBalance held available cycleStart cycleEnd } }";

/// The fields of `activityAdded` the tests look at.
pub const ACTIVITY_ADDED: &str =
    "subscription { activityAdded { id kind creditsConsumed monthlyDelta permanentDelta balanceAfter description } }";

/// Waits until the replica has `n` live subscriptions (each has read where
/// it starts), so that a change made next is one they must see.
pub async fn live_subscriptions(app: &creditgate_server::App, n: usize) {
    let waited = tokio::time::timeout(WAIT, async {
        while app.realtime.live_subscriptions() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{n} subscriptions never went live");
}
