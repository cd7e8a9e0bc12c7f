//! What the targets set up once per process: a Tokio runtime shaped like
//! the server's, a data folder, the built plugins, a server.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use creditgate_domain::SystemClock;
use creditgate_server::{App, Config};

/// The HS256 secret of every app the targets build (a test value).
pub const JWT_SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret-0123";

/// Stripe's webhook signing secret of the webhook target (a test value).
pub const WEBHOOK_SECRET: &str = "whsec_fuzz_test_secret";

/// The server's runtime shape: `#[tokio::main]` is multi-threaded, and a
/// request runs on a worker thread with Tokio's default stack (2 MiB), so
/// a deep recursion overflows here where it would in production.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// Runs `fut` on a worker thread of the runtime; a panic in it is a panic
/// of the caller.
pub fn run<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = runtime();
    match rt.block_on(rt.spawn(fut)) {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("the task did not finish: {e}"),
    }
}

/// A fresh folder of this process under the system temp folder. Folders left
/// by processes that are gone (a fuzzer never drops its statics) are removed
/// first.
pub fn data_dir(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join("creditgate-fuzz");
    std::fs::create_dir_all(&root).expect("temp folder");
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let pid = file_name.to_str().and_then(|n| n.split('-').next()).map(str::to_owned);
            if let Some(pid) = pid
                && !Path::new("/proc").join(&pid).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = tempfile::Builder::new()
        .prefix(&format!("{}-{name}-", std::process::id()))
        .tempdir_in(&root)
        .expect("data folder");
    dir.keep()
}

/// The folder holding the built provider plugins: `CREDITGATE_FUZZ_PLUGIN_DIR`,
/// else the running executable's profile folder (`target/debug` for a test),
/// else the workspace's `target/debug` or `target/release`.
pub fn plugin_dir() -> PathBuf {
    let demo = format!(
        "{}creditgate_plugin_demo{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("CREDITGATE_FUZZ_PLUGIN_DIR") {
        candidates.push(dir.into());
    }
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().skip(1).take(2).map(Path::to_path_buf));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    candidates.push(workspace.join("target/debug"));
    candidates.push(workspace.join("target/release"));
    candidates
        .iter()
        .find(|dir| dir.join(&demo).is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no built plugins ({demo}) in {candidates:?}: run `cargo build -p creditgate-plugin-openai \
                 -p creditgate-plugin-anthropic -p creditgate-plugin-demo` (or set CREDITGATE_FUZZ_PLUGIN_DIR)"
            )
        })
}

/// Where the HTTP providers are sent: the discard port of this machine,
/// where nothing listens, so a request (a BYOK key check, a credit-paid
/// call to openai) fails at once and nothing leaves the machine.
const NOWHERE: &str = "http://127.0.0.1:9";

/// A server on an embedded SQLite database in a fresh folder, with the
/// built plugins and `extra` TOML configuration.
pub fn build_app(name: &str, extra: &str) -> App {
    let dir = data_dir(name);
    let toml = format!(
        "data_dir = {:?}\njwt_secret = {:?}\n[sweep]\ninterval_secs = 0\n[providers]\nplugin_dir = {:?}\n\
         [providers.providers.openai]\nbase_url = \"{NOWHERE}/v1\"\n\
         [providers.providers.anthropic]\nbase_url = \"{NOWHERE}\"\n{extra}",
        dir.display().to_string(),
        JWT_SECRET,
        plugin_dir().display().to_string(),
    );
    let config = Config::from_toml(&toml).expect("fuzz configuration");
    run(async move { App::build(config, Arc::new(SystemClock)).await }).expect("app")
}
