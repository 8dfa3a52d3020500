//! The committed `schema.graphql` is exactly what the binary prints.

#[test]
fn schema_graphql_is_up_to_date() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql exists");
    let generated = eagerql::graphql::sdl();
    assert!(
        committed == generated,
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql`"
    );
}

#[test]
fn every_type_field_and_argument_is_described() {
    let sdl = eagerql::graphql::sdl();
    for ty in [
        "type User",
        "type Order",
        "type OrderItem",
        "type Product",
        "type Query",
        "enum OrderStatus",
    ] {
        let at = sdl.find(ty).unwrap_or_else(|| panic!("{ty} missing"));
        let before = sdl[..at].trim_end();
        assert!(before.ends_with("\"\"\""), "{ty} has no description");
    }
    // Every field line inside a type body is preceded by a description line.
    let types = sdl.split("schema {").next().unwrap_or_default();
    let lines: Vec<&str> = types.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        let is_field =
            line.starts_with('\t') && t.contains(':') && !t.starts_with('"') && !t.starts_with(')');
        if is_field
            && !lines[i - 1].trim().ends_with("\"\"\"")
            && !lines[i - 1].trim().ends_with('"')
        {
            panic!("undocumented field: {t}");
        }
    }
    assert!(
        !sdl.contains("passwordHash") && !sdl.contains("password_hash"),
        "the password hash must never be exposed"
    );
}

/// The schema has no description: `__schema { description }` is `null`, not the text that
/// describes the `__Schema` type itself (which GraphiQL and code generators would show).
#[tokio::test]
async fn the_schema_description_is_the_schemas_own() {
    let app = crate::helpers::spawn_app().await;
    let r = app
        .gql("{ __schema { d: description description queryType { name } } }")
        .await;
    assert_eq!(
        r.data()["__schema"],
        serde_json::json!({ "d": null, "description": null, "queryType": { "name": "Query" } })
    );
}
