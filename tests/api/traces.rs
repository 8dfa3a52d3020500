//! OpenTelemetry traces over OTLP/HTTP, received by a collector written here: an HTTP
//! endpoint that keeps every export it is sent and decodes it as the OTLP protobuf.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::json;

use crate::helpers::{ServerProcess, TestDb, http_request};

/// A collector on a free port: what it received, as spans with their resource.
struct Collector {
    addr: std::net::SocketAddr,
    got: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

impl Collector {
    async fn start() -> Collector {
        let got: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
        let keep = got.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let keep = keep.clone();
                async move {
                    let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                    keep.lock().unwrap().push(req);
                    ""
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Collector { addr, got }
    }

    fn spans(&self) -> Vec<Span> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| s.spans.clone())
            .collect()
    }

    fn service_names(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .filter_map(|r| r.resource.as_ref())
            .filter_map(|r| attr(&r.attributes, "service.name"))
            .collect()
    }
}

fn attr(attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            Any::StringValue(s) => s.clone(),
            Any::IntValue(i) => i.to_string(),
            Any::BoolValue(b) => b.to_string(),
            Any::DoubleValue(d) => d.to_string(),
            other => format!("{other:?}"),
        })
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, a query's trace reaches the collector: the
/// `request` span joins the caller's trace (`traceparent`) as a server span with the
/// operation and its statement count; below it one `plan` span per root field with the
/// statements it planned, and below that one `sql` span per statement with its name and
/// row count.
#[tokio::test]
async fn traces_reach_an_otlp_collector_request_plan_and_each_statement() {
    let collector = Collector::start().await;
    let tdb = TestDb::create().await;
    let endpoint = format!("http://{}", collector.addr);
    let server = ServerProcess::start(
        &tdb.url,
        &["--demo-data", "true"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "eagerql-under-test"),
        ],
    );
    let login = server
        .gql(
            None,
            r#"mutation { login(email: "user1@example.com", password: "eagerql-demo") { accessToken } }"#,
            json!({}),
        )
        .await;
    let auth = format!(
        "Bearer {}",
        login.data()["login"]["accessToken"].as_str().unwrap()
    );
    // Right after the mutation, on the same server: this first query's request span used to
    // be lost (a stale per-layer filter decision, see `telemetry::filter`), and its plan and
    // statements arrived as a trace of their own.
    let trace = TRACE;
    let traceparent = format!("00-{trace}-{CALLER}-01");
    let (status, headers, body) = http_request(
        server.addr,
        "POST",
        "/graphql",
        &[
            ("content-type", "application/json"),
            ("traceparent", &traceparent),
            ("authorization", &auth),
            ("x-request-id", "trace-test-1"),
        ],
        json!({ "query": "query Shelf { users(first: 3) { id orders(first: 2) { id items { id } } } }" })
            .to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-eagerql-sql-statements"], "3", "{body}");
    let mut spans = Vec::new();
    let mut whole = false;
    for _ in 0..100 {
        spans = collector.spans();
        let ours = spans.iter().filter(|s| hex::encode(&s.trace_id) == trace);
        whole = ours.clone().any(|s| s.name == "POST /graphql")
            && ours.clone().any(|s| s.name == "plan")
            && ours.filter(|s| s.name == "sql").count() >= 3;
        if whole {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let all: Vec<(String, &str)> = spans
        .iter()
        .map(|s| (hex::encode(&s.trace_id), s.name.as_str()))
        .collect();
    assert!(
        whole,
        "trace {trace} did not arrive whole in 10 s; all spans: {all:?}; server log: {:?}",
        server.log_lines()
    );
    // No plan is a trace of its own: each has its request span as parent.
    let plans: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "plan" || s.name == "mutation")
        .collect();
    assert!(
        plans.iter().all(|p| !p.parent_span_id.is_empty()),
        "{all:?}"
    );
    let ours: Vec<&Span> = spans
        .iter()
        .filter(|s| hex::encode(&s.trace_id) == trace)
        .collect();
    let request = ours
        .iter()
        .find(|s| s.name == "POST /graphql")
        .unwrap_or_else(|| panic!("no request span in {spans:#?}"));
    assert_eq!(hex::encode(&request.parent_span_id), CALLER);
    assert_eq!(request.kind, 2, "a server span");
    assert_eq!(
        attr(&request.attributes, "request_id").as_deref(),
        Some("trace-test-1")
    );
    assert_eq!(
        attr(&request.attributes, "graphql.operation.name").as_deref(),
        Some("Shelf")
    );
    assert_eq!(
        attr(&request.attributes, "graphql.operation.type").as_deref(),
        Some("query")
    );
    assert_eq!(
        attr(&request.attributes, "eagerql.statements").as_deref(),
        Some("3")
    );
    assert_eq!(
        attr(&request.attributes, "http.response.status_code").as_deref(),
        Some("200")
    );

    let plan = ours
        .iter()
        .find(|s| s.name == "plan")
        .unwrap_or_else(|| panic!("no plan span in {ours:#?}"));
    assert_eq!(plan.parent_span_id, request.span_id);
    assert_eq!(
        attr(&plan.attributes, "graphql.field.name").as_deref(),
        Some("users")
    );
    assert_eq!(
        attr(&plan.attributes, "eagerql.statements").as_deref(),
        Some("3")
    );

    let sql: Vec<&&Span> = ours.iter().filter(|s| s.name == "sql").collect();
    assert_eq!(sql.len(), 3, "{sql:#?}");
    for s in &sql {
        assert_eq!(s.parent_span_id, plan.span_id, "{s:#?}");
        assert!(s.start_time_unix_nano >= plan.start_time_unix_nano);
        assert!(s.end_time_unix_nano <= plan.end_time_unix_nano);
    }
    let names: Vec<String> = sql
        .iter()
        .filter_map(|s| attr(&s.attributes, "statement"))
        .collect();
    assert_eq!(names.len(), 3, "{sql:#?}");
    assert!(names[0].starts_with("users."), "{names:?}");
    let rows: Vec<i64> = sql
        .iter()
        .map(|s| {
            attr(&s.attributes, "rows")
                .and_then(|r| r.parse().ok())
                .expect("rows")
        })
        .collect();
    assert_eq!(rows[0], 3, "{rows:?}");
    assert!(rows.iter().all(|r| *r > 0), "{rows:?}");
    assert!(
        collector
            .service_names()
            .iter()
            .all(|n| n == "eagerql-under-test")
    );
}
