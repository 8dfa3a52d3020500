//! Hostile and overloading requests: each is refused with a code, promptly and before it
//! costs unbounded memory or CPU, or answered correctly; and the server keeps answering
//! others meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::Request;
use eagerql::db::StatementHook;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with, spawn_app_with_hook};

async fn healthz(app: &TestApp) -> u16 {
    let req = Request::get("/healthz")
        .body(Body::empty())
        .expect("request");
    app.send(req).await.0.as_u16()
}

/// Fragments that each spread the next one twice under two aliases: 2^24 fields once
/// expanded, from a document of about a kilobyte.
fn alias_bomb(levels: usize) -> String {
    let mut doc = String::from("query { users(first: 1) { ...F0 } }\n");
    for i in 0..levels {
        doc.push_str(&format!(
            "fragment F{i} on User {{ a: orders(first: 1) {{ user {{ ...F{n} }} }} b: orders(first: 1) {{ user {{ ...F{n} }} }} }}\n",
            n = i + 1
        ));
    }
    doc.push_str(&format!("fragment F{levels} on User {{ id }}\n"));
    doc
}

#[tokio::test]
async fn fragment_expansion_is_bounded_and_others_are_served_meanwhile() {
    let app = spawn_app_with(&["--max-aliases", "100", "--max-depth", "100"]).await;
    app.seed(3, 1, 1, 1).await;
    let bomb = alias_bomb(24);
    assert!(bomb.len() < 4_000, "{} bytes", bomb.len());
    let (resp, health) = tokio::join!(app.gql(&bomb), healthz(&app));
    assert_eq!(resp.error_code(), "LIMIT_EXCEEDED", "{}", resp.body);
    assert!(resp.body.get("data").is_none());
    assert_eq!(resp.statements, 0);
    assert_eq!(health, 200);

    // The same fragment spread twice on one level is collected once (CollectFields): it is
    // answered, and costs what one spread costs.
    let mut doc = String::from("query { ...Q0 }\n");
    for i in 0..28 {
        doc.push_str(&format!(
            "fragment Q{i} on Query {{ ...Q{n} ...Q{n} }}\n",
            n = i + 1
        ));
    }
    doc.push_str("fragment Q28 on Query { users(first: 2) { id } }\n");
    let resp = app.gql(&doc).await;
    assert_eq!(
        resp.data(),
        &json!({ "users": [{ "id": "1" }, { "id": "2" }] })
    );
    assert_eq!(resp.statements, 1);
}

#[tokio::test]
async fn documents_over_the_size_limits_are_refused() {
    let app = spawn_app().await;
    let aliases: Vec<String> = (0..31).map(|i| format!("a{i}: __typename")).collect();
    let resp = app.gql(&format!("{{ {} }}", aliases.join(" "))).await;
    assert_eq!(resp.error_code(), "LIMIT_EXCEEDED", "{}", resp.body);
    assert!(resp.error_message().contains("aliases"), "{}", resp.body);

    let directives = "__typename @include(if: true) ".repeat(51);
    let resp = app.gql(&format!("{{ {directives} }}")).await;
    assert_eq!(resp.error_code(), "LIMIT_EXCEEDED", "{}", resp.body);
    assert!(resp.error_message().contains("directives"), "{}", resp.body);

    let tokens = "__typename ".repeat(6_000);
    let resp = app.gql(&format!("{{ {tokens} }}")).await;
    assert_eq!(resp.error_code(), "LIMIT_EXCEEDED", "{}", resp.body);
    assert_eq!(resp.status, 400);

    // Nesting past the parser's bound (and far past the depth limit).
    let nested = format!(
        "{{ users {} id {} }}",
        "{ orders { user ".repeat(100),
        "} } ".repeat(100)
    );
    let resp = app.gql(&nested).await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert_eq!(resp.error_code(), "LIMIT_EXCEEDED", "{}", resp.body);
    assert!(resp.body.get("data").is_none());
}

#[tokio::test]
async fn row_fan_out_is_refused_while_rows_stream_in() {
    let app = spawn_app_with(&["--max-rows", "1000"]).await;
    app.seed(50, 4, 3, 20).await;
    let fan_out = "{ products(first: 20) { orders { products { orders { id } } } } }";
    let resp = app.gql(fan_out).await;
    assert_eq!(resp.error_code(), "LIMIT_EXCEEDED", "{}", resp.body);
    assert!(resp.error_message().contains("rows"), "{}", resp.body);
    assert_eq!(resp.body["data"], Value::Null, "no partial answer");
    // Within the budget, the same server answers.
    let ok = app.gql("{ users(first: 50) { orders { id } } }").await;
    assert_eq!(ok.data()["users"].as_array().map(Vec::len), Some(50));
}

