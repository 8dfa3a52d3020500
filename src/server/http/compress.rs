//! Response compression. An answer of a kilobyte or more (the dashboard's is 400 KB) is sent
//! br or gzip encoded when the client's `Accept-Encoding` accepts one (the higher quality; br
//! on equal quality: it is the smaller here, and zstd, larger still, breaks some clients'
//! fetch). Smaller answers, event streams, images, gRPC and answers already encoded (the
//! GraphiQL assets, compressed once) are sent as they are. A compressible answer says `Vary:
//! Accept-Encoding`, whichever coding this client took.
//!
//! Every answer compressed is complete before it is sent (its size is known; the one answer
//! streamed, an event stream, is never compressed), so its body is encoded in one piece. A
//! layer of its own: a streaming compressor's body holds its encoder's state inline
//! (kilobytes), moved through every layer above it on every request, compressed or not.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::HttpBody as _;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Response, header, response::Parts};

/// The smallest answer compressed, in bytes.
pub const MIN_SIZE: u64 = 1024;

/// brotli's quality for answers: on-the-fly compression's usual level (11 is many times
/// slower for a few percent).
const BR_QUALITY: i32 = 4;

/// A content coding this server writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Br,
    Gzip,
}

impl Coding {
    /// Its `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// The coding `headers`' `Accept-Encoding` prefers: the highest non-zero quality (`*`
    /// stands for a coding it does not name), br on equal quality; `None` without the header,
    /// when it accepts neither, or when it gives `identity` a higher quality than both.
    pub fn preferred(headers: &HeaderMap) -> Option<Coding> {
        let (br, gzip, identity) = qualities(headers);
        let (best, q) = if br >= gzip {
            (Coding::Br, br)
        } else {
            (Coding::Gzip, gzip)
        };
        (q > 0.0 && identity.is_none_or(|i| q >= i)).then_some(best)
    }

    /// Whether `headers`' `Accept-Encoding` accepts this coding at all.
    pub fn accepted(self, headers: &HeaderMap) -> bool {
        let (br, gzip, _) = qualities(headers);
        match self {
            Coding::Br => br > 0.0,
            Coding::Gzip => gzip > 0.0,
        }
    }

    /// `data` encoded; `None` if the encoder failed (the answer is then sent as it is).
    pub fn encode(self, data: &[u8], quality: Quality) -> Option<Vec<u8>> {
        use std::io::Write as _;
        let mut out = Vec::with_capacity(data.len() / 4 + 64);
        match self {
            Coding::Br => {
                let params = brotli::enc::BrotliEncoderParams {
                    quality: match quality {
                        Quality::Fast => BR_QUALITY,
                        Quality::Best => 9,
                    },
                    ..Default::default()
                };
                brotli::BrotliCompress(&mut &data[..], &mut out, &params).ok()?;
                Some(out)
            }
            Coding::Gzip => {
                let level = match quality {
                    Quality::Fast => flate2::Compression::default(),
                    Quality::Best => flate2::Compression::best(),
                };
                let mut gz = flate2::write::GzEncoder::new(out, level);
                gz.write_all(data).ok()?;
                gz.finish().ok()
            }
        }
    }
}

/// How hard to compress: an answer on the fly, or once for good (a static asset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quality {
    Fast,
    Best,
}

/// The qualities `Accept-Encoding` gives br and gzip (0 when it does not accept them, or has
/// no such header), and `identity` when it names it. An item whose quality does not parse is
/// ignored; of a coding named twice, the first counts.
fn qualities(headers: &HeaderMap) -> (f32, f32, Option<f32>) {
    let (mut br, mut gzip, mut star, mut identity) = (None, None, None, None);
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        for item in value.to_str().unwrap_or("").split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q = match parts.find_map(|p| {
                let p = p.trim();
                p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="))
            }) {
                None => 1.0,
                Some(q) => match q.trim().parse::<f32>() {
                    Ok(q) if (0.0..=1.0).contains(&q) => q,
                    _ => continue,
                },
            };
            let slot = if name.eq_ignore_ascii_case("br") {
                &mut br
            } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                &mut gzip
            } else if name == "*" {
                &mut star
            } else if name.eq_ignore_ascii_case("identity") {
                &mut identity
            } else {
                continue;
            };
            slot.get_or_insert(q);
        }
    }
    (
        br.or(star).unwrap_or(0.0),
        gzip.or(star).unwrap_or(0.0),
        identity,
    )
}

/// Whether an answer is worth compressing: of a known size of at least [`MIN_SIZE`], not
/// encoded already, not a range, and not an event stream, an image (but SVG) or gRPC.
fn compressible(resp: &Response<Body>) -> bool {
    let h = resp.headers();
    if h.contains_key(header::CONTENT_ENCODING) || h.contains_key(header::CONTENT_RANGE) {
        return false;
    }
    let ty = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let starts = |p: &str| ty.len() >= p.len() && ty[..p.len()].eq_ignore_ascii_case(p);
    if starts("text/event-stream")
        || starts("application/grpc")
        || (starts("image/") && !starts("image/svg+xml"))
    {
        return false;
    }
    resp.body()
        .size_hint()
        .exact()
        .is_some_and(|n| n >= MIN_SIZE)
}

/// The layer of [`Compress`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CompressLayer;

impl<S> tower::Layer<S> for CompressLayer {
    type Service = Compress<S>;

    fn layer(&self, inner: S) -> Compress<S> {
        Compress { inner }
    }
}

