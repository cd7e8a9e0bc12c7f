//! Real-time fan-out benchmark: N graphql-transport-ws subscribers
//! (`walletUpdated`) on one replica, one change (a grant) to each of their
//! wallets, and the time from sending the grant until its subscriber has the
//! new wallet (p50, p99), with the server's peak memory.
//!
//! The server runs in a child process (this binary's `serve` subcommand) so
//! that its memory is its own; everything runs on 127.0.0.1.
//!
//!   cargo run --release -p creditgate-realtime-bench -- run --subscribers 1000
//!   cargo run --release -p creditgate-realtime-bench -- run --subscribers 10000

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use creditgate_domain::{Role, SystemClock};
use creditgate_server::{App, Authenticator, Config, TokenRequest};
use creditgate_storage::testing::{Backend, TestDb};
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "bench-secret-bench-secret-bench-secret-01";

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Db {
    Sqlite,
    Postgres,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the benchmark.
    Run {
        #[arg(long, default_value_t = 1_000)]
        subscribers: usize,
        #[arg(long, value_enum, default_value = "sqlite")]
        backend: Db,
        /// Grants sent at once.
        #[arg(long, default_value_t = 16)]
        grant_concurrency: usize,
        /// WebSocket handshakes at once while connecting.
        #[arg(long, default_value_t = 256)]
        connect_concurrency: usize,
    },
    /// (internal) The server under test.
    Serve {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        data_dir: String,
    },
}

fn config(database_url: &str, data_dir: &str) -> Result<Config> {
    let toml = format!(
        "data_dir = {data_dir:?}\ndatabase_url = {database_url:?}\njwt_secret = {SECRET:?}\nlisten = \"127.0.0.1:0\"\n\
         database_max_connections = 16\n[sweep]\ninterval_secs = 0\n[realtime]\nmax_connections = 50000\n"
    );
    Ok(Config::from_toml(&toml)?)
}

fn raise_fd_limit() -> Result<u64> {
    Ok(rlimit::increase_nofile_limit(u64::MAX)?)
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Serve { database_url, data_dir } => serve(&database_url, &data_dir).await,
        Command::Run {
            subscribers,
            backend,
            grant_concurrency,
            connect_concurrency,
        } => run(subscribers, backend, grant_concurrency, connect_concurrency).await,
    }
}

