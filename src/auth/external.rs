//! Tokens signed by an external identity provider (Auth0, Keycloak, Cognito, ...), accepted
//! beside the server's own HS256 tokens.
//!
//! - **Keys**: a PEM public key (`EAGERQL_JWT_PUBLIC_KEY`) and/or a JWKS document
//!   (`EAGERQL_JWKS_URL`, see [`super::jwks`]). Only asymmetric keys: a JWKS `oct` key is
//!   ignored, so an attacker cannot make the server check an HS256 signature with a key they
//!   can read. Each key accepts only its own family's algorithms, within
//!   `EAGERQL_JWT_ALGORITHMS`: `alg: none` and HS/RS confusion are refused.
//! - **Claims**: `exp` always, `nbf` when present, `iss` and `aud` when configured (then
//!   required), with `EAGERQL_JWT_LEEWAY_SECS` of clock difference.
//! - **Accounts**: the token's subject names a row of `users` (by `external_id`, `email` or
//!   `id`), found with one statement the first time a token is seen (the verified token is
//!   then remembered until it expires); an inactive account is refused. With
//!   `EAGERQL_JWT_CREATE_USERS` a subject seen for the first time gets an account.
//! - **Role**: from a claim (`EAGERQL_JWT_ROLE_CLAIM`, a string or a list, mapped through
//!   `EAGERQL_JWT_ADMIN_ROLES`), or the account's own.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, Header, Validation};
use serde_json::Value;

use super::claims::ClaimPath;
use super::jwks::Jwks;
use super::key::Key;
use super::{Keys, TokenError};
use crate::config::{AuthConfig, ExternalAuthConfig, UserMatch};
use crate::db::users::{self, Account, AccountKey};
use crate::db::{Db, Session};
use crate::model::{Role, Viewer};

/// How an account is found from a token.
#[derive(Debug)]
struct Mapping {
    user: ClaimPath,
    user_match: UserMatch,
    email: ClaimPath,
    role: Option<ClaimPath>,
    admin_roles: Vec<String>,
    /// Where the provider says whether it verified the e-mail address.
    email_verified: ClaimPath,
    create: bool,
    link_by_email: bool,
}

/// Checks an identity provider's tokens and finds the accounts they name.
#[derive(Debug)]
pub struct Provider {
    fixed: Vec<Key>,
    jwks: Option<Arc<Jwks>>,
    issuer: String,
    /// Empty: any audience (`EAGERQL_JWT_AUDIENCE=*`).
    audience: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    mapping: Mapping,
    db: Db,
}

/// A refusal, with what the logs say.
fn refuse(why: impl Into<String>) -> TokenError {
    TokenError::refused(why)
}

