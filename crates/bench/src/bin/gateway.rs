//! The cost of the gateway: a full credit-paid runAi through a running
//! creditgate server (its own process, pinned to one core) against a mock
//! provider that answers at once, and the same request through the
//! OpenAI-compatible door (`POST /v1/chat/completions`), next to the
//! provider request sent straight to the mock. Reports the added latency
//! (p50, p99; and the tail: p90 to p99.9 and the slowest) of each door at
//! each concurrency, requests per second, the server's CPU time per request
//! and its peak memory.
//!
//!   cargo build --release --workspace
//!   cargo run --release -p creditgate-bench --bin gateway -- --backend sqlite
//!   cargo run --release -p creditgate-bench --bin gateway -- --backend postgres

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::routing::post;
use clap::{Parser, ValueEnum};
use creditgate_storage::testing::{Backend, TestDb};
use hdrhistogram::Histogram;
use serde_json::json;

const CHAT_RESPONSE: &str = include_str!("../../../../fixtures/providers/openai/chat-response.json");
const SECRET: &str = "bench-secret-bench-secret-bench-secret-00";

#[derive(Clone, Copy, ValueEnum)]
enum Db {
    Sqlite,
    Postgres,
}

#[derive(Parser)]
struct Cli {
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Db,
    /// Requests per concurrency level.
    #[arg(long, default_value_t = 4_000)]
    requests: usize,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    concurrency: Vec<usize>,
    /// Users the requests are spread over.
    #[arg(long, default_value_t = 64)]
    users: usize,
    /// The core the server is pinned to (taskset); the client and the mock
    /// use the others.
    #[arg(long, default_value_t = 0)]
    server_core: usize,
    /// Run the openai plugin's calls inline on the server's workers
    /// (`inline_plugin_calls`) instead of on the blocking pool.
    #[arg(long)]
    inline_plugin_calls: bool,
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).context("stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after ")".
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).context("VmHWM")?;
    Ok(line.split_whitespace().nth(1).context("VmHWM value")?.parse()?)
}

