//! The packaging kit loads the real built library through the real host
//! and refuses each packaging mistake with a list of what is wrong and how
//! to fix it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

#[path = "../../../plugins/openai/tests/cases/mod.rs"]
mod openai_cases;

use creditgate_plugin_host::kit::{check_library, load_built};
use creditgate_provider_sdk::Provider;

/// The failure's text, which must list each problem with a fix.
fn refused(path: &std::path::Path) -> String {
    let failure = check_library(path).expect_err("the kit accepted a badly packaged plugin");
    let text = format!("{failure:?}");
    assert!(text.contains("  1. ") && text.contains("     fix: "), "{text}");
    assert_eq!(text.matches("fix: ").count(), failure.problems.len(), "{text}");
    text
}

#[test]
fn a_well_packaged_plugin_loads_and_conforms_through_the_host() {
    let dir = env!("CARGO_MANIFEST_DIR").to_owned() + "/../../plugins/openai";
    let plugin = load_built(&dir).unwrap();
    assert_eq!(plugin.manifest_ref().id, "openai");
    let provider: &dyn Provider = &plugin;
    openai_cases::kit(provider).run().into_result().unwrap();
}

#[test]
fn a_handshake_for_another_abi_or_protocol_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::install(dir.path(), "creditgate_testlib_wrong_abi", "creditgate_plugin_future");
    let text = refused(&path);
    assert!(
        text.contains("wrong handshake") && text.contains("ABI version 999"),
        "{text}"
    );
    assert!(text.contains("export_provider!"), "{text}");
}

#[test]
fn panic_abort_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::install(dir.path(), "creditgate_testlib_panic_abort", "creditgate_plugin_aborts");
    let text = refused(&path);
    assert!(text.contains("panic = \"abort\""), "{text}");
    assert!(text.contains("remove `panic = \"abort\"`"), "{text}");
}

#[test]
fn a_missing_export_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::install(dir.path(), "creditgate_testlib_no_handshake", "creditgate_plugin_empty");
    let text = refused(&path);
    assert!(text.contains("missing export"), "{text}");
    assert!(text.contains("export_provider!(YourProvider)"), "{text}");
}

#[test]
fn a_wrong_file_name_is_refused_with_the_right_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::install(dir.path(), "creditgate_plugin_openai", "openai_plugin");
    let text = refused(&path);
    assert!(text.contains("ignores others"), "{text}");
    assert!(text.contains("creditgate-plugin-openai"), "{text}");
    let path = common::install(dir.path(), "creditgate_plugin_openai", "creditgate_plugin_mistral");
    let text = refused(&path);
    assert!(text.contains("\"mistral\"") && text.contains("\"openai\""), "{text}");
    assert!(text.contains(&common::lib_file("creditgate_plugin_openai")), "{text}");
}

#[test]
fn a_crate_that_is_not_a_cdylib_or_aborts_is_refused_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"creditgate-plugin-echo\"\nversion = \"0.1.0\"\n\n[profile.release]\npanic = \"abort\"\n",
    )
    .unwrap();
    let failure = load_built(dir.path()).unwrap_err();
    let text = failure.to_string();
    assert_eq!(failure.problems.len(), 2, "{text}");
    assert!(
        text.contains("crate-type = [\\\"cdylib\\\", \\\"rlib\\\"]")
            || text.contains("crate-type = [\"cdylib\", \"rlib\"]"),
        "{text}"
    );
    assert!(text.contains("[profile.release]"), "{text}");
}
