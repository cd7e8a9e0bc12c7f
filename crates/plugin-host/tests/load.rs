#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

#[path = "../../../plugins/anthropic/tests/cases/mod.rs"]
mod anthropic_cases;
#[path = "../../../plugins/demo/tests/cases/mod.rs"]
mod demo_cases;
#[path = "../../../plugins/openai/tests/cases/mod.rs"]
mod openai_cases;

use std::collections::HashMap;

use creditgate_plugin_host::{HostConfig, HostError, LoadError, file_sha256, load_dir};
use creditgate_provider_sdk::{
    ChatRequest, ErrorClass, Message, PluginErrorKind, Provider, RequestContext, SseEvent, abi::ABI_VERSION,
};

fn config(dir: &std::path::Path) -> HostConfig {
    HostConfig {
        dir: dir.to_owned(),
        sha256: HashMap::new(),
    }
}

#[test]
fn loads_the_three_in_tree_plugins_and_each_passes_the_conformance_kit_through_the_abi() {
    let dir = common::folder_with_in_tree_plugins();
    let report = load_dir(&config(dir.path())).unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let mut ids: Vec<_> = report.plugins.iter().map(|p| p.manifest_ref().id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["anthropic", "demo", "openai"]);
    for plugin in &report.plugins {
        let provider: &dyn Provider = plugin.as_ref();
        let kit = match plugin.manifest_ref().id.as_str() {
            "openai" => openai_cases::kit(provider),
            "anthropic" => anthropic_cases::kit(provider),
            "demo" => demo_cases::kit(provider),
            other => panic!("unexpected plugin {other}"),
        };
        let report = kit
            .run()
            .into_result()
            .unwrap_or_else(|e| panic!("{}: {e}", plugin.manifest_ref().id));
        assert!(report.passed.len() >= 8);
    }
}

#[test]
fn libraries_not_named_like_plugins_are_not_opened() {
    let dir = common::folder_with_in_tree_plugins();
    common::install(dir.path(), "creditgate_testlib_faulty", "creditgate_testlib_faulty");
    common::install(dir.path(), "creditgate_testlib_no_handshake", "something_else");
    std::fs::write(dir.path().join("README.txt"), "not a library").unwrap();
    let report = load_dir(&config(dir.path())).unwrap();
    assert_eq!(report.plugins.len(), 3);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    // Reported, not silently skipped (the README is not a library).
    let ignored: Vec<_> = report
        .ignored
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        ignored,
        [
            common::lib_file("creditgate_testlib_faulty"),
            common::lib_file("something_else")
        ]
    );
}

#[test]
fn a_library_without_the_handshake_symbol_is_skipped_and_the_others_load() {
    let dir = common::folder_with_in_tree_plugins();
    common::install(
        dir.path(),
        "creditgate_testlib_no_handshake",
        "creditgate_plugin_nohandshake",
    );
    let report = load_dir(&config(dir.path())).unwrap();
    assert_eq!(report.plugins.len(), 3);
    assert_eq!(report.skipped.len(), 1);
    let (path, err) = &report.skipped[0];
    assert!(matches!(err, LoadError::NoHandshake { .. }), "{err}");
    assert!(path.ends_with(common::lib_file("creditgate_plugin_nohandshake")));
    assert!(err.to_string().contains("creditgate_plugin_handshake"));
}

#[test]
fn a_plugin_built_for_another_abi_version_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    common::install(dir.path(), "creditgate_testlib_wrong_abi", "creditgate_plugin_future");
    let report = load_dir(&config(dir.path())).unwrap();
    assert!(report.plugins.is_empty());
    let (_, err) = &report.skipped[0];
    let text = err.to_string();
    assert!(matches!(err, LoadError::Version { .. }), "{text}");
    assert!(text.contains("ABI version 999"), "{text}");
    assert!(text.contains(&format!("ABI version {ABI_VERSION}")), "{text}");
}

