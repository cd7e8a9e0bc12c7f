#!/usr/bin/env bash
# Builds the Gemini provider plugin the way docs/writing-a-provider-plugin.md
# tells a third party to, in a folder OUTSIDE this workspace:
#   1. cargo new --lib creditgate-plugin-gemini, and its Cargo.toml lines;
#   2. the translation (docs/examples/creditgate-plugin-gemini/src/lib.rs);
#   3. cargo test: the conformance kit, on the Rust type and on the built
#      library loaded through the real host;
#   4. copy the library into a plugin folder.
# (Step 5, its configuration block and prices, is the e2e test's.)
#
# Usage: scripts/third-party-plugin.sh OUT_DIR
# Leaves OUT_DIR/plugins/libcreditgate_plugin_gemini.so (platform name).
# tests/tests/third_party_plugin.rs runs it; so does CI through scripts/test.sh.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:?usage: $0 OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
case "$out/" in
  "$repo"/*) echo "OUT_DIR must be outside the workspace ($repo)" >&2; exit 2 ;;
esac
crate="$out/creditgate-plugin-gemini"
export CARGO_TARGET_DIR="$out/target"
export CARGO_INCREMENTAL=0

# 1. The crate.
if [ ! -f "$crate/Cargo.toml" ]; then
  cargo new --lib --vcs none --quiet "$crate"
  cat >> "$crate/Cargo.toml" <<TOML
creditgate-provider-sdk = { path = "$repo/crates/provider-sdk" }
serde_json = "1"

[lib]
crate-type = ["cdylib", "rlib"]

[dev-dependencies]
creditgate-provider-sdk = { path = "$repo/crates/provider-sdk", features = ["testkit"] }
creditgate-plugin-host = { path = "$repo/crates/plugin-host" }
TOML
fi
# 2. The translation, its test and the provider's recorded bodies.
mkdir -p "$crate/src" "$crate/tests" "$crate/fixtures"
cp "$repo/docs/examples/creditgate-plugin-gemini/src/lib.rs" "$crate/src/lib.rs"
cp "$repo/docs/examples/creditgate-plugin-gemini/tests/conformance.rs" "$crate/tests/conformance.rs"
cp "$repo"/fixtures/providers/gemini/* "$crate/fixtures/"
# 3. The conformance kit (builds the library, loads it through the host).
(cd "$crate" && cargo test --quiet)
# 4. Install it. (A production build is `cargo build --release`, then the
#    file from target/release; the test build is enough for the tests.)
(cd "$crate" && cargo build --quiet)
mkdir -p "$out/plugins"
file="$(find "$CARGO_TARGET_DIR/debug" -maxdepth 1 -name '*creditgate_plugin_gemini.*' \( -name '*.so' -o -name '*.dylib' -o -name '*.dll' \) | head -n 1)"
[ -n "$file" ] || { echo "the plugin library was not built" >&2; exit 1; }
cp "$file" "$out/plugins/"
echo "$out/plugins/$(basename "$file")"
