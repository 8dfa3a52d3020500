//! Authentication: who a request is.
//!
//! - **Access tokens** are JWTs signed with HS256, short-lived, carrying the account id
//!   (`sub`) and role: a request's viewer comes from its token alone, so no statement runs to
//!   look the viewer up. An access token stays valid until it expires, even after logout or
//!   deactivation: keep their lifetime short (`EAGERQL_ACCESS_TOKEN_TTL_SECS`).
//! - **Refresh tokens** are opaque random strings, stored only as SHA-256 hashes, exchanged
//!   once each for a new pair (rotation); reusing an exchanged token revokes its whole family.
//! - **The signing key** is generated on first start and kept in the database (`server_keys`),
//!   so every instance on one database accepts the same tokens and a restart keeps sessions;
//!   `EAGERQL_JWT_SECRET` overrides it.
//! - **An identity provider's tokens** (RS/PS/ES/EdDSA, [`external`]) are accepted beside
//!   them when a public key or a JWKS URL is configured.
//! - **Login attempts** are limited per account and per client address ([`LoginLimiter`]),
//!   counted in the database.

pub mod claims;
pub mod external;
pub mod jwks;
pub mod key;
pub mod password;

use foldhash::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::{Session, auth as store, login_attempts};
use crate::error::{AppError, AppResult};
use crate::model::{Role, Viewer};

/// The issuer named in (and required of) every access token.
const ISSUER: &str = "eagerql";
/// The name of the signing key in `server_keys`.
const KEY_NAME: &str = "jwt-hs256";

/// Token lifetimes.
#[derive(Copy, Clone, Debug)]
pub struct TokenConfig {
    /// How long an access token is valid.
    pub access_ttl: Duration,
    /// How long a refresh token is valid (each rotation starts a new period).
    pub refresh_ttl: Duration,
    /// Seconds of clock difference allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    iss: String,
    iat: i64,
    exp: i64,
}

/// Signs and checks access tokens.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    config: TokenConfig,
    /// An identity provider whose tokens are accepted too.
    external: Option<external::Provider>,
    /// Tokens already verified, with what they name and when they expire: a client sends
    /// the same token with every request, and checking its signature and claims again each
    /// time cost a fifth of a small request. Keyed by the whole token, so a hit is the very
    /// token that was verified; its expiry is checked on every hit.
    verified: std::sync::RwLock<HashMap<Box<str>, (Viewer, i64)>>,
}

/// Most verified tokens remembered (past it, expired ones are forgotten, then all).
const MAX_VERIFIED: usize = 10_000;

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why a token was refused (the client sees one message for all of them), or that it could
/// not be checked now (the database or the identity provider is unreachable).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    message: String,
    /// The token may be fine: checking it failed (the client is told to try again).
    pub unavailable: bool,
}

impl TokenError {
    /// A refusal.
    pub(crate) fn refused(message: impl Into<String>) -> TokenError {
        TokenError {
            message: message.into(),
            unavailable: false,
        }
    }

    /// A check that could not be made now.
    pub(crate) fn unavailable(message: impl Into<String>) -> TokenError {
        TokenError {
            message: message.into(),
            unavailable: true,
        }
    }
}

/// `n` random bytes from the operating system.
fn random_bytes<const N: usize>() -> AppResult<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| AppError::internal(format!("no randomness: {e}")))?;
    Ok(buf)
}

fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// The SHA-256 of a refresh token, hex: what the database stores.
pub fn token_hash(token: &str) -> String {
    to_hex(&Sha256::digest(token.as_bytes()))
}

impl Keys {
    /// Keys from `secret`.
    pub fn from_secret(secret: &[u8], config: TokenConfig) -> AppResult<Keys> {
        let bad = |e: jsonwebtoken::errors::Error| AppError::internal(format!("token key: {e}"));
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.leeway = config.leeway_secs;
        Ok(Keys {
            encoding: EncodingKey::from_secret(secret).map_err(bad)?,
            decoding: DecodingKey::from_secret(secret).map_err(bad)?,
            validation,
            config,
            external: None,
            verified: std::sync::RwLock::new(HashMap::default()),
        })
    }

