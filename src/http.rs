//! HTTP: GraphQL over HTTP at `/graphql` (POST, and GET for queries), the GraphiQL
//! playground at `/` with its assets served by the binary, and `/healthz`, `/readyz`.
//!
//! The `/graphql` handler follows the GraphQL-over-HTTP specification: it negotiates
//! `application/graphql-response+json` or legacy `application/json` from `Accept`, answers
//! request errors (bad JSON, bad parameters, parse, validation and variable errors) with 400
//! and no `data` under the former, refuses mutations over GET with 405 and `Allow: POST`, and
//! answers unsupported media types with 415 / 406.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use async_graphql::Request;
use async_graphql::parser::types::OperationType;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::get;
use serde_json::{Map, Value as Json, json};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::cors::{AllowHeaders, AllowOrigin, Any, CorsLayer};
use tower_http::timeout::TimeoutLayer;

use crate::db::{Session, StatementLog};
use crate::graphql::execution::{ensure_error_codes, execution_started};
use crate::graphql::lazy::{LazyLoader, RequestLoader};
use crate::graphql::operation::{self, Prepared, Refused};
use crate::json;
use crate::model::Viewer;
use crate::persisted::ApqError;
use crate::predict::{Who, request_context};
use crate::state::AppState;

mod headers;

pub use headers::REQUEST_ID;

/// The request header that asks for the executed SQL in the response's `extensions`.
pub const DEBUG_HEADER: &str = "x-eagerql-debug";
/// The response header that always carries the request's SQL statement count.
pub const COUNT_HEADER: &str = "x-eagerql-sql-statements";
/// The request header that asserts a query's planned statement count: a query whose plans
/// need another number is refused before any SQL runs (`STATEMENT_COUNT_MISMATCH`).
pub const EXPECT_HEADER: &str = "x-eagerql-expect-statements";

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const APPLICATION_JSON: &str = "application/json";

/// The router of the whole service.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let timeout = state.config.request_timeout();
    let cors = cors_layer(&state.config.cors_origins);
    let public = Router::new();
    // `/metrics` is on the public port unless it has its own (EAGERQL_METRICS_BIND).
    let public = if state.config.metrics && state.config.metrics_bind.is_none() {
        public.route("/metrics", get(metrics))
    } else {
        public
    };
    let routes = public
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/", get(graphiql_page))
        .route("/graphiql/{file}", get(graphiql_asset))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state);
    // The layers wrap the router as a whole (not each route, as `Router::layer` does), so
    // a request clones one stack of plain services, not a boxed stack per layer.
    let stack = tower::ServiceBuilder::new()
        // Outermost: every response, whichever layer made it, carries the request's id, and
        // every log line of the request its span.
        .layer(axum::middleware::from_fn(headers::request_id))
        // Responses above a kilobyte (the dashboard's 400 KB) are compressed when the client
        // accepts br or gzip (br first on equal quality: it is the smaller here, and zstd,
        // larger still, breaks some clients' fetch); small answers are sent as they are.
        .layer(
            CompressionLayer::new().compress_when(
                SizeAbove::new(1024)
                    .and(NotForContentType::IMAGES)
                    .and(NotForContentType::GRPC),
            ),
        )
        // Without configured origins there is no CORS layer at all (it would answer every
        // OPTIONS request as a preflight).
        .option_layer(cors)
        // Outside the timeout, so that a cut-off request's 503 becomes a GraphQL error too.
        .layer(axum::middleware::from_fn(refusals))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                tracing::error!("a request handler panicked");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "an internal error occurred",
                )
            },
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .service(routes);
    Router::new().fallback_service(stack)
}

/// CORS for `EAGERQL_CORS_ORIGINS`: none by default (same-origin only); `*` lets any origin
/// call the API without credentials; a list of origins lets exactly those call it with
/// credentials (cookies, `Authorization`). Preflights are answered here, before routing.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    let base = CorsLayer::new()
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .expose_headers([
            axum::http::HeaderName::from_static(COUNT_HEADER),
            axum::http::HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
        ])
        .max_age(std::time::Duration::from_secs(600));
    let origins: Vec<&str> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return None;
    }
    if origins.contains(&"*") {
        return Some(base.allow_origin(Any).allow_headers(Any));
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        base.allow_origin(AllowOrigin::list(list))
            .allow_headers(AllowHeaders::mirror_request())
            .allow_credentials(true)
            .vary([header::ORIGIN]),
    )
}

/// Every refusal is a GraphQL-shaped JSON error with `extensions.code`: a body over the size
/// limit (413), a method a route does not serve (405, with its `Allow`), a request cut off by
/// the timeout (503), an unknown path (404); and every refusal is in the media type the
/// client's `Accept` asks for (Apollo Client reads a non-2xx body only when it is
/// `application/graphql-response+json`, so an expired token's 401 must be one to be acted on).
/// Every answer of `/graphql` says how many statements it ran: a refusal before execution
/// (bad parameters, media types, a method or a body it does not accept) ran 0. A request cut
/// off by the timeout or a panic may have run some: its count is unknown, so it has none.
async fn refusals(req: axum::extract::Request, next: axum::middleware::Next) -> HttpResponse {
    // Chosen only for a refusal: a served answer has its media type already.
    let accept = req.headers().get(header::ACCEPT).cloned();
    let graphql = req.uri().path() == "/graphql";
    let mut resp = next.run(req).await;
    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        let media = negotiate(accept.as_ref()).unwrap_or(Media::Json);
        resp = as_graphql_error(resp, media);
    }
    if graphql && !resp.status().is_server_error() {
        resp.headers_mut()
            .entry(COUNT_HEADER)
            .or_insert(HeaderValue::from_static("0"));
    }
    resp
}

