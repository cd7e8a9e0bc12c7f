//! Provider responses through the plugin host: the openai and anthropic
//! plugins, loaded from their built shared libraries with
//! `creditgate_plugin_host::load_file`, called through the C ABI.
//!
//! Input: one selector byte, then a provider body. Bit 0 picks the plugin
//! (openai, anthropic); bits 1-2 the entry point:
//! * 0: `parse_chat_response(body)`;
//! * 1: `parse_stream_event` of one event: its name is the first line
//!   (none when empty), its data the rest;
//! * 2: the body framed as a Server-Sent Events stream by the SDK's
//!   `SseParser` (as the host frames a stream), each event parsed;
//! * 3: `classify_error(status, body)`, the status from the next two bytes.
//!
//! Oracles: no panic, abort or stack overflow on either side of the
//! boundary; the plugin never panics (a caught panic comes back as an error
//! of kind `Panic`, a plugin bug); classifying never fails (the `Provider`
//! contract).

use std::sync::OnceLock;

use creditgate_plugin_host::{LoadedPlugin, is_panic, load_file};
use creditgate_provider_sdk::sse::SseParser;
use creditgate_provider_sdk::{PluginError, Provider, SseEvent};

use crate::support;

fn setup() -> &'static [LoadedPlugin; 2] {
    static PLUGINS: OnceLock<[LoadedPlugin; 2]> = OnceLock::new();
    PLUGINS.get_or_init(|| {
        let dir = support::plugin_dir();
        ["openai", "anthropic"].map(|id| {
            let file = format!(
                "{}creditgate_plugin_{id}{}",
                std::env::consts::DLL_PREFIX,
                std::env::consts::DLL_SUFFIX
            );
            load_file(&dir.join(file), id, None).unwrap_or_else(|e| panic!("loading the {id} plugin: {e}"))
        })
    })
}

fn no_panic<T>(outcome: &Result<T, PluginError>, what: &str) {
    if let Err(e) = outcome {
        assert!(!is_panic(e), "the plugin panicked in {what}: {e}");
    }
}

pub fn target(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let plugin = &setup()[usize::from(selector & 1)];
    match (selector >> 1) & 3 {
        0 => {
            let body = String::from_utf8_lossy(rest);
            no_panic(&plugin.parse_chat_response(&body), "parse_chat_response");
        }
        1 => {
            let at = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let name = String::from_utf8_lossy(&rest[..at]).into_owned();
            let event = SseEvent {
                event: (!name.is_empty()).then_some(name),
                data: String::from_utf8_lossy(rest.get(at + 1..).unwrap_or_default()).into_owned(),
            };
            no_panic(&plugin.parse_stream_event(&event), "parse_stream_event");
        }
        2 => {
            let mut parser = SseParser::new();
            let mut events = parser.push(rest).unwrap_or_default();
            events.extend(parser.push(b"\n\n").unwrap_or_default());
            for event in &events {
                no_panic(&plugin.parse_stream_event(event), "parse_stream_event");
            }
        }
        _ => {
            let Some((status, body)) = rest.split_first_chunk::<2>() else {
                return;
            };
            let status = u16::from_be_bytes(*status);
            let body = String::from_utf8_lossy(body);
            let classified = plugin.try_classify_error(status, &body);
            assert!(
                classified.is_ok(),
                "classify_error({status}) failed, which the Provider contract forbids: {classified:?}"
            );
        }
    }
}
