//! HTTP: GraphQL over HTTP at `/graphql` (POST, and GET for queries), the GraphiQL
//! playground at `/` with its assets served by the binary, and `/healthz`, `/readyz`.
//!
//! The `/graphql` handler follows the GraphQL-over-HTTP specification: it negotiates
//! `application/graphql-response+json` or legacy `application/json` from `Accept`, answers
//! request errors (bad JSON, bad parameters, parse, validation and variable errors) with 400
//! and no `data` under the former, refuses mutations over GET with 405 and `Allow: POST`, and
//! answers unsupported media types with 415 / 406. What a request is then served with (its
//! document, operation, plan, execution and the record of it) is the transport-free pipeline
//! of `graphql::handler`; this module reads the request into it and writes its outcome.

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::get;
use serde_json::{Map, Value as Json, json};
use tower_http::cors::{AllowHeaders, AllowOrigin, Any, CorsLayer};
use tower_http::timeout::TimeoutLayer;

use crate::db::Session;
use crate::documents::persisted::ApqError;
use crate::graphql::handler::{self, DebugAsks, Incoming, Outcome, Params, params_from_json};
use crate::model::Viewer;
use crate::server::state::AppState;
use compress::{Coding, Quality};

mod compress;
mod events;
mod headers;
mod refusals;
mod socket;

pub use headers::REQUEST_ID;

pub use crate::graphql::handler::{DEBUG_HEADER, EXPECT_HEADER};
/// The response header that always carries the request's SQL statement count.
pub const COUNT_HEADER: &str = "x-eagerql-sql-statements";

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const APPLICATION_JSON: &str = "application/json";
const TEXT_EVENT_STREAM: &str = "text/event-stream";

/// The router of the whole service: [`service`] as a `Router` (what tests call).
pub fn router(state: AppState) -> Router {
    Router::new().fallback_service(service(state))
}

/// The whole service: the routes inside the layers every request goes through. The server
/// serves it as it is ([`Connections`]); a router around it would box its future once more per
/// request.
pub fn service(
    state: AppState,
) -> impl tower::Service<
    axum::extract::Request,
    Response = HttpResponse,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    let timeout = state.config.request_timeout();
    let cors = cors_layer(&state.config.cors_origins);
    let public = Router::new();
    // `/metrics` is on the public port unless it has its own (EAGERQL_METRICS_BIND).
    let public = if state.config.observe.metrics && state.config.observe.metrics_bind.is_none() {
        public.route("/metrics", get(metrics))
    } else {
        public
    };
    let routes = public
        .route("/graphql", get(graphql_get_or_socket).post(graphql_post))
        .route("/", get(graphiql_page))
        .route("/graphiql/{file}", get(graphiql_asset))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state);
    // The layers wrap the router as a whole (not each route, as `Router::layer` does), so
    // a request clones one stack of plain services, not a boxed stack per layer.
    tower::ServiceBuilder::new()
        // Outermost: every response, whichever layer made it, carries the request's id, and
        // every log line of the request its span.
        .layer(headers::WithIdLayer)
        // Answers of a kilobyte or more compressed, when the client accepts br or gzip.
        .layer(compress::CompressLayer)
        // Without configured origins there is no CORS layer at all (it would answer every
        // OPTIONS request as a preflight).
        .option_layer(cors)
        // Refusals as GraphQL errors, and a panic as a 500; outside the timeout, so that a
        // cut-off request's 503 becomes a GraphQL error too.
        .layer(refusals::RefusalsLayer)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .service(routes)
}

/// Makes each connection's service: [`service`], its requests carrying the peer's address
/// (`ConnectInfo`), as a router's `into_make_service_with_connect_info` does.
#[derive(Clone, Debug)]
pub struct Connections<S>(pub S);

impl<'a, L, S> tower::Service<axum::serve::IncomingStream<'a, L>> for Connections<S>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    S: Clone,
{
    type Response = WithPeer<S>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<WithPeer<S>, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), std::convert::Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: axum::serve::IncomingStream<'a, L>) -> Self::Future {
        std::future::ready(Ok(WithPeer {
            inner: self.0.clone(),
            peer: *stream.remote_addr(),
        }))
    }
}

/// One connection's service (see [`Connections`]).
#[derive(Clone, Debug)]
pub struct WithPeer<S> {
    inner: S,
    peer: SocketAddr,
}

impl<S: tower::Service<axum::extract::Request>> tower::Service<axum::extract::Request>
    for WithPeer<S>
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: axum::extract::Request) -> S::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        self.inner.call(req)
    }
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

/// The response media type chosen from `Accept`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Media {
    GraphqlResponse,
    Json,
    /// `text/event-stream`: the answer is streamed ([`events`]); a refusal before the
    /// request is read is JSON.
    EventStream,
}

