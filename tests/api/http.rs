//! GraphQL over HTTP: media types, status codes, GET rules, GraphiQL, health endpoints.

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

fn post(body: &str, content_type: Option<&str>, accept: Option<&str>) -> Request<Body> {
    let mut req = Request::post("/graphql");
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    req.body(Body::from(body.to_owned())).expect("request")
}

fn get(path: &str, accept: Option<&str>) -> Request<Body> {
    let mut req = Request::get(path);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    req.body(Body::empty()).expect("request")
}

async fn send(app: &TestApp, req: Request<Body>) -> (u16, String, String, Value) {
    let (status, headers, text) = app.send(req).await;
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status.as_u16(), ct, text, json)
}

const Q: &str = r#"{"query":"{ __typename }"}"#;

#[tokio::test]
async fn the_response_media_type_follows_accept() {
    let app = spawn_app().await;
    let (s, ct, _, body) = send(&app, post(Q, Some("application/json"), None)).await;
    assert_eq!((s, ct.as_str()), (200, "application/json; charset=utf-8"));
    assert_eq!(body, json!({ "data": { "__typename": "Query" } }));

    let (s, ct, _, _) = send(
        &app,
        post(
            Q,
            Some("application/json"),
            Some("application/graphql-response+json"),
        ),
    )
    .await;
    assert_eq!(
        (s, ct.as_str()),
        (200, "application/graphql-response+json; charset=utf-8")
    );

    let (s, ct, _, _) = send(&app, post(Q, Some("application/json"), Some("*/*"))).await;
    assert_eq!((s, ct.as_str()), (200, "application/json; charset=utf-8"));

    let (s, _, _, body) = send(&app, post(Q, Some("application/json"), Some("text/html"))).await;
    assert_eq!(s, 406);
    assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_ACCEPTABLE");
}

#[tokio::test]
async fn unsupported_bodies_are_refused() {
    let app = spawn_app().await;
    assert_eq!(send(&app, post(Q, Some("text/plain"), None)).await.0, 415);
    assert_eq!(send(&app, post(Q, None, None)).await.0, 415);
    assert_eq!(
        send(
            &app,
            post(Q, Some("application/json; charset=latin1"), None)
        )
        .await
        .0,
        415
    );
    for bad in [
        "{not json",
        "[]",
        r#"[{"query":"{ __typename }"}]"#,
        r#"{"query": 1}"#,
        r#"{"query":"{ __typename }","variables":"x"}"#,
        r#"{"query":"{ __typename }","operationName":3}"#,
        r#"{"query":"{ __typename }","extensions":[]}"#,
        r#"{"qeury":"{ __typename }"}"#,
    ] {
        let (s, _, text, body) = send(&app, post(bad, Some("application/json"), None)).await;
        assert_eq!(s, 400, "{bad}: {text}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_REQUEST",
            "{bad}"
        );
    }
}

