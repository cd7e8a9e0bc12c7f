//! Test fixture: the handshake of a plugin built with `panic = "abort"`
//! (current ABI and protocol, the unwind flag clear). A workspace cannot
//! build one member with `panic = "abort"`, so the handshake is written out
//! as the SDK's export macro would write it under that setting. The host
//! must refuse it before calling it. Not named `creditgate_plugin_*`.

// Exporting an unmangled symbol is `unsafe` by nature; this fixture has no
// other unsafe code.
#![allow(unsafe_code)]

use creditgate_provider_sdk::abi::{self, PluginBuffer, PluginHandshake};

extern "C" fn call(_op: u32, _input: *const u8, _len: usize, _output: *mut PluginBuffer) -> u32 {
    abi::status::UNKNOWN_OP
}

extern "C" fn free(_buffer: PluginBuffer) {}

static HANDSHAKE: PluginHandshake = PluginHandshake {
    abi_version: abi::ABI_VERSION,
    protocol_major: creditgate_provider_sdk::PROTOCOL_MAJOR,
    protocol_minor: creditgate_provider_sdk::PROTOCOL_MINOR,
    // What `export_provider!` sets when built with panic = "abort".
    flags: 0,
    call,
    free,
};

/// The handshake symbol.
#[unsafe(no_mangle)]
pub extern "C" fn creditgate_plugin_handshake() -> *const PluginHandshake {
    &HANDSHAKE
}