impl Media {
    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Media::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Media::Json | Media::EventStream => "application/json; charset=utf-8",
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
        } else if is(TEXT_EVENT_STREAM) {
            Media::EventStream
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
        Ok(ClientAddr::of(parts))
    }
}

impl ClientAddr {
    /// The address of the request with these parts.
    fn of(parts: &axum::http::request::Parts) -> ClientAddr {
        ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        )
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
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Viewer, Refused> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Viewer::Anonymous);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let token = match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => {
            return Err(Refused::Invalid(
                "the Authorization header must be `Bearer <access token>`",
            ));
        }
    };
    if let Some(viewer) = state.keys.verified(token) {
        return Ok(viewer);
    }
    // First sight: a signature to check, perhaps an account to find or a key set to fetch.
    Box::pin(state.keys.verify(token)).await.map_err(|e| {
        if e.unavailable {
            tracing::warn!(error = %e, "an access token could not be checked");
            Refused::Unavailable
        } else {
            tracing::debug!(error = %e, "refused an access token");
            Refused::Invalid("the access token is invalid or expired")
        }
    })
}

/// Why a request's credentials were not accepted.
#[derive(Debug)]
enum Refused {
    /// Refused: the client's message (401 `UNAUTHENTICATED`).
    Invalid(&'static str),
    /// Not checked: what it needs is unreachable now (503 `SERVICE_UNAVAILABLE`).
    Unavailable,
}

impl Refused {
    const UNAVAILABLE: &str = "the access token cannot be checked now; try again";

    /// The answer to a request refused so.
    fn response(&self) -> HttpResponse {
        match self {
            Refused::Invalid(message) => unauthorized(message),
            Refused::Unavailable => {
                let mut resp = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SERVICE_UNAVAILABLE",
                    Self::UNAVAILABLE,
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                resp.headers_mut()
                    .insert(COUNT_HEADER, HeaderValue::from_static("0"));
                resp
            }
        }
    }

    /// How a WebSocket refused so is closed.
    fn closing(&self) -> crate::server::ws::Closing {
        match self {
            Refused::Invalid(message) => {
                crate::server::ws::Closing::forbidden(format!("Forbidden: {message}"))
            }
            Refused::Unavailable => crate::server::ws::Closing::try_again(Self::UNAVAILABLE),
        }
    }
}

/// 401 with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750) and UNAUTHENTICATED.
/// The bearer token of `headers`, if any.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

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

/// A WebSocket upgrade sent as anything but a GET is told how to open one, instead of a
/// generic "no query".
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
            "a WebSocket to /graphql is opened with GET and the graphql-transport-ws \
             subprotocol",
        ));
    }
    None
}

/// The media type a GraphQL request's answer is written in, from its `Accept` (the same for
/// POST and GET); `Err`: the request is refused before its parameters are read.
fn answer_media(headers: &HeaderMap) -> Result<Media, Box<HttpResponse>> {
    if let Some(refusal) = streaming_refusal(headers) {
        return Err(Box::new(refusal));
    }
    negotiate(headers.get(header::ACCEPT)).ok_or_else(|| {
        Box::new(error_response(
            StatusCode::NOT_ACCEPTABLE,
            "NOT_ACCEPTABLE",
            "acceptable media types: application/graphql-response+json, application/json",
        ))
    })
}

/// `POST /graphql`: a GraphQL request in a JSON body.
async fn graphql_post(State(state): State<AppState>, req: axum::extract::Request) -> HttpResponse {
    let (mut parts, body) = req.into_parts();
    let client = ClientAddr::of(&parts);
    let headers = std::mem::take(&mut parts.headers);
    // Read whole, up to EAGERQL_MAX_BODY_BYTES (a larger one is a 413, which the refusals
    // layer words).
    let limit = state.config.limits.max_body_bytes;
    let body =
        match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit)).await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return StatusCode::PAYLOAD_TOO_LARGE.into_response();
            }
            Err(_) => return bad_request("the request body could not be read"),
        };
    let media = match answer_media(&headers) {
        Ok(media) => media,
        Err(refusal) => return *refusal,
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
        // Not boxed: axum boxes this handler's future once, whole.
        Ok(params) => execute(state, client, headers, media, params, Method::Post).await,
        Err(message) => bad_request(&message),
    }
}

/// `GET /graphql`: a WebSocket upgrade (GraphQL over WebSocket, [`socket`]), or a query in
/// the query string.
async fn graphql_get_or_socket(
    State(state): State<AppState>,
    client: ClientAddr,
    req: axum::extract::Request,
) -> HttpResponse {
    let upgrade = req.headers().get_all(header::UPGRADE).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
    });
    if !upgrade {
        return axum::handler::Handler::call(graphql_get, req, state).await;
    }
    let (mut parts, _) = req.into_parts();
    match axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(ws) => socket::upgrade(ws, state, client.0),
        Err(rejection) => {
            let status = rejection.status();
            error_response(status, "BAD_REQUEST", &rejection.body_text())
        }
    }
}

