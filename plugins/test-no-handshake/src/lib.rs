//! Test fixture: a shared library that is not a creditgate plugin (it has no
//! `creditgate_plugin_handshake` symbol). Its file name does not start with
//! `creditgate_plugin_`, so a normal plugin folder never loads it; the host's
//! tests copy it under a plugin name to check that it is refused.

/// A harmless function so the library is not empty.
pub fn nothing() -> u32 {
    0
}
