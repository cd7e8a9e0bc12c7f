//! The bodies of creditgate's fuzz targets, as plain functions.
//!
//! Each `pub fn target(data: &[u8])` takes one fuzz input, drives the real
//! code with it and panics when an oracle is broken (a panic, an abort or a
//! stack overflow inside the code under test fails on its own).
//! `fuzz/fuzz_targets/<name>.rs` (cargo-fuzz, nightly) calls them, and the
//! replay test of this crate (`cargo test`, stable) runs every file of
//! `fuzz/corpus/<name>/` and `fuzz/regressions/<name>/` through them, so
//! the corpus and the crashes found keep being checked in CI.
//!
//! | target | input | what runs |
//! |---|---|---|
//! | [`graphql::target`] | selector byte, then a POST body | the axum router (`/graphql` POST and GET) and the graphql-transport-ws protocol over the same schema |
//! | [`credits::target`] | any bytes | `Credits::from_str`, `Display`, serde |
//! | [`jwt::target`] | mode byte, then a token, or claims (and header) JSON that get signed | `Authenticator::authenticate` |
//! | [`stripe::target`] | mode byte, then a body (and header) | `POST /webhooks/stripe` through the router, signed with the test secret |
//! | [`plugins::target`] | selector byte, then a provider body | the openai and anthropic plugins, loaded as shared libraries |
//!
//! Setting up (a database, a router, loaded plugins) happens once per
//! process; the targets share nothing else.

// A fuzz harness reports a broken oracle or a failed set-up by panicking,
// as a test does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod credits;
pub mod graphql;
pub mod jwt;
pub mod plugins;
pub mod replay;
pub mod stripe;
mod support;

/// A target's body: one input, a panic when an oracle breaks.
pub type Target = fn(&[u8]);

/// Every target by the name of its `fuzz/corpus/<name>` folder.
pub const TARGETS: [(&str, Target); 5] = [
    ("graphql", graphql::target),
    ("credits", credits::target),
    ("jwt", jwt::target),
    ("stripe_webhook", stripe::target),
    ("plugin_response", plugins::target),
];