/// A response of a layer or extractor that is not a GraphQL error, rewritten as one.
fn as_graphql_error(mut resp: HttpResponse, media: Media) -> HttpResponse {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let content_type = resp.headers().get(header::CONTENT_TYPE);
    if content_type == Some(&Media::Json.content_type()) {
        // Written by `error_response`: only its media type is left to choose.
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, media.content_type());
        return resp;
    }
    if content_type
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"))
    {
        return resp;
    }
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "PAYLOAD_TOO_LARGE",
            "the request body is larger than the server accepts (EAGERQL_MAX_BODY_BYTES)",
        ),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("METHOD_NOT_ALLOWED", "this path does not serve that method")
        }
        StatusCode::SERVICE_UNAVAILABLE => (
            "SERVICE_UNAVAILABLE",
            "the request took longer than the server allows (EAGERQL_REQUEST_TIMEOUT_SECS)",
        ),
        StatusCode::NOT_FOUND => ("NOT_FOUND", "no such path"),
        _ => ("BAD_REQUEST", "the request was refused"),
    };
    let allow = resp.headers().get(header::ALLOW).cloned();
    let mut out = error_response(status, code, message);
    out.headers_mut()
        .insert(header::CONTENT_TYPE, media.content_type());
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}

/// The response media type chosen from `Accept`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Media {
    GraphqlResponse,
    Json,
}

impl Media {
    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Media::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Media::Json => "application/json; charset=utf-8",
        })
    }
}

/// Picks the response media type: the acceptable range with the highest `q`, earliest first.
/// No `Accept` header means legacy `application/json`.
fn negotiate(accept: Option<&HeaderValue>) -> Option<Media> {
    let Some(accept) = accept else {
        return Some(Media::Json);
    };
    let accept = accept.to_str().ok()?;
    let mut best: Option<(f32, Media)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let mime = parts.next().unwrap_or("");
        let q = parts
            .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .find_map(|v| v.parse::<f32>().ok())
            .unwrap_or(1.0);
        let is = |name: &str| mime.eq_ignore_ascii_case(name);
        let media = if is(GRAPHQL_RESPONSE_JSON) {
            Media::GraphqlResponse
        } else if is(APPLICATION_JSON) || is("application/*") || mime == "*/*" {
            Media::Json
        } else {
            continue;
        };
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, media));
        }
    }
    best.map(|(_, m)| m)
}

/// A GraphQL-shaped error body for failures outside GraphQL execution.
fn error_response(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, Media::Json.content_type());
    resp
}

/// The client's address, when the server was started with connection info (it is: tests that
/// call the router directly have none).
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// The request's headers, taken out of the request rather than cloned as `HeaderMap`'s own
/// extractor does: the handlers run no extractor after it that reads them.
struct Headers(HeaderMap);

impl<S: Send + Sync> FromRequestParts<S> for Headers {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Headers(std::mem::take(&mut parts.headers)))
    }
}

/// The viewer an `Authorization: Bearer` header names: anonymous without one. `Err` (the
/// client's message) for a malformed, wrongly signed or expired token, which is never
/// answered as anonymous: see [`unauthorized`].
fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Viewer, &'static str> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Viewer::Anonymous);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let token = match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err("the Authorization header must be `Bearer <access token>`"),
    };
    state.keys.verify(token).map_err(|e| {
        tracing::debug!(error = %e, "refused an access token");
        "the access token is invalid or expired"
    })
}

