//! The committed schema.graphql is what the code serves.

#[test]
fn schema_graphql_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schema.graphql");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let current = creditgate_graphql::sdl();
    assert!(
        committed == current,
        "schema.graphql is out of date; regenerate it with\n  cargo run -p creditgate-server -- export-schema > schema.graphql"
    );
}
