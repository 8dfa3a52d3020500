//! What an operator sees: a request id on every response and log line, one structured log
//! line per request, and the security headers.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use eagerql::observe::telemetry::LogFormat;
use serde_json::{Value, json};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;

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
    /// The server's own log layer in `format` up to `level`, writing here, as this thread's
    /// subscriber until the guard is dropped.
    fn install(
        format: LogFormat,
        level: LevelFilter,
    ) -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(
            eagerql::observe::telemetry::log_layer(format, false, captured.clone())
                .with_filter(level),
        );
        (
            captured.clone(),
            tracing::subscriber::set_default(subscriber),
        )
    }

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
    // At DEBUG: a line per statement is written while a request is served too.
    let (captured, _guard) = Captured::install(LogFormat::Json, LevelFilter::DEBUG);

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
            .find(|l| l["request_id"] == id)
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
    assert!(a["timestamp"].as_str().unwrap().ends_with('Z'), "{a}");
    assert_eq!(
        (a["level"].as_str(), a["target"].as_str()),
        (Some("INFO"), Some("eagerql::http"))
    );
    // Every line written while a request was served carries its id (the DEBUG line of each
    // statement is one), and every line is JSON; no line holds the password, and none the document.
    let all = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert_eq!(
        all.lines().count(),
        lines.len(),
        "every line is a JSON object: {all}"
    );
    assert!(!all.contains(secret), "a password in the log");
    assert!(!all.contains("accessToken"), "a document in the log");
    let statements: Vec<&Value> = lines.iter().filter(|l| l["message"] == "sql").collect();
    // Two for the catalogue, two for the failed sign-in (its attempt counted, the account read).
    assert_eq!(statements.len(), 4, "a DEBUG line per statement: {lines:?}");
    for l in statements {
        assert!(
            ["req-a", "req-b", "req-c"].contains(&l["request_id"].as_str().unwrap_or("")),
            "{l}"
        );
    }
}

/// Text lines: the message, then the request id and the fields; strings quoted; control
/// characters escaped, so no value splits a line or reaches a terminal as an escape.
#[tokio::test]
async fn text_log_lines_carry_the_request_id_and_escape_control_characters() {
    let app = spawn_app().await;
    app.seed(3, 2, 1, 3).await;
    let (captured, _guard) = Captured::install(LogFormat::Text, LevelFilter::INFO);
    let q = json!({ "query": "query Shelf { products(first: 1) { name } }" });
    app.send(graphql(q, Some("req-t"))).await;
    tracing::warn!(
        detail = "two\nlines \u{1b}[31mred\u{1b}[0m \"quoted\"",
        shown = %"line\nbreak",
        "outside a request"
    );
    let all = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    let lines: Vec<&str> = all.lines().collect();
    let request = lines
        .iter()
        .find(|l| l.contains(" INFO eagerql::http: graphql request "))
        .unwrap_or_else(|| panic!("{all}"));
    assert!(
        request.contains(
            "graphql request request_id=req-t operation=\"Shelf\" operation_type=\"query\" status=200 "
        ),
        "{request}"
    );
    assert!(request.contains(" statements=1 "), "{request}");
    let warn = lines.last().unwrap();
    assert!(!all.contains('\u{1b}'), "{all}");
    assert!(
        warn.ends_with(
            r#"outside a request detail="two\nlines \u{1b}[31mred\u{1b}[0m \"quoted\"" shown=line\nbreak"#
        ),
        "{warn}"
    );
    assert!(!warn.contains("request_id"), "{warn}");
}