    /// The configured secret (`EAGERQL_JWT_SECRET`), or the database's, generated and stored
    /// by whichever instance started first.
    pub async fn load(
        session: &Session,
        secret: Option<&str>,
        config: TokenConfig,
    ) -> AppResult<Keys> {
        let secret = match secret {
            Some(s) => s.to_owned(),
            None => {
                let candidate = to_hex(&random_bytes::<32>()?);
                store::server_key(session, KEY_NAME, &candidate).await?
            }
        };
        Keys::from_secret(secret.as_bytes(), config)
    }

    /// The lifetimes.
    pub fn config(&self) -> TokenConfig {
        self.config
    }

    /// A signed access token for an account, and when it expires.
    pub fn issue(&self, user_id: i64, role: Role) -> AppResult<(String, DateTime<Utc>)> {
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(self.config.access_ttl)
            .map_err(|e| AppError::internal(e.to_string()))?;
        let expires = now + ttl;
        let claims = Claims {
            sub: user_id.to_string(),
            role: role.as_db().to_owned(),
            iss: ISSUER.to_owned(),
            iat: now.timestamp(),
            exp: expires.timestamp(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AppError::internal(format!("signing a token: {e}")))?;
        Ok((token, expires))
    }

    /// Whether a token that expires at `exp` is still valid: `exp >= now - leeway`, as the
    /// full check has it.
    fn fresh(&self, exp: i64) -> bool {
        let now = Utc::now().timestamp();
        exp.saturating_add(i64::try_from(self.validation.leeway).unwrap_or(i64::MAX)) >= now
    }

    /// The viewer of a token already verified and not yet expired, without checking it again
    /// (the path of nearly every request); `None`: call [`Keys::verify`].
    pub fn verified(&self, token: &str) -> Option<Viewer> {
        self.verified
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .filter(|(_, exp)| self.fresh(*exp))
            .map(|(viewer, _)| *viewer)
    }

    /// The viewer an access token names, if it is well-formed, correctly signed, current
    /// and, for an identity provider's token, names an active account (which may take a
    /// statement, or a fetch of the provider's keys, the first time the token is seen).
    pub async fn verify(&self, token: &str) -> Result<Viewer, TokenError> {
        if let Some(viewer) = self.verified(token) {
            return Ok(viewer);
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::refused(e.to_string()))?;
        let (viewer, exp) = match (header.alg, &self.external) {
            (Algorithm::HS256, _) => self.check(token)?,
            // Remembered no longer than one of the server's own tokens: an account
            // deactivated meanwhile is found out then, however long the provider's token lives.
            (_, Some(provider)) => {
                let (viewer, exp) = provider.verify(token, &header).await?;
                let ttl = i64::try_from(self.config.access_ttl.as_secs()).unwrap_or(i64::MAX);
                (viewer, exp.min(Utc::now().timestamp().saturating_add(ttl)))
            }
            (alg, None) => {
                return Err(TokenError::refused(format!(
                    "algorithm {alg:?} is not accepted"
                )));
            }
        };
        let mut cache = self.verified.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_VERIFIED {
            cache.retain(|_, (_, exp)| self.fresh(*exp));
            if cache.len() >= MAX_VERIFIED {
                cache.clear();
            }
        }
        cache.insert(token.into(), (viewer, exp));
        Ok(viewer)
    }

    /// [`Keys::verify`] without the cache: signature, issuer and expiry checked, and what the
    /// token names, with its expiry.
    fn check(&self, token: &str) -> Result<(Viewer, i64), TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| TokenError::refused(e.to_string()))?;
        let id = data
            .claims
            .sub
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| TokenError::refused("the subject is not an account id"))?;
        let role =
            Role::from_db(&data.claims.role).ok_or_else(|| TokenError::refused("unknown role"))?;
        Ok((Viewer::User { id, role }, data.claims.exp))
    }
}

