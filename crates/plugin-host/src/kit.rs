//! The packaging half of the conformance kit: loads a plugin's real shared
//! library through the real host, the way the server will, and reports
//! packaging mistakes as a list of what is wrong and how to fix it (a wrong
//! file name, a missing export, a handshake for another ABI or protocol,
//! `panic = "abort"`, not a `cdylib`, an invalid manifest).
//!
//! ```ignore
//! // tests/conformance.rs of a plugin; `creditgate-plugin-host` is a
//! // dev-dependency. `cargo test` builds the library first.
//! #[test]
//! fn the_built_library_loads_and_conforms() {
//!     let plugin = creditgate_plugin_host::kit::load_built(env!("CARGO_MANIFEST_DIR")).unwrap();
//!     cases(&plugin).run().into_result().unwrap(); // the same ConformanceKit cases
//! }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{LoadError, LoadedPlugin, expected_file_name, load_file, plugin_id_from_file_name};

/// One packaging problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong.
    pub what: String,
    /// How to fix it.
    pub fix: String,
}

impl Problem {
    fn new(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            fix: fix.into(),
        }
    }
}

/// Why a plugin library would not load in the server. `Display` and `Debug`
/// (what `.unwrap()` prints) list every problem with its fix.
#[derive(Clone, thiserror::Error)]
pub struct PackagingFailure {
    /// The library checked, when one was found.
    pub library: Option<PathBuf>,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for PackagingFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.library {
            Some(path) => writeln!(f, "creditgate would not load the plugin library {}:", path.display())?,
            None => writeln!(f, "the plugin cannot be loaded by creditgate:")?,
        }
        for (n, problem) in self.problems.iter().enumerate() {
            writeln!(f, "  {}. {}\n     fix: {}", n + 1, problem.what, problem.fix)?;
        }
        Ok(())
    }
}

impl fmt::Debug for PackagingFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\n{self}")
    }
}

/// What the crate's `Cargo.toml` says about its library.
struct CrateInfo {
    lib_name: String,
    cdylib: bool,
    abort_profiles: Vec<String>,
}

fn read_crate(manifest_dir: &Path) -> Result<CrateInfo, Problem> {
    let path = manifest_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Problem::new(
            format!("cannot read {}: {e}", path.display()),
            "pass env!(\"CARGO_MANIFEST_DIR\") of the plugin crate",
        )
    })?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e| Problem::new(format!("{} does not parse: {e}", path.display()), "fix Cargo.toml"))?;
    let package = doc.get("package").and_then(|p| p.get("name")).and_then(|n| n.as_str());
    let lib = doc.get("lib");
    let lib_name = lib
        .and_then(|l| l.get("name"))
        .and_then(|n| n.as_str())
        .or(package)
        .unwrap_or_default()
        .replace('-', "_");
    let cdylib = lib
        .and_then(|l| l.get("crate-type"))
        .and_then(|t| t.as_array())
        .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("cdylib")));
    let abort_profiles = doc
        .get("profile")
        .and_then(|p| p.as_table())
        .map(|profiles| {
            profiles
                .iter()
                .filter(|(_, p)| p.get("panic").and_then(|v| v.as_str()) == Some("abort"))
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default();
    Ok(CrateInfo {
        lib_name,
        cdylib,
        abort_profiles,
    })
}

/// The profile folder (`target/debug`) of the running test binary.
fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    Some(deps.parent()?.to_path_buf())
}

/// Checks the plugin crate at `manifest_dir` (its `Cargo.toml`) and loads
/// its built library from the running test's profile folder
/// (`target/debug` or its `deps`, whichever is newer), through the real
/// host. `cargo test` builds it first.
pub fn load_built(manifest_dir: impl AsRef<Path>) -> Result<LoadedPlugin, PackagingFailure> {
    let manifest_dir = manifest_dir.as_ref();
    let info = read_crate(manifest_dir).map_err(|p| PackagingFailure {
        library: None,
        problems: vec![p],
    })?;
    let mut problems = Vec::new();
    if !info.cdylib {
        problems.push(Problem::new(
            "the crate does not build a shared library",
            "add `crate-type = [\"cdylib\", \"rlib\"]` under [lib] in Cargo.toml",
        ));
    }
    for profile in &info.abort_profiles {
        problems.push(Problem::new(
            format!("[profile.{profile}] sets panic = \"abort\": the server refuses such a plugin (a panic would abort it)"),
            format!("remove `panic = \"abort\"` from [profile.{profile}] (a plugin must unwind; the host catches its panics)"),
        ));
    }
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        info.lib_name,
        std::env::consts::DLL_SUFFIX
    );
    // `cargo test` leaves the library in target/<profile>/deps; `cargo
    // build` in target/<profile>. The newer one is the one just built.
    let candidates: Vec<PathBuf> = profile_dir()
        .map(|d| vec![d.join("deps").join(&file), d.join(&file)])
        .unwrap_or_default();
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let path = candidates
        .iter()
        .filter(|p| p.is_file())
        .max_by_key(|p| modified(p))
        .or(candidates.last())
        .cloned()
        .unwrap_or_else(|| PathBuf::from(&file));
    if !info.cdylib {
        return Err(PackagingFailure {
            library: None,
            problems,
        });
    }
    if !path.is_file() {
        problems.push(Problem::new(
            format!("the library {} is not built", path.display()),
            "run the kit from `cargo test` (which builds the library), or `cargo build` first",
        ));
        return Err(PackagingFailure {
            library: Some(path),
            problems,
        });
    }
    match check_library(&path) {
        Ok(plugin) if problems.is_empty() => Ok(plugin),
        Ok(_) => Err(PackagingFailure {
            library: Some(path),
            problems,
        }),
        Err(failure) => {
            problems.extend(failure.problems);
            Err(PackagingFailure {
                library: Some(path),
                problems,
            })
        }
    }
}

