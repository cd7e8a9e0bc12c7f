//! # creditgate plugin host
//!
//! Loads provider plugins from one folder and exposes each as an ordinary
//! Rust [`Provider`]. This is the only crate of creditgate with `unsafe` code;
//! all of it is in this file, around `libloading` and the plugin's two C
//! functions.
//!
//! ## Decisions
//! * **Only the configured folder**, not recursively. A plugin file is named
//!   `creditgate_plugin_<id>` with the platform's library suffix, with or
//!   without the `lib` prefix (`libcreditgate_plugin_openai.so`,
//!   `creditgate_plugin_openai.dll`); a package named `creditgate-plugin-<id>`
//!   produces exactly that. Other libraries in the folder (the folder may be
//!   the executable's own) are never opened; they are listed in
//!   [`LoadReport::ignored`] and reported in one warning, so a plugin copied
//!   under a wrong name does not vanish silently.
//! * **The id comes from the file name** and the manifest must agree. This is
//!   what lets a configured SHA-256 for plugin `<id>` be checked *before* the
//!   library is opened, so pinned code never runs unless it matches.
//! * **Handshake**: the `creditgate_plugin_handshake` symbol must exist; the
//!   first field of what it returns is the ABI version, read before anything
//!   else; then the protocol major version; then the plugin must unwind on
//!   panic (a `panic = "abort"` plugin could abort the server). Every refusal
//!   names both versions.
//! * **Never unloads**: every opened library is leaked on purpose, even one
//!   that was refused after opening (its code may have registered thread-local
//!   destructors or other state; unloading Rust libraries is not sound in
//!   general).
//! * **One bad plugin is skipped** with a warning, and listed in
//!   [`LoadReport::skipped`] (the gateway then stops the start unless the
//!   operator marked it optional); two plugins with one id is an error
//!   ([`HostError::DuplicateId`]).
//! * **Panics** in a plugin are caught on its side of the boundary (the SDK's
//!   export macro) and surface as [`PluginErrorKind::Panic`] errors.
//! * Payloads are JSON allocated by the plugin and freed by the plugin's own
//!   `free` after the host copies them.
//!
//! Plugins are trusted native code: the folder must be writable only by the
//! operator. The SHA-256 check narrows what can be loaded, but a file swapped
//! between the check and the open (the folder being writable by an attacker)
//! is outside what it protects against.

#![allow(unsafe_code)]

pub mod kit;

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use creditgate_provider_sdk::abi::{
    self, CallFn, FLAG_PANIC_UNWIND, FreeFn, HandshakeFn, PluginBuffer, PluginHandshake, VersionMismatch, op,
};
use creditgate_provider_sdk::protocol::{self, BuildChatInput, ClassifyInput, ParseChatInput, ValidateKeyInput};
use creditgate_provider_sdk::{
    ChatRequest, ChatResponse, ClassifiedError, ErrorClass, HttpRequest, Manifest, OfflineResponse, PLUGIN_FILE_PREFIX,
    PluginError, PluginErrorKind, Provider, RequestContext, SseEvent, StreamEvent,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// Why one plugin file was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The configured SHA-256 is not valid hex.
    #[error("the configured SHA-256 for {path} is not 64 hex digits")]
    BadPin {
        /// The file.
        path: PathBuf,
    },
    /// The file's SHA-256 differs from the configured one; it was not opened.
    #[error("SHA-256 mismatch for {path}: configured {expected}, file has {actual}; not loaded")]
    Sha256Mismatch {
        /// The file.
        path: PathBuf,
        /// The configured digest.
        expected: String,
        /// The file's digest.
        actual: String,
    },
    /// The dynamic loader refused the file.
    #[error("cannot open {path} as a library: {message}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },
    /// No handshake symbol: not a creditgate plugin.
    #[error("{path} is not a creditgate plugin: it has no creditgate_plugin_handshake symbol")]
    NoHandshake {
        /// The file.
        path: PathBuf,
    },
    /// The handshake returned null.
    #[error("{path}: the plugin handshake returned null")]
    NullHandshake {
        /// The file.
        path: PathBuf,
    },
    /// Incompatible ABI or protocol version.
    #[error("{path}: {source}")]
    Version {
        /// The file.
        path: PathBuf,
        /// Both versions.
        source: VersionMismatch,
    },
    /// Built with `panic = "abort"`.
    #[error(
        "{path}: the plugin was built with panic = \"abort\"; a panic would abort the server, so it is refused (build it with panic = \"unwind\")"
    )]
    PanicAbort {
        /// The file.
        path: PathBuf,
    },
    /// The manifest call failed.
    #[error("{path}: cannot read the manifest: {source}")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// The plugin's error.
        source: PluginError,
    },
    /// The manifest is invalid.
    #[error("{path}: invalid manifest: {}", problems.join("; "))]
    InvalidManifest {
        /// The file.
        path: PathBuf,
        /// Every problem.
        problems: Vec<String>,
    },
    /// The manifest id differs from the file name's.
    #[error("{path}: the file is named for plugin {file_id:?} but its manifest says {manifest_id:?}")]
    IdMismatch {
        /// The file.
        path: PathBuf,
        /// The id in the file name.
        file_id: String,
        /// The id in the manifest.
        manifest_id: String,
    },
}

