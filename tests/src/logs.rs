//! Everything the servers of a test process log, captured by one global
//! subscriber (at `DEBUG`, without colours): for tests that prove what a
//! request's log lines carry, or that no secret is in any of them.
//!
//! One subscriber for the whole process, not one per test: `tracing` keeps,
//! per callsite, whether any subscriber wants it, and while a test's own
//! (thread-scoped) subscriber is the only one registered, a callsite first
//! reached on another test's thread (which has none) is kept as wanted by
//! nobody, for every thread: that test's lines then go missing whenever the
//! tests of its binary run in parallel.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// The buffer every server of this process logs into, installing the
/// subscriber on first use (call it before the servers start).
pub fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buf
    })
    .clone()
}

/// What the servers of this process have logged so far, as text.
pub fn logged() -> String {
    let logs = captured_logs();
    let bytes = logs.lock().unwrap_or_else(PoisonError::into_inner);
    String::from_utf8_lossy(&bytes).into_owned()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