/// 401 with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750) and UNAUTHENTICATED.
fn unauthorized(message: &str) -> HttpResponse {
    let mut resp = error_response(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    resp.headers_mut()
        .insert(COUNT_HEADER, HeaderValue::from_static("0"));
    resp
}

fn bad_request(message: &str) -> HttpResponse {
    error_response(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
}

/// The GraphQL request parameters, checked for their JSON types.
struct Params {
    /// Absent when an automatic persisted query names its document by hash alone, or a
    /// `documentId` names a trusted document.
    query: Option<String>,
    /// A trusted document's id (the GraphQL-over-HTTP persisted documents proposal).
    document_id: Option<String>,
    operation_name: Option<String>,
    variables: Option<Map<String, Json>>,
    extensions: Option<Map<String, Json>>,
}

fn params_from_json(body: Json) -> Result<Params, String> {
    let Json::Object(mut obj) = body else {
        return Err(
            "the request body must be a JSON object (batching is not supported)".to_owned(),
        );
    };
    let query = match obj.remove("query") {
        Some(Json::String(q)) => Some(q),
        None | Some(Json::Null) => None,
        Some(_) => return Err("`query` must be a string".to_owned()),
    };
    let document_id = match obj.remove("documentId") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s),
        Some(_) => return Err("`documentId` must be a string".to_owned()),
    };
    if document_id.is_some() && query.is_some() {
        return Err("send either `documentId` or `query`, not both".to_owned());
    }
    let persisted_too = obj
        .get("extensions")
        .and_then(Json::as_object)
        .is_some_and(|e| e.contains_key("persistedQuery"));
    if document_id.is_some() && persisted_too {
        return Err("send either `documentId` or `extensions.persistedQuery`, not both".to_owned());
    }
    let operation_name = match obj.remove("operationName") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s),
        Some(_) => return Err("`operationName` must be a string".to_owned()),
    };
    let object = |v: Option<Json>, what: &str| match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Object(m)) => Ok(Some(m)),
        Some(_) => Err(format!("`{what}` must be an object")),
    };
    let variables = object(obj.remove("variables"), "variables")?;
    let extensions = object(obj.remove("extensions"), "extensions")?;
    if let Some(key) = obj.keys().next() {
        return Err(format!("unknown request parameter `{key}`"));
    }
    let persisted = extensions
        .as_ref()
        .is_some_and(|e| e.contains_key("persistedQuery"));
    if query.is_none() && !persisted && document_id.is_none() {
        return Err("the request has no `query`".to_owned());
    }
    Ok(Params {
        query,
        document_id,
        operation_name,
        variables,
        extensions,
    })
}

/// A WebSocket upgrade or a Server-Sent Events request: subscriptions are not served (yet),
/// and the client is told so plainly instead of a generic "no query".
fn streaming_refusal(headers: &HeaderMap) -> Option<HttpResponse> {
    // `token` is lowercase ASCII.
    let asks = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.as_bytes()
                .windows(token.len())
                .any(|w| w.eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if asks(header::UPGRADE, "websocket") {
        return Some(error_response(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "this server does not serve subscriptions: /graphql accepts no WebSocket \
             (graphql-transport-ws) connections; send queries and mutations as HTTP POST or GET",
        ));
    }
    if asks(header::ACCEPT, "text/event-stream") && !asks(header::ACCEPT, "json") {
        return Some(error_response(
            StatusCode::NOT_ACCEPTABLE,
            "NOT_ACCEPTABLE",
            "this server does not serve subscriptions: /graphql does not stream Server-Sent \
             Events (text/event-stream); accept application/graphql-response+json or \
             application/json",
        ));
    }
    None
}

async fn graphql_post(
    State(state): State<AppState>,
    client: ClientAddr,
    Headers(headers): Headers,
    body: Bytes,
) -> HttpResponse {
    if let Some(refusal) = streaming_refusal(&headers) {
        return refusal;
    }
    let Some(media) = negotiate(headers.get(header::ACCEPT)) else {
        return error_response(
            StatusCode::NOT_ACCEPTABLE,
            "NOT_ACCEPTABLE",
            "acceptable media types: application/graphql-response+json, application/json",
        );
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut ct = content_type.split(';').map(str::trim);
    let mime = ct.next().unwrap_or("").to_ascii_lowercase();
    let charset_ok = ct
        .filter_map(|p| {
            p.to_ascii_lowercase()
                .strip_prefix("charset=")
                .map(|c| c.trim_matches('"').to_owned())
        })
        .all(|c| c == "utf-8");
    if mime != APPLICATION_JSON || !charset_ok {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the request as application/json (UTF-8)",
        );
    }
    let json: Json = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return bad_request("the request body is not valid JSON"),
    };
    match params_from_json(json) {
        // Boxed: the pipeline's future is large, and the handler's own future is moved
        // several times on its way to the connection's task.
        Ok(params) => Box::pin(execute(state, client, headers, media, params, Method::Post)).await,
        Err(message) => bad_request(&message),
    }
}

async fn graphql_get(
    State(state): State<AppState>,
    client: ClientAddr,
    Headers(headers): Headers,
    RawQuery(raw): RawQuery,
) -> HttpResponse {
    if let Some(refusal) = streaming_refusal(&headers) {
        return refusal;
    }
    let Some(media) = negotiate(headers.get(header::ACCEPT)) else {
        return error_response(
            StatusCode::NOT_ACCEPTABLE,
            "NOT_ACCEPTABLE",
            "acceptable media types: application/graphql-response+json, application/json",
        );
    };
    let pairs: Vec<(String, String)> =
        match serde_urlencoded::from_str(raw.as_deref().unwrap_or("")) {
            Ok(p) => p,
            Err(_) => return bad_request("the query string is malformed"),
        };
    let mut obj = Map::new();
    for (key, value) in pairs {
        let v = match key.as_str() {
            "query" | "operationName" | "documentId" => Json::String(value),
            "variables" | "extensions" => match serde_json::from_str(&value) {
                Ok(v) => v,
                Err(_) => return bad_request(&format!("`{key}` must be URL-encoded JSON")),
            },
            _ => Json::String(value),
        };
        if obj.insert(key.clone(), v).is_some() {
            return bad_request(&format!("`{key}` is given more than once"));
        }
    }
    let params = match params_from_json(Json::Object(obj)) {
        Ok(p) => p,
        Err(message) => return bad_request(&message),
    };
    Box::pin(execute(state, client, headers, media, params, Method::Get)).await
}