#[tokio::test]
async fn a_response_over_the_byte_cap_is_refused_not_sent() {
    let app = spawn_app_with(&["--max-response-bytes", "20000"]).await;
    app.seed(50, 4, 3, 20).await;
    let resp = app
        .gql("{ products(first: 20) { orders { products { orders { id } } } } }")
        .await;
    assert_eq!(resp.error_code(), "LIMIT_EXCEEDED", "{}", resp.body);
    assert!(resp.error_message().contains("bytes"), "{}", resp.body);
    assert_eq!(resp.body["errors"][0]["path"], json!(["products"]));
    let mut answer = resp.body.clone();
    if let Some(m) = answer.as_object_mut() {
        m.remove("extensions");
    }
    assert_eq!(answer["data"], Value::Null);
    assert!(
        answer.to_string().len() < 2_000,
        "no partial giant body: {answer}"
    );
    let small = app.gql("{ users(first: 3) { id } }").await;
    assert_eq!(small.data()["users"].as_array().map(Vec::len), Some(3));
}

/// Runs `{ users { id } }` on a one-connection pool whose first statement waits until `second`
/// (sent meanwhile, so finding no connection) is answered: `(first, second)`.
async fn with_the_only_connection_held(second: &str) -> (crate::helpers::Gql, crate::helpers::Gql) {
    let release = Arc::new(tokio::sync::Notify::new());
    let entered = Arc::new(tokio::sync::Notify::new());
    let hold = Arc::new(AtomicBool::new(true));
    let (r2, e2, h2) = (release.clone(), entered.clone(), hold.clone());
    let hook: StatementHook = Arc::new(move |_| {
        let (r, e, h) = (r2.clone(), e2.clone(), h2.clone());
        Box::pin(async move {
            if h.swap(false, Ordering::SeqCst) {
                e.notify_one();
                r.notified().await;
            }
        })
    });
    let app = spawn_app_with_hook(
        &["--pool-size", "1", "--pool-timeout-secs", "1"],
        Some(hook),
    )
    .await;
    app.seed(2, 1, 1, 1).await;
    let first = app.gql("{ users { id } }");
    let later = async {
        entered.notified().await;
        let r = app.gql(second).await;
        release.notify_one();
        r
    };
    let (first, second) = tokio::join!(first, later);
    let after = app.gql("{ user(id: 2) { isActive } }").await;
    assert_eq!(
        after.data()["user"]["isActive"],
        true,
        "nothing was written"
    );
    (first, second)
}

#[tokio::test]
async fn an_exhausted_pool_fails_the_whole_request_once() {
    // The first request holds the only connection (its snapshot) until released.
    let (first, second) = with_the_only_connection_held(
        "{ a: users { id } b: products { id } c: orders { id } d: user(id: 1) { id } }",
    )
    .await;
    assert_eq!(second.status, 503, "{}", second.body);
    assert!(second.body.get("data").is_none(), "never half an answer");
    let errors = second.body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{}", second.body);
    assert_eq!(second.error_code(), "SERVICE_UNAVAILABLE");
    assert!(
        !second.body.to_string().contains("PoolTimedOut"),
        "no internal cause"
    );
    assert_eq!(first.data()["users"].as_array().map(Vec::len), Some(2));
}