/// What a login or a refresh hands the client.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The account.
    pub user_id: i64,
    /// Its role.
    pub role: Role,
    /// The signed access token.
    pub access_token: String,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// The new refresh token (shown once; only its hash is stored).
    pub refresh_token: String,
}

fn unauthenticated(message: &str) -> AppError {
    AppError::Unauthenticated(message.to_owned())
}

/// Starts a session (a refresh token family) for an account, inside the caller's transaction.
pub async fn start_session(
    tx: &Session,
    keys: &Keys,
    user_id: i64,
    role: Role,
) -> AppResult<Issued> {
    let family = to_hex(&random_bytes::<16>()?);
    issue_pair(tx, keys, user_id, role, &family).await
}

async fn issue_pair(
    tx: &Session,
    keys: &Keys,
    user_id: i64,
    role: Role,
    family: &str,
) -> AppResult<Issued> {
    let refresh_token = base64_url(&random_bytes::<32>()?);
    let ttl = i64::try_from(keys.config.refresh_ttl.as_secs()).unwrap_or(i64::MAX / 2);
    let expires = Utc::now().timestamp().saturating_add(ttl);
    store::insert_refresh(tx, user_id, family, &token_hash(&refresh_token), expires).await?;
    let (access_token, expires_at) = keys.issue(user_id, role)?;
    Ok(Issued {
        user_id,
        role,
        access_token,
        expires_at,
        refresh_token,
    })
}