/// The HTTP method a GraphQL request came with.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

async fn execute(
    state: AppState,
    client: ClientAddr,
    headers: HeaderMap,
    media: Media,
    params: Params,
    method: Method,
) -> HttpResponse {
    let started = Instant::now();
    let viewer = match authenticate(&state, &headers) {
        Ok(viewer) => viewer,
        Err(message) => return unauthorized(message),
    };
    let Some(asks) = DebugAsks::read(&headers) else {
        let mut resp = error_response(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            &format!("{EXPECT_HEADER} must be one number of SQL statements"),
        );
        resp.headers_mut()
            .insert(COUNT_HEADER, HeaderValue::from_static("0"));
        return resp;
    };
    let capture = asks.sql && state.config.debug_sql_allowed();
    let log = StatementLog::new(state.config.budget())
        .with_row_budget(state.config.row_budget())
        .with_hook(state.statement_hook.clone());
    let log = Arc::new(if capture { log.capturing() } else { log });
    let query = match document(&state, &params).await {
        Ok(q) => q,
        Err(e) => return persisted_refusal(&e, media),
    };
    let variables = params
        .variables
        .map(operation::variables)
        .unwrap_or_default();
    // A trusted document's manifest may name its operation: the default when none is asked for.
    let operation_name = params
        .operation_name
        .as_deref()
        .or_else(|| state.trusted.operation_of(&query));
    let prepared = state.preparer.prepare(&query, operation_name, &variables);
    let mut refused_status = None;
    // For the request's log line.
    let mut operation: (Option<String>, &'static str) = (operation_name.map(str::to_owned), "");
    let mut response = match prepared {
        Err(Refused(errors)) => async_graphql::Response::from_errors(errors),
        Ok(prepared) => {
            operation = (
                prepared.name.clone(),
                match prepared.ty {
                    OperationType::Query => "query",
                    OperationType::Mutation => "mutation",
                    OperationType::Subscription => "subscription",
                },
            );
            // GET is for queries only: a mutation must not run on a request that caches and
            // prefetchers consider safe.
            if method == Method::Get && prepared.ty != OperationType::Query {
                let mut resp = error_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "METHOD_NOT_ALLOWED",
                    "only queries may be sent with GET; send mutations with POST",
                );
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
                return resp;
            }
            let who = Who {
                viewer,
                client: client.0,
            };
            let query = query.to_string();
            match run(&state, &log, who, prepared, query, params.extensions, asks).await {
                Ok(response) => response,
                Err(errors) => {
                    refused_status = Some(StatusCode::SERVICE_UNAVAILABLE);
                    async_graphql::Response::from_errors(errors)
                }
            }
        }
    };
    let executed = execution_started(&response);
    ensure_error_codes(&mut response, executed);
    let statements = log.count();
    if asks.sql {
        let value = sql_extension(&state, &log);
        if let Ok(value) = async_graphql::Value::from_json(value) {
            response.extensions.insert("sql".to_owned(), value);
        }
    }
    // A request error (execution never began) has no `data` entry at all.
    let body = response_body(executed.then_some(&response.data), &response);
    let status = match refused_status {
        Some(status) => status,
        None if !executed && media == Media::GraphqlResponse => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    record(
        &state,
        &Served {
            operation: (operation.0.as_deref().unwrap_or(""), operation.1),
            viewer,
            status,
            executed,
            response: &response,
            log: &log,
            started,
        },
    );
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    // Room for what the outer layers add (id, security headers, `Vary`), so the map is
    // allocated once instead of grown on the way out.
    h.reserve(12);
    h.insert(header::CONTENT_TYPE, media.content_type());
    h.insert(COUNT_HEADER, HeaderValue::from(statements));
    if let Some(secs) = retry_after(&response) {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// What a request asks of the server besides its answer: the SQL it ran (`x-eagerql-debug:
/// sql`), its plan (`x-eagerql-debug: plan`), and a statement count to assert
/// (`x-eagerql-expect-statements`).
#[derive(Copy, Clone, Debug, Default)]
struct DebugAsks {
    sql: bool,
    plan: bool,
    expect: Option<usize>,
}

impl DebugAsks {
    /// Reads the request's headers; `None`: a malformed expectation (refused before
    /// anything runs).
    fn read(headers: &HeaderMap) -> Option<DebugAsks> {
        // Names made once: a `&str` name is checked and lowercased on every lookup.
        const DEBUG: header::HeaderName = header::HeaderName::from_static(DEBUG_HEADER);
        const EXPECT: header::HeaderName = header::HeaderName::from_static(EXPECT_HEADER);
        let (mut sql, mut plan) = (false, false);
        if let Some(v) = headers.get(&DEBUG).and_then(|v| v.to_str().ok()) {
            for part in v.split(',').map(str::trim) {
                sql |= part.eq_ignore_ascii_case("sql");
                plan |= part.eq_ignore_ascii_case("plan");
            }
        }
        let mut expect_values = headers.get_all(&EXPECT).iter();
        let first = expect_values.next();
        let repeated = expect_values.next().is_some();
        let expect = match first.map(|v| v.to_str().map(str::trim)) {
            None => None,
            Some(Ok(v)) if !repeated && v.parse::<usize>().is_ok() => v.parse::<usize>().ok(),
            Some(_) => return None,
        };
        Some(DebugAsks { sql, plan, expect })
    }
}

/// The answer to a persisted or trusted document that cannot be used.
fn persisted_refusal(e: &ApqError, media: Media) -> HttpResponse {
    // Apollo's clients read `PERSISTED_QUERY_NOT_FOUND` from a 200 and then send the
    // document; a malformed or mismatched hash is the client's error.
    let status = match e {
        ApqError::NotFound => StatusCode::OK,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut resp = error_response(status, e.code(), &e.message());
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, media.content_type());
    resp.headers_mut()
        .insert(COUNT_HEADER, HeaderValue::from_static("0"));
    resp
}

/// `extensions.sql` (`x-eagerql-debug: sql`): the statements with their text, unless the
/// server keeps SQL text to itself (`EAGERQL_DEBUG_SQL`).
fn sql_extension(state: &AppState, log: &StatementLog) -> Json {
    let statements = log.count();
    if state.config.debug_sql_allowed() {
        json!({
            "count": statements,
            "totalDurationUs": log.total_duration().as_micros() as u64,
            "connectionWaitUs": log.total_wait().as_micros() as u64,
            "statements": log.records(),
            "transactionControl": log.control(),
            "server": log.server(),
        })
    } else {
        json!({ "count": statements, "statements": null,
                "note": "SQL text is disabled on this server (EAGERQL_DEBUG_SQL)" })
    }
}

/// A served GraphQL request, as metrics, the trace and the log line see it.
struct Served<'a> {
    /// The operation's name (`""`: anonymous) and type (`""`: none was selected).
    operation: (&'a str, &'static str),
    viewer: crate::model::Viewer,
    status: StatusCode,
    executed: bool,
    response: &'a async_graphql::Response,
    log: &'a StatementLog,
    started: Instant,
}

/// Records a served request: its metrics, its span's fields and its one log line (never the
/// document or the variables: they may hold passwords and tokens).
fn record(state: &AppState, served: &Served<'_>) {
    let Served {
        operation,
        viewer,
        status,
        executed,
        response,
        log,
        started,
    } = served;
    let statements = log.count();
    let codes: Vec<&str> = response
        .errors
        .iter()
        .filter_map(|e| match e.extensions.as_ref()?.get("code")? {
            async_graphql::Value::String(c) => Some(c.as_str()),
            _ => None,
        })
        .collect();
    if state.config.metrics {
        state.metrics.record(&crate::metrics::Outcome {
            operation_type: if operation.1.is_empty() {
                "unknown"
            } else {
                operation.1
            },
            outcome: if !executed {
                "refused"
            } else if response.errors.is_empty() {
                "ok"
            } else {
                "error"
            },
            duration: started.elapsed(),
            statements,
            rows: log.rows(),
            db_time: log.total_duration(),
            codes: &codes,
        });
    }
    if crate::telemetry::traces_on() {
        let span = tracing::Span::current();
        span.record("graphql.operation.name", operation.0);
        span.record("graphql.operation.type", operation.1);
        span.record("eagerql.statements", statements);
    }
    // One line per request; its id comes from the request's context.
    tracing::info!(
        operation = operation.0,
        operation_type = operation.1,
        status = status.as_u16(),
        viewer = viewer.user_id(),
        statements,
        rows = log.rows(),
        db_us = log.total_duration().as_micros() as u64,
        wait_us = log.total_wait().as_micros() as u64,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        errors = response.errors.len(),
        error_codes = codes.join(","),
        "graphql request"
    );
}

/// The `retryAfter` of a `RATE_LIMITED` error, as the response's `Retry-After`.
fn retry_after(response: &async_graphql::Response) -> Option<u64> {
    response.errors.iter().find_map(|e| {
        let ext = e.extensions.as_ref()?;
        match (ext.get("code"), ext.get("retryAfter")) {
            (Some(async_graphql::Value::String(code)), Some(async_graphql::Value::Number(n)))
                if code == "RATE_LIMITED" =>
            {
                n.as_u64()
            }
            _ => None,
        }
    })
}

/// A request-level error (no `data`) with `extensions.code` and more extensions.
fn request_error(
    message: String,
    code: &str,
    more: &[(&str, async_graphql::Value)],
) -> async_graphql::Response {
    let mut e = async_graphql::ServerError::new(message, None);
    let ext = e.extensions.get_or_insert_with(Default::default);
    ext.set("code", code);
    for (k, v) in more {
        ext.set(*k, v.clone());
    }
    async_graphql::Response::from_errors(vec![e])
}

/// An automatic persisted query's document: from this instance's bounded store, else from
/// the database, where every instance registers what clients send it, so a document
/// registered through one instance is found through any other. The database is asked only
/// on a local miss (and written only on a registration); when it cannot answer, the client
/// is asked for the document, which the protocol handles.
async fn shared_document(
    state: &AppState,
    hash: crate::persisted::Hash,
    query: Option<&str>,
) -> Result<Arc<str>, ApqError> {
    use crate::db::persisted_queries as shared;
    let session = Session::unmetered(state.db.clone());
    let now = chrono::Utc::now().timestamp_millis();
    let hex = hex::encode(hash);
    match query {
        Some(q) => {
            let doc = state.persisted.register(hash, q)?;
            if let Err(e) = shared::register(&session, &hex, &doc, now).await {
                tracing::warn!(error = %e.detail(), "sharing a persisted query failed");
            }
            Ok(doc)
        }
        None => {
            if let Some(doc) = state.persisted.get(&hash) {
                return Ok(doc);
            }
            match shared::take(&session, &hex, now).await {
                Ok(Some(doc)) if crate::persisted::hash_of(&doc) == hash => {
                    Ok(state.persisted.register(hash, &doc)?)
                }
                Ok(_) => Err(ApqError::NotFound),
                Err(e) => {
                    tracing::warn!(error = %e.detail(), "reading a shared persisted query failed");
                    Err(ApqError::NotFound)
                }
            }
        }
    }
}

/// The request's document: the trusted document its `documentId` names; for an automatic
/// persisted query (`extensions.persistedQuery`), the trusted or stored document its hash
/// names; or its `query`. With `EAGERQL_TRUSTED_ONLY` only trusted documents are returned.
async fn document(state: &AppState, params: &Params) -> Result<Arc<str>, ApqError> {
    let trusted_only = state.config.trusted_only;
    if let Some(id) = &params.document_id {
        return state
            .trusted
            .by_document_id(id)
            .ok_or(ApqError::UnknownDocument);
    }
    let pq = params
        .extensions
        .as_ref()
        .and_then(|e| e.get("persistedQuery"));
    match pq {
        None => {
            let query = params.query.as_deref().unwrap_or_default();
            if trusted_only && !state.trusted.contains_text(query) {
                return Err(ApqError::NotInList);
            }
            Ok(query.into())
        }
        Some(Json::Object(pq)) => {
            let hex = pq.get("sha256Hash").and_then(Json::as_str).ok_or_else(|| {
                ApqError::Malformed("persistedQuery.sha256Hash must be a string".to_owned())
            })?;
            let version = pq.get("version").and_then(Json::as_i64);
            let hash = crate::persisted::requested_hash(version, hex)?;
            if let Some(doc) = state.trusted.by_hash(&hash) {
                return match &params.query {
                    Some(q) if **q != *doc => Err(ApqError::Mismatch),
                    _ => Ok(doc),
                };
            }
            if trusted_only {
                // A client that registers a document it was not built with is refused; one
                // that only sent the hash learns the server does not know it.
                return Err(if params.query.is_some() {
                    ApqError::NotInList
                } else {
                    ApqError::NotFound
                });
            }
            shared_document(state, hash, params.query.as_deref()).await
        }
        Some(_) => Err(ApqError::Malformed(
            "extensions.persistedQuery must be an object".to_owned(),
        )),
    }
}

/// Executes a prepared operation in the request's session, and completes the response
/// (key order, null propagation). `Err`: no database connection could be had for it.
async fn run(
    state: &AppState,
    log: &Arc<StatementLog>,
    who: Who,
    prepared: Prepared,
    query: String,
    extensions: Option<Map<String, Json>>,
    check: DebugAsks,
) -> Result<async_graphql::Response, Vec<async_graphql::ServerError>> {
    // Planned before anything runs (queries only: a mutation's statements depend on what it
    // writes, and only queries are planned ahead).
    let mut planned = None;
    let mut plans = Vec::new();
    // Each root field reserves its statements before its first one runs, so one field over
    // the budget is refused before any SQL; with several root fields, an earlier one could
    // run before a later one finds the budget spent. Such a query is planned whole first.
    let budget = state.config.budget();
    let several_roots = prepared.shape.len() > 1;
    if check.expect.is_some()
        || check.plan
        || (budget.is_some() && several_roots && prepared.ty == OperationType::Query)
    {
        if prepared.ty == OperationType::Query {
            // Boxed: a run of the executor that plans only, on the rarer path.
            let (statements, roots) =
                Box::pin(crate::predict::planned(state, who, &prepared)).await;
            planned = Some(statements);
            plans = roots;
        } else if check.expect.is_some() {
            return Ok(request_error(
                format!("{EXPECT_HEADER} applies to queries; this operation is a mutation"),
                "BAD_USER_INPUT",
                &[],
            ));
        }
    }
    if let (Some(budget), Some(planned)) = (budget, planned)
        && planned > budget
    {
        return Ok(request_error(
            format!(
                "this request needs {planned} SQL statements, more than the budget of \
                 {budget}; nothing ran"
            ),
            "LIMIT_EXCEEDED",
            &[("planned", async_graphql::Value::from(planned as u64))],
        ));
    }
    if let (Some(expected), Some(planned)) = (check.expect, planned)
        && expected != planned
    {
        return Ok(request_error(
            format!(
                "this query's plan needs {planned} SQL statements, not the {expected} of \
                 {EXPECT_HEADER}; nothing ran"
            ),
            "STATEMENT_COUNT_MISMATCH",
            &[
                ("expected", async_graphql::Value::from(expected as u64)),
                ("planned", async_graphql::Value::from(planned as u64)),
            ],
        ));
    }
    // One session per request. A query reads one snapshot on one connection; a mutation's
    // fields each run their own write transaction.
    // Every load of the request reads only what its viewer may see.
    let base = Session::new(state.db.clone(), log.clone()).as_viewer(who.viewer);
    let session = if prepared.ty == OperationType::Query && state.config.read_snapshot {
        base.begin_read()
    } else {
        base
    };
    // The whole request takes its connection now, or fails whole.
    if prepared.reads_data
        && let Err(err) = session.open().await
    {
        tracing::warn!(error = %err.detail(), "no database connection for the request");
        let code = err.code();
        let mut e = async_graphql::ServerError::new(err.message(), None);
        e.extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
        return Err(vec![e]);
    }
    let rc = request_context(state, &session, who, &prepared.form);
    let lazy = (!rc.strict).then(|| {
        let loader: LazyLoader = Arc::new(RequestLoader::new(session.clone()));
        loader
    });
    let mut request = Request::new(query).variables(prepared.variables).data(rc);
    if let Some(lazy) = lazy {
        request = request.data(lazy);
    }
    request.set_parsed_query(prepared.document);
    if let Some(ext) = extensions {
        for (k, v) in ext {
            if let Ok(v) = async_graphql::Value::from_json(v) {
                request.extensions.insert(k, v);
            }
        }
    }
    let mut response = state.schema.execute(request).await;
    // Ends the read snapshot and gives the connection back. (On a panic, a disconnect or a
    // timeout this line is never reached: dropping the session rolls back instead.)
    if let Err(err) = session.end_read().await {
        tracing::warn!(error = %err.detail(), "ending the request's transaction failed");
    }
    // A mutation that could not reach the database wrote nothing: like a query, it is one
    // 503 for the whole request, not a 200 with `data: null` (once a field committed, its
    // answer stands and the others' errors travel beside it).
    let unavailable = |e: &async_graphql::ServerError| {
        e.extensions.as_ref().and_then(|x| x.get("code"))
            == Some(&async_graphql::Value::from("SERVICE_UNAVAILABLE"))
    };
    if prepared.ty == OperationType::Mutation
        && !response.errors.is_empty()
        && response.errors.iter().all(unavailable)
        && !log.control().contains(&"commit")
    {
        let mut first = response.errors.swap_remove(0);
        first.path.clear();
        first.locations.clear();
        return Err(vec![first]);
    }
    operation::finish(&mut response.data, &prepared.shape);
    if check.plan {
        let statements = planned.map_or(async_graphql::Value::Null, |n| {
            async_graphql::Value::from(n as u64)
        });
        let mut plan = async_graphql::indexmap::IndexMap::new();
        plan.insert(async_graphql::Name::new("statements"), statements);
        plan.insert(
            async_graphql::Name::new("roots"),
            async_graphql::Value::from_json(Json::Array(plans)).unwrap_or_default(),
        );
        response
            .extensions
            .insert("plan".to_owned(), async_graphql::Value::Object(plan));
    }
    Ok(response)
}

/// The JSON body of a GraphQL response. `data` is written by [`json::write_value`], which
/// splices in the JSON text the renderer wrote; errors and extensions by serde.
fn response_body(
    data: Option<&async_graphql::Value>,
    response: &async_graphql::Response,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.map_or(0, json::size_hint) + 1024);
    match write_body(&mut out, data, response) {
        Ok(()) => out,
        Err(_) => br#"{"errors":[{"message":"an internal error occurred","extensions":{"code":"INTERNAL"}}]}"#
            .to_vec(),
    }
}

fn write_body(
    out: &mut Vec<u8>,
    data: Option<&async_graphql::Value>,
    response: &async_graphql::Response,
) -> serde_json::Result<()> {
    let mut sep = "{";
    if let Some(data) = data {
        out.extend_from_slice(b"{\"data\":");
        json::write_value(out, data);
        sep = ",";
    }
    if !response.errors.is_empty() {
        out.extend_from_slice(sep.as_bytes());
        out.extend_from_slice(b"\"errors\":");
        serde_json::to_writer(&mut *out, &response.errors)?;
        sep = ",";
    }
    if !response.extensions.is_empty() {
        out.extend_from_slice(sep.as_bytes());
        out.extend_from_slice(b"\"extensions\":");
        serde_json::to_writer(&mut *out, &response.extensions)?;
        sep = ",";
    }
    // An empty body is still an object.
    if sep == "{" {
        out.push(b'{');
    }
    out.push(b'}');
    Ok(())
}

/// The vendored GraphiQL build (see `assets/graphiql/README.md`).
const GRAPHIQL_INDEX: &str = include_str!("../assets/graphiql/index.html");

async fn graphiql_page() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                headers::GRAPHIQL_CSP.clone(),
            ),
        ],
        GRAPHIQL_INDEX,
    )
}