/// A mutation that cannot reach the database is one 503 for the whole request too, like a
/// query (not a 200 with `data: null`): nothing was written.
#[tokio::test]
async fn a_mutation_without_a_connection_is_one_503() {
    let (first, second) = with_the_only_connection_held(
        "mutation { a: deactivateUser(id: \"2\") { id } b: deactivateUser(id: \"1\") { id } }",
    )
    .await;
    assert_eq!(second.status, 503, "{}", second.body);
    assert!(second.body.get("data").is_none(), "never half an answer");
    assert_eq!(second.body["errors"].as_array().map(Vec::len), Some(1));
    assert_eq!(second.error_code(), "SERVICE_UNAVAILABLE");
    assert_eq!(first.data()["users"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn errors_keep_the_response_shape() {
    let app = spawn_app().await;
    app.seed(3, 1, 1, 1).await;
    // A non-null field that fails nulls its parent: here `data` itself.
    let resp = app
        .gql("{ a: users(first: 1) { id } b: users(first: -1) { id } }")
        .await;
    assert_eq!(resp.body["data"], Value::Null, "{}", resp.body);
    assert_eq!(resp.body["errors"][0]["path"], json!(["b"]));
    let resp = app
        .gql("{ u: user(id: \"abc\") { id } analytics { __typename } }")
        .await;
    assert_eq!(
        resp.body["data"],
        json!({ "u": null, "analytics": { "__typename": "Analytics" } })
    );
    let resp = app
        .gql("{ users(first: 1) { id } analytics { topCustomers(days: 0) { orderCount } } }")
        .await;
    assert_eq!(resp.body["data"], Value::Null, "{}", resp.body);
    assert_eq!(
        resp.body["errors"][0]["path"],
        json!(["analytics", "topCustomers"])
    );
}

#[tokio::test]
async fn a_missing_required_variable_is_a_request_error() {
    let app = spawn_app().await;
    let resp = app
        .gql_vars("query($n: Int!) { users(first: $n) { id } }", json!({}))
        .await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert_eq!(resp.error_code(), "BAD_USER_INPUT");
    assert!(resp.body.get("data").is_none());
}

#[tokio::test]
async fn windows_outside_the_storable_years_are_bad_input() {
    let app = spawn_app().await;
    for q in [
        r#"{ analytics { topCustomers(days: 1, asOf: "0001-01-01T14:24:42Z") { orderCount } } }"#,
        r#"{ analytics { revenueByDay(days: 30, asOf: "1900-01-10T00:00:00Z") { day } } }"#,
        r#"{ analytics { productSales(asOf: "+10000-01-01T00:00:00Z") { unitsSold } } }"#,
    ] {
        let resp = app.gql(q).await;
        assert!(
            ["BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED"].contains(&resp.error_code()),
            "{q}: {}",
            resp.body
        );
        assert_eq!(resp.statements, 0, "{q}");
    }
}

#[tokio::test]
async fn a_nul_in_an_email_is_refused_on_both_backends() {
    let app = spawn_app().await;
    let resp = app
        .gql_vars(
            "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
            json!({ "i": { "email": "a\u{0}b@example.com", "username": "nul_user", "password": "correct horse" } }),
        )
        .await;
    assert_eq!(resp.error_code(), "BAD_USER_INPUT", "{}", resp.body);
}

async fn raw(app: &TestApp, req: Request<Body>) -> (u16, axum::http::HeaderMap, Value) {
    let (status, headers, text) = app.send(req).await;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status.as_u16(), headers, body)
}

#[tokio::test]
async fn every_refusal_is_a_json_graphql_error() {
    let app = spawn_app_with(&["--max-body-bytes", "1000"]).await;
    let big = json!({ "query": format!("{{ __typename }} #{}", "x".repeat(2000)) }).to_string();
    let req = Request::post("/graphql")
        .header("content-type", "application/json")
        .body(Body::from(big))
        .expect("request");
    let (status, headers, body) = raw(&app, req).await;
    assert_eq!(status, 413);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE",
        "{body}"
    );
    // Refused before anything ran: a count of 0, and the headers every response carries.
    assert_eq!(headers["x-eagerql-sql-statements"], "0");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers.contains_key("x-request-id"));

    let req = Request::delete("/graphql")
        .body(Body::empty())
        .expect("request");
    let (status, headers, body) = raw(&app, req).await;
    assert_eq!(status, 405);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "METHOD_NOT_ALLOWED",
        "{body}"
    );
    assert!(headers.get("allow").is_some());
    assert_eq!(headers["x-eagerql-sql-statements"], "0");
    assert_eq!(headers["x-frame-options"], "DENY");

    let req = Request::options("/graphql")
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = raw(&app, req).await;
    assert_eq!(status, 405, "no CORS configured: OPTIONS is not served");
    assert!(
        body["errors"][0]["extensions"]["code"].is_string(),
        "{body}"
    );

    let req = Request::get("/nowhere")
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = raw(&app, req).await;
    assert_eq!(status, 404);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{body}"
    );
}

fn preflight(origin: &str) -> Request<Body> {
    Request::options("/graphql")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, authorization",
        )
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn cors_is_off_by_default_and_follows_the_configured_origins() {
    let app = spawn_app().await;
    let (_, headers, _) = raw(&app, preflight("https://app.example")).await;
    assert!(headers.get("access-control-allow-origin").is_none());

    let app = spawn_app_with(&[
        "--cors-origins",
        "https://app.example,https://admin.example",
    ])
    .await;
    let (status, headers, _) = raw(&app, preflight("https://app.example")).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .expect("text")
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
    let (_, headers, _) = raw(&app, preflight("https://evil.example")).await;
    assert!(headers.get("access-control-allow-origin").is_none());
    // The actual request carries the header too, and exposes the statement count.
    let req = Request::post("/graphql")
        .header("origin", "https://admin.example")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"query":"{ __typename }"}"#))
        .expect("request");
    let (_, headers, _) = raw(&app, req).await;
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://admin.example"
    );
    let exposed = headers["access-control-expose-headers"]
        .to_str()
        .expect("text")
        .to_ascii_lowercase();
    for header in ["x-eagerql-sql-statements", "x-request-id", "retry-after"] {
        assert!(exposed.contains(header), "{header} exposed: {exposed}");
    }

    let app = spawn_app_with(&["--cors-origins", "*"]).await;
    let (_, headers, _) = raw(&app, preflight("https://any.example")).await;
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(headers.get("access-control-allow-credentials").is_none());
}

