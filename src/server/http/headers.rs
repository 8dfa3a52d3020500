//! What every response carries, whatever route or layer answered: the request id and the
//! security headers.
//!
//! A request's id is taken from its `x-request-id` when that is sane (1 to 128 visible ASCII
//! characters), and made otherwise (128 random bits in hex). It is echoed in the response, and
//! every log line written while the request is served carries it (the request is served as
//! that id: `telemetry::in_request`). With traces on, the request also has its span.

use std::sync::LazyLock;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::{HeaderName, HeaderValue, Request, Response, header};
use axum::middleware::Next;
use base64::Engine;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::observe::telemetry::{InRequest, in_request};

/// The request id header, read and echoed.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a client.
const MAX_REQUEST_ID: usize = 128;

/// Whether a client's request id can be used as it is: short, printable, no spaces (so it
/// cannot forge or split a log line).
fn sane(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| c.is_ascii_graphic())
}

/// A new request id: 32 hex digits, a random prefix drawn once per process and a counter
/// passed through a keyed bijection (unique within the process, unrelated across processes,
/// not a visible sequence), without a system call per request.
fn fresh() -> HeaderValue {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: LazyLock<[u64; 2]> = LazyLock::new(|| {
        let mut bytes = [0u8; 16];
        if getrandom::fill(&mut bytes).is_err() {
            // No entropy: the time still tells processes apart.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            bytes[..8].copy_from_slice(&t.to_le_bytes());
            bytes[8..].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
        }
        let (a, b) = bytes.split_at(8);
        [
            u64::from_le_bytes(a.try_into().unwrap_or_default()),
            u64::from_le_bytes(b.try_into().unwrap_or_default()),
        ]
    });
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let [prefix, key] = *SEED;
    // xor, multiply by an odd constant, xorshift: each step is a bijection on u64.
    let mut x = NEXT.fetch_add(1, Ordering::Relaxed) ^ key;
    x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    let mut out = [0u8; 32];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, word) in [prefix, x].into_iter().enumerate() {
        for j in 0..16 {
            out[i * 16 + j] = HEX[((word >> (60 - 4 * j)) & 0xf) as usize];
        }
    }
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("0"))
}

/// Gives each request its id, serves it as that id (and, with traces on, inside its span),
/// and echoes the id with the security headers the response does not set itself. Outermost,
/// so every response has them, whichever layer made it. A service of its own (not
/// `axum::middleware::from_fn`): nothing is boxed or cloned per request.
#[derive(Clone, Copy, Debug, Default)]
pub struct WithIdLayer;

impl<S> tower::Layer<S> for WithIdLayer {
    type Service = WithId<S>;

    fn layer(&self, inner: S) -> WithId<S> {
        WithId { inner }
    }
}

/// The service of [`WithIdLayer`].
#[derive(Clone, Debug)]
pub struct WithId<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for WithId<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = WithIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let id = match req.headers().get(&REQUEST_ID) {
            Some(v) if sane(v) => v.clone(),
            _ => fresh(),
        };
        if !crate::observe::telemetry::traces_on() {
            // No span to make, enter and leave on every poll: the id is all log lines need.
            let fut = in_request(id.clone(), self.inner.call(req));
            return WithIdFuture::Plain { fut, id: Some(id) };
        }
        // Exported: the trace's attributes, and the caller's trace joined.
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let span = tracing::info_span!(
            "request",
            otel.kind = "server",
            otel.name = %format!("{} {}", req.method(), req.uri().path()),
            request_id = %id.to_str().unwrap_or(""),
            method = %req.method(),
            path = %req.uri().path(),
            http.response.status_code = tracing::field::Empty,
            graphql.operation.name = tracing::field::Empty,
            graphql.operation.type = tracing::field::Empty,
            eagerql.statements = tracing::field::Empty,
        );
        if let Err(e) = span.set_parent(crate::observe::telemetry::remote_context(req.headers())) {
            tracing::warn!(error = ?e, "the caller's trace context could not be joined");
        }
        let fut = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        let fut = in_request(id.clone(), fut).instrument(span.clone());
        WithIdFuture::Traced {
            fut,
            id: Some(id),
            span,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`WithId`].
    #[project = WithIdProj]
    pub enum WithIdFuture<F> {
        Plain { #[pin] fut: InRequest<F>, id: Option<HeaderValue> },
        Traced {
            #[pin] fut: tracing::instrument::Instrumented<InRequest<F>>,
            id: Option<HeaderValue>,
            span: tracing::Span,
        },
    }
}