#[tokio::test]
async fn request_errors_are_400_without_data_under_graphql_response_json() {
    let app = spawn_app().await;
    let gr = Some("application/graphql-response+json");
    let (s, _, _, body) = send(&app, post(r#"{"query":"{"}"#, Some("application/json"), gr)).await;
    assert_eq!(s, 400);
    assert!(body.get("data").is_none() && body["errors"].is_array());
    let (s, _, _, body) = send(
        &app,
        post(r#"{"query":"{ nope }"}"#, Some("application/json"), gr),
    )
    .await;
    assert_eq!(s, 400);
    assert!(body.get("data").is_none());
    // The legacy media type keeps 200 for GraphQL-level errors.
    let (s, _, _, body) = send(
        &app,
        post(r#"{"query":"{ nope }"}"#, Some("application/json"), None),
    )
    .await;
    assert_eq!(s, 200);
    assert!(body.get("data").is_none());
}

#[tokio::test]
async fn get_runs_queries_and_refuses_mutations() {
    let app = spawn_app().await;
    let (s, _, _, body) = send(&app, get("/graphql?query=%7B__typename%7D", None)).await;
    assert_eq!(s, 200);
    assert_eq!(body["data"]["__typename"], "Query");

    let (s, _, _, body) = send(
        &app,
        get("/graphql?query=query(%24n%3AInt!)%7Bproducts(first%3A%24n)%7Bid%7D%7D&variables=%7B%22n%22%3A1%7D", None),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["data"]["products"], json!([]));

    let (status, headers, _) = app
        .send(get("/graphql?query=mutation%7B__typename%7D", None))
        .await;
    assert_eq!(status, 405);
    assert_eq!(
        headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );

    assert_eq!(
        send(
            &app,
            get("/graphql?query=%7B__typename%7D&variables=nope", None)
        )
        .await
        .0,
        400
    );
    assert_eq!(send(&app, get("/graphql", None)).await.0, 400);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let app = spawn_app_with(&["--max-body-bytes", "1024"]).await;
    let big = format!(
        r#"{{"query":"{{ __typename }}","extensions":{{"pad":"{}"}}}}"#,
        "x".repeat(4096)
    );
    assert_eq!(
        send(&app, post(&big, Some("application/json"), None))
            .await
            .0,
        413
    );
}

#[tokio::test]
async fn sql_is_shown_only_when_asked_and_allowed() {
    let app = spawn_app().await;
    let (_, _, _, body) = send(
        &app,
        post(
            r#"{"query":"{ users { id } }"}"#,
            Some("application/json"),
            None,
        ),
    )
    .await;
    assert!(body.get("extensions").is_none(), "not asked: {body}");
    let r = app.gql("{ users { id orders { id } } }").await;
    let sql = &r.body["extensions"]["sql"];
    assert_eq!(sql["count"], 1);
    assert_eq!(sql["statements"][0]["name"], "users.page");
    assert!(
        sql["statements"][0]["sql"]
            .as_str()
            .is_some_and(|s| s.starts_with("select"))
    );
    assert!(sql["statements"][0]["durationUs"].is_u64());

    let off = spawn_app_with(&["--debug-sql", "off"]).await;
    let r = off.gql("{ users { id } }").await;
    assert_eq!(r.body["extensions"]["sql"]["count"], 1);
    assert!(r.body["extensions"]["sql"]["statements"].is_null());
}

#[tokio::test]
async fn graphiql_is_served_offline() {
    let app = spawn_app().await;
    let (s, ct, html, _) = send(&app, get("/", Some("text/html"))).await;
    assert_eq!(s, 200);
    assert!(ct.starts_with("text/html"));
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "no CDN"
    );
    for asset in [
        "graphiql.min.js",
        "graphiql.min.css",
        "react.production.min.js",
        "react-dom.production.min.js",
    ] {
        assert!(
            html.contains(&format!("/graphiql/{asset}")),
            "{asset} referenced"
        );
        let (s, _, body, _) = send(&app, get(&format!("/graphiql/{asset}"), None)).await;
        assert_eq!(s, 200, "{asset}");
        assert!(body.len() > 1000, "{asset} has content");
    }
    assert_eq!(send(&app, get("/graphiql/nope.js", None)).await.0, 404);
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    assert_eq!(send(&app, get("/healthz", None)).await.0, 200);
    assert_eq!(send(&app, get("/readyz", None)).await.0, 200);
    app.db.close().await;
    assert_eq!(send(&app, get("/readyz", None)).await.0, 503);
    assert_eq!(send(&app, get("/healthz", None)).await.0, 200);
}

#[tokio::test]
async fn the_health_command_reads_readyz_over_a_socket() {
    let app = spawn_app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = app.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let health = |addr| {
        eagerql::cli::run(eagerql::cli::Cli {
            command: Some(eagerql::cli::Command::Health { addr, tls: None }),
        })
    };
    assert!(health(addr).await.is_ok());
    app.db.close().await;
    assert!(health(addr).await.is_err(), "503 once the database is gone");
    server.abort();
    assert!(
        health("127.0.0.1:9".parse().expect("addr")).await.is_err(),
        "nothing listening"
    );
}

fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn automatic_persisted_queries_follow_the_apollo_protocol() {
    let app = spawn_app().await;
    app.seed(3, 1, 1, 3).await;
    let query = "{ products(first: 2) { id } }";
    let hash = sha256_hex(query);
    let ext = serde_json::json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let post = |body: serde_json::Value| {
        Request::post("/graphql")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request")
    };
    // The hash alone: not found yet.
    let (status, headers, text) = app
        .send(post(serde_json::json!({ "extensions": ext })))
        .await;
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound");
    assert_eq!(headers["x-eagerql-sql-statements"], "0");
    // The document with its hash: checked, stored and run.
    let (_, _, text) = app
        .send(post(
            serde_json::json!({ "query": query, "extensions": ext }),
        ))
        .await;
    let body: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        body["data"]["products"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    // Then the hash alone, over POST and over GET.
    let (_, _, text) = app
        .send(post(serde_json::json!({ "extensions": ext })))
        .await;
    let body: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        body["data"]["products"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    let uri = format!("/graphql?extensions={}", url_encode(&ext.to_string()));
    let (status, _, text) = app
        .send(Request::get(uri).body(Body::empty()).expect("request"))
        .await;
    assert_eq!(status, 200, "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        body["data"]["products"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    // A document that does not have the hash sent is refused, and not stored.
    let (status, _, text) = app
        .send(post(
            serde_json::json!({ "query": "{ products { id } }", "extensions": ext }),
        ))
        .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("BAD_REQUEST"));
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every refusal, wherever it is made (token, media type, method, path, persisted query),
/// is in the media type `Accept` asks for: Apollo Client reads a non-2xx body only as
/// `application/graphql-response+json`, and an expired token must reach its error link.
#[tokio::test]
async fn refusals_come_in_the_media_type_accept_asks_for() {
    let app = spawn_app().await;
    const GQL: &str = "application/graphql-response+json; charset=utf-8";
    let with = |mut req: Request<Body>, name: &'static str, value: &str| {
        req.headers_mut()
            .insert(name, value.parse().expect("header value"));
        req
    };
    let accept = Some("application/graphql-response+json");
    let cases: Vec<(Request<Body>, u16, &str)> = vec![
        (
            with(
                post(Q, Some("application/json"), accept),
                "authorization",
                "Bearer expired.or.forged",
            ),
            401,
            "UNAUTHENTICATED",
        ),
        (
            post(Q, Some("text/plain"), accept),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            post("{", Some("application/json"), accept),
            400,
            "BAD_REQUEST",
        ),
        (get("/nowhere", accept), 404, "NOT_FOUND"),
        (
            post(
                &format!(
                    r#"{{"query":"{{ __typename }}","extensions":{{"pad":"{}"}}}}"#,
                    "a".repeat(5 << 20)
                ),
                Some("application/json"),
                accept,
            ),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            post(
                r#"{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"0000000000000000000000000000000000000000000000000000000000000000"}}}"#,
                Some("application/json"),
                accept,
            ),
            // A 200, which Apollo's persisted-query link answers by sending the document.
            200,
            "PERSISTED_QUERY_NOT_FOUND",
        ),
    ];
    for (req, status, code) in cases {
        let (s, ct, text, body) = send(&app, req).await;
        assert_eq!((s, ct.as_str()), (status, GQL), "{code}: {text}");
        assert_eq!(body["errors"][0]["extensions"]["code"], code, "{text}");
    }
    let mut put = post(Q, Some("application/json"), accept);
    *put.method_mut() = axum::http::Method::PUT;
    let (s, ct, text, body) = send(&app, put).await;
    assert_eq!((s, ct.as_str()), (405, GQL), "{text}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "METHOD_NOT_ALLOWED"
    );
    // Asked for legacy JSON, the same refusal is legacy JSON.
    let (s, ct, _, _) = send(&app, get("/nowhere", Some("application/json"))).await;
    assert_eq!((s, ct.as_str()), (404, "application/json; charset=utf-8"));
}

/// A subscription sent for one answer is told where subscriptions stream; a WebSocket upgrade is a GET
/// (`websocket.rs` speaks graphql-transport-ws over a real socket): one sent with POST is told
/// how to open one.
#[tokio::test]
async fn streaming_requests_are_told_what_is_served() {
    let app = spawn_app().await;
    let upgrade = Request::post("/graphql")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-protocol", "graphql-transport-ws")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"query":"{ __typename }"}"#))
        .expect("request");
    let (s, _, text, body) = send(&app, upgrade).await;
    assert_eq!(s, 400, "{text}");
    let message = body["errors"][0]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("GET") && message.contains("graphql-transport-ws"),
        "{text}"
    );
    // A subscription asking for one JSON answer is told which transports stream.
    let subscription = post(
        r#"{"query":"subscription { productsAggregate { count } }"}"#,
        Some("application/json"),
        Some("application/graphql-response+json"),
    );
    let (s, _, text, body) = send(&app, subscription).await;
    assert_eq!(s, 400, "{text}");
    let message = body["errors"][0]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("WebSocket") && message.contains("text/event-stream"),
        "{text}"
    );
}

/// GraphiQL's assets are compressed once (br before gzip), carry an `ETag` and are
/// revalidated, so an upgrade is seen at once and an unchanged asset costs a 304.
#[tokio::test]
async fn graphiql_assets_are_precompressed_and_revalidated_by_etag() {
    let app = spawn_app().await;
    let asset = |encoding: &str, etag: Option<&str>| {
        let mut req = Request::get("/graphiql/graphiql.min.js").header("accept-encoding", encoding);
        if let Some(tag) = etag {
            req = req.header("if-none-match", tag);
        }
        req.body(Body::empty()).expect("request")
    };
    let (status, headers, br) = app.send_bytes(asset("gzip, deflate, br, zstd", None)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-encoding"], "br");
    assert_eq!(headers["cache-control"], "no-cache");
    let etag = headers["etag"].to_str().expect("etag").to_owned();
    let (_, headers, gzip) = app.send_bytes(asset("gzip", None)).await;
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["etag"].to_str().ok(), Some(etag.as_str()));
    let (_, headers, plain) = app.send_bytes(asset("identity", None)).await;
    assert!(headers.get("content-encoding").is_none());
    assert!(br.len() < gzip.len() && gzip.len() < plain.len() / 3);
    let (status, _, body) = app.send_bytes(asset("br", Some(&etag))).await;
    assert_eq!((status.as_u16(), body.len()), (304, 0));
    let (status, _, _) = app.send_bytes(asset("br", Some("\"other\""))).await;
    assert_eq!(status, 200);
}
