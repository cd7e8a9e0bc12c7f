//! The C ABI between the host and a plugin library.
//!
//! A plugin exports one symbol, [`HANDSHAKE_SYMBOL`], a function returning a
//! pointer to a static [`PluginHandshake`]. Its first field is the ABI
//! version, in this and every later ABI version, so the host can refuse a
//! plugin built for another ABI before reading anything else. The rest gives
//! the plugin protocol version and two functions:
//!
//! * `call(op, input, input_len, output) -> status`: `input` is JSON owned by
//!   the host and borrowed for the call; `output` receives a buffer allocated
//!   by the plugin (JSON on success or error, UTF-8 text after a panic);
//! * `free(buffer)`: gives that buffer back to the plugin's allocator.
//!
//! Everything else is JSON ([`crate::protocol`]), so adding an operation or a
//! field does not change the ABI. The ABI version changes only when this
//! module's `repr(C)` types or function signatures change; the protocol major
//! version changes when a JSON shape changes incompatibly.
//!
//! This is the only module of the SDK with `unsafe` code: reading the host's
//! input slice, writing the output buffer and freeing it. Plugin authors never
//! touch it; [`crate::export_provider!`] wires it up.

#![allow(unsafe_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::Provider;

/// The C ABI version built into this SDK.
pub const ABI_VERSION: u32 = 1;

/// The name of the exported handshake function, NUL-terminated for lookup.
pub const HANDSHAKE_SYMBOL: &[u8] = b"creditgate_plugin_handshake\0";

/// [`PluginHandshake::flags`] bit: the plugin unwinds on panic, so the
/// boundary can catch panics. The host refuses plugins built with
/// `panic = "abort"`, whose panics would abort the server.
pub const FLAG_PANIC_UNWIND: u32 = 1;

/// A byte buffer allocated by the plugin and freed by its `free` function.
#[repr(C)]
#[derive(Debug)]
pub struct PluginBuffer {
    /// Start of the bytes (null when empty and never allocated).
    pub ptr: *mut u8,
    /// Number of bytes.
    pub len: usize,
    /// Allocated capacity (needed to free it).
    pub cap: usize,
}

impl PluginBuffer {
    /// An empty buffer that owns nothing.
    pub const fn empty() -> Self {
        Self {
            ptr: std::ptr::null_mut(),
            len: 0,
            cap: 0,
        }
    }

    fn from_vec(bytes: Vec<u8>) -> Self {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        Self {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            cap: bytes.capacity(),
        }
    }
}

/// `call(op, input, input_len, output) -> status`.
pub type CallFn = unsafe extern "C" fn(op: u32, input: *const u8, input_len: usize, output: *mut PluginBuffer) -> u32;

/// `free(buffer)`.
pub type FreeFn = unsafe extern "C" fn(buffer: PluginBuffer);

/// The handshake function's type.
pub type HandshakeFn = unsafe extern "C" fn() -> *const PluginHandshake;

/// What the handshake function points to (a static in the plugin).
#[repr(C)]
#[derive(Debug)]
pub struct PluginHandshake {
    /// The ABI version; the first field in every ABI version.
    pub abi_version: u32,
    /// The plugin protocol's major version.
    pub protocol_major: u32,
    /// The plugin protocol's minor version.
    pub protocol_minor: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Runs one operation.
    pub call: CallFn,
    /// Frees a buffer returned by `call`.
    pub free: FreeFn,
}

/// Operation codes for `call`.
pub mod op {
    /// `()` -> `Manifest`
    pub const MANIFEST: u32 = 1;
    /// `BuildChatInput` -> `HttpRequest`
    pub const BUILD_CHAT_REQUEST: u32 = 2;
    /// `ParseChatInput` -> `ChatResponse`
    pub const PARSE_CHAT_RESPONSE: u32 = 3;
    /// `ClassifyInput` -> `ClassifiedError`
    pub const CLASSIFY_ERROR: u32 = 4;
    /// `SseEvent` -> `Vec<StreamEvent>`
    pub const PARSE_STREAM_EVENT: u32 = 5;
    /// `ValidateKeyInput` -> `HttpRequest`
    pub const BUILD_VALIDATE_KEY_REQUEST: u32 = 6;
    /// `HttpRequest` -> `OfflineResponse`
    pub const OFFLINE_EXCHANGE: u32 = 7;
}

/// Status codes returned by `call`.
pub mod status {
    /// The output is the operation's JSON result.
    pub const OK: u32 = 0;
    /// The output is a JSON `PluginError`.
    pub const ERROR: u32 = 1;
    /// The plugin panicked; the output is the panic message (UTF-8).
    pub const PANIC: u32 = 2;
    /// The operation code is unknown to this plugin.
    pub const UNKNOWN_OP: u32 = 3;
}

/// Parses `"MAJOR.MINOR"`.
pub fn parse_protocol_version(version: &str) -> Option<(u32, u32)> {
    let (major, minor) = version.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// A plugin built for an incompatible ABI or protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionMismatch {
    /// Another C ABI version.
    #[error(
        "plugin was built for plugin ABI version {plugin}, but this host supports ABI version {host}; rebuild the plugin with a matching creditgate-provider-sdk"
    )]
    Abi {
        /// The plugin's ABI version.
        plugin: u32,
        /// The host's ABI version.
        host: u32,
    },
    /// Another protocol major version.
    #[error(
        "plugin speaks plugin protocol {plugin_major}.{plugin_minor}, but this host speaks protocol {host_major}.{host_minor} (major versions differ); rebuild the plugin with a matching creditgate-provider-sdk"
    )]
    Protocol {
        /// The plugin's major version.
        plugin_major: u32,
        /// The plugin's minor version.
        plugin_minor: u32,
        /// The host's major version.
        host_major: u32,
        /// The host's minor version.
        host_minor: u32,
    },
}

