//! Refusals as GraphQL errors, and a panic as a 500: the layer between the router and the
//! outer layers (compression, CORS, the request id).
//!
//! Every refusal is a GraphQL-shaped JSON error with `extensions.code`: a body over the size
//! limit (413), a method a route does not serve (405, with its `Allow`), a request cut off by
//! the timeout (503), an unknown path (404); and every refusal is in the media type the
//! client's `Accept` asks for (Apollo Client reads a non-2xx body only when it is
//! `application/graphql-response+json`, so an expired token's 401 must be one to be acted on).
//! Every answer of `/graphql` says how many statements it ran: a refusal before execution
//! (bad parameters, media types, a method or a body it does not accept) ran 0. A request cut
//! off by the timeout or a panic may have run some: its count is unknown, so it has none.
//!
//! A service of its own (not `axum::middleware::from_fn` and `CatchPanicLayer`): a request
//! through it allocates nothing, clones no service and boxes no body.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response as HttpResponse;

use super::{COUNT_HEADER, Media, error_response, negotiate};

/// The layer of [`Refusals`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RefusalsLayer;

impl<S> tower::Layer<S> for RefusalsLayer {
    type Service = Refusals<S>;

    fn layer(&self, inner: S) -> Refusals<S> {
        Refusals { inner }
    }
}

/// Rewrites refusals as GraphQL errors, counts a `/graphql` answer's statements when nothing
/// did, and answers a panic (in the service's call or while its future runs) with a 500.
#[derive(Clone, Debug)]
pub struct Refusals<S> {
    inner: S,
}

impl<S> tower::Service<Request> for Refusals<S>
where
    S: tower::Service<Request, Response = HttpResponse, Error = Infallible>,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = RefusalsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // Chosen only for a refusal: a served answer has its media type already.
        let accept = req.headers().get(header::ACCEPT).cloned();
        let path = req.uri().path();
        let graphql = path == "/graphql";
        // A probe's own answer (`draining`, `database unreachable`) is for load balancers and
        // orchestrators: kept as written.
        let probe = matches!(path, "/healthz" | "/readyz");
        let inner = &mut self.inner;
        let fut = std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(req))).ok();
        RefusalsFuture {
            fut,
            accept,
            graphql,
            probe,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Refusals`]: `None` once its service or itself panicked.
    pub struct RefusalsFuture<F> {
        #[pin]
        fut: Option<F>,
        accept: Option<HeaderValue>,
        graphql: bool,
        probe: bool,
    }
}

impl<F> Future for RefusalsFuture<F>
where
    F: Future<Output = Result<HttpResponse, Infallible>>,
{
    type Output = Result<HttpResponse, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let polled = match this.fut.as_mut().as_pin_mut() {
            Some(fut) => std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))).ok(),
            None => None,
        };
        let mut resp = match polled {
            Some(Poll::Pending) => return Poll::Pending,
            Some(Poll::Ready(Ok(resp))) => resp,
            Some(Poll::Ready(Err(never))) => match never {},
            None => {
                this.fut.set(None);
                tracing::error!("a request handler panicked");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "an internal error occurred",
                )
            }
        };
        let status = resp.status();
        if (status.is_client_error() || status.is_server_error()) && !*this.probe {
            let media = negotiate(this.accept.as_ref()).unwrap_or(Media::Json);
            resp = as_graphql_error(resp, media);
        }
        if *this.graphql && !resp.status().is_server_error() {
            resp.headers_mut()
                .entry(COUNT_HEADER)
                .or_insert(HeaderValue::from_static("0"));
        }
        Poll::Ready(Ok(resp))
    }
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
