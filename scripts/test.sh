#!/usr/bin/env bash
# The one command that passes the tests: builds the workspace (the tests
# load the built provider plugins) and runs every test, on SQLite and on
# PostgreSQL (CREDITGATE_TEST_POSTGRES_URL, default: the local server).
set -euo pipefail
cd "$(dirname "$0")/.."
export CREDITGATE_TEST_POSTGRES_URL="${CREDITGATE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cargo build --workspace --all-features
cargo test --workspace --all-features --no-fail-fast "$@"