/// The value of the sample `name` (with its labels, exactly as written) in a scrape.
fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_statements_errors_and_the_pool() {
    let app = spawn_app().await;
    app.seed(3, 2, 1, 3).await;
    let q = json!({ "query": "{ products(first: 2) { name orders { id } } }" });
    for _ in 0..3 {
        app.send(graphql(q.clone(), None)).await;
    }
    app.send(graphql(json!({ "query": "{ users { id } }" }), None))
        .await;
    app.send(graphql(json!({ "query": "{ products { " }), None))
        .await;
    let (status, headers, text) = app
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let get = |name: &str| sample(&text, name).unwrap_or_else(|| panic!("{name} in\n{text}"));
    assert_eq!(
        get("eagerql_requests_total{operation_type=\"query\",outcome=\"ok\"}"),
        3.0
    );
    assert_eq!(
        get("eagerql_requests_total{operation_type=\"query\",outcome=\"error\"}"),
        1.0
    );
    assert_eq!(
        get("eagerql_requests_total{operation_type=\"unknown\",outcome=\"refused\"}"),
        1.0
    );
    assert_eq!(get("eagerql_errors_total{code=\"UNAUTHENTICATED\"}"), 1.0);
    // Every error counts: the parser may find several in one document.
    assert!(get("eagerql_errors_total{code=\"GRAPHQL_PARSE_FAILED\"}") >= 1.0);
    // Statements per request: 2 for each of the three, 0 for the others.
    assert_eq!(get("eagerql_statements_per_request_count"), 5.0);
    assert_eq!(get("eagerql_statements_per_request_sum"), 6.0);
    assert_eq!(
        get("eagerql_statements_per_request_bucket{le=\"1.0\"}"),
        2.0
    );
    assert_eq!(
        get("eagerql_request_duration_seconds_count{operation_type=\"query\"}"),
        4.0
    );
    assert!(get("eagerql_rows_per_request_sum") >= 6.0);
    assert!(get("eagerql_database_seconds_sum") > 0.0);
    assert!(get("eagerql_pool_connections") >= 1.0);
    assert_eq!(get("eagerql_pool_max"), 5.0);
    assert!(get("eagerql_pool_in_use") >= 0.0);
    // The same document three times: parsed once.
    assert!(get("eagerql_document_cache_hits_total") >= 2.0, "{text}");
    assert!(get("eagerql_document_cache_misses_total") >= 3.0);
    assert!(text.trim_end().ends_with("# EOF"));
}

#[tokio::test]
async fn metrics_can_have_their_own_port_off_the_public_one() {
    let tdb = crate::helpers::TestDb::create().await;
    let app = crate::helpers::build_app(&tdb.url, &["--metrics-bind", "127.0.0.1:0"])
        .await
        .expect("starts");
    let public = app.local_addr().unwrap();
    let private = app.metrics_addr().expect("a metrics port");
    let server = tokio::spawn(app.run_until_stopped());
    let get = |addr: std::net::SocketAddr, path: &'static str| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let on_private = get(private, "/metrics").await;
    assert!(on_private.starts_with("HTTP/1.0 200"), "{on_private}");
    assert!(on_private.contains("eagerql_pool_max"), "{on_private}");
    let on_public = get(public, "/metrics").await;
    assert!(on_public.starts_with("HTTP/1.0 404"), "{on_public}");
    assert!(get(public, "/healthz").await.starts_with("HTTP/1.0 200"));
    assert!(get(private, "/graphql").await.starts_with("HTTP/1.0 404"));
    server.abort();
}