#[test]
fn sha256_pins_are_checked_before_opening() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::install(dir.path(), "creditgate_plugin_demo", "creditgate_plugin_demo");
    let mut cfg = config(dir.path());
    cfg.sha256.insert("demo".into(), "00".repeat(32));
    let report = load_dir(&cfg).unwrap();
    assert!(report.plugins.is_empty());
    let (_, err) = &report.skipped[0];
    assert!(matches!(err, LoadError::Sha256Mismatch { .. }), "{err}");
    assert!(err.to_string().contains(&"00".repeat(32)));

    let actual = file_sha256(&path).unwrap();
    cfg.sha256.insert("demo".into(), actual.to_uppercase());
    let report = load_dir(&cfg).unwrap();
    assert_eq!(report.plugins.len(), 1, "{:?}", report.skipped);
    assert_eq!(report.plugins[0].sha256(), actual);
}

#[test]
fn two_plugins_with_one_id_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    common::install(dir.path(), "creditgate_plugin_demo", "creditgate_plugin_demo");
    std::fs::copy(
        common::built("creditgate_plugin_demo"),
        dir.path()
            .join(format!("creditgate_plugin_demo{}", std::env::consts::DLL_SUFFIX)),
    )
    .unwrap();
    let err = load_dir(&config(dir.path())).unwrap_err();
    assert!(
        matches!(&err, HostError::DuplicateId { id, .. } if id == "demo"),
        "{err}"
    );
}

#[test]
fn a_manifest_id_that_differs_from_the_file_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    common::install(dir.path(), "creditgate_plugin_demo", "creditgate_plugin_openai");
    let report = load_dir(&config(dir.path())).unwrap();
    assert!(report.plugins.is_empty());
    assert!(matches!(report.skipped[0].1, LoadError::IdMismatch { .. }));
}

#[test]
fn a_missing_folder_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_dir(&config(&dir.path().join("nope"))).unwrap_err();
    assert!(matches!(err, HostError::ReadDir { .. }));
}

#[test]
fn a_plugin_that_panics_in_every_call_is_reported_and_the_host_survives() {
    let dir = tempfile::tempdir().unwrap();
    common::install(dir.path(), "creditgate_testlib_faulty", "creditgate_plugin_faulty");
    let report = load_dir(&config(dir.path())).unwrap();
    assert_eq!(report.plugins.len(), 1, "{:?}", report.skipped);
    let plugin = &report.plugins[0];
    let request = ChatRequest {
        model: "panic".into(),
        messages: vec![Message::user("hi")],
        max_output_tokens: 10,
        stream: false,
    };
    let ctx = RequestContext::new("https://api.faulty.invalid/v1");
    for _ in 0..3 {
        let err = plugin.build_chat_request(&ctx, &request).unwrap_err();
        assert_eq!(err.kind, PluginErrorKind::Panic, "{err}");
        assert!(err.message.contains("panics while building"), "{err}");
        let err = plugin.parse_chat_response("{}").unwrap_err();
        assert_eq!(err.kind, PluginErrorKind::Panic);
        let err = plugin
            .parse_stream_event(&SseEvent {
                event: None,
                data: "{}".into(),
            })
            .unwrap_err();
        assert_eq!(err.kind, PluginErrorKind::Panic);
        let err = plugin.build_validate_key_request(&ctx).unwrap_err();
        assert_eq!(err.kind, PluginErrorKind::Panic);
        let err = plugin.try_classify_error(500, "").unwrap_err();
        assert_eq!(err.kind, PluginErrorKind::Panic);
        let classified = plugin.classify_error(500, "");
        assert_eq!(classified.class, ErrorClass::Other);
        assert!(classified.message.contains("panicked"));
    }
}

#[test]
fn the_documented_example_installs_under_its_plugin_name() {
    let dir = tempfile::tempdir().unwrap();
    common::install(dir.path(), "creditgate_example_minimal", "creditgate_plugin_echo");
    let report = load_dir(&config(dir.path())).unwrap();
    assert_eq!(report.plugins.len(), 1, "{:?}", report.skipped);
    assert_eq!(report.plugins[0].manifest_ref().id, "echo");
}
