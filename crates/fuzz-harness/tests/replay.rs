//! Every committed fuzz corpus (`fuzz/corpus/<target>/`) through its
//! target (`regressions.rs` replays the inputs that once crashed). Needs the built plugins (`cargo build` of the
//! workspace), as the end-to-end tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use creditgate_fuzz_harness::replay::replay;

fn corpus(name: &str) {
    let n = replay("corpus", name);
    assert!(n > 0, "fuzz/corpus/{name} is empty");
}

#[test]
fn graphql_corpus() {
    corpus("graphql");
}

#[test]
fn credits_corpus() {
    corpus("credits");
}

#[test]
fn jwt_corpus() {
    corpus("jwt");
}

#[test]
fn stripe_webhook_corpus() {
    corpus("stripe_webhook");
}

#[test]
fn plugin_response_corpus() {
    corpus("plugin_response");
}