/// HTTP/2 beside HTTP/1.1 on the same port: a client with prior knowledge (no upgrade) gets
/// its answer over HTTP/2.
#[tokio::test]
async fn http2_with_prior_knowledge_beside_http1() {
    let tdb = crate::helpers::TestDb::create().await;
    let app = crate::helpers::build_app(&tdb.url, &[])
        .await
        .expect("starts");
    let addr = app.local_addr().unwrap();
    let server = tokio::spawn(app.run_until_stopped());
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("an HTTP/2 connection");
    tokio::spawn(conn);
    let req = Request::post(format!("http://{addr}/graphql"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(axum::body::Bytes::from(
            json!({ "query": "{ __typename }" }).to_string(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.expect("an answer");
    assert_eq!(resp.version(), axum::http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["data"]["__typename"], "Query");
    server.abort();
}

/// `eagerql_pool_waiting`: a request that holds the only connection (paused between two
/// statements) makes the next one wait, and the scrape says so.
#[tokio::test]
async fn metrics_show_requests_waiting_for_a_connection() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let release = Arc::new(tokio::sync::Notify::new());
    let paused = Arc::new(AtomicBool::new(false));
    let (r, p) = (release.clone(), paused.clone());
    let hook: eagerql::db::StatementHook = Arc::new(move |_| {
        let (r, p) = (r.clone(), p.clone());
        Box::pin(async move {
            if !p.swap(true, Ordering::SeqCst) {
                r.notified().await;
            }
        })
    });
    let base = crate::helpers::spawn_app_with(&["--pool-size", "1"]).await;
    base.seed(2, 1, 1, 2).await;
    let app = base.with_hook(hook);
    let q = json!({ "query": "{ products { id orders { id } } }" });
    let first = tokio::spawn({
        let router = app.router.clone();
        let req = graphql(q.clone(), None);
        async move {
            tower::ServiceExt::oneshot(router, req)
                .await
                .unwrap()
                .status()
        }
    });
    while !paused.load(Ordering::SeqCst) {
        tokio::task::yield_now().await;
    }
    let second = tokio::spawn({
        let router = app.router.clone();
        let req = graphql(q.clone(), None);
        async move {
            tower::ServiceExt::oneshot(router, req)
                .await
                .unwrap()
                .status()
        }
    });
    let mut waiting = 0.0;
    for _ in 0..200 {
        let (_, _, text) = app
            .send(Request::get("/metrics").body(Body::empty()).unwrap())
            .await;
        waiting = sample(&text, "eagerql_pool_waiting").expect("the gauge");
        if waiting >= 1.0 {
            assert_eq!(sample(&text, "eagerql_pool_in_use"), Some(1.0), "{text}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        waiting >= 1.0,
        "the second request waits for the only connection"
    );
    release.notify_one();
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(second.await.unwrap(), 200);
    let (_, _, text) = app
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(sample(&text, "eagerql_pool_waiting"), Some(0.0));
}

/// A test CA and a certificate it signed for `localhost` and 127.0.0.1: `(ca, cert, key)`
/// paths.
fn test_certificates(dir: &std::path::Path) -> (String, String, String) {
    let path = |name: &str| dir.join(name).display().to_string();
    let (ca, ca_key, csr, cert, key, ext) = (
        path("ca.pem"),
        path("ca.key"),
        path("leaf.csr"),
        path("cert.pem"),
        path("key.pem"),
        path("leaf.ext"),
    );
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", "/CN=eagerql test CA"],
        ]
        .concat()
        .into_iter()
        .chain(["-keyout", &ca_key, "-out", &ca])
        .collect(),
        [&["req"][..], &ec, &["-subj", "/CN=localhost"]]
            .concat()
            .into_iter()
            .chain(["-keyout", &key, "-out", &csr])
            .collect(),
        vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    ];
    for args in steps {
        let out = std::process::Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (ca, cert, key)
}

/// A TLS connection to `addr` that trusts only the CA `ca` and offers only `alpn`.
async fn tls_connect(
    addr: std::net::SocketAddr,
    ca: &str,
    alpn: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .expect("a verified TLS connection")
}

fn typename_request(
    addr: std::net::SocketAddr,
) -> Request<http_body_util::Full<axum::body::Bytes>> {
    Request::post(format!("https://localhost:{}/graphql", addr.port()))
        .header("content-type", "application/json")
        .header("host", format!("localhost:{}", addr.port()))
        .body(http_body_util::Full::new(axum::body::Bytes::from(
            json!({ "query": "{ __typename }" }).to_string(),
        )))
        .unwrap()
}

async fn typename_body(resp: axum::http::Response<hyper::body::Incoming>) -> Value {
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&body).unwrap()
}

/// HTTPS with `EAGERQL_TLS_CERT`/`EAGERQL_TLS_KEY`: HTTP/2 and HTTP/1.1 by ALPN on one port,
/// a client that never finishes its handshake holds up no one, `eagerql health --tls`
/// answers, and unreadable files stop the start with the setting's name.
#[tokio::test]
async fn https_speaks_http2_and_http1_by_alpn() {
    let dir = crate::helpers::scratch_dir("tls");
    let (ca, cert, key) = test_certificates(&dir);
    let tdb = crate::helpers::TestDb::create().await;
    let app = crate::helpers::build_app(&tdb.url, &["--tls-cert", &cert, "--tls-key", &key])
        .await
        .expect("starts with TLS");
    assert!(app.is_tls());
    let addr = app.local_addr().unwrap();
    let server = tokio::spawn(app.run_until_stopped());

    // A client that connects and stays silent: the next handshakes go on.
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();

    let h2 = tls_connect(addr, &ca, "h2").await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(h2),
    )
    .await
    .expect("HTTP/2 over TLS");
    tokio::spawn(conn);
    let resp = sender.send_request(typename_request(addr)).await.unwrap();
    assert_eq!(resp.version(), axum::http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(typename_body(resp).await["data"]["__typename"], "Query");

    let h1 = tls_connect(addr, &ca, "http/1.1").await;
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(h1))
            .await
            .expect("HTTP/1.1 over TLS");
    tokio::spawn(conn);
    let resp = sender.send_request(typename_request(addr)).await.unwrap();
    assert_eq!(resp.version(), axum::http::Version::HTTP_11);
    assert_eq!(typename_body(resp).await["data"]["__typename"], "Query");

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(
            !out.starts_with(b"HTTP/"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    // The container health check speaks HTTPS when the certificate is set.
    let (a, c) = (addr.to_string(), cert.clone());
    let health = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_eagerql"))
            .args(["health", "--addr", &a])
            .env("EAGERQL_TLS_CERT", &c)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );
    server.abort();

    let missing = dir.join("missing.pem").display().to_string();
    let err = crate::helpers::build_app(&tdb.url, &["--tls-cert", &missing, "--tls-key", &key])
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("EAGERQL_TLS_CERT"), "{err}");
    let err = crate::helpers::build_app(&tdb.url, &["--tls-cert", &cert, "--tls-key", &cert])
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("EAGERQL_TLS_KEY"), "{err}");
}

/// `EAGERQL_METRICS=false`: nothing is recorded and `/metrics` is not served.
#[tokio::test]
async fn metrics_can_be_turned_off() {
    let app = crate::helpers::spawn_app_with(&["--metrics", "false"]).await;
    app.gql("{ __typename }").await.data();
    let (status, _, _) = app
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, 404);
    assert!(
        !app.state
            .metrics
            .render()
            .contains("eagerql_requests_total{")
    );
}

/// Database time counts each statement from when it had its connection: the statements of
/// one request share one connection, so their times add up to less than the request's own
/// time however many wait for it (waiting is reported apart, as `connectionWaitUs`).
#[tokio::test]
async fn database_time_never_counts_the_wait_for_the_connection() {
    let app = crate::helpers::spawn_app().await;
    app.seed(20, 3, 2, 5).await;
    let aliases: Vec<String> = (0..12)
        .map(|i| format!("a{i}: users(first: 20, offset: {i}) {{ id orders {{ id }} }}"))
        .collect();
    let query = format!("{{ {} }}", aliases.join(" "));
    let started = std::time::Instant::now();
    let r = app.gql(&query).await;
    let wall_us = started.elapsed().as_micros() as u64;
    assert_eq!(r.statements, 24, "{}", r.body);
    let sql = &r.body["extensions"]["sql"];
    let db_us = sql["totalDurationUs"].as_u64().expect("database time");
    assert!(sql["connectionWaitUs"].is_u64(), "{sql}");
    assert!(
        db_us <= wall_us,
        "database time {db_us} us within {wall_us} us"
    );
}

/// SIGTERM (here, the signal future `run_until` is given): `/readyz` answers 503 `draining`
/// at once while requests are still served for EAGERQL_SHUTDOWN_DELAY_SECS, then the listener
/// closes and the server ends within EAGERQL_SHUTDOWN_TIMEOUT_SECS.
#[tokio::test]
async fn on_shutdown_readiness_drains_first_then_the_server_stops_in_bounded_time() {
    let tdb = crate::helpers::TestDb::create().await;
    let app = crate::helpers::build_app(
        &tdb.url,
        &["--shutdown-delay-secs", "2", "--shutdown-timeout-secs", "3"],
    )
    .await
    .expect("starts");
    let addr = app.local_addr().unwrap();
    let (stop, signal) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = signal.await;
    }));
    let readyz = || async {
        let (status, _, body) =
            crate::helpers::http_request(addr, "GET", "/readyz", &[], String::new()).await;
        (status.as_u16(), body)
    };
    assert_eq!(readyz().await, (200, "ready".to_owned()));
    let stopped_at = std::time::Instant::now();
    stop.send(()).expect("the server listens for the signal");
    let mut draining = readyz().await;
    for _ in 0..50 {
        if draining.0 == 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        draining = readyz().await;
    }
    assert_eq!(draining, (503, "draining: shutting down".to_owned()));
    // Still served meanwhile.
    let (status, _, body) = crate::helpers::http_request(
        addr,
        "POST",
        "/graphql",
        &[("content-type", "application/json")],
        json!({ "query": "{ __typename }" }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Then it stops, within the delay and the drain time.
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("the server stops in bounded time")
        .expect("the server task")
        .expect("the server");
    assert!(stopped_at.elapsed() >= std::time::Duration::from_secs(2));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}