/// A GraphiQL asset, compressed once with br and gzip, with an `ETag` of its content.
struct Asset {
    name: &'static str,
    ty: &'static str,
    identity: &'static [u8],
    br: Vec<u8>,
    gzip: Vec<u8>,
    etag: HeaderValue,
}

impl Asset {
    fn new(name: &'static str, ty: &'static str, identity: &'static [u8]) -> Asset {
        use sha2::Digest as _;
        use std::io::Write as _;
        let mut br = Vec::new();
        let params = brotli::enc::BrotliEncoderParams {
            quality: 9,
            ..Default::default()
        };
        // Writing to a Vec cannot fail; an encoder error would leave the asset uncompressed.
        if brotli::BrotliCompress(&mut &identity[..], &mut br, &params).is_err() {
            br.clear();
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let gzip: Vec<u8> = gz
            .write_all(identity)
            .and_then(|()| gz.finish())
            .unwrap_or_default();
        let digest = sha2::Sha256::digest(identity);
        let etag = HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..12])))
            .unwrap_or_else(|_| HeaderValue::from_static("\"graphiql\""));
        Asset {
            name,
            ty,
            identity,
            br,
            gzip,
            etag,
        }
    }
}

/// The vendored GraphiQL build's assets, compressed on first use (on a blocking thread).
static GRAPHIQL_ASSETS: std::sync::LazyLock<Vec<Asset>> = std::sync::LazyLock::new(|| {
    let js = "text/javascript; charset=utf-8";
    vec![
        Asset::new(
            "graphiql.min.js",
            js,
            include_bytes!("../assets/graphiql/graphiql.min.js"),
        ),
        Asset::new(
            "graphiql.min.css",
            "text/css; charset=utf-8",
            include_bytes!("../assets/graphiql/graphiql.min.css"),
        ),
        Asset::new(
            "react.production.min.js",
            js,
            include_bytes!("../assets/graphiql/react.production.min.js"),
        ),
        Asset::new(
            "react-dom.production.min.js",
            js,
            include_bytes!("../assets/graphiql/react-dom.production.min.js"),
        ),
    ]
});