/// An error that stops loading altogether.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The plugin folder cannot be read.
    #[error("cannot read the plugin folder {dir}: {source}")]
    ReadDir {
        /// The folder.
        dir: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Two plugin files provide one id.
    #[error("two plugins with id {id:?}: {first} and {second}")]
    DuplicateId {
        /// The id.
        id: String,
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
}

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    /// The plugin folder (only this folder is read).
    pub dir: PathBuf,
    /// Expected SHA-256 (hex) of the file of each pinned plugin id.
    pub sha256: HashMap<String, String>,
}

/// The outcome of loading a folder.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// The plugins loaded, in file-name order.
    pub plugins: Vec<Arc<LoadedPlugin>>,
    /// Plugin files refused, with the reason (also logged).
    pub skipped: Vec<(PathBuf, LoadError)>,
    /// Libraries in the folder not named like a plugin, never opened
    /// (reported in one warning).
    pub ignored: Vec<PathBuf>,
}

/// The file name the host loads for plugin `id` on this platform
/// (`libcreditgate_plugin_<id>.so` on Linux).
pub fn expected_file_name(id: &str) -> String {
    format!(
        "{}{PLUGIN_FILE_PREFIX}{id}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// The plugin id a file name stands for, if it is named like a plugin
/// (`[lib]creditgate_plugin_<id><DLL_SUFFIX>`).
pub fn plugin_id_from_file_name(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(std::env::consts::DLL_SUFFIX)?;
    let stem = if std::env::consts::DLL_PREFIX.is_empty() {
        stem
    } else {
        stem.strip_prefix(std::env::consts::DLL_PREFIX).unwrap_or(stem)
    };
    let id = stem.strip_prefix(PLUGIN_FILE_PREFIX)?;
    creditgate_provider_sdk::is_valid_plugin_id(id).then_some(id)
}

/// The SHA-256 of a file, as lowercase hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Loads every plugin in `config.dir`. Bad plugins are skipped (logged and
/// listed); two plugins with one id is an error.
pub fn load_dir(config: &HostConfig) -> Result<LoadReport, HostError> {
    let entries = std::fs::read_dir(&config.dir).map_err(|source| HostError::ReadDir {
        dir: config.dir.clone(),
        source,
    })?;
    let mut candidates = Vec::new();
    let mut ignored = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| HostError::ReadDir {
            dir: config.dir.clone(),
            source,
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.ends_with(std::env::consts::DLL_SUFFIX) {
            continue;
        }
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        match plugin_id_from_file_name(name) {
            Some(id) => candidates.push((id.to_owned(), path)),
            None => ignored.push(path),
        }
    }
    candidates.sort_by(|a, b| a.1.cmp(&b.1));
    ignored.sort();
    let mut report = LoadReport {
        ignored,
        ..LoadReport::default()
    };
    if !report.ignored.is_empty() {
        let names: Vec<String> = report
            .ignored
            .iter()
            .take(20)
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        tracing::warn!(
            dir = %config.dir.display(),
            count = report.ignored.len(),
            files = ?names,
            expected = %expected_file_name("<id>"),
            "libraries in the plugin folder not named like a creditgate plugin were not loaded"
        );
    }
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for (id, path) in candidates {
        if let Some(first) = seen.get(&id) {
            return Err(HostError::DuplicateId {
                id,
                first: first.clone(),
                second: path,
            });
        }
        seen.insert(id.clone(), path.clone());
        match load_file(&path, &id, config.sha256.get(&id).map(String::as_str)) {
            Ok(plugin) => {
                tracing::info!(
                    plugin = %plugin.manifest.id,
                    version = %plugin.manifest.version,
                    sdk = %plugin.manifest.sdk_version,
                    sha256 = %plugin.sha256,
                    file = %path.display(),
                    plugin_hosts = ?plugin.manifest.allowed_hosts,
                    "provider plugin loaded (the hosts it lists are used only where the operator allows them)"
                );
                report.plugins.push(Arc::new(plugin));
            }
            Err(err) => {
                tracing::warn!(file = %path.display(), error = %err, "provider plugin skipped");
                report.skipped.push((path, err));
            }
        }
    }
    Ok(report)
}

/// Loads one plugin file whose name stands for `expected_id`, checking
/// `expected_sha256` (hex) first when given.
pub fn load_file(path: &Path, expected_id: &str, expected_sha256: Option<&str>) -> Result<LoadedPlugin, LoadError> {
    let sha256 = file_sha256(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })?;
    if let Some(expected) = expected_sha256 {
        let expected = expected.trim().to_ascii_lowercase();
        if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(LoadError::BadPin { path: path.to_owned() });
        }
        if expected != sha256 {
            return Err(LoadError::Sha256Mismatch {
                path: path.to_owned(),
                expected,
                actual: sha256,
            });
        }
    }
    // SAFETY: opening a library runs its initializers. Plugins are trusted
    // native code from the operator's folder (see the crate docs).
    let library = unsafe { libloading::Library::new(path) }.map_err(|err| LoadError::Open {
        path: path.to_owned(),
        message: err.to_string(),
    })?;
    // Never unloaded (see the crate docs).
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    // SAFETY: the symbol, when present, has the SDK's `HandshakeFn` type; that
    // is what the name promises, and the ABI version is checked before any
    // other field is trusted.
    let handshake: HandshakeFn = match unsafe { library.get::<HandshakeFn>(abi::HANDSHAKE_SYMBOL) } {
        Ok(symbol) => *symbol,
        Err(_) => {
            return Err(LoadError::NoHandshake { path: path.to_owned() });
        }
    };
    // SAFETY: calling the plugin's handshake, which takes no arguments and
    // returns a pointer to a static.
    let raw = unsafe { handshake() };
    if raw.is_null() {
        return Err(LoadError::NullHandshake { path: path.to_owned() });
    }
    // SAFETY: the ABI version is the first field, a u32, in every ABI version;
    // read it alone before trusting the layout of the rest.
    let abi_version = unsafe { std::ptr::read(raw.cast::<u32>()) };
    if abi_version != abi::ABI_VERSION {
        return Err(LoadError::Version {
            path: path.to_owned(),
            source: VersionMismatch::Abi {
                plugin: abi_version,
                host: abi::ABI_VERSION,
            },
        });
    }
    // SAFETY: same ABI version, so the static has this layout.
    let handshake: &'static PluginHandshake = unsafe { &*raw };
    abi::check_versions(
        handshake.abi_version,
        handshake.protocol_major,
        handshake.protocol_minor,
    )
    .map_err(|source| LoadError::Version {
        path: path.to_owned(),
        source,
    })?;
    if handshake.flags & FLAG_PANIC_UNWIND == 0 {
        return Err(LoadError::PanicAbort { path: path.to_owned() });
    }
    let mut plugin = LoadedPlugin {
        path: path.to_owned(),
        sha256,
        manifest: Manifest::new("", "", ""),
        call: handshake.call,
        free: handshake.free,
    };
    let manifest: Manifest = plugin.invoke(op::MANIFEST, &()).map_err(|source| LoadError::Manifest {
        path: path.to_owned(),
        source,
    })?;
    manifest.validate().map_err(|problems| LoadError::InvalidManifest {
        path: path.to_owned(),
        problems,
    })?;
    if manifest.id != expected_id {
        return Err(LoadError::IdMismatch {
            path: path.to_owned(),
            file_id: expected_id.to_owned(),
            manifest_id: manifest.id,
        });
    }
    plugin.manifest = manifest;
    Ok(plugin)
}

