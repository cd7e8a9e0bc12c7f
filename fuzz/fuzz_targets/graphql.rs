#![no_main]
// See crates/fuzz-harness/src/graphql.rs for the input format and the oracles.
libfuzzer_sys::fuzz_target!(|data: &[u8]| creditgate_fuzz_harness::graphql::target(data));