/// Whether `Accept-Encoding` accepts `coding` (with a non-zero quality, or by `*`).
fn accepts_encoding(headers: &HeaderMap, coding: &str) -> bool {
    let mut star = false;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        for item in value.to_str().unwrap_or("").split(',') {
            let mut parts = item.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let q_zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if name.eq_ignore_ascii_case(coding) {
                return !q_zero;
            }
            star |= name == "*" && !q_zero;
        }
    }
    star
}

/// A GraphiQL asset: br or gzip as the client accepts (compressed once, not per request),
/// with an `ETag`, revalidated on every load (`no-cache`), so an upgraded server's GraphiQL is
/// picked up at once and an unchanged one costs a `304`.
async fn graphiql_asset(Path(file): Path<String>, headers: HeaderMap) -> HttpResponse {
    let assets = match tokio::task::spawn_blocking(|| &*GRAPHIQL_ASSETS).await {
        Ok(assets) => assets,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let Some(asset) = assets.iter().find(|a| a.name == file) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let cache = [
        (header::ETAG, asset.etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::VARY, HeaderValue::from_static("accept-encoding")),
    ];
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().trim_start_matches("W/") == asset.etag || t.trim() == "*");
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    let (body, coding): (&'static [u8], Option<&'static str>) =
        if !asset.br.is_empty() && accepts_encoding(&headers, "br") {
            (&asset.br, Some("br"))
        } else if !asset.gzip.is_empty() && accepts_encoding(&headers, "gzip") {
            (&asset.gzip, Some("gzip"))
        } else {
            (asset.identity, None)
        };
    let mut resp = (cache, Bytes::from_static(body)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.ty));
    if let Some(coding) = coding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
    }
    resp
}

