//! Finding the built plugin libraries for tests.
//!
//! Tests never build libraries themselves: `cargo build` of the workspace (or
//! `cargo build -p creditgate-plugin-openai -p creditgate-plugin-anthropic
//! -p creditgate-plugin-demo -p creditgate-testlib-faulty
//! -p creditgate-testlib-wrong-abi -p creditgate-testlib-no-handshake
//! -p creditgate-example-minimal-plugin`) with
//! the same profile and target directory must have run first. A missing
//! library fails the test with that instruction.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The profile directory (`target/debug`) of the running test binary.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_owned()
}

/// The platform file name of library `name` (`libNAME.so` on Linux).
pub fn lib_file(name: &str) -> String {
    format!("{}{name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
}

/// The built library of crate `lib_name` (e.g. `creditgate_plugin_demo`).
pub fn built(lib_name: &str) -> PathBuf {
    let path = profile_dir().join(lib_file(lib_name));
    assert!(
        path.is_file(),
        "{} is missing: build the plugins first with `cargo build` of the workspace \
         (same profile and target dir as the tests)",
        path.display()
    );
    path
}

/// Copies a built library into `dir` under the file name for `file_lib_name`.
pub fn install(dir: &Path, lib_name: &str, file_lib_name: &str) -> PathBuf {
    let target = dir.join(lib_file(file_lib_name));
    std::fs::copy(built(lib_name), &target).expect("copy plugin");
    target
}

/// A temporary plugin folder holding the three in-tree plugins.
pub fn folder_with_in_tree_plugins() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for id in ["openai", "anthropic", "demo"] {
        let lib = format!("creditgate_plugin_{id}");
        install(dir.path(), &lib, &lib);
    }
    dir
}