impl<F, B, E> Future for WithIdFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let (mut out, id) = match self.project() {
            WithIdProj::Plain { fut, id } => (ready!(fut.poll(cx)), id),
            WithIdProj::Traced { fut, id, span } => {
                let out = ready!(fut.poll(cx));
                if let Ok(resp) = &out {
                    span.record("http.response.status_code", resp.status().as_u16());
                }
                (out, id)
            }
        };
        if let Ok(resp) = &mut out {
            if let Some(id) = id.take() {
                resp.headers_mut().insert(REQUEST_ID, id);
            }
            secure(resp.headers_mut());
        }
        Poll::Ready(out)
    }
}

/// The GraphiQL page's policy: its own scripts and styles (the one inline script by its
/// hash; React sets style attributes, so inline styles are allowed), fonts and images inlined
/// as `data:` URLs, requests to this origin only, and no framing.
pub static GRAPHIQL_CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let page = super::GRAPHIQL_INDEX;
    let hashes: Vec<String> = inline_scripts(page)
        .map(|s| {
            let digest = Sha256::digest(s.as_bytes());
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        })
        .collect();
    let policy = format!(
        "default-src 'none'; script-src 'self' {}; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hashes.join(" ")
    );
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("frame-ancestors 'none'"))
});

/// The text of each `<script>` element without a `src`.
fn inline_scripts(page: &str) -> impl Iterator<Item = &str> {
    page.split("<script>")
        .skip(1)
        .filter_map(|rest| rest.split("</script>").next())
}

/// Every other response is data, never a document: it may load nothing and be framed by
/// nobody.
const DATA_CSP: HeaderValue =
    HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'");

/// Adds the security headers a response does not set itself.
pub async fn security_headers(req: axum::extract::Request, next: Next) -> axum::response::Response {
    let mut resp = next.run(req).await;
    secure(resp.headers_mut());
    resp
}

fn secure(h: &mut axum::http::HeaderMap) {
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(DATA_CSP);
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_ids_are_taken() {
        assert!(sane(&HeaderValue::from_static("abc-123_Z.9")));
        assert!(!sane(&HeaderValue::from_static("")));
        assert!(!sane(&HeaderValue::from_static("two words")));
        assert!(!sane(&HeaderValue::from_str(&"x".repeat(129)).unwrap()));
        assert!(sane(&HeaderValue::from_str(&"x".repeat(128)).unwrap()));
        let a = fresh();
        assert_eq!(a.len(), 32);
        assert_ne!(a, fresh());
        let ids: std::collections::HashSet<HeaderValue> = (0..10_000).map(|_| fresh()).collect();
        assert_eq!(ids.len(), 10_000, "every id is new");
        assert!(ids.iter().all(|id| sane(id)
            && id.len() == 32
            && id.as_bytes().iter().all(u8::is_ascii_hexdigit)));
    }

    #[test]
    fn the_page_policy_names_its_inline_script() {
        assert_eq!(inline_scripts(super::super::GRAPHIQL_INDEX).count(), 1);
        let csp = GRAPHIQL_CSP.to_str().unwrap();
        assert!(csp.contains("'sha256-"), "{csp}");
        assert!(!csp.contains("'unsafe-eval'"));
    }
}