fn token(sub: &str, role: &str) -> Result<String> {
    let claims = json!({"sub": sub, "org": "bench", "role": role, "exp": 4_000_000_000u64});
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )?)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("exe dir")?.to_owned();
    let server_bin = dir.join("creditgate");
    if !server_bin.is_file() {
        bail!(
            "{} is not built: run `cargo build --release --workspace` first",
            server_bin.display()
        );
    }

    // The mock provider: the recorded answer, at once.
    let mock = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mock_addr = mock.local_addr()?;
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|| async { ([("content-type", "application/json")], CHAT_RESPONSE) }),
    );
    tokio::spawn(async move { axum::serve(mock, app).await });

    let backend = match cli.backend {
        Db::Sqlite => Backend::Sqlite,
        Db::Postgres => Backend::Postgres,
    };
    let db = TestDb::new(backend).await?;
    let work = tempfile::tempdir()?;
    let key_file = work.path().join("openai-key");
    std::fs::write(&key_file, "sk-bench-platform-key-000000")?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let config = format!(
        "data_dir = {data:?}\ndatabase_url = {db:?}\ndatabase_max_connections = 16\nlisten = \"127.0.0.1:{port}\"\njwt_secret = {SECRET:?}\n\
         log_format = \"json\"\n[sweep]\ninterval_secs = 0\n[ai]\nrequests_per_minute = 0\n\
         [providers]\nplugin_dir = {plugins:?}\n[providers.providers.demo]\n[providers.providers.openai]\n\
         base_url = \"http://{mock_addr}/v1\"\napi_key_file = {key:?}\ninline_plugin_calls = {inline}\n",
        data = work.path().display().to_string(),
        db = db.url,
        plugins = dir.display().to_string(),
        key = key_file.display().to_string(),
        inline = cli.inline_plugin_calls,
    );
    let config_path: PathBuf = work.path().join("creditgate.toml");
    std::fs::write(&config_path, config)?;
    let child = Command::new("taskset")
        .arg("-c")
        .arg(cli.server_core.to_string())
        .arg(&server_bin)
        .arg("--config")
        .arg(&config_path)
        .arg("serve")
        .env("CREDITGATE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the server (taskset must be installed)")?;
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let pid = server.child.id();

    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    for _ in 0..200 {
        if http
            .get(format!("{}/readyz", server.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // taskset forks the server: its pid is the child's (exec).
    let users: Vec<String> = (0..cli.users)
        .map(|i| token(&format!("user-{i}"), "member"))
        .collect::<Result<_>>()?;
    let service = token("bench-service", "service")?;
    for (i, user) in users.iter().enumerate() {
        let q = json!({"query": format!(
            "mutation {{ me: grantCredits(userId: \"user-{i}\", amount: \"1000000\", reason: \"bench\", idempotencyKey: \"bench-{i}\") {{ id }} }}"
        )});
        // Create the user first (a grant needs an existing user).
        let me = json!({"query": "{ me { id } }"});
        http.post(format!("{}/graphql", server.url))
            .bearer_auth(user)
            .json(&me)
            .send()
            .await?;
        let r: serde_json::Value = http
            .post(format!("{}/graphql", server.url))
            .bearer_auth(&service)
            .json(&q)
            .send()
            .await?
            .json()
            .await?;
        if r.get("errors").is_some() {
            bail!("grant failed: {r}");
        }
    }
    let run = Arc::new(json!({
        "query": "mutation($i: AiRequestInput!) { runAi(input: $i) { creditsCharged } }",
        "variables": {"i": {"feature": "CHAT", "provider": "openai", "model": "gpt-4o-mini",
                             "messages": [{"role": "user", "content": "What is the capital of France?"}]}}
    }));
    let compat = Arc::new(json!({"model": "openai/gpt-4o-mini",
                                 "messages": [{"role": "user", "content": "What is the capital of France?"}]}));
    let direct = Arc::new(
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is the capital of France?"}], "max_completion_tokens": 1024}),
    );

    println!(
        "backend: {:?}; server pinned to core {}; mock and client on the other cores",
        backend, cli.server_core
    );
    // Warm up every path.
    through_gateway(&http, &server.url, &users, Door::RunAi, &run, 200, 8).await?;
    through_gateway(&http, &server.url, &users, Door::OpenAi, &compat, 200, 8).await?;
    for &c in &cli.concurrency {
        let (dr, _) = straight(&http, &format!("http://{mock_addr}"), &direct, cli.requests, c).await?;
        for (door, body) in [(Door::RunAi, &run), (Door::OpenAi, &compat)] {
            let cpu0 = proc_cpu_ticks(pid)?;
            let (gw, gw_elapsed) = through_gateway(&http, &server.url, &users, door, body, cli.requests, c).await?;
            let cpu1 = proc_cpu_ticks(pid)?;
            let ticks_per_sec = 100.0; // USER_HZ on Linux
            let cpu_ms_per_req = (cpu1 - cpu0) as f64 / ticks_per_sec * 1000.0 / cli.requests as f64;
            let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p) as f64 / 1000.0;
            println!(
                "concurrency {c:>3} {:<22}: p50 {:.3} ms p99 {:.3} ms | direct p50 {:.3} ms p99 {:.3} ms | added p50 {:.3} ms p99 {:.3} ms | {:.0} req/s | server CPU {:.3} ms/req",
                door.name(),
                q(&gw, 0.5),
                q(&gw, 0.99),
                q(&dr, 0.5),
                q(&dr, 0.99),
                q(&gw, 0.5) - q(&dr, 0.5),
                q(&gw, 0.99) - q(&dr, 0.99),
                cli.requests as f64 / gw_elapsed.as_secs_f64(),
                cpu_ms_per_req,
            );
            println!(
                "{:>39}: p90 {:.3} ms p95 {:.3} ms p99.9 {:.3} ms max {:.3} ms",
                "tail",
                q(&gw, 0.9),
                q(&gw, 0.95),
                q(&gw, 0.999),
                gw.max() as f64 / 1000.0,
            );
        }
    }
    println!("server peak RSS: {:.1} MiB", peak_rss_kib(pid)? as f64 / 1024.0);
    drop(server);
    Ok(())
}

/// The way in: GraphQL's runAi, or the OpenAI-compatible endpoint.
#[derive(Clone, Copy)]
enum Door {
    RunAi,
    OpenAi,
}

impl Door {
    fn name(self) -> &'static str {
        match self {
            Door::RunAi => "runAi",
            Door::OpenAi => "/v1/chat/completions",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Door::RunAi => "/graphql",
            Door::OpenAi => "/v1/chat/completions",
        }
    }

    /// Whether an answer is a success.
    fn succeeded(self, status: reqwest::StatusCode, r: &serde_json::Value) -> bool {
        match self {
            Door::RunAi => status.is_success() && r.get("errors").is_none(),
            Door::OpenAi => status.is_success() && r["choices"][0]["message"]["content"].is_string(),
        }
    }
}

async fn through_gateway(
    http: &reqwest::Client,
    url: &str,
    users: &[String],
    door: Door,
    body: &Arc<serde_json::Value>,
    n: usize,
    c: usize,
) -> Result<(Histogram<u64>, Duration)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..c {
        let http = http.clone();
        let url = format!("{url}{}", door.path());
        let user = users[t % users.len()].clone();
        let body = body.clone();
        let per = n / c;
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3)?;
            for _ in 0..per {
                let t0 = Instant::now();
                let resp = http.post(&url).bearer_auth(&user).json(&*body).send().await?;
                let status = resp.status();
                let r: serde_json::Value = resp.json().await?;
                if !door.succeeded(status, &r) {
                    bail!("{} failed: {status} {r}", door.name());
                }
                h.record(t0.elapsed().as_micros() as u64)?;
            }
            Ok::<_, anyhow::Error>(h)
        }));
    }
    let mut all = Histogram::<u64>::new(3)?;
    for t in tasks {
        all.add(t.await??)?;
    }
    Ok((all, started.elapsed()))
}

async fn straight(
    http: &reqwest::Client,
    base: &str,
    body: &Arc<serde_json::Value>,
    n: usize,
    c: usize,
) -> Result<(Histogram<u64>, Duration)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..c {
        let http = http.clone();
        let url = format!("{base}/v1/chat/completions");
        let body = body.clone();
        let per = n / c;
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3)?;
            for _ in 0..per {
                let t0 = Instant::now();
                let r = http.post(&url).bearer_auth("sk-direct").json(&*body).send().await?;
                r.bytes().await?;
                h.record(t0.elapsed().as_micros() as u64)?;
            }
            Ok::<_, anyhow::Error>(h)
        }));
    }
    let mut all = Histogram::<u64>::new(3)?;
    for t in tasks {
        all.add(t.await??)?;
    }
    Ok((all, started.elapsed()))
}
