//! Tokens of an external identity provider: keys generated here, a JWKS served on loopback
//! by the test itself, a key rotation in the middle, and every way a token must be refused
//! (expired, not yet valid, wrong issuer or audience, unknown `kid`, tampered signature,
//! `alg: none`, HS/RS confusion, a symmetric key in the set); then how a token's claims map
//! to an account and a role.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::StatusCode;
use base64::Engine as _;
use eagerql::db::session::Arg;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};

use crate::helpers::{TestApp, deactivate, exec, scalar_i64, scratch_dir, spawn_app_with};

const ISSUER: &str = "https://idp.example.test/realms/shop";
const AUDIENCE: &str = "eagerql-api";

/// A signing key of the provider: its private half signs, its JWK and PEM are published.
struct Signer {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    public_pem: String,
    /// The public key as a JWK, when the crate cannot derive it from the private key.
    public_jwk: Option<Value>,
}

impl Signer {
    fn jwk(&self) -> Value {
        let mut value = self.public_jwk.clone().unwrap_or_else(|| {
            let jwk = Jwk::from_encoding_key(&self.key, self.alg).expect("jwk");
            serde_json::to_value(jwk).expect("jwk json")
        });
        value["kid"] = json!(self.kid);
        value["use"] = json!("sig");
        value
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign")
    }
}

/// Two RSA keys for the whole binary: generating one takes a moment.
fn rsa_keys() -> &'static [(String, Vec<u8>); 2] {
    static KEYS: OnceLock<[(String, Vec<u8>); 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let one = || {
            use rsa::pkcs1::EncodeRsaPrivateKey as _;
            use rsa::pkcs8::EncodePublicKey as _;
            let private = rsa::PrivateKey::new(&mut getrandom_sys::SysRng, 2048).expect("rsa");
            let pem = private
                .to_public_key()
                .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
                .expect("pem");
            (
                pem,
                private.to_pkcs1_der().expect("der").as_bytes().to_vec(),
            )
        };
        [one(), one()]
    })
}

fn rsa_signer(which: usize, kid: &str) -> Signer {
    let (pem, der) = &rsa_keys()[which];
    Signer {
        kid: kid.to_owned(),
        alg: Algorithm::RS256,
        key: EncodingKey::from_rsa_der(der),
        public_pem: pem.clone(),
        public_jwk: None,
    }
}

fn ec_signer(kid: &str) -> Signer {
    use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("random");
    let secret = p256::SecretKey::from_slice(&seed).expect("p256 key");
    Signer {
        kid: kid.to_owned(),
        alg: Algorithm::ES256,
        key: EncodingKey::from_ec_der(secret.to_pkcs8_der().expect("pkcs8").as_bytes()),
        public_pem: secret
            .public_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .expect("pem"),
        public_jwk: None,
    }
}

fn ed_signer(kid: &str) -> Signer {
    use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("random");
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    Signer {
        kid: kid.to_owned(),
        alg: Algorithm::EdDSA,
        key: EncodingKey::from_ed_der(key.to_pkcs8_der().expect("pkcs8").as_bytes()),
        public_pem: key
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .expect("pem"),
        public_jwk: Some(json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "x": b64(key.verifying_key().as_bytes()),
        })),
    }
}