impl Provider {
    /// The provider `config` describes, or `None` when it names no key. Fetches the JWKS
    /// once (a provider that is down does not stop the server: the set is fetched again
    /// when a token needs it).
    pub async fn from_config(
        config: &ExternalAuthConfig,
        leeway: u64,
        db: Db,
    ) -> Result<Option<Provider>, String> {
        let pem = match config.jwt_public_key.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) if text.starts_with("-----BEGIN") => Some(text.to_owned()),
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("EAGERQL_JWT_PUBLIC_KEY {path}: {e}"))?,
            ),
        };
        let fixed = match pem {
            Some(text) => {
                vec![Key::from_pem(&text).map_err(|e| format!("EAGERQL_JWT_PUBLIC_KEY: {e}"))?]
            }
            None => Vec::new(),
        };
        let jwks = match config.jwks_url.as_deref().filter(|u| !u.trim().is_empty()) {
            Some(url) => Some(Arc::new(
                Jwks::new(
                    url.trim(),
                    std::time::Duration::from_secs(config.jwks_refetch_secs),
                    config.jwks_ca_file.as_deref(),
                )
                .map_err(|e| format!("EAGERQL_JWKS_URL: {e}"))?,
            )),
            None => None,
        };
        if fixed.is_empty() && jwks.is_none() {
            return Ok(None);
        }
        // A key set may sign tokens for other applications (a shared provider's tenants):
        // the issuer and the audience say which are for this server.
        let issuer = config
            .jwt_issuer
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .ok_or(
                "EAGERQL_JWT_ISSUER is required with an identity provider's key: the issuer \
                 (`iss`) its tokens carry",
            )?
            .to_owned();
        let audience: Vec<String> = config
            .jwt_audience
            .iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        if audience.is_empty() {
            return Err(
                "EAGERQL_JWT_AUDIENCE is required with an identity provider's key: \
                        the audience (`aud`) of tokens meant for this server (`*`: any, \
                        not recommended)"
                    .to_owned(),
            );
        }
        let audience = if audience.iter().any(|a| a == "*") {
            Vec::new()
        } else {
            audience
        };
        let mut algorithms = Vec::new();
        for name in &config.jwt_algorithms {
            let alg: Algorithm = name
                .trim()
                .parse()
                .map_err(|_| format!("EAGERQL_JWT_ALGORITHMS: unknown algorithm {name}"))?;
            if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                return Err(format!(
                    "EAGERQL_JWT_ALGORITHMS: {name} is symmetric; an identity provider's \
                     tokens are checked with public keys only"
                ));
            }
            algorithms.push(alg);
        }
        if algorithms.is_empty() {
            return Err("EAGERQL_JWT_ALGORITHMS names no algorithm".to_owned());
        }
        let path =
            |name: &str, text: &str| ClaimPath::parse(text).map_err(|e| format!("{name}: {e}"));
        let mapping = Mapping {
            user: path("EAGERQL_JWT_USER_CLAIM", &config.jwt_user_claim)?,
            user_match: config.jwt_user_match,
            email: path("EAGERQL_JWT_EMAIL_CLAIM", &config.jwt_email_claim)?,
            role: config
                .jwt_role_claim
                .as_deref()
                .map(|t| path("EAGERQL_JWT_ROLE_CLAIM", t))
                .transpose()?,
            admin_roles: config
                .jwt_admin_roles
                .iter()
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .collect(),
            email_verified: path(
                "EAGERQL_JWT_EMAIL_VERIFIED_CLAIM",
                &config.jwt_email_verified_claim,
            )?,
            create: config.jwt_create_users,
            link_by_email: config.jwt_link_by_email,
        };
        if let Some(jwks) = &jwks {
            match jwks.refresh().await {
                Ok(n) => tracing::info!(keys = n, "identity provider's key set fetched"),
                Err(e) => {
                    tracing::warn!(error = %e, "the identity provider's key set could not be fetched; it is fetched again when a token needs it")
                }
            }
        }
        Ok(Some(Provider {
            fixed,
            jwks,
            issuer,
            audience,
            algorithms,
            leeway,
            mapping,
            db,
        }))
    }

    /// The key set, if the provider has one (for its background refresh).
    pub fn jwks(&self) -> Option<&Arc<Jwks>> {
        self.jwks.as_ref()
    }

    /// The viewer `token` names and when it expires, if it is correctly signed by one of the
    /// provider's keys, current, for this server, and names an active account.
    pub async fn verify(&self, token: &str, header: &Header) -> Result<(Viewer, i64), TokenError> {
        if !self.algorithms.contains(&header.alg) {
            return Err(refuse(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let claims = self.checked_claims(token, header).await?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(|| refuse("no numeric exp"))?;
        let account = self.account(&claims).await?;
        if !account.is_active {
            return Err(refuse("the account is inactive"));
        }
        let role = match &self.mapping.role {
            None => Role::from_db(&account.role).unwrap_or(Role::Customer),
            Some(path) => self.role_of(path.get(&claims)),
        };
        Ok((
            Viewer::User {
                id: account.id,
                role,
            },
            exp,
        ))
    }

    /// The token's claims, once its signature and standard claims are checked.
    async fn checked_claims(&self, token: &str, header: &Header) -> Result<Value, TokenError> {
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        let mut required = vec!["exp", "iss"];
        if self.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audience);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let attempt = |keys: &[Key]| -> Option<Result<Value, TokenError>> {
            let mut last = None;
            for key in keys.iter().filter(|k| k.fits(header)) {
                match jsonwebtoken::decode::<Value>(token, &key.key, &validation) {
                    Ok(data) => return Some(Ok(data.claims)),
                    Err(e) => last = Some(Err(refuse(e.to_string()))),
                }
            }
            last
        };
        if let Some(outcome) = attempt(&self.fixed)
            && (outcome.is_ok() || self.jwks.is_none())
        {
            return outcome;
        }
        let Some(jwks) = &self.jwks else {
            return Err(refuse("no key fits the token"));
        };
        if let Some(outcome) = attempt(&jwks.keys()) {
            return outcome;
        }
        // A key the set does not have (yet): the provider may have rotated its keys.
        match attempt(&jwks.refetch_for(header.kid.as_deref()).await) {
            Some(outcome) => outcome,
            None => Err(refuse(format!(
                "no key of the provider's set fits the token (kid {:?})",
                header.kid
            ))),
        }
    }

    fn role_of(&self, value: Option<&Value>) -> Role {
        let admin = |v: &Value| {
            v.as_str()
                .is_some_and(|r| self.mapping.admin_roles.iter().any(|a| a == r))
        };
        let is_admin = match value {
            Some(Value::Array(items)) => items.iter().any(admin),
            Some(v) => admin(v),
            None => false,
        };
        if is_admin {
            Role::Admin
        } else {
            Role::Customer
        }
    }

    /// The account the claims name: found, linked or created.
    async fn account(&self, claims: &Value) -> Result<Account, TokenError> {
        let m = &self.mapping;
        let text_at = |path: &ClaimPath| -> Option<String> {
            match path.get(claims)? {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        // Only an address the provider says it verified names, or makes, an account.
        let verified = match m.email_verified.get(claims) {
            Some(Value::Bool(v)) => *v,
            Some(Value::String(v)) => v == "true",
            _ => false,
        };
        let email = text_at(&m.email)
            .filter(|_| verified)
            .and_then(|e| crate::validate::email(&e).ok());
        let (key, subject) = match m.user_match {
            UserMatch::ExternalId => (AccountKey::ExternalId, text_at(&m.user)),
            UserMatch::Id => (AccountKey::Id, text_at(&m.user)),
            UserMatch::Email => (AccountKey::Email, email.clone()),
        };
        let subject = subject.ok_or_else(|| {
            refuse(match m.user_match {
                UserMatch::Email => format!(
                    "no verified e-mail address at {} ({} must be true)",
                    m.email, m.email_verified
                ),
                _ => format!("no subject at {}", m.user),
            })
        })?;
        let session = Session::unmetered(self.db.clone());
        if let Some(found) = users::find_account(&session, key, &subject)
            .await
            .map_err(unreachable)?
        {
            return Ok(found);
        }
        if !m.create || key == AccountKey::Id {
            return Err(refuse("no account for the token's subject"));
        }
        let email = email.ok_or_else(|| {
            refuse(format!(
                "no verified e-mail address at {} to create an account with",
                m.email
            ))
        })?;
        let external = (key == AccountKey::ExternalId).then_some(subject.as_str());
        self.create(&session, claims, &email, external).await
    }

    /// Creates the account of a subject seen for the first time (or, with
    /// `EAGERQL_JWT_LINK_BY_EMAIL`, links the customer's password account with its verified
    /// address).
    async fn create(
        &self,
        session: &Session,
        claims: &Value,
        email: &str,
        external: Option<&str>,
    ) -> Result<Account, TokenError> {
        let taken = || refuse("the e-mail address belongs to another account");
        for username in usernames(claims, email) {
            let tx = session.begin_write().await.map_err(unreachable)?;
            let outcome = self.create_in(&tx, email, &username, external).await;
            match outcome {
                Ok(Created::Account(account)) => {
                    tx.commit().await.map_err(unreachable)?;
                    tracing::info!(
                        user = account.id,
                        "account of an identity provider's subject ready"
                    );
                    return Ok(account);
                }
                Ok(Created::EmailTaken) => {
                    tx.rollback().await;
                    return Err(taken());
                }
                Ok(Created::UsernameTaken) => tx.rollback().await,
                Err(e) => {
                    tx.rollback().await;
                    return Err(unreachable(e));
                }
            }
        }
        Err(refuse("no free username for the new account"))
    }

    /// One attempt of [`Provider::create`] with `username`, in `tx`.
    async fn create_in(
        &self,
        tx: &Session,
        email: &str,
        username: &str,
        external: Option<&str>,
    ) -> crate::error::AppResult<Created> {
        if let Some(account) = users::create_external(tx, email, username, external).await? {
            return Ok(Created::Account(account));
        }
        // Taken: by this very subject (a concurrent first request), by the address, or by
        // the username.
        if let Some(ext) = external
            && let Some(found) = users::find_account(tx, AccountKey::ExternalId, ext).await?
        {
            return Ok(Created::Account(found));
        }
        let Some(owner) = users::find_account(tx, AccountKey::Email, email).await? else {
            return Ok(Created::UsernameTaken);
        };
        let Some(ext) = external else {
            // Matched by address: a concurrent first request made it.
            return Ok(Created::Account(owner));
        };
        // A password account with this address: linked only when allowed, and never an
        // administrator's.
        if self.mapping.link_by_email
            && owner.external_id.is_none()
            && Role::from_db(&owner.role) == Some(Role::Customer)
            && let Some(linked) = users::link_external(tx, owner.id, ext).await?
        {
            return Ok(Created::Account(linked));
        }
        Ok(Created::EmailTaken)
    }
}

/// What one attempt to create an account found.
enum Created {
    Account(Account),
    EmailTaken,
    UsernameTaken,
}

/// A token that could not be checked because the database did not answer.
fn unreachable(e: crate::error::AppError) -> TokenError {
    TokenError::unavailable(format!("finding the account: {}", e.detail()))
}

/// Usernames to try for a new account: the token's `preferred_username` or `nickname`, else
/// the address's local part (cleaned to what usernames allow), then that with a random
/// suffix, twice.
fn usernames(claims: &Value, email: &str) -> Vec<String> {
    let claimed = ["preferred_username", "nickname"]
        .iter()
        .filter_map(|c| claims.get(*c).and_then(Value::as_str))
        .find_map(|u| crate::validate::username(u).ok());
    let base = claimed.unwrap_or_else(|| {
        let local: String = email
            .split('@')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            .take(80)
            .collect();
        if local.len() < 3 {
            format!("user-{local}")
        } else {
            local
        }
    });
    let base: String = base.chars().take(80).collect();
    let mut names = vec![base.clone()];
    for _ in 0..2 {
        let mut random = [0u8; 4];
        if getrandom::fill(&mut random).is_ok() {
            names.push(format!("{base}-{}", hex::encode(random)));
        }
    }
    names
}

impl Keys {
    /// The server's keys ([`Keys::load`]) and the identity provider `auth` describes, if
    /// any, whose key set is then refreshed in the background while the keys live.
    pub async fn for_server(db: &Db, auth: &AuthConfig) -> crate::error::AppResult<Keys> {
        let session = Session::unmetered(db.clone());
        let mut keys = Keys::load(&session, auth.jwt_secret.as_deref(), auth.tokens()).await?;
        keys.external = Provider::from_config(&auth.external, auth.jwt_leeway_secs, db.clone())
            .await
            .map_err(crate::error::AppError::internal)?;
        if let Some(jwks) = keys.external.as_ref().and_then(Provider::jwks) {
            super::jwks::refresh_in_background(
                Arc::downgrade(jwks),
                std::time::Duration::from_secs(auth.external.jwks_refresh_secs),
            );
        }
        Ok(keys)
    }
}
