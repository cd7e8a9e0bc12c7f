//! Replaying the committed inputs: every file of `fuzz/corpus/<target>/`
//! and `fuzz/regressions/<target>/` through its target, so that plain
//! `cargo test` keeps checking what fuzzing found.

use std::path::{Path, PathBuf};

/// The `fuzz/` folder of the workspace.
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The target called `name` (its `fuzz/corpus/<name>` folder).
pub fn target(name: &str) -> crate::Target {
    crate::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no fuzz target named {name}"))
}

/// Runs every file of `fuzz/<folder>/<name>/` through target `name`;
/// panics naming each file that broke an oracle. Returns how many ran.
/// Each file's name is printed before it runs: an abort (which no test
/// can catch) is then traceable to its input.
pub fn replay(folder: &str, name: &str) -> usize {
    let run = target(name);
    let dir = fuzz_dir().join(folder).join(name);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect(),
        Err(e) => panic!("cannot read {}: {e}", dir.display()),
    };
    files.sort();
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        eprintln!("replaying {}", file.display());
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} input(s) broke an oracle of `{name}`: {failed:#?}",
        failed.len()
    );
    files.len()
}