/// The router of the separate metrics port: `/metrics` only.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn(headers::security_headers))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> HttpResponse {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> HttpResponse {
    let session = Session::unmetered(state.db.clone());
    match session
        .fetch(
            "readyz",
            "select cast(1 as bigint)".to_owned(),
            vec![],
            |r| r.i64(0),
        )
        .await
    {
        Ok(_) => match state.db.replicas() {
            Some(replicas) if !replicas.list().is_empty() => {
                let (healthy, all) = replicas.check_now().await;
                let body = if healthy == all {
                    format!("ready ({all} of {all} read replicas answering)")
                } else if healthy == 0 {
                    format!(
                        "degraded: none of {all} read replicas answering; reads use the primary"
                    )
                } else {
                    format!("degraded: {healthy} of {all} read replicas answering")
                };
                (StatusCode::OK, body).into_response()
            }
            _ => (StatusCode::OK, "ready").into_response(),
        },
        Err(err) => {
            tracing::warn!(error = %err.detail(), "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Option<Media> {
        negotiate(Some(&HeaderValue::from_str(v).unwrap()))
    }

    #[test]
    fn negotiates_the_response_media_type() {
        assert_eq!(negotiate(None), Some(Media::Json));
        assert_eq!(accept("Application/JSON"), Some(Media::Json));
        assert_eq!(
            accept("application/graphql-response+json"),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(accept("application/json"), Some(Media::Json));
        assert_eq!(accept("*/*"), Some(Media::Json));
        assert_eq!(
            accept("application/json;q=0.5, application/graphql-response+json"),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(
            accept("application/graphql-response+json;q=0.1, application/json"),
            Some(Media::Json)
        );
        assert_eq!(accept("text/html"), None);
        assert_eq!(accept("application/json;q=0"), None);
    }
}
