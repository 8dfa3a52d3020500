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
use sha2::{Digest, Sha256};

use super::TokenError;
use super::claims::ClaimPath;
use super::jwks::Jwks;
use super::key::Key;
use crate::config::{ExternalAuthConfig, UserMatch};
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
    create: bool,
}

/// Checks an identity provider's tokens and finds the accounts they name.
#[derive(Debug)]
pub struct Provider {
    fixed: Vec<Key>,
    jwks: Option<Arc<Jwks>>,
    issuer: Option<String>,
    audience: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    mapping: Mapping,
    db: Db,
}

/// A refusal, with what the logs say.
fn refuse(why: impl Into<String>) -> TokenError {
    TokenError(why.into())
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
                )
                .map_err(|e| format!("EAGERQL_JWKS_URL: {e}"))?,
            )),
            None => None,
        };
        if fixed.is_empty() && jwks.is_none() {
            return Ok(None);
        }
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
            create: config.jwt_create_users,
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
            issuer: config.jwt_issuer.clone().filter(|i| !i.is_empty()),
            audience: config
                .jwt_audience
                .iter()
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect(),
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
        let mut required = vec!["exp"];
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
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
        // An address the provider says it has not verified names nobody.
        let email =
            text_at(&m.email).filter(|_| claims.get("email_verified") != Some(&Value::Bool(false)));
        let (key, subject) = match m.user_match {
            UserMatch::ExternalId => (AccountKey::ExternalId, text_at(&m.user)),
            UserMatch::Id => (AccountKey::Id, text_at(&m.user)),
            UserMatch::Email => (AccountKey::Email, email.clone()),
        };
        let subject = subject.ok_or_else(|| {
            refuse(match m.user_match {
                UserMatch::Email => format!("no verified e-mail address at {}", m.email),
                _ => format!("no subject at {}", m.user),
            })
        })?;
        let session = Session::unmetered(self.db.clone());
        let failed =
            |e: crate::error::AppError| refuse(format!("finding the account: {}", e.detail()));
        if let Some(found) = users::find_account(&session, key, &subject)
            .await
            .map_err(failed)?
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
        self.create(&session, claims, &email, external)
            .await
            .map_err(failed)?
            .ok_or_else(|| refuse("the e-mail address belongs to another account"))
    }

    /// Creates the account of a subject seen for the first time, or links the password
    /// account with its verified address; `None` when the address belongs to an account
    /// linked to another subject.
    async fn create(
        &self,
        session: &Session,
        claims: &Value,
        email: &str,
        external: Option<&str>,
    ) -> crate::error::AppResult<Option<Account>> {
        let base = ["preferred_username", "nickname"]
            .iter()
            .find_map(|c| claims.get(*c).and_then(Value::as_str))
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| email.split('@').next().unwrap_or(email))
            .chars()
            .take(80)
            .collect::<String>();
        let suffix = hex::encode(&Sha256::digest(external.unwrap_or(email).as_bytes())[..4]);
        for username in [base.clone(), format!("{base}-{suffix}")] {
            let tx = session.begin_write().await?;
            let created = users::create_external(&tx, email, &username, external).await?;
            let outcome = match created {
                Some(account) => Some(account),
                // Taken: by this very subject (a concurrent first request), by the address
                // (an account to link, when the provider verified it), or by the username.
                None => match external {
                    Some(ext) => match users::find_account(&tx, AccountKey::ExternalId, ext).await?
                    {
                        Some(found) => Some(found),
                        None => match users::find_account(&tx, AccountKey::Email, email).await? {
                            Some(owner)
                                if claims.get("email_verified") == Some(&Value::Bool(true)) =>
                            {
                                users::link_external(&tx, owner.id, ext).await?
                            }
                            Some(_) => {
                                tx.commit().await?;
                                return Ok(None);
                            }
                            None => None,
                        },
                    },
                    None => users::find_account(&tx, AccountKey::Email, email).await?,
                },
            };
            tx.commit().await?;
            if let Some(account) = outcome {
                tracing::info!(
                    user = account.id,
                    "account of an identity provider's subject ready"
                );
                return Ok(Some(account));
            }
        }
        Ok(None)
    }
}
