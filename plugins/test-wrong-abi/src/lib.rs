//! Test fixture: a library whose handshake claims plugin ABI version 999.
//! The host must read only the first field (the ABI version, first in every
//! ABI version) and refuse it. Not named `creditgate_plugin_*`, so a normal
//! plugin folder never loads it.

// Exporting an unmangled symbol is `unsafe` by nature; this fixture has no
// other unsafe code.
#![allow(unsafe_code)]

/// Pretends to be a future ABI's handshake.
#[repr(C)]
pub struct FutureHandshake {
    /// The ABI version.
    pub abi_version: u32,
    /// Whatever a future ABI puts here.
    pub rest: [u32; 7],
}

static HANDSHAKE: FutureHandshake = FutureHandshake {
    abi_version: 999,
    rest: [0; 7],
};

/// The handshake symbol, with the future ABI version.
#[unsafe(no_mangle)]
pub extern "C" fn creditgate_plugin_handshake() -> *const FutureHandshake {
    &HANDSHAKE
}
