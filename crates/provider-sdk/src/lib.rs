//! # creditgate provider SDK
//!
//! The one crate a creditgate provider plugin depends on. A plugin is a
//! `cdylib` that translates between creditgate's normalized chat types and one
//! provider's wire format; the creditgate host does all network I/O.
//!
//! * [`Provider`]: the safe trait a plugin implements;
//! * [`export_provider!`]: exports it through the C ABI ([`abi`]), catching
//!   panics at the boundary, with all memory allocated and freed on the
//!   plugin's side;
//! * the normalized types ([`ChatRequest`], [`HttpRequest`],
//!   [`ChatResponse`], [`StreamEvent`], [`ClassifiedError`], [`Manifest`]);
//! * helpers for what every provider with its own format repeats
//!   ([`ChatRequest::system_prompt`], [`ChatRequest::turns`],
//!   [`HttpRequest::post_json`], [`HttpRequest::key_header`],
//!   [`ClassifiedError::from_http`], [`StreamEvent::chunk`]...);
//! * [`sse`]: the SSE framing the host uses;
//! * `testkit` (feature `testkit`): the conformance checks every plugin runs.
//!
//! ## Versions
//! [`abi::ABI_VERSION`] is the C ABI (the `repr(C)` handshake and the two
//! function signatures). [`PROTOCOL_VERSION`] is the JSON protocol carried
//! over it. The host refuses a plugin built for another ABI version or
//! another protocol major version, with a message naming both versions.
//!
//! ## Keys
//! A plugin never sees a key. It writes [`KEY_PLACEHOLDER`] where its
//! manifest's [`KeyPlacement`] says; the host checks the placeholder is there
//! and nowhere else ([`check_key_placement`]) and swaps in the key.
//!
//! See `docs/writing-a-provider-plugin.md` in the creditgate repository for a
//! walk-through.

pub mod abi;
mod helpers;
mod key;
mod manifest;
pub mod protocol;
mod provider;
pub mod sse;
#[cfg(feature = "testkit")]
pub mod testkit;
mod types;

pub use helpers::{error_message, json_error_status, json_with_field};
pub use key::{KEY_PLACEHOLDER, check_key_placement};
pub use manifest::{
    KeyPlacement, Manifest, ModelInfo, StreamFraming, Transport, is_valid_host_name, is_valid_plugin_id,
};
pub use provider::Provider;
pub use types::{
    ChatRequest, ChatResponse, ClassifiedError, ErrorClass, HttpRequest, Message, Method, OfflineResponse, PluginError,
    PluginErrorKind, RequestContext, Role, SseEvent, StreamEvent, Usage, UsageUpdate,
};

/// The plugin protocol's major version.
pub const PROTOCOL_MAJOR: u32 = 1;
/// The plugin protocol's minor version.
///
/// * 1.1: [`Usage`] and [`UsageUpdate`] gain the optional cached-input,
///   cache-write and reasoning token counts.
pub const PROTOCOL_MINOR: u32 = 1;
/// `"MAJOR.MINOR"`.
pub const PROTOCOL_VERSION: &str = "1.1";
/// This SDK's version.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The library file name prefix every plugin carries (after the platform's
/// `lib` prefix): a package named `creditgate-plugin-<id>` produces it.
pub const PLUGIN_FILE_PREFIX: &str = "creditgate_plugin_";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_constants_agree() {
        assert_eq!(
            abi::parse_protocol_version(PROTOCOL_VERSION),
            Some((PROTOCOL_MAJOR, PROTOCOL_MINOR))
        );
    }

    #[test]
    fn version_mismatch_names_both_versions() {
        let abi = abi::check_versions(abi::ABI_VERSION + 1, PROTOCOL_MAJOR, 0).unwrap_err();
        let text = abi.to_string();
        assert!(
            text.contains(&format!("ABI version {}", abi::ABI_VERSION + 1)),
            "{text}"
        );
        assert!(text.contains(&format!("ABI version {}", abi::ABI_VERSION)), "{text}");
        let proto = abi::check_versions(abi::ABI_VERSION, PROTOCOL_MAJOR + 1, 3).unwrap_err();
        let text = proto.to_string();
        assert!(text.contains(&format!("protocol {}.3", PROTOCOL_MAJOR + 1)), "{text}");
        assert!(text.contains(&format!("protocol {PROTOCOL_VERSION}")), "{text}");
        assert!(abi::check_versions(abi::ABI_VERSION, PROTOCOL_MAJOR, 99).is_ok());
    }
}
