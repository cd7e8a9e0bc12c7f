#!/usr/bin/env bash
# The one command that passes the tests: builds the workspace (the tests
# load the built provider plugins) and runs every test, on SQLite and on
# PostgreSQL (CREDITGATE_TEST_POSTGRES_URL, default: the local server).
set -euo pipefail
cd "$(dirname "$0")/.."
# The console's browser tests drive Debian's Chromium through chromedriver.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "== Installing chromium and chromium-driver (browser tests of the console)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium chromium-driver
fi
export CREDITGATE_TEST_POSTGRES_URL="${CREDITGATE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cargo build --workspace --all-features
cargo test --workspace --all-features --no-fail-fast "$@"
