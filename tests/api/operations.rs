//! What an operator sees: a request id on every response and log line, one structured log
//! line per request, and the security headers.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};

use crate::helpers::spawn_app;

fn graphql(body: Value, request_id: Option<&str>) -> Request<Body> {
    let mut req = Request::post("/graphql").header("content-type", "application/json");
    if let Some(id) = request_id {
        req = req.header("x-request-id", id);
    }
    req.body(Body::from(body.to_string())).expect("request")
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let q = json!({ "query": "{ __typename }" });
    // Made when absent: 128 random bits in hex, different each time.
    let (_, h1, _) = app.send(graphql(q.clone(), None)).await;
    let (_, h2, _) = app.send(graphql(q.clone(), None)).await;
    let id1 = h1["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id1.len(), 32);
    assert!(id1.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(id1, h2["x-request-id"].to_str().unwrap());
    // A sane one is echoed; one that could forge a log line is replaced.
    let (_, h, _) = app.send(graphql(q.clone(), Some("edge-7f3a.42"))).await;
    assert_eq!(h["x-request-id"], "edge-7f3a.42");
    for insane in ["has spaces".to_owned(), "x".repeat(129)] {
        let (_, h, _) = app.send(graphql(q.clone(), Some(&insane))).await;
        let got = h["x-request-id"].to_str().unwrap();
        assert_ne!(got, insane);
        assert_eq!(got.len(), 32);
    }
    // Also on answers no GraphQL handler wrote.
    for path in ["/healthz", "/nope", "/"] {
        let (_, h, _) = app
            .send(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert!(h.contains_key("x-request-id"), "{path}");
    }
}

#[tokio::test]
async fn responses_carry_security_headers_and_graphiql_works_under_its_policy() {
    let app = spawn_app().await;
    let (_, page, html) = app
        .send(Request::get("/").body(Body::empty()).unwrap())
        .await;
    let csp = page["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-eval"), "{csp}");
    // The page's one inline script is allowed by its hash, and only it.
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let script = html
        .split("<script>")
        .nth(1)
        .and_then(|s| s.split("</script>").next())
        .expect("inline script");
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script.as_bytes()));
    assert!(csp.contains(&format!("'sha256-{hash}'")), "{csp}");
    assert!(!csp.contains("script-src 'self' 'unsafe-inline'"));
    let (_, data, _) = app
        .send(graphql(json!({ "query": "{ __typename }" }), None))
        .await;
    for h in [&page, &data] {
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
    }
    assert_eq!(
        data["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
}

/// Everything written to the log while `f` runs on this thread, one JSON object per line.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

#[tokio::test]
async fn one_structured_log_line_per_request_with_its_id_and_no_secrets() {
    let app = spawn_app().await;
    app.seed(3, 2, 1, 3).await;
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let q = json!({ "query": "query Catalogue { products(first: 2) { name orders { id } } }" });
    app.send(graphql(q, Some("req-a"))).await;
    let secret = "s3cret-Passw0rd!";
    let login = json!({
        "query": "mutation SignIn($p: String!) { login(email: \"user1@example.com\", password: $p) { accessToken } }",
        "variables": { "p": secret }
    });
    app.send(graphql(login, Some("req-b"))).await;
    let forbidden = json!({ "query": "{ users { id } }" });
    app.send(graphql(forbidden, Some("req-c"))).await;

    let lines = captured.lines();
    let request_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "graphql request")
        .collect();
    assert_eq!(request_lines.len(), 3, "one line per request: {lines:?}");
    let by_id = |id: &str| {
        *request_lines
            .iter()
            .find(|l| l["span"]["request_id"] == id)
            .unwrap_or_else(|| panic!("a line for {id}: {request_lines:?}"))
    };
    let a = by_id("req-a");
    assert_eq!(a["operation"], "Catalogue");
    assert_eq!(a["operation_type"], "query");
    assert_eq!(a["status"], 200);
    assert_eq!(a["statements"], 2);
    assert!(a["rows"].as_u64().unwrap() >= 2, "{a}");
    assert!(a["db_us"].is_u64() && a["duration_ms"].is_f64(), "{a}");
    assert_eq!(a["error_codes"], "");
    let b = by_id("req-b");
    assert_eq!(b["operation"], "SignIn");
    assert_eq!(b["operation_type"], "mutation");
    assert_eq!(b["error_codes"], "UNAUTHENTICATED", "a failed login: {b}");
    let c = by_id("req-c");
    assert_eq!(c["error_codes"], "UNAUTHENTICATED", "{c}");
    assert_eq!(c["viewer"], Value::Null, "anonymous: {c}");
    // Every line written while a request was served carries its id; no line holds the
    // password, and none the document.
    let all = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(!all.contains(secret), "a password in the log");
    assert!(!all.contains("accessToken"), "a document in the log");
    for l in &lines {
        if l.get("span").is_some() {
            assert!(l["span"]["request_id"].is_string(), "{l}");
        }
    }
}