/// Loads one built library file as the server would (by its file name, in
/// any folder), reporting every packaging problem found.
pub fn check_library(path: &Path) -> Result<LoadedPlugin, PackagingFailure> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let mut problems = Vec::new();
    let file_id = plugin_id_from_file_name(name);
    if file_id.is_none() {
        problems.push(Problem::new(
            format!(
                "the file is named {name:?}; the server loads only files named {} and ignores others",
                expected_file_name("<id>")
            ),
            "name the package `creditgate-plugin-<id>` (or set `name = \"creditgate_plugin_<id>\"` under [lib]), <id> being the manifest's id, or copy the file under that name",
        ));
    }
    // A wrong name still gets loaded, to report everything at once.
    let result = load_file(path, file_id.unwrap_or("\u{0}unnamed"), None);
    let plugin = match result {
        Ok(plugin) => Some(plugin),
        Err(LoadError::IdMismatch { manifest_id, .. }) if file_id.is_none() => {
            if let Some(first) = problems.first_mut() {
                first.fix = format!(
                    "name the package `creditgate-plugin-{manifest_id}` (or copy the file as {})",
                    expected_file_name(&manifest_id)
                );
            }
            None
        }
        Err(err) => {
            problems.extend(explain(&err));
            None
        }
    };
    match plugin {
        Some(plugin) if problems.is_empty() => Ok(plugin),
        _ => Err(PackagingFailure {
            library: Some(path.to_owned()),
            problems,
        }),
    }
}

/// What a load error means for a plugin author.
fn explain(err: &LoadError) -> Vec<Problem> {
    const SDK: &str = "depend on the creditgate-provider-sdk of the creditgate version you deploy, export with `creditgate_provider_sdk::export_provider!(YourProvider);` (never a hand-written handshake) and rebuild";
    match err {
        LoadError::NoHandshake { .. } => vec![Problem::new(
            "the library exports no creditgate_plugin_handshake symbol (missing export)",
            "add `creditgate_provider_sdk::export_provider!(YourProvider);` at the top level of src/lib.rs",
        )],
        LoadError::NullHandshake { .. } => vec![Problem::new("the plugin handshake returned null", SDK)],
        LoadError::Version { source, .. } => vec![Problem::new(format!("wrong handshake: {source}"), SDK)],
        LoadError::PanicAbort { .. } => vec![Problem::new(
            "the library was built with panic = \"abort\": the server refuses it, since a panic would abort the server",
            "remove `panic = \"abort\"` from every [profile.*] of your Cargo.toml and of the workspace's, and rebuild",
        )],
        LoadError::Manifest { source, .. } => vec![Problem::new(
            format!("manifest() failed: {source}"),
            "make manifest() return a Manifest without panicking",
        )],
        LoadError::InvalidManifest { problems, .. } => problems
            .iter()
            .map(|p| {
                Problem::new(
                    format!("invalid manifest: {p}"),
                    "fix manifest() (see Manifest::validate)",
                )
            })
            .collect(),
        LoadError::IdMismatch {
            file_id, manifest_id, ..
        } => vec![Problem::new(
            format!("the file is named for plugin {file_id:?} but the manifest's id is {manifest_id:?}"),
            format!(
                "name the package `creditgate-plugin-{manifest_id}` (file {}), or use {file_id:?} in Manifest::new",
                expected_file_name(manifest_id)
            ),
        )],
        LoadError::Open { message, .. } => vec![Problem::new(
            format!("the dynamic loader refused the file: {message}"),
            "build it as a cdylib for this platform (crate-type = [\"cdylib\", \"rlib\"])",
        )],
        other => vec![Problem::new(other.to_string(), "see docs/writing-a-provider-plugin.md")],
    }
}
