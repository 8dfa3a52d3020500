//! An identity provider's key set (JWKS), fetched over HTTP(S) and cached.
//!
//! The set is fetched at start-up and every `EAGERQL_JWKS_REFRESH_SECS` in the background.
//! A token naming a `kid` the set lacks fetches it again, at most once per
//! `EAGERQL_JWKS_REFETCH_SECS`, and only one fetch runs at a time (other requests wait for
//! it): a key rotation at the provider is picked up by the first token signed with the new
//! key, and a flood of forged `kid`s costs the provider one request per period (counted from
//! the end of the last fetch; requests within it do not wait). A fetch is bounded in time
//! (10 s) and size (1 MiB); a failed one keeps the set already held. The set comes over
//! HTTPS (the Mozilla roots, plus `EAGERQL_JWKS_CA_FILE`), or plain HTTP from this machine
//! only: whoever can change the set can sign any token.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::key::Key;

/// The longest a fetch may take, connection and body included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest key set read.
const MAX_BODY: usize = 1 << 20;

/// A cached key set and how to fetch it again.
pub struct Jwks {
    url: Uri,
    tls: Arc<rustls::ClientConfig>,
    keys: RwLock<Arc<Vec<Key>>>,
    /// Held while a fetch caused by an unknown `kid` runs.
    refetching: tokio::sync::Mutex<()>,
    /// When the last such fetch ended, in milliseconds since `started` (0: never).
    refetched_ms: AtomicU64,
    started: Instant,
    refetch: Duration,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .field("keys", &self.keys())
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// A set to be fetched from `url` (`http` or `https`), fetched again for an unknown
    /// `kid` at most once per `refetch`. Nothing is fetched yet.
    pub fn new(url: &str, refetch: Duration, ca_file: Option<&Path>) -> Result<Jwks, String> {
        let url: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let host = url.host().ok_or_else(|| format!("{url}: no host"))?;
        match url.scheme_str() {
            Some("https") => {}
            Some("http") if is_loopback(host) => {}
            Some("http") => {
                return Err(format!(
                    "{url}: plain HTTP is only accepted from this machine (whoever can change \
                     the key set can sign any token): use https"
                ));
            }
            _ => return Err(format!("{url}: not an http(s) URL")),
        }
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = ca_file {
            use rustls::pki_types::pem::PemObject as _;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("EAGERQL_JWKS_CA_FILE {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "EAGERQL_JWKS_CA_FILE {}: no certificate",
                    path.display()
                ));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("EAGERQL_JWKS_CA_FILE {}: {e}", path.display()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Jwks {
            url,
            tls: Arc::new(tls),
            keys: RwLock::new(Arc::new(Vec::new())),
            refetching: tokio::sync::Mutex::new(()),
            refetched_ms: AtomicU64::new(0),
            started: Instant::now(),
            refetch,
        })
    }

    /// The keys held now.
    pub fn keys(&self) -> Arc<Vec<Key>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fetches the set now and keeps it; how many usable keys it has. On failure the set
    /// held is kept.
    pub async fn refresh(&self) -> Result<usize, String> {
        let body = tokio::time::timeout(FETCH_TIMEOUT, self.fetch())
            .await
            .map_err(|_| format!("{}: no answer within {FETCH_TIMEOUT:?}", self.url))??;
        let keys = parse(&body).map_err(|e| format!("{}: {e}", self.url))?;
        let n = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(n)
    }

    /// The keys after fetching the set again for a token naming `kid`, if it is still
    /// unknown and the last such fetch is at least the refetch period old.
    pub async fn refetch_for(&self, kid: Option<&str>) -> Arc<Vec<Key>> {
        let known = |keys: &[Key]| {
            kid.is_some_and(|kid| keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
        };
        let recent = || {
            let at = self.refetched_ms.load(Ordering::Acquire);
            at != 0
                && self
                    .started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at))
                    < self.refetch
        };
        // Within the period nothing waits: the set held is the answer.
        if recent() {
            return self.keys();
        }
        let _fetching = self.refetching.lock().await;
        let keys = self.keys();
        // Another request's fetch, while this one waited, may have brought the key.
        if known(&keys) || recent() {
            return keys;
        }
        let outcome = self.refresh().await;
        let ended = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.refetched_ms.store(ended.max(1), Ordering::Release);
        match outcome {
            Ok(n) => tracing::info!(
                keys = n,
                kid,
                "identity provider's key set fetched again for an unknown key"
            ),
            Err(e) => tracing::warn!(error = %e, "fetching the identity provider's key set failed"),
        }
        self.keys()
    }

    /// The body of one GET of the set.
    async fn fetch(&self) -> Result<Bytes, String> {
        let https = self.url.scheme_str() == Some("https");
        let host = self.url.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = self.url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let failed = |e: &dyn std::fmt::Display| format!("{}: {e}", self.url);
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| failed(&e))?;
        let path = self
            .url
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let request = Request::get(path)
            .header(
                header::HOST,
                self.url.authority().map_or(host, |a| a.as_str()),
            )
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, "eagerql")
            .body(Empty::<Bytes>::new())
            .map_err(|e| failed(&e))?;
        let response = if https {
            let name =
                rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| failed(&e))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| failed(&e))?;
            send(TokioIo::new(tls), request).await
        } else {
            send(TokioIo::new(tcp), request).await
        }
        .map_err(|e| failed(&e))?;
        if response.status() != StatusCode::OK {
            return Err(format!("{}: answered {}", self.url, response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| failed(&e))?;
        Ok(body.to_bytes())
    }
}

/// Whether `host` is this machine: `localhost`, 127.0.0.0/8 or `::1`.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Sends `request` on a new HTTP/1.1 connection over `io`.
async fn send<I>(
    io: I,
    request: Request<Empty<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "key set connection");
        }
    });
    sender.send_request(request).await
}

/// The usable keys of a JWKS document; those that are not are skipped (and logged).
pub fn parse(body: &[u8]) -> Result<Vec<Key>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let entries = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("not a key set (no `keys` array)")?;
    let mut keys = Vec::new();
    for entry in entries {
        match Key::from_jwk(entry) {
            Ok(key) => keys.push(key),
            Err(e) => {
                tracing::debug!(kid = ?entry.get("kid"), reason = %e, "a key of the set is not used")
            }
        }
    }
    Ok(keys)
}

/// Fetches `jwks` again every `every`, until the keys holding it are dropped.
pub fn refresh_in_background(jwks: std::sync::Weak<Jwks>, every: Duration) {
    let every = every.max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(jwks) = jwks.upgrade() else { return };
            if let Err(e) = jwks.refresh().await {
                tracing::warn!(error = %e, "refreshing the identity provider's key set failed");
            }
        }
    });
}