/// Checks a plugin's handshake versions against this SDK's: the ABI version
/// must be equal and the protocol major version must be equal (minor versions
/// only add optional fields, so any minor is accepted).
pub fn check_versions(abi_version: u32, protocol_major: u32, protocol_minor: u32) -> Result<(), VersionMismatch> {
    if abi_version != ABI_VERSION {
        return Err(VersionMismatch::Abi {
            plugin: abi_version,
            host: ABI_VERSION,
        });
    }
    if protocol_major != crate::PROTOCOL_MAJOR {
        return Err(VersionMismatch::Protocol {
            plugin_major: protocol_major,
            plugin_minor: protocol_minor,
            host_major: crate::PROTOCOL_MAJOR,
            host_minor: crate::PROTOCOL_MINOR,
        });
    }
    Ok(())
}

/// Frees a buffer returned by [`dispatch`]; exported to the host through the
/// handshake as the plugin's `free`.
///
/// # Safety
/// `buffer` must come from this plugin's `call` and be freed only once.
pub unsafe extern "C" fn free_buffer(buffer: PluginBuffer) {
    if !buffer.ptr.is_null() {
        // SAFETY: the buffer was made by `PluginBuffer::from_vec` in this
        // library (same allocator) and is freed once, per the contract.
        drop(unsafe { Vec::from_raw_parts(buffer.ptr, buffer.len, buffer.cap) });
    }
}

/// Runs one operation for the exported `call`: reads the input, runs the
/// provider with panics caught, and writes the plugin-allocated output.
///
/// # Safety
/// `input` must point to `input_len` readable bytes (or be null with
/// `input_len == 0`) for the duration of the call, and `output` must be valid
/// for writing one [`PluginBuffer`].
pub unsafe fn dispatch(
    provider: fn() -> &'static dyn Provider,
    op: u32,
    input: *const u8,
    input_len: usize,
    output: *mut PluginBuffer,
) -> u32 {
    if output.is_null() {
        return status::ERROR;
    }
    let input: &[u8] = if input_len == 0 || input.is_null() {
        &[]
    } else {
        // SAFETY: the caller guarantees `input_len` readable bytes.
        unsafe { std::slice::from_raw_parts(input, input_len) }
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| crate::protocol::handle_op(provider(), op, input)));
    let (code, bytes) = match outcome {
        Ok(result) => result,
        Err(payload) => {
            let message = crate::protocol::panic_message(payload.as_ref());
            // Dropping a payload may itself panic; never let that unwind out.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            (status::PANIC, message.into_bytes())
        }
    };
    // SAFETY: the caller guarantees `output` is writable.
    unsafe { output.write(PluginBuffer::from_vec(bytes)) };
    code
}

/// Exports a [`Provider`] through the C ABI.
///
/// ```ignore
/// creditgate_provider_sdk::export_provider!(MyProvider::default());
/// ```
///
/// The expression is evaluated once, lazily, on the first call (inside the
/// panic boundary). The macro generates the `creditgate_plugin_handshake`
/// symbol and the `call` function; those two items carry
/// `#[allow(unsafe_code)]` because exporting an unmangled symbol and an
/// `unsafe extern "C"` function is `unsafe` by nature. All pointer handling is
/// in [`dispatch`] and [`free_buffer`].
#[macro_export]
macro_rules! export_provider {
    ($provider:expr) => {
        #[doc(hidden)]
        fn __creditgate_provider() -> &'static dyn $crate::Provider {
            static PROVIDER: ::std::sync::OnceLock<::std::boxed::Box<dyn $crate::Provider>> =
                ::std::sync::OnceLock::new();
            PROVIDER
                .get_or_init(|| ::std::boxed::Box::new($provider))
                .as_ref()
        }

        #[doc(hidden)]
        #[allow(unsafe_code)]
        unsafe extern "C" fn __creditgate_call(
            op: u32,
            input: *const u8,
            input_len: usize,
            output: *mut $crate::abi::PluginBuffer,
        ) -> u32 {
            // SAFETY: the host upholds `dispatch`'s contract (see the SDK docs).
            unsafe { $crate::abi::dispatch(__creditgate_provider, op, input, input_len, output) }
        }

        #[doc(hidden)]
        static __CREDITGATE_HANDSHAKE: $crate::abi::PluginHandshake = $crate::abi::PluginHandshake {
            abi_version: $crate::abi::ABI_VERSION,
            protocol_major: $crate::PROTOCOL_MAJOR,
            protocol_minor: $crate::PROTOCOL_MINOR,
            flags: if cfg!(panic = "unwind") {
                $crate::abi::FLAG_PANIC_UNWIND
            } else {
                0
            },
            call: __creditgate_call,
            free: $crate::abi::free_buffer,
        };

        /// The plugin handshake (see `creditgate_provider_sdk::abi`).
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn creditgate_plugin_handshake() -> *const $crate::abi::PluginHandshake {
            &__CREDITGATE_HANDSHAKE
        }
    };
}