async fn serve(database_url: &str, data_dir: &str) -> Result<()> {
    raise_fd_limit()?;
    let app = App::build(config(database_url, data_dir)?, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("LISTENING {}", listener.local_addr()?);
    app.serve(listener, std::future::pending()).await?;
    Ok(())
}

/// (current RSS, peak RSS) of a process, in KiB.
fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(database_url: &str, data_dir: &str) -> Result<Server> {
    let mut child = Process::new(std::env::current_exe()?)
        .args(["serve", "--database-url", database_url, "--data-dir", data_dir])
        .env("CREDITGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("LISTENING ")
        .ok_or_else(|| anyhow!("server did not start: {line:?}"))?
        .parse()?;
    Ok(Server { child, addr })
}

async fn run(n: usize, backend: Db, grant_concurrency: usize, connect_concurrency: usize) -> Result<()> {
    let fds = raise_fd_limit()?;
    if (fds as usize) < n + 256 {
        bail!("the open-files limit is {fds}; {n} subscribers need more (ulimit -n)");
    }
    let backend = match backend {
        Db::Sqlite => Backend::Sqlite,
        Db::Postgres => Backend::Postgres,
    };
    let db = TestDb::new(backend).await?;
    let dir = std::env::temp_dir().join(format!("creditgate-rt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let data_dir = dir.display().to_string();
    let server = start_server(&db.url, &data_dir)?;
    let pid = server.child.id();
    let auth = Authenticator::from_config(&config(&db.url, &data_dir)?)?;
    let token = |sub: &str, role: Role| {
        auth.issue(&TokenRequest {
            sub: sub.into(),
            org: if role == Role::Service {
                "platform".into()
            } else {
                "bench".into()
            },
            role,
            name: None,
            email: None,
            team: None,
            org_name: None,
            ttl: chrono::Duration::hours(2),
        })
    };
    let (rss0, _) = memory_kib(pid)?;
    println!(
        "server pid {pid} on {} ({backend:?}); RSS at start {} MiB",
        server.addr,
        rss0 / 1024
    );

    // Connect and subscribe every user; each waits for its first wallet.
    let received: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; n]));
    let ready = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(connect_concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let tok = token(&format!("u{i}"), Role::Member)?;
        let (addr, received, ready, done, gate) =
            (server.addr, received.clone(), ready.clone(), done.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let r = subscriber(addr, &tok, i, received, ready, done, permit.ok()).await;
            if let Err(e) = r {
                eprintln!("subscriber {i}: {e:#}");
            }
        }));
    }
    wait_until("subscribers ready", &ready, n, Duration::from_secs(300)).await?;
    let (rss1, _) = memory_kib(pid)?;
    println!(
        "{n} subscribers connected in {:.1} s; server RSS {} MiB ({:.1} KiB per subscriber)",
        started.elapsed().as_secs_f64(),
        rss1 / 1024,
        (rss1.saturating_sub(rss0)) as f64 / n as f64
    );

    // One grant per wallet.
    let http = reqwest::Client::new();
    let svc = token("bench-service", Role::Service)?;
    let url = format!("http://{}/graphql", server.addr);
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; n]));
    let next = Arc::new(AtomicUsize::new(0));
    let grants_started = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..grant_concurrency.max(1) {
        let (http, svc, url, sent, next) = (http.clone(), svc.clone(), url.clone(), sent.clone(), next.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), anyhow::Error>(());
                }
                let body = json!({
                    "query": "mutation($u: ID!, $k: String!) { grantCredits(userId: $u, amount: \"1\", reason: \"bench\", idempotencyKey: $k) { id } }",
                    "variables": {"u": format!("u{i}"), "k": format!("bench-{i}")},
                });
                sent.lock().await[i] = Some(Instant::now());
                let resp: Value = http.post(&url).bearer_auth(&svc).json(&body).send().await?.json().await?;
                if resp.get("errors").is_some_and(|e| !e.is_null()) {
                    bail!("grant failed: {resp}");
                }
            }
        }));
    }
    for s in senders {
        s.await??;
    }
    let grant_secs = grants_started.elapsed().as_secs_f64();
    wait_until("deliveries", &done, n, Duration::from_secs(300)).await?;
    let (rss2, peak) = memory_kib(pid)?;

    let mut hist = Histogram::<u64>::new(3)?;
    let sent = sent.lock().await;
    let received = received.lock().await;
    for i in 0..n {
        if let (Some(s), Some(r)) = (sent[i], received[i]) {
            hist.record(r.saturating_duration_since(s).as_micros() as u64)?;
        }
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{n} grants in {grant_secs:.2} s ({:.0}/s, {grant_concurrency} at once)",
        n as f64 / grant_secs
    );
    println!(
        "grant sent -> wallet delivered: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        hist.max() as f64 / 1000.0,
        hist.len()
    );
    println!("server RSS now {} MiB, peak {} MiB", rss2 / 1024, peak / 1024);
    for t in tasks {
        t.abort();
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn wait_until(what: &str, counter: &AtomicUsize, n: usize, limit: Duration) -> Result<()> {
    let start = Instant::now();
    while counter.load(Ordering::Acquire) < n {
        if start.elapsed() > limit {
            bail!(
                "{what}: only {} of {n} after {limit:?}",
                counter.load(Ordering::Acquire)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn subscriber(
    addr: SocketAddr,
    token: &str,
    i: usize,
    received: Arc<Mutex<Vec<Option<Instant>>>>,
    ready: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<()> {
    let mut req = format!("ws://{addr}/graphql/ws").into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.context("connect")?;
    let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
    ws.send(Message::text(init.to_string())).await?;
    let sub = json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { walletUpdated { permanentBalance } }"}});
    ws.send(Message::text(sub.to_string())).await?;
    let mut first = true;
    let mut permit = permit;
    while let Some(msg) = ws.next().await {
        let Message::Text(text) = msg? else { continue };
        let v: Value = serde_json::from_str(text.as_str())?;
        match v["type"].as_str() {
            Some("next") => {
                let balance = v["payload"]["data"]["walletUpdated"]["permanentBalance"].as_str();
                if first {
                    first = false;
                    permit.take();
                    ready.fetch_add(1, Ordering::AcqRel);
                } else if balance == Some("1") {
                    let now = Instant::now();
                    received.lock().await[i] = Some(now);
                    done.fetch_add(1, Ordering::AcqRel);
                }
            }
            Some("ping") => ws.send(Message::text(json!({"type": "pong"}).to_string())).await?,
            Some("connection_ack") => {}
            _ => bail!("unexpected message {v}"),
        }
    }
    Ok(())
}
