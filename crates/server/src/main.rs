//! `creditgate`: the server binary.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use creditgate_domain::{Role, SystemClock};
use creditgate_server::{App, Authenticator, Config, TokenRequest};
use tokio_util::sync::CancellationToken;

/// mimalloc, not the system's allocator: a request allocates and frees
/// many small blocks across the runtime's tasks, and glibc's malloc and
/// free (with its consolidation of freed chunks) were about a tenth of the
/// server's CPU at concurrency 32 (see the README's benchmarks). With the
/// `malloc-override` feature (default) it is also the process's `malloc`
/// and `free`, which SQLite and the provider plugins call.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "creditgate",
    version,
    about = "AI credit wallet and bring-your-own-key gateway"
)]
struct Cli {
    /// A TOML configuration file (also CREDITGATE_CONFIG).
    #[arg(long, global = true, env = "CREDITGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run pending migrations, then serve (the default).
    Serve,
    /// Run pending migrations and exit.
    Migrate,
    /// Print a JWT signed with the configured HS256 secret, for development.
    Token {
        #[arg(long)]
        sub: String,
        #[arg(long)]
        org: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        team: Option<String>,
        #[arg(long)]
        org_name: Option<String>,
        /// Lifetime, e.g. 3600s, 90m, 12h, 7d.
        #[arg(long, default_value = "12h", value_parser = parse_ttl)]
        ttl: chrono::Duration,
    },
    /// Print the GraphQL SDL (schema.graphql is its output).
    ExportSchema,
    /// Check that every wallet's cached balances equal its journal and its holds.
    Reconcile,
    /// Re-encrypt every stored BYOK key to a new identity, losing none.
    RotateKey {
        /// Where to write the new identity when it comes from an environment
        /// variable (`ai.identity_env`); otherwise the identity file is
        /// updated in place.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not a role: member, admin or service"))
}

fn parse_ttl(s: &str) -> Result<chrono::Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 90m or 12h"))?;
    match unit {
        "" | "s" => Ok(chrono::Duration::seconds(n)),
        "m" => Ok(chrono::Duration::minutes(n)),
        "h" => Ok(chrono::Duration::hours(n)),
        "d" => Ok(chrono::Duration::days(n)),
        _ => Err(format!("`{s}` is not a duration such as 90m or 12h")),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::ExportSchema = command {
        // Needs no configuration.
        print!("{}", creditgate_graphql::sdl());
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref())?;
    // Kept for the life of the process: dropping it flushes the spans.
    let _traces = creditgate_server::telemetry::init(&config)?;
    match command {
        Command::ExportSchema => Ok(()),
        Command::Token {
            sub,
            org,
            role,
            name,
            email,
            team,
            org_name,
            ttl,
        } => {
            let auth = Authenticator::from_config(&config)?;
            let token = auth
                .issue(&TokenRequest {
                    sub,
                    org,
                    role,
                    name,
                    email,
                    team,
                    org_name,
                    ttl,
                })
                .context("signing the token")?;
            println!("{token}");
            Ok(())
        }
        Command::Migrate => {
            App::build(config, Arc::new(SystemClock)).await?;
            eprintln!("migrations are up to date");
            Ok(())
        }
        Command::Reconcile => {
            let app = App::build(config, Arc::new(SystemClock)).await?;
            let off = app.store.reconcile().await?;
            for d in &off {
                println!("{}: {}", d.user_id, d.problem);
            }
            if !off.is_empty() {
                bail!("{} wallet(s) do not reconcile", off.len());
            }
            eprintln!("every wallet reconciles");
            Ok(())
        }
        Command::RotateKey { out } => rotate_key(config, out).await,
        Command::Serve => serve(config).await,
    }
}

/// Rotation that loses nothing at any point: the identity file first holds
/// the new identity and the old one (both decrypt), every key is
/// re-encrypted to the new one in one transaction, then the old identity is
/// dropped from the file.
async fn rotate_key(config: Config, out: Option<PathBuf>) -> Result<()> {
    let (path, from_env) = match (&config.ai.identity_env, out) {
        (Some(_), Some(out)) => (out, true),
        (Some(var), None) => bail!("the identity comes from ${var}: give --out FILE for the new identity"),
        (None, _) => (creditgate_server::app::identity_path(&config)?, false),
    };
    let old = creditgate_server::app::vault(&config)?;
    let both = old.rotated();
    both.write_identity(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    let app = App::build(config, Arc::new(SystemClock)).await?;
    let stored = app.store.all_byok_ciphertexts().await?;
    let mut replacements = Vec::with_capacity(stored.len());
    for s in &stored {
        let key = both
            .decrypt(&s.ciphertext)
            .with_context(|| format!("decrypting the {} key of {}", s.provider, s.user_id))?;
        replacements.push((s.clone(), both.encrypt(&key)?));
    }
    let skipped = app.store.replace_byok_ciphertexts(&replacements).await?;
    if !skipped.is_empty() {
        bail!(
            "{} key(s) changed during the rotation; the identity file keeps both identities, run rotate-key again",
            skipped.len()
        );
    }
    both.current_only()
        .write_identity(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("re-encrypted {} key(s) to {}", stored.len(), both.recipient());
    if from_env {
        eprintln!(
            "the new identity is in {}; set it as the identity variable and restart",
            path.display()
        );
    }
    Ok(())
}

async fn serve(config: Config) -> Result<()> {
    let listen = config.listen;
    let app = App::build(config, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let cancel = CancellationToken::new();
    let sweeper = app.spawn_sweeper(cancel.clone());
    let webhooks = app.spawn_webhooks(cancel.clone());
    let metrics = match app.config.metrics.listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding metrics.listen {addr}"))?;
            tracing::info!(%addr, "serving metrics at http://{addr}/metrics");
            let (app, stop) = (app.clone(), cancel.clone());
            Some(tokio::spawn(async move {
                app.serve_metrics(listener, async move { stop.cancelled().await }).await
            }))
        }
        None => None,
    };
    tracing::info!(%listen, "creditgate is serving GraphQL at http://{listen}/graphql");
    let stop = cancel.clone();
    app.serve(listener, async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests in flight");
        stop.cancel();
    })
    .await?;
    cancel.cancel();
    let _ = sweeper.await;
    let _ = webhooks.await;
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