/// A loaded plugin, usable as an ordinary [`Provider`].
pub struct LoadedPlugin {
    path: PathBuf,
    sha256: String,
    manifest: Manifest,
    call: CallFn,
    free: FreeFn,
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("id", &self.manifest.id)
            .field("version", &self.manifest.version)
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl LoadedPlugin {
    /// The manifest read at load time.
    pub fn manifest_ref(&self) -> &Manifest {
        &self.manifest
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's SHA-256 (hex).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// One raw call through the C ABI: the input bytes are borrowed by the
    /// plugin for the call; the output is copied and freed by the plugin.
    fn raw_call(&self, code: u32, input: &[u8]) -> (u32, Vec<u8>) {
        let mut output = PluginBuffer::empty();
        // SAFETY: `input` is valid for `input.len()` bytes during the call and
        // `output` is a valid place for one buffer, as `dispatch` requires.
        let status = unsafe { (self.call)(code, input.as_ptr(), input.len(), &mut output) };
        let bytes = if output.ptr.is_null() || output.len == 0 {
            Vec::new()
        } else {
            // SAFETY: the plugin returned `len` initialized bytes at `ptr`,
            // valid until we free them below.
            unsafe { std::slice::from_raw_parts(output.ptr, output.len) }.to_vec()
        };
        // SAFETY: the buffer came from this plugin's `call` and is freed once.
        unsafe { (self.free)(output) };
        (status, bytes)
    }

    fn invoke<I: Serialize + ?Sized, O: DeserializeOwned>(&self, code: u32, input: &I) -> Result<O, PluginError> {
        let input = protocol::encode_input(input)?;
        let (status, output) = self.raw_call(code, &input);
        protocol::decode_output(status, &output)
    }

    /// Classifies an error response, reporting a failing plugin as an error.
    pub fn try_classify_error(&self, status: u16, body: &str) -> Result<ClassifiedError, PluginError> {
        self.invoke(
            op::CLASSIFY_ERROR,
            &ClassifyInput {
                status,
                body: body.into(),
            },
        )
    }
}

impl Provider for LoadedPlugin {
    fn manifest(&self) -> Manifest {
        self.manifest.clone()
    }

    fn build_chat_request(&self, ctx: &RequestContext, request: &ChatRequest) -> Result<HttpRequest, PluginError> {
        self.invoke(
            op::BUILD_CHAT_REQUEST,
            &BuildChatInput {
                ctx: std::borrow::Cow::Borrowed(ctx),
                request: std::borrow::Cow::Borrowed(request),
            },
        )
    }

    fn parse_chat_response(&self, body: &str) -> Result<ChatResponse, PluginError> {
        self.invoke(op::PARSE_CHAT_RESPONSE, &ParseChatInput { body: body.into() })
    }

    /// A plugin that fails to classify gives class `Other` with the failure
    /// as the message (see [`LoadedPlugin::try_classify_error`]).
    fn classify_error(&self, status: u16, body: &str) -> ClassifiedError {
        self.try_classify_error(status, body).unwrap_or_else(|err| {
            ClassifiedError::new(
                ErrorClass::Other,
                format!("the plugin could not classify HTTP {status}: {err}"),
            )
        })
    }

    fn parse_stream_event(&self, event: &SseEvent) -> Result<Vec<StreamEvent>, PluginError> {
        self.invoke(op::PARSE_STREAM_EVENT, event)
    }

    fn build_validate_key_request(&self, ctx: &RequestContext) -> Result<HttpRequest, PluginError> {
        self.invoke(
            op::BUILD_VALIDATE_KEY_REQUEST,
            &ValidateKeyInput {
                ctx: std::borrow::Cow::Borrowed(ctx),
            },
        )
    }

    fn offline_exchange(&self, request: &HttpRequest) -> Result<OfflineResponse, PluginError> {
        self.invoke(op::OFFLINE_EXCHANGE, request)
    }
}

/// Whether an error is a panic caught at the boundary.
pub fn is_panic(err: &PluginError) -> bool {
    err.kind == PluginErrorKind::Panic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        let so = |s: &str| format!("{}{s}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
        assert_eq!(
            plugin_id_from_file_name(&so("creditgate_plugin_openai")),
            Some("openai")
        );
        assert_eq!(
            plugin_id_from_file_name(&format!("creditgate_plugin_demo{}", std::env::consts::DLL_SUFFIX)),
            Some("demo")
        );
        assert_eq!(plugin_id_from_file_name(&so("creditgate_testlib_faulty")), None);
        assert_eq!(plugin_id_from_file_name(&so("creditgate_plugin_")), None);
        assert_eq!(plugin_id_from_file_name(&so("creditgate_plugin_Bad-Id")), None);
        assert_eq!(plugin_id_from_file_name("creditgate_plugin_openai.rlib"), None);
    }
}