#[tokio::test]
async fn large_responses_are_compressed_small_ones_are_not() {
    let app = spawn_app().await;
    app.seed(50, 4, 1, 5).await;
    let large = "{ users(first: 50) { email orders { id status totalAmount } } }";
    let post = |query: &str, accept: &str| {
        Request::post("/graphql")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", app.token))
            .header("accept-encoding", accept)
            .body(Body::from(json!({ "query": query }).to_string()))
            .expect("request")
    };
    let (_, headers, body) = app.send_bytes(post(large, "gzip, deflate, br, zstd")).await;
    let encoding = headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap_or(""));
    // Of equal qualities, br: the smallest here (zstd, larger, breaks some clients' fetch).
    assert_eq!(encoding, Some("br"), "{headers:?}");
    assert_eq!(headers["vary"], "accept-encoding");
    assert!(body.len() < 5_000, "compressed to {} bytes", body.len());
    let mut answer = Vec::new();
    std::io::Read::read_to_end(&mut brotli::Decompressor::new(&body[..], 4096), &mut answer)
        .expect("br");
    let answer: serde_json::Value = serde_json::from_slice(&answer).expect("JSON");
    assert_eq!(answer["data"]["users"].as_array().map(Vec::len), Some(50));
    // The client's preference, and gzip when it takes only that.
    let (_, headers, body) = app.send_bytes(post(large, "br;q=0.5, gzip")).await;
    assert_eq!(headers["content-encoding"], "gzip");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text)
        .expect("gzip");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).expect("JSON"),
        answer
    );
    // Neither accepted: the answer as it is, still saying it varies on the header.
    let (_, headers, body) = app.send_bytes(post(large, "br;q=0, identity")).await;
    assert!(headers.get("content-encoding").is_none());
    assert_eq!(headers["vary"], "accept-encoding");
    assert_eq!(headers["content-length"], body.len().to_string().as_str());
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).expect("JSON"),
        answer
    );
    let (_, headers, body) = app.send_bytes(post("{ __typename }", "br")).await;
    assert!(headers.get("content-encoding").is_none());
    assert!(headers.get("vary").is_none());
    assert!(String::from_utf8_lossy(&body).contains("Query"));
}

/// graphql-js's `getIntrospectionQuery()`, what GraphiQL, codegen and IDE plugins send.
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType {
    kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}
"#;

#[tokio::test]
async fn the_standard_introspection_query_works_under_default_limits() {
    let app = spawn_app().await;
    let resp = app.gql(INTROSPECTION).await;
    let types = resp.data()["__schema"]["types"].as_array().expect("types");
    let query = types
        .iter()
        .find(|t| t["name"] == "Query")
        .expect("the Query type");
    let fields: Vec<&str> = query["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(
        fields.contains(&"users") && fields.contains(&"analytics"),
        "{fields:?}"
    );
    assert_eq!(resp.statements, 0, "introspection reads no data");
}

/// `EAGERQL_MAX_COMPLEXITY` (one point per selected field of the operation, fragments
/// expanded) and `EAGERQL_MAX_FIELDS` are checked while the document is prepared: a request
/// over either is a request error (`LIMIT_EXCEEDED`, no `data`, nothing ran), and one at the
/// limit runs.
#[tokio::test]
async fn complexity_and_fields_are_limited_before_anything_runs() {
    for (flag, needle) in [
        ("--max-complexity", "too complex"),
        ("--max-fields", "more than 4 fields"),
    ] {
        let app = spawn_app_with(&[flag, "4"]).await;
        let at_limit = app.gql("{ products(first: 1) { id name sku } }").await;
        assert!(
            at_limit.body.get("errors").is_none(),
            "{flag}: {}",
            at_limit.body
        );
        // Through a fragment: counted once expanded.
        let over = app
            .gql("{ products(first: 1) { ...P } } fragment P on Product { id name sku price }")
            .await;
        assert_eq!(over.error_code(), "LIMIT_EXCEEDED", "{flag}: {}", over.body);
        assert!(
            over.error_message().contains(needle),
            "{flag}: {}",
            over.body
        );
        assert!(over.body.get("data").is_none(), "{flag}: {}", over.body);
        assert_eq!(over.statements, 0, "{flag}");
    }
}
