//! Trusted documents (`EAGERQL_TRUSTED_DOCUMENTS`, `EAGERQL_TRUSTED_ONLY`) and the cache of
//! prepared documents.

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDb, build_app, scratch_dir, spawn_app, spawn_app_with};

const CATALOGUE: &str = "query Catalogue { products(first: 2) { name orders { id } } }";
const MINE: &str = "query Mine { me { id } }";

fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// An Apollo manifest of CATALOGUE (id `a1`) and a Relay one of MINE (id `r1`); the path list.
fn manifests() -> (std::path::PathBuf, String) {
    let dir = scratch_dir("trusted");
    let apollo = json!({
        "format": "apollo-persisted-query-manifest", "version": 1,
        "operations": [{ "id": "a1", "name": "Catalogue", "type": "query", "body": CATALOGUE }]
    });
    std::fs::write(dir.join("apollo.json"), apollo.to_string()).unwrap();
    std::fs::write(dir.join("relay.json"), json!({ "r1": MINE }).to_string()).unwrap();
    let list = format!(
        "{},{}",
        dir.join("apollo.json").display(),
        dir.join("relay.json").display()
    );
    (dir, list)
}

async fn post(app: &TestApp, body: Value) -> (u16, Value, String) {
    let req = Request::post("/graphql")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", app.token))
        .body(Body::from(body.to_string()))
        .expect("request");
    let (status, headers, text) = app.send(req).await;
    // Requests refused before they are read (bad parameters) carry no count.
    let count = headers
        .get("x-eagerql-sql-statements")
        .map_or("-", |v| v.to_str().unwrap())
        .to_owned();
    (
        status.as_u16(),
        serde_json::from_str(&text).expect("json"),
        count,
    )
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn requests_name_trusted_documents_by_document_id_or_hash() {
    let (dir, list) = manifests();
    let app = spawn_app_with(&["--trusted-documents", &list]).await;
    app.seed(3, 1, 1, 3).await;
    let names = |b: &Value| b["data"]["products"].as_array().map(Vec::len);
    for id in ["a1".to_owned(), format!("sha256:{}", sha256_hex(CATALOGUE))] {
        let (status, body, n) = post(&app, json!({ "documentId": id })).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(names(&body), Some(2), "{id}: {body}");
        assert_eq!(n, "2");
    }
    let (_, body, _) = post(&app, json!({ "documentId": "r1" })).await;
    assert_eq!(body["data"]["me"]["id"], "1", "{body}");
    // Apollo's persisted queries: the hash alone finds a trusted document, with no
    // registration round trip.
    let ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256_hex(CATALOGUE) } });
    let (_, body, _) = post(&app, json!({ "extensions": ext })).await;
    assert_eq!(names(&body), Some(2), "{body}");
    // Over GET too.
    let uri = "/graphql?documentId=a1";
    let (status, _, text) = app
        .send(Request::get(uri).body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, 200, "{text}");
    // An unknown id, or an id with a query, is the client's error; nothing runs.
    let (status, body, n) = post(&app, json!({ "documentId": "nope" })).await;
    assert_eq!(
        (status, code(&body), n.as_str()),
        (400, "PERSISTED_QUERY_NOT_FOUND", "0")
    );
    let (status, body, _) = post(&app, json!({ "documentId": "a1", "query": CATALOGUE })).await;
    assert_eq!((status, code(&body)), (400, "BAD_REQUEST"), "{body}");
    let (status, _, n) = post(&app, json!({ "documentId": 7 })).await;
    assert_eq!(
        (status, n.as_str()),
        (400, "0"),
        "refused before execution: 0 statements"
    );
    let ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256_hex(MINE) } });
    let (status, body, _) = post(&app, json!({ "documentId": "a1", "extensions": ext })).await;
    assert_eq!(
        (status, code(&body)),
        (400, "BAD_REQUEST"),
        "two names for one document"
    );
    // Without EAGERQL_TRUSTED_ONLY any other document still runs.
    let (_, body, _) = post(&app, json!({ "query": "{ products { id } }" })).await;
    assert!(body.get("errors").is_none(), "{body}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn trusted_only_refuses_every_other_document() {
    let (dir, list) = manifests();
    let app = spawn_app_with(&["--trusted-documents", &list, "--trusted-only", "true"]).await;
    app.seed(3, 1, 1, 3).await;
    // A trusted document runs by id, by hash, or sent in full, character for character.
    for body in [
        json!({ "documentId": "a1" }),
        json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": sha256_hex(CATALOGUE) } } }),
        json!({ "query": CATALOGUE }),
    ] {
        let (status, got, _) = post(&app, body.clone()).await;
        assert_eq!(status, 200, "{body}: {got}");
        assert!(got.get("errors").is_none(), "{body}: {got}");
    }
    // Anything else is refused before it is parsed, and runs nothing.
    let other = "{ users { email } }";
    let (status, body, n) = post(&app, json!({ "query": other })).await;
    assert_eq!(
        (status, code(&body), n.as_str()),
        (400, "PERSISTED_QUERY_NOT_IN_LIST", "0"),
        "{body}"
    );
    assert!(body.get("data").is_none());
    let (_, body, _) = post(&app, json!({ "query": format!("{CATALOGUE} ") })).await;
    assert_eq!(
        code(&body),
        "PERSISTED_QUERY_NOT_IN_LIST",
        "not the same text"
    );
    // An automatic persisted query may not register a document, nor find an unknown one.
    let ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256_hex(other) } });
    let (_, body, _) = post(&app, json!({ "query": other, "extensions": ext })).await;
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_IN_LIST");
    let (_, body, _) = post(&app, json!({ "extensions": ext })).await;
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_FOUND");
    assert_eq!(app.state.persisted.len(), 0, "nothing was stored");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn the_server_does_not_start_with_an_invalid_or_over_budget_trusted_document() {
    let dir = scratch_dir("trusted-start");
    let tdb = TestDb::create().await;
    let start = |manifest: &std::path::Path, extra: &[&str]| {
        let path = manifest.display().to_string();
        let mut args = vec!["--trusted-documents".to_owned(), path];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let url = tdb.url.clone();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            build_app(&url, &refs).await
        }
    };
    // An entry whose body holds two operations: both are checked (a request may select
    // either), and the one the manifest names is the default.
    let two = dir.join("two.json");
    let body = format!("{CATALOGUE}\nquery Deep {{ products {{ orders {{ items {{ id }} }} }} }}");
    std::fs::write(
        &two,
        json!({ "format": "apollo-persisted-query-manifest", "version": 1,
                "operations": [{ "id": "t", "name": "Catalogue", "type": "query", "body": body }] })
        .to_string(),
    )
    .unwrap();
    let err = start(&two, &["--statement-budget", "2"])
        .await
        .err()
        .expect("Deep needs 3")
        .to_string();
    assert!(err.contains("Deep") && err.contains("needs 3"), "{err}");
    let app = start(&two, &[]).await.expect("starts");
    let run = |body: Value| {
        let router = eagerql::server::http::router(app.state().clone());
        async move {
            let req = Request::post("/graphql")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            let resp = tower::ServiceExt::oneshot(router, req).await.unwrap();
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        }
    };
    let named = run(json!({ "documentId": "t" })).await;
    assert!(named["data"]["products"].is_array(), "{named}");
    assert!(
        named["data"]["products"][0].get("name").is_some()
            || named["data"]["products"] == json!([])
    );
    let other = run(json!({ "documentId": "t", "operationName": "Deep" })).await;
    assert!(other.get("errors").is_none(), "{other}");
    drop(app);
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        json!({ "r1": CATALOGUE, "r2": "query Broken { products { nope } }" }).to_string(),
    )
    .unwrap();
    let err = start(&bad, &[]).await.err().expect("refused").to_string();
    assert!(err.contains("invalid"), "{err}");
    assert!(
        err.contains("bad.json#r2"),
        "names the manifest entry: {err}"
    );
    assert!(err.contains("nope"), "says why: {err}");
    let good = dir.join("good.json");
    std::fs::write(&good, json!({ "r1": CATALOGUE }).to_string()).unwrap();
    let err = start(&good, &["--statement-budget", "1"])
        .await
        .err()
        .expect("over budget")
        .to_string();
    assert!(
        err.contains("Catalogue") && err.contains("needs 2 SQL statements"),
        "{err}"
    );
    // Trusted-only with no trusted document would refuse everything: it does not start.
    let tdb2 = TestDb::create().await;
    let err = build_app(&tdb2.url, &["--trusted-only", "true"])
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("EAGERQL_TRUSTED_DOCUMENTS"), "{err}");
    let app = start(&good, &[]).await.expect("starts");
    // Checked at start means prepared at start: the first request finds it in the cache.
    let (hits, _) = app.state().preparer.cache_hits_and_misses();
    let state = app.state().clone();
    let req = Request::post("/graphql")
        .header("content-type", "application/json")
        .body(Body::from(json!({ "documentId": "r1" }).to_string()))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(eagerql::server::http::router(state.clone()), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(state.preparer.cache_hits_and_misses().0, hits + 1);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_repeated_document_is_parsed_and_validated_once() {
    let app = spawn_app().await;
    app.seed(3, 2, 1, 3).await;
    let q = "query($n: Int!, $all: Boolean!) { users(first: $n) { id orders @include(if: $all) { id } } }";
    let cache = || app.state.preparer.cache_hits_and_misses();
    let (h0, m0) = cache();
    let first = app.gql_vars(q, json!({ "n": 2, "all": true })).await;
    assert_eq!(cache(), (h0, m0 + 1), "a miss, then kept");
    // Other variables: the same validated document, a different canonical operation.
    let second = app.gql_vars(q, json!({ "n": 3, "all": false })).await;
    assert_eq!(cache(), (h0 + 1, m0 + 1));
    assert_eq!(first.data()["users"].as_array().map(Vec::len), Some(2));
    assert_eq!(second.data()["users"].as_array().map(Vec::len), Some(3));
    assert!(
        second.data()["users"][0].get("orders").is_none(),
        "@include applied"
    );
    assert_eq!(first.statements, 2);
    assert_eq!(second.statements, 1);
    // An invalid document is refused every time and never kept.
    for _ in 0..2 {
        let bad = app.gql("{ users { nope } }").await;
        assert_eq!(bad.error_code(), "GRAPHQL_VALIDATION_FAILED");
    }
    assert_eq!(cache().0, h0 + 1, "no hit for an invalid document");
    // Nor is one over the document limits.
    let deep = format!("{{ __typename {} }}", "a: __typename ".repeat(40));
    for _ in 0..2 {
        assert_eq!(app.gql(&deep).await.error_code(), "LIMIT_EXCEEDED");
    }
    assert_eq!(cache().0, h0 + 1);
}