/// Compresses its service's answers (see the module documentation).
#[derive(Clone, Debug)]
pub struct Compress<S> {
    inner: S,
}

impl<S> tower::Service<Request> for Compress<S>
where
    S: tower::Service<Request, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = CompressFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let coding = Coding::preferred(req.headers());
        CompressFuture::Answering {
            fut: self.inner.call(req),
            coding,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Compress`]: the answer, then (when it is compressed) its body read.
    #[project = CompressProj]
    pub enum CompressFuture<F> {
        Answering { #[pin] fut: F, coding: Option<Coding> },
        Reading {
            parts: Parts,
            body: Body,
            chunks: Vec<Bytes>,
            coding: Coding,
        },
        Done,
    }
}

impl<F> Future for CompressFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                CompressProj::Answering { fut, coding } => {
                    let Ok(mut resp) = ready!(fut.poll(cx));
                    if !compressible(&resp) {
                        return Poll::Ready(Ok(resp));
                    }
                    vary_on_encoding(resp.headers_mut());
                    let Some(coding) = *coding else {
                        return Poll::Ready(Ok(resp));
                    };
                    let (parts, body) = resp.into_parts();
                    self.set(CompressFuture::Reading {
                        parts,
                        body,
                        chunks: Vec::new(),
                        coding,
                    });
                }
                CompressProj::Reading {
                    parts,
                    body,
                    chunks,
                    coding,
                } => {
                    while let Some(frame) = ready!(Pin::new(&mut *body).poll_frame(cx)) {
                        match frame {
                            Ok(frame) => {
                                if let Ok(data) = frame.into_data() {
                                    chunks.push(data);
                                }
                            }
                            Err(err) => {
                                // Every answer compressed is in memory: this does not happen,
                                // and if it did the answer would be lost, not sent empty.
                                tracing::error!(error = %err, "an answer's body failed");
                                self.set(CompressFuture::Done);
                                return Poll::Ready(Ok(super::error_response(
                                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                                    "INTERNAL",
                                    "an internal error occurred",
                                )));
                            }
                        }
                    }
                    let mut parts = std::mem::replace(parts, Response::new(()).into_parts().0);
                    let data: Bytes = match chunks.len() {
                        1 => chunks.pop().unwrap_or_default(),
                        _ => chunks.concat().into(),
                    };
                    let coding = *coding;
                    self.set(CompressFuture::Done);
                    let body = match coding.encode(&data, Quality::Fast) {
                        Some(encoded) => {
                            parts.headers.remove(header::CONTENT_LENGTH);
                            parts.headers.remove(header::ACCEPT_RANGES);
                            parts.headers.insert(
                                header::CONTENT_ENCODING,
                                HeaderValue::from_static(coding.token()),
                            );
                            Body::from(encoded)
                        }
                        None => Body::from(data),
                    };
                    return Poll::Ready(Ok(Response::from_parts(parts, body)));
                }
                CompressProj::Done => panic!("a compressed answer polled after it was given"),
            }
        }
    }
}

/// Adds `Vary: Accept-Encoding` unless the answer varies on it already.
fn vary_on_encoding(h: &mut HeaderMap) {
    let already = h.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding") || t.trim() == "*")
        })
    });
    if !already {
        h.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn the_coding_is_the_one_the_client_prefers() {
        let preferred = |v: &str| Coding::preferred(&accept(v));
        assert_eq!(Coding::preferred(&HeaderMap::new()), None);
        assert_eq!(preferred("gzip, deflate, br, zstd"), Some(Coding::Br));
        assert_eq!(preferred("gzip"), Some(Coding::Gzip));
        assert_eq!(preferred("x-gzip"), Some(Coding::Gzip));
        assert_eq!(preferred("br;q=0.5, gzip"), Some(Coding::Gzip));
        assert_eq!(preferred("BR;Q=0.9, gzip;q=0.8"), Some(Coding::Br));
        assert_eq!(preferred("br;q=0, gzip;q=0"), None);
        assert_eq!(preferred("identity"), None);
        assert_eq!(preferred("zstd, deflate"), None);
        assert_eq!(preferred("*"), Some(Coding::Br));
        assert_eq!(preferred("br;q=0, *"), Some(Coding::Gzip));
        assert_eq!(preferred("*;q=0"), None);
        // A quality that does not parse drops its item, not the header.
        assert_eq!(preferred("br;q=high, gzip"), Some(Coding::Gzip));
        assert_eq!(preferred("br;q=2, gzip;q=0.1"), Some(Coding::Gzip));
        // identity wins only when worth more than both.
        assert_eq!(preferred("identity;q=1, gzip;q=0.5"), None);
        assert_eq!(preferred("identity, gzip"), Some(Coding::Gzip));
        assert_eq!(preferred("identity;q=0, br"), Some(Coding::Br));
        assert!(Coding::Gzip.accepted(&accept("br, gzip;q=0.1")));
        assert!(!Coding::Gzip.accepted(&accept("br")));
    }

    #[test]
    fn encoded_answers_decode_to_themselves() {
        use std::io::Read as _;
        let data = br#"{"data":{"users":[{"id":"1"}]}}"#.repeat(200);
        let br = Coding::Br.encode(&data, Quality::Fast).unwrap();
        let mut back = Vec::new();
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert!(br.len() < data.len() / 10);
        let gz = Coding::Gzip.encode(&data, Quality::Fast).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }
}
