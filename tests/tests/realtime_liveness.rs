//! A LISTEN connection that dies silently (half-open: no reset ever comes,
//! as when a NAT entry is dropped or a VM paused) is noticed by the
//! replica's heartbeat and replaced: its subscribers go on seeing changes
//! made on other replicas.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use creditgate_e2e::ws::{WALLET_UPDATED, WsClient, live_subscriptions};
use creditgate_e2e::{Backend, TestApp};
use sea_orm::sqlx::postgres::PgConnectOptions;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A TCP proxy on 127.0.0.1 whose open connections can be frozen: they stop
/// forwarding in both directions, and both sockets stay open. Connections
/// accepted after a freeze forward normally.
struct FreezingProxy {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    freeze: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl FreezingProxy {
    async fn start(upstream: String) -> FreezingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let freeze = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (count, tokens, stopped) = (accepted.clone(), freeze.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    _ = stopped.cancelled() => return,
                    a = listener.accept() => a.unwrap(),
                };
                count.fetch_add(1, Ordering::SeqCst);
                let frozen = tokens.lock().unwrap().clone();
                let upstream = upstream.clone();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                        _ = frozen.cancelled() => {}
                    }
                    // Frozen: hold both sockets open, forward nothing.
                    stopped.cancelled().await;
                    drop((client, server));
                });
            }
        });
        FreezingProxy {
            addr,
            accepted,
            freeze,
            stop,
        }
    }

    /// Freezes every connection open now.
    fn freeze(&self) {
        let mut token = self.freeze.lock().unwrap();
        token.cancel();
        *token = CancellationToken::new();
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The `host:port` of a PostgreSQL URL.
fn upstream(url: &str) -> String {
    let options: PgConnectOptions = url.parse().unwrap();
    format!("{}:{}", options.get_host(), options.get_port())
}

/// `url` with its host and port replaced by `addr`.
fn via(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, after) = rest.rsplit_once('@').map_or((None, rest), |(u, r)| (Some(u), r));
    let path = after.find('/').map_or("", |i| &after[i..]);
    match user {
        Some(user) => format!("{scheme}://{user}@{addr}{path}"),
        None => format!("{scheme}://{addr}{path}"),
    }
}

fn permanent(w: &Value) -> &str {
    w["permanentBalance"].as_str().unwrap()
}

/// How long the test gives replica B to notice the dead connection,
/// reconnect and resend: heartbeats every second, a second to come back,
/// plus the first reconnection backoff, with a wide margin.
const RECOVERY: Duration = Duration::from_secs(20);

/// Replica B listens through a proxy that then freezes its connection
/// half-open; a grant made on replica A still reaches B's subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_listen_connection_is_replaced() {
    let a = TestApp::new(Backend::Postgres).await;
    let database_url = a.app.config.database_url();
    let proxy = FreezingProxy::start(upstream(&database_url)).await;
    let listen_url = via(&database_url, proxy.addr);
    let b = a
        .replica(&format!(
            "[realtime]\nlisten_url = {listen_url:?}\nlisten_heartbeat_secs = 1\nlisten_heartbeat_timeout_secs = 1\n"
        ))
        .await;

    let token = a.member("alice", "acme");
    let mut c = WsClient::connect(b.addr, &token).await;
    let id = c.subscribe(WALLET_UPDATED).await;
    assert_eq!(permanent(&c.next(&id, "walletUpdated").await), "0");
    live_subscriptions(&b.app, 1).await;
    a.grant("alice", "5", "before").await.data();
    assert_eq!(permanent(&c.next(&id, "walletUpdated").await), "5");
    let before = proxy.accepted();
    assert!(before >= 1, "B listens through the proxy");

    // B's LISTEN connection goes silent, without a reset.
    proxy.freeze();
    a.grant("alice", "7", "after").await.data();
    let arrived = tokio::time::timeout(RECOVERY, async {
        loop {
            let w = c.next(&id, "walletUpdated").await;
            if permanent(&w) == "12" {
                return;
            }
            assert_eq!(permanent(&w), "5", "no other state in between");
        }
    })
    .await;
    assert!(
        arrived.is_ok(),
        "a change made on A never reached B's subscriber after B's LISTEN connection froze"
    );
    assert!(proxy.accepted() > before, "B connected again through the proxy");

    // Notifications flow on the new connection.
    a.grant("alice", "1", "later").await.data();
    loop {
        let w = c.next(&id, "walletUpdated").await;
        if permanent(&w) == "13" {
            break;
        }
        assert_eq!(permanent(&w), "12");
    }
}