/// Exchanges a refresh token for a new pair, inside the caller's transaction. A token that
/// was already exchanged revokes its whole family (it may have been stolen); the caller must
/// commit that even though the exchange fails, so the error comes with `Ok(Err(..))`.
pub async fn rotate(tx: &Session, keys: &Keys, token: &str) -> AppResult<Result<Issued, AppError>> {
    let invalid = || unauthenticated("the refresh token is invalid, expired or revoked");
    let Some(found) = store::refresh_for_update(tx, &token_hash(token)).await? else {
        return Ok(Err(invalid()));
    };
    if found.rotated && !found.revoked {
        store::revoke_family(tx, &found.family).await?;
        return Ok(Err(invalid()));
    }
    if found.revoked || found.expires_at <= Utc::now().timestamp() || !found.is_active {
        return Ok(Err(invalid()));
    }
    store::mark_rotated(tx, found.id).await?;
    Ok(Ok(issue_pair(
        tx,
        keys,
        found.user_id,
        found.role,
        &found.family,
    )
    .await?))
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Limits login attempts per account and per client address: past `per_account` (or
/// `per_address`) attempts within `window`, further attempts are refused with `RATE_LIMITED`
/// until the window passes. A successful login clears its account's count and gives its
/// address back the attempt, so only failures add up.
///
/// The counts live in the database (`login_attempts`), shared by every instance on it and
/// kept across restarts, and an attempt is counted atomically *before* its password is
/// checked: of 40 concurrent attempts on one account, 5 are checked and 35 refused.
#[derive(Debug)]
pub struct LoginLimiter {
    per_account: u32,
    per_address: u32,
    window: Duration,
}

/// An attempt counted by [`LoginLimiter::reserve`].
#[derive(Debug)]
pub struct Attempt {
    account: String,
    address: Option<String>,
}

impl LoginLimiter {
    /// A limiter allowing `per_account` and `per_address` attempts per `window`.
    pub fn new(per_account: u32, per_address: u32, window: Duration) -> Self {
        LoginLimiter {
            per_account,
            per_address,
            window,
        }
    }

    fn key(kind: &str, value: &str) -> String {
        to_hex(&Sha256::digest(format!("{kind}:{value}").as_bytes()))
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX)
    }

    /// Counts an attempt on `email` from `address`; `Err(RateLimited)` when either is past
    /// its limit (the refused attempt counts too, but never moves the window).
    pub async fn reserve(
        &self,
        s: &Session,
        email: &str,
        address: Option<IpAddr>,
    ) -> AppResult<Attempt> {
        let attempt = Attempt {
            account: Self::key("account", email),
            address: address.map(|a| Self::key("address", &a.to_string())),
        };
        let mut keys = vec![attempt.account.clone()];
        keys.extend(attempt.address.clone());
        let now = Utc::now().timestamp_millis();
        let counts = login_attempts::reserve(s, &keys, now, now - self.window_ms()).await?;
        let mut wait: Option<i64> = None;
        for c in &counts {
            let max = if c.key == attempt.account {
                self.per_account
            } else {
                self.per_address
            };
            if c.attempts > i64::from(max) {
                let left = c.window_start + self.window_ms() - now;
                wait = Some(wait.unwrap_or(0).max(left));
            }
        }
        match wait {
            None => Ok(attempt),
            Some(ms) => Err(AppError::RateLimited {
                message: "too many failed logins; try again later".to_owned(),
                retry_after: u64::try_from(ms.max(0)).unwrap_or(0).div_ceil(1000).max(1),
            }),
        }
    }

    /// Records that `attempt` succeeded (in the login's transaction).
    pub async fn succeeded(&self, s: &Session, attempt: &Attempt) -> AppResult<()> {
        login_attempts::succeeded(s, &attempt.account, attempt.address.as_deref()).await
    }

    /// Forgets counts whose window has passed (they no longer limit anything).
    pub async fn prune(&self, s: &Session) -> AppResult<u64> {
        login_attempts::prune(s, Utc::now().timestamp_millis() - self.window_ms()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> Keys {
        Keys::from_secret(
            secret.as_bytes(),
            TokenConfig {
                access_ttl: Duration::from_secs(60),
                refresh_ttl: Duration::from_secs(600),
                leeway_secs: 5,
            },
        )
        .unwrap_or_else(|e| panic!("{}", e.detail()))
    }

    #[tokio::test]
    async fn a_token_names_its_viewer_and_only_its_key_accepts_it() {
        let k = keys("one");
        let (token, expires) = k
            .issue(42, Role::Admin)
            .unwrap_or_else(|e| panic!("{}", e.detail()));
        assert!(expires > Utc::now());
        assert_eq!(
            k.verify(&token).await.ok(),
            Some(Viewer::User {
                id: 42,
                role: Role::Admin
            })
        );
        assert!(keys("two").verify(&token).await.is_err(), "another key");
        let mut tampered = token.clone();
        tampered.push('x');
        assert!(k.verify(&tampered).await.is_err());
        assert!(k.verify("not a token").await.is_err());
    }

    #[tokio::test]
    async fn a_remembered_token_is_refused_once_it_expires() {
        let k = keys("s");
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: "7".into(),
            role: "customer".into(),
            iss: ISSUER.into(),
            iat: 0,
            exp: now - 3_600,
        };
        let expired = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.encoding)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            k.verify(&expired).await.is_err(),
            "never remembered: refused"
        );
        let remember = |exp: i64| {
            let viewer = Viewer::User {
                id: 7,
                role: Role::Customer,
            };
            k.verified
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(expired.clone().into(), (viewer, exp));
        };
        // A hit answers from the cache while its expiry holds...
        remember(now + 60);
        assert!(k.verify(&expired).await.is_ok(), "a hit");
        // ...and not once it has passed: the token is checked afresh, and refused.
        remember(now - 60);
        assert!(k.verify(&expired).await.is_err(), "a stale hit");
        // A token is only ever a hit for itself: one byte more is verified afresh.
        remember(now + 60);
        let mut forged = expired.clone();
        forged.push('A');
        assert!(k.verify(&forged).await.is_err());
    }

    #[tokio::test]
    async fn an_expired_token_is_refused() {
        let k = keys("s");
        let claims = Claims {
            sub: "1".into(),
            role: "customer".into(),
            iss: ISSUER.into(),
            iat: 0,
            exp: Utc::now().timestamp() - 60,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.encoding)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(k.verify(&token).await.is_err());
    }
}