/// The provider's JWKS endpoint, on loopback: what it serves can be replaced, and it counts
/// the fetches.
struct Provider {
    url: String,
    keys: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

impl Provider {
    async fn start(keys: Value) -> Provider {
        let served = Arc::new(Mutex::new(keys));
        let hits = Arc::new(AtomicUsize::new(0));
        let (s, h) = (served.clone(), hits.clone());
        let app = axum::Router::new().route(
            "/protocol/openid-connect/certs",
            axum::routing::get(move || {
                let (s, h) = (s.clone(), h.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    let body = s.lock().unwrap().clone();
                    axum::Json(body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Provider {
            url: format!("http://{addr}/protocol/openid-connect/certs"),
            keys: served,
            hits,
        }
    }

    fn publish(&self, keys: &[Value]) {
        *self.keys.lock().unwrap() = json!({ "keys": keys });
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A provider's usual claims for `sub`, valid for ten minutes.
fn claims(sub: &str, email: &str) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "email": email,
        "email_verified": true,
        "preferred_username": sub.replace('|', "-"),
        "iat": now(),
        "exp": now() + 600,
    })
}

/// `me { id }` as `token`: the account id, or the refusal's HTTP status and code.
async fn me(app: &TestApp, token: &str) -> Result<i64, (StatusCode, String)> {
    let r = app.gql_as(Some(token), "{ me { id } }", json!({})).await;
    if r.status != StatusCode::OK || r.body.get("errors").is_some() {
        return Err((
            r.status,
            r.body["errors"][0]["extensions"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    Ok(r.data()["me"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("id"))
}

fn refused() -> Result<i64, (StatusCode, String)> {
    Err((StatusCode::UNAUTHORIZED, "UNAUTHENTICATED".to_owned()))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn provider_app(provider: &Provider, extra: &[&str]) -> TestApp {
    let mut args = vec![
        "--jwks-url",
        &provider.url,
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
    ];
    args.extend_from_slice(extra);
    spawn_app_with(&args).await
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_of_the_provider_sign_in_and_every_forgery_is_refused() {
    let (rs, es, ed) = (rsa_signer(0, "rsa-1"), ec_signer("ec-1"), ed_signer("ed-1"));
    let secret = b"a symmetric key the provider publishes by mistake";
    let provider = Provider::start(json!({})).await;
    provider.publish(&[
        rs.jwk(),
        es.jwk(),
        ed.jwk(),
        json!({ "kty": "oct", "kid": "hmac-1", "k": b64(secret), "alg": "HS256" }),
    ]);
    let app = provider_app(&provider, &["--jwt-create-users", "true"]).await;

    // The first token creates the account; the others, of any key, find it.
    let alice = claims("idp|alice", "Alice@Example.com");
    let id = me(&app, &rs.sign(&alice)).await.expect("RS256");
    assert_eq!(me(&app, &es.sign(&alice)).await, Ok(id), "ES256");
    assert_eq!(me(&app, &ed.sign(&alice)).await, Ok(id), "EdDSA");
    assert_eq!(
        scalar_i64(
            &app,
            "select count(*) from users where external_id = 'idp|alice'"
        )
        .await,
        1
    );
    assert_eq!(
        scalar_i64(
            &app,
            "select count(*) from users where email = 'alice@example.com'"
        )
        .await,
        1,
        "the address is kept in lower case"
    );
    // The account is a customer: it cannot list users.
    let r = app
        .gql_as(Some(&rs.sign(&alice)), "{ users { id } }", json!({}))
        .await;
    assert_eq!(r.error_code(), "FORBIDDEN");

    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims("idp|alice", "alice@example.com");
        change(&mut c);
        c
    };
    let refusals: Vec<(&str, String)> = vec![
        (
            "expired",
            rs.sign(&with(&|c| c["exp"] = json!(now() - 3_600))),
        ),
        (
            "not yet valid",
            rs.sign(&with(&|c| c["nbf"] = json!(now() + 3_600))),
        ),
        (
            "wrong issuer",
            rs.sign(&with(&|c| c["iss"] = json!("https://evil.example.test"))),
        ),
        (
            "no issuer",
            rs.sign(&with(&|c| drop(c.as_object_mut().unwrap().remove("iss")))),
        ),
        (
            "wrong audience",
            es.sign(&with(&|c| c["aud"] = json!("another-api"))),
        ),
        (
            "no audience",
            es.sign(&with(&|c| drop(c.as_object_mut().unwrap().remove("aud")))),
        ),
        (
            "no expiry",
            ed.sign(&with(&|c| drop(c.as_object_mut().unwrap().remove("exp")))),
        ),
        ("unknown kid", rsa_signer(1, "rsa-unknown").sign(&alice)),
        (
            "another key under a known kid",
            rsa_signer(1, "rsa-1").sign(&alice),
        ),
        ("EC key named as the RSA kid", es.sign_as("rsa-1", &alice)),
        ("tampered signature", {
            let t = rs.sign(&alice);
            let (head, sig) = t.rsplit_once('.').unwrap();
            let mut sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(sig)
                .unwrap();
            sig[10] ^= 1;
            format!("{head}.{}", b64(&sig))
        }),
        ("tampered claims", {
            let t = rs.sign(&alice);
            let parts: Vec<&str> = t.split('.').collect();
            let forged = b64(claims("idp|mallory", "mallory@example.com")
                .to_string()
                .as_bytes());
            format!("{}.{forged}.{}", parts[0], parts[2])
        }),
        ("alg none", {
            let head = b64(br#"{"alg":"none","typ":"JWT"}"#);
            format!("{head}.{}.", b64(alice.to_string().as_bytes()))
        }),
        ("HS256 signed with the RSA public key", {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("rsa-1".into());
            let key = EncodingKey::from_secret(rs.public_pem.as_bytes()).unwrap();
            jsonwebtoken::encode(&header, &alice, &key).unwrap()
        }),
        ("HS256 signed with the set's symmetric key", {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("hmac-1".into());
            jsonwebtoken::encode(&header, &alice, &EncodingKey::from_secret(secret).unwrap())
                .unwrap()
        }),
        ("unverified e-mail of a new subject", {
            rs.sign(&json!({
                "iss": ISSUER, "aud": AUDIENCE, "sub": "idp|eve", "email": "eve@example.com",
                "email_verified": false, "exp": now() + 600,
            }))
        }),
        ("no e-mail for a new subject", {
            rs.sign(
                &json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "idp|nobody", "exp": now() + 600 }),
            )
        }),
    ];
    for (what, token) in refusals {
        assert_eq!(me(&app, &token).await, refused(), "{what}");
    }
    assert_eq!(
        scalar_i64(&app, "select count(*) from users").await,
        1,
        "no refused token created an account"
    );
    // An inactive account is refused on its next new token.
    deactivate(&app, id).await;
    let fresh = with(&|c| c["jti"] = json!("another token"));
    assert_eq!(me(&app, &rs.sign(&fresh)).await, refused(), "inactive");
}

#[tokio::test]
async fn a_key_rotation_is_picked_up_and_forged_kids_cost_the_provider_one_fetch_per_period() {
    let (old, new) = (rsa_signer(0, "2026-01"), rsa_signer(1, "2026-02"));
    let provider = Provider::start(json!({})).await;
    provider.publish(&[old.jwk()]);
    let app = provider_app(
        &provider,
        &["--jwt-create-users", "true", "--jwks-refetch-secs", "3"],
    )
    .await;
    assert_eq!(provider.hits(), 1, "fetched once at start");
    let bob = claims("idp|bob", "bob@example.com");
    let id = me(&app, &old.sign(&bob)).await.expect("the current key");

    // A flood of tokens naming keys the provider never had: one fetch at most.
    let before = provider.hits();
    let forged: Vec<String> = (0..40)
        .map(|i| old.sign_as(&format!("forged-{i}"), &bob))
        .collect();
    let answers = futures_util::future::join_all(forged.iter().map(|t| me(&app, t))).await;
    assert!(answers.iter().all(|a| *a == refused()), "{answers:?}");
    assert!(
        provider.hits() <= before + 1,
        "{} fetches for 40 forged kids",
        provider.hits() - before
    );

    // The provider rotates: the new key is picked up by the first token signed with it.
    provider.publish(&[new.jwk()]);
    tokio::time::sleep(std::time::Duration::from_millis(3_100)).await;
    assert_eq!(me(&app, &new.sign(&bob)).await, Ok(id), "the new key");
    // The retired key signs nothing new (a token it signed before stays remembered until it
    // expires, as any verified token).
    let later = {
        let mut c = bob.clone();
        c["jti"] = json!("after the rotation");
        c
    };
    assert_eq!(
        me(&app, &old.sign(&later)).await,
        refused(),
        "the retired key"
    );
}

#[tokio::test]
async fn a_pem_key_and_hasura_style_claims_name_the_account_and_its_role() {
    let es = ec_signer("any");
    let dir = scratch_dir("idp-key");
    let path = dir.join("provider.pem");
    std::fs::write(&path, &es.public_pem).unwrap();
    let app = spawn_app_with(&[
        "--jwt-public-key",
        path.to_str().unwrap(),
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
        "--jwt-user-match",
        "id",
        "--jwt-user-claim",
        "$['https://hasura.io/jwt/claims']['x-hasura-user-id']",
        "--jwt-role-claim",
        "/https:~1~1hasura.io~1jwt~1claims/x-hasura-default-role",
        "--jwt-admin-roles",
        "admin,superuser",
    ])
    .await;
    app.seed(3, 1, 1, 2).await;
    let token = |user: &str, role: &str| {
        es.sign(&json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "someone",
            "https://hasura.io/jwt/claims": { "x-hasura-user-id": user, "x-hasura-default-role": role },
            "exp": now() + 600,
        }))
    };
    assert_eq!(me(&app, &token("2", "user")).await, Ok(2));
    let r = app
        .gql_as(Some(&token("2", "user")), "{ users { id } }", json!({}))
        .await;
    assert_eq!(r.error_code(), "FORBIDDEN", "a customer");
    let r = app
        .gql_as(
            Some(&token("2", "superuser")),
            "{ users { id } }",
            json!({}),
        )
        .await;
    assert_eq!(
        r.data()["users"].as_array().map(Vec::len),
        Some(3),
        "an administrator"
    );
    // No account, no viewer.
    assert_eq!(
        me(&app, &token("999", "admin")).await,
        refused(),
        "no such account"
    );
    assert_eq!(me(&app, &token("x", "admin")).await, refused(), "not an id");
    deactivate(&app, 3).await;
    assert_eq!(me(&app, &token("3", "user")).await, refused(), "inactive");
    // The key accepts only its own algorithm: an RSA key's token is refused.
    let rs = rsa_signer(0, "any");
    let signed = rs.sign(&json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now() + 600,
        "https://hasura.io/jwt/claims": { "x-hasura-user-id": "2" },
    }));
    assert_eq!(me(&app, &signed).await, refused(), "another family");
    // The server's own tokens are still accepted beside the provider's.
    assert_eq!(
        me(&app, &app.token_for(2, eagerql::model::Role::Customer)).await,
        Ok(2)
    );
}

/// An account that signs in with a password (none usable here), named `name`; its id.
async fn password_account(app: &TestApp, name: &str) -> i64 {
    exec(
        app,
        "insert into users (email, username, password_hash) values ($1, $2, $3)",
        vec![
            Arg::Text(format!("{name}@example.com")),
            Arg::Text(name.to_owned()),
            Arg::Text("!".into()),
        ],
    )
    .await;
    scalar_i64(
        app,
        &format!("select id from users where username = '{name}'"),
    )
    .await
}

#[tokio::test]
async fn keycloak_style_roles_and_an_existing_password_account_linked_by_its_verified_address() {
    let rs = rsa_signer(0, "kc-1");
    let provider = Provider::start(json!({})).await;
    provider.publish(&[rs.jwk()]);
    let app = provider_app(
        &provider,
        &[
            "--jwt-create-users",
            "true",
            "--jwt-link-by-email",
            "true",
            "--jwt-role-claim",
            "$.realm_access.roles",
            "--jwt-admin-roles",
            "shop-admin",
        ],
    )
    .await;
    let carol_id = password_account(&app, "carol").await;
    let mut carol = claims("kc-carol", "carol@example.com");
    carol["realm_access"] = json!({ "roles": ["offline_access", "shop-admin"] });
    assert_eq!(me(&app, &rs.sign(&carol)).await, Ok(carol_id), "linked");
    assert_eq!(
        scalar_i64(
            &app,
            "select count(*) from users where external_id = 'kc-carol' and username = 'carol'"
        )
        .await,
        1
    );
    let r = app
        .gql_as(Some(&rs.sign(&carol)), "{ users { id } }", json!({}))
        .await;
    assert_eq!(r.data()["users"].as_array().map(Vec::len), Some(1), "admin");

    // An administrator's password account is never linked by address.
    let root = password_account(&app, "root").await;
    exec(
        &app,
        "update users set role = 'admin' where username = 'root'",
        vec![],
    )
    .await;
    assert_eq!(
        me(&app, &rs.sign(&claims("kc-root", "root@example.com"))).await,
        refused()
    );
    assert_eq!(
        scalar_i64(
            &app,
            &format!("select count(*) from users where id = {root} and external_id is null")
        )
        .await,
        1
    );
    // Another subject claiming the linked address is refused, verified or not.
    let mallory = claims("kc-mallory", "carol@example.com");
    assert_eq!(me(&app, &rs.sign(&mallory)).await, refused());
    // An unlinked account is not taken over by an unverified address.
    let dave_id = password_account(&app, "dave").await;
    let mut dave = claims("kc-dave", "dave@example.com");
    dave["email_verified"] = json!(null);
    assert_eq!(me(&app, &rs.sign(&dave)).await, refused(), "unverified");
    assert_eq!(
        scalar_i64(
            &app,
            &format!("select count(*) from users where id = {dave_id} and external_id is null")
        )
        .await,
        1
    );
    // A new subject whose username is taken gets a distinct one.
    let mut erin = claims("kc-erin", "erin@example.com");
    erin["preferred_username"] = json!("carol");
    let erin_id = me(&app, &rs.sign(&erin)).await.expect("created");
    assert_ne!(erin_id, carol_id);
    assert_eq!(
        scalar_i64(
            &app,
            "select count(*) from users where username like 'carol-%'"
        )
        .await,
        1
    );
    // Two first requests of one subject at once make one account.
    let frank = rs.sign(&claims("kc-frank", "frank@example.com"));
    let (a, b) = tokio::join!(me(&app, &frank), me(&app, &frank));
    assert_eq!(a, b);
    assert_eq!(
        scalar_i64(
            &app,
            "select count(*) from users where external_id = 'kc-frank'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn without_account_creation_an_unknown_subject_is_refused_until_it_is_linked() {
    let rs = rsa_signer(0, "k");
    let app = spawn_app_with(&[
        "--jwt-public-key",
        &rs.public_pem,
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        &format!("another-api,{AUDIENCE}"),
    ])
    .await;
    app.seed(1, 0, 0, 1).await;
    let token = |exp: i64| {
        rs.sign(
            &json!({ "iss": ISSUER, "sub": "ext-1", "exp": now() + exp, "aud": [AUDIENCE, "x"] }),
        )
    };
    assert_eq!(me(&app, &token(600)).await, refused());
    exec(
        &app,
        "update users set external_id = 'ext-1' where id = 1",
        vec![],
    )
    .await;
    assert_eq!(me(&app, &token(601)).await, Ok(1), "one of the audiences");
    // The database unreachable: the token cannot be checked, which is not its fault.
    app.db.close().await;
    let r = app
        .gql_as(Some(&token(602)), "{ me { id } }", json!({}))
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn matched_by_e_mail_only_an_address_the_provider_verified_names_an_account() {
    let ed = ed_signer("k");
    let app = spawn_app_with(&[
        "--jwt-public-key",
        &ed.public_pem,
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
        "--jwt-user-match",
        "email",
        "--jwt-email-verified-claim",
        "$.ext.verified",
    ])
    .await;
    let grace = password_account(&app, "grace").await;
    let token = |verified: Value| {
        ed.sign(&json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "whoever", "email": " Grace@Example.com",
            "ext": { "verified": verified }, "exp": now() + 600,
        }))
    };
    assert_eq!(me(&app, &token(json!(true))).await, Ok(grace));
    assert_eq!(
        me(&app, &token(json!("true"))).await,
        Ok(grace),
        "Cognito's string"
    );
    for unverified in [json!(false), json!("false"), json!(null), json!(1)] {
        assert_eq!(
            me(&app, &token(unverified.clone())).await,
            refused(),
            "{unverified}"
        );
    }
    let missing = ed.sign(&json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "whoever", "email": "grace@example.com",
        "exp": now() + 600,
    }));
    assert_eq!(me(&app, &missing).await, refused(), "no verification claim");
}

#[tokio::test]
async fn misconfigured_providers_stop_the_server_with_a_reason() {
    let url = crate::helpers::TestDb::create().await;
    let both = |extra: &[&'static str]| {
        let mut args = vec!["--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE];
        args.extend_from_slice(extra);
        args
    };
    for (args, expected) in [
        (
            both(&["--jwt-public-key", "/nonexistent/key.pem"]),
            "EAGERQL_JWT_PUBLIC_KEY",
        ),
        (
            both(&[
                "--jwt-public-key",
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            ]),
            "EAGERQL_JWT_PUBLIC_KEY",
        ),
        (
            both(&["--jwks-url", "ftp://example.test/keys"]),
            "EAGERQL_JWKS_URL",
        ),
        (
            both(&["--jwks-url", "http://idp.example.test/keys"]),
            "plain HTTP",
        ),
        (
            both(&[
                "--jwks-url",
                "https://idp.example.test/keys",
                "--jwks-ca-file",
                "/nonexistent",
            ]),
            "EAGERQL_JWKS_CA_FILE",
        ),
        (
            both(&[
                "--jwks-url",
                "http://127.0.0.1:9/keys",
                "--jwt-algorithms",
                "HS256",
            ]),
            "EAGERQL_JWT_ALGORITHMS",
        ),
        (
            both(&[
                "--jwks-url",
                "http://127.0.0.1:9/keys",
                "--jwt-role-claim",
                "$.a[",
            ]),
            "EAGERQL_JWT_ROLE_CLAIM",
        ),
        (
            vec![
                "--jwks-url",
                "http://127.0.0.1:9/keys",
                "--jwt-audience",
                AUDIENCE,
            ],
            "EAGERQL_JWT_ISSUER",
        ),
        (
            vec![
                "--jwks-url",
                "http://127.0.0.1:9/keys",
                "--jwt-issuer",
                ISSUER,
            ],
            "EAGERQL_JWT_AUDIENCE",
        ),
    ] {
        let err = crate::helpers::build_app(&url.url, &args)
            .await
            .err()
            .unwrap_or_else(|| panic!("{args:?} started"));
        assert!(err.to_string().contains(expected), "{args:?}: {err}");
    }
}
