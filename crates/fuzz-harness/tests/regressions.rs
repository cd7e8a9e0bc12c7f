//! Inputs that once crashed a target (`fuzz/regressions/<target>/`), in a
//! test binary of their own: a stack overflow aborts the whole process,
//! which would take the corpus replays down with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use creditgate_fuzz_harness::replay::replay;

/// Deep nesting (lists, input objects, selection sets, variables, over HTTP
/// and WebSocket) overflowed the stack inside async-graphql's parser and
/// aborted the server (fixed by the nesting guard, crates/graphql/src/guard.rs).
#[test]
fn graphql_deep_nesting() {
    assert!(replay("regressions", "graphql") > 0);
}

/// A signed token whose unknown claim holds invalid UTF-8 is accepted
/// (serde_json skips unknown fields unchecked): the harness's own oracle
/// once choked on it.
#[test]
fn jwt() {
    assert!(replay("regressions", "jwt") > 0);
}