async fn graphql_get(
    State(state): State<AppState>,
    client: ClientAddr,
    Headers(headers): Headers,
    RawQuery(raw): RawQuery,
) -> HttpResponse {
    let media = match answer_media(&headers) {
        Ok(media) => media,
        Err(refusal) => return *refusal,
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

/// Serves a GraphQL request's parameters through the pipeline ([`handler::handle`]) and
/// writes its outcome as HTTP.
async fn execute(
    state: AppState,
    client: ClientAddr,
    headers: HeaderMap,
    media: Media,
    params: Params,
    method: Method,
) -> HttpResponse {
    let started = std::time::Instant::now();
    let viewer = match authenticate(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(refused) => return refused.response(),
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
    let incoming = Incoming {
        viewer,
        client: client.0,
        params,
        asks,
        queries_only: method == Method::Get,
        request_error_status: match media {
            Media::GraphqlResponse => StatusCode::BAD_REQUEST,
            Media::Json | Media::EventStream => StatusCode::OK,
        },
        started,
    };
    if media == Media::EventStream {
        // Boxed: an event stream's future is large, and rare beside single answers.
        return Box::pin(events::serve(state, incoming, bearer(&headers))).await;
    }
    match handler::handle(&state, incoming).await {
        Outcome::Document(e) => persisted_refusal(&e, media),
        // GET is for queries only: a mutation must not run on a request that caches and
        // prefetchers consider safe.
        // A subscription needs a transport that streams.
        Outcome::Subscription(_) => error_response(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "a subscription is served over a WebSocket (graphql-transport-ws) or as \
             Server-Sent Events (Accept: text/event-stream); this request asks for one answer",
        ),
        Outcome::QueriesOnly => {
            let mut resp = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "only queries may be sent with GET; send mutations with POST",
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            resp
        }
        Outcome::Answered(answer) => {
            let mut resp = (answer.status, answer.body).into_response();
            let h = resp.headers_mut();
            // Room for what the outer layers add (id, security headers, `Vary`), so the map
            // is allocated once instead of grown on the way out.
            h.reserve(12);
            h.insert(header::CONTENT_TYPE, media.content_type());
            h.insert(COUNT_HEADER, HeaderValue::from(answer.statements));
            if let Some(secs) = answer.retry_after {
                h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            resp
        }
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

/// The vendored GraphiQL build (see `assets/graphiql/README.md`).
const GRAPHIQL_INDEX: &str = include_str!("../../../assets/graphiql/index.html");

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
        // An encoder error leaves the asset uncompressed in that coding.
        let br = Coding::Br
            .encode(identity, Quality::Best)
            .unwrap_or_default();
        let gzip = Coding::Gzip
            .encode(identity, Quality::Best)
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
            include_bytes!("../../../assets/graphiql/graphiql.min.js"),
        ),
        Asset::new(
            "graphiql.min.css",
            "text/css; charset=utf-8",
            include_bytes!("../../../assets/graphiql/graphiql.min.css"),
        ),
        Asset::new(
            "react.production.min.js",
            js,
            include_bytes!("../../../assets/graphiql/react.production.min.js"),
        ),
        Asset::new(
            "react-dom.production.min.js",
            js,
            include_bytes!("../../../assets/graphiql/react-dom.production.min.js"),
        ),
    ]
});

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
    let (body, coding): (&'static [u8], Option<Coding>) = match Coding::preferred(&headers) {
        Some(Coding::Br) if !asset.br.is_empty() => (&asset.br, Some(Coding::Br)),
        Some(_) if !asset.gzip.is_empty() && Coding::Gzip.accepted(&headers) => {
            (&asset.gzip, Some(Coding::Gzip))
        }
        _ => (asset.identity, None),
    };
    let mut resp = (cache, Bytes::from_static(body)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.ty));
    if let Some(coding) = coding {
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.token()),
        );
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
        [(header::CONTENT_TYPE, crate::observe::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> HttpResponse {
    // Shutting down: out of rotation, while in-flight requests finish.
    if *state.closing.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining: shutting down").into_response();
    }
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
                // The background check's verdict (every second), not a check per probe.
                let (used, behind, all) = replicas.health();
                let behind = match behind {
                    0 => String::new(),
                    n => format!(", {n} behind by more than EAGERQL_REPLICA_MAX_LAG"),
                };
                let body = if used == all {
                    format!("ready ({all} of {all} read replicas in use)")
                } else if used == 0 {
                    format!(
                        "degraded: none of {all} read replicas in use{behind}; reads use the primary"
                    )
                } else {
                    format!("degraded: {used} of {all} read replicas in use{behind}")
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
