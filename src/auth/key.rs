//! A verification key of an identity provider, from PEM or from a JWKS entry: only
//! asymmetric signing keys, each with the algorithms of its own family.

use jsonwebtoken::{Algorithm, DecodingKey, Header};
use serde_json::Value;

/// One verification key and the algorithms it may check.
#[derive(Clone)]
pub struct Key {
    /// Its `kid` (a PEM key has none: it is tried for any token).
    pub kid: Option<String>,
    pub(crate) key: DecodingKey,
    pub(crate) algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Object identifiers of SubjectPublicKeyInfo.
mod oid {
    pub const RSA: &str = "1.2.840.113549.1.1.1";
    pub const EC: &str = "1.2.840.10045.2.1";
    pub const P256: &str = "1.2.840.10045.3.1.7";
    pub const P384: &str = "1.3.132.0.34";
    pub const ED25519: &str = "1.3.101.112";
}

impl Key {
    /// A key from PEM text: `PUBLIC KEY` (SubjectPublicKeyInfo: RSA, EC P-256/P-384,
    /// Ed25519) or `RSA PUBLIC KEY` (PKCS#1).
    pub fn from_pem(text: &str) -> Result<Key, String> {
        use spki::der::Document;
        let (label, doc) =
            Document::from_pem(text.trim()).map_err(|e| format!("not a PEM key: {e}"))?;
        if label == "RSA PUBLIC KEY" {
            return Ok(Key {
                kid: None,
                key: DecodingKey::from_rsa_der(doc.as_bytes()),
                algorithms: RSA_ALGORITHMS.to_vec(),
            });
        }
        if label != "PUBLIC KEY" {
            return Err(format!(
                "a `{label}` PEM block; expected a public key (`PUBLIC KEY`)"
            ));
        }
        let info = spki::SubjectPublicKeyInfoRef::try_from(doc.as_bytes())
            .map_err(|e| format!("not a public key: {e}"))?;
        let bits = info
            .subject_public_key
            .as_bytes()
            .ok_or("the key's bit string is not whole bytes")?;
        let algorithm = info.algorithm.oid.to_string();
        let (key, algorithms) = match algorithm.as_str() {
            oid::RSA => (DecodingKey::from_rsa_der(bits), RSA_ALGORITHMS.to_vec()),
            oid::EC => {
                let curve = info
                    .algorithm
                    .parameters
                    .and_then(|p| p.decode_as::<spki::ObjectIdentifier>().ok())
                    .map(|o| o.to_string());
                let alg = match curve.as_deref() {
                    Some(oid::P256) => Algorithm::ES256,
                    Some(oid::P384) => Algorithm::ES384,
                    _ => return Err("an EC key on a curve other than P-256 or P-384".to_owned()),
                };
                (DecodingKey::from_ec_der(bits), vec![alg])
            }
            oid::ED25519 if bits.len() == 32 => {
                (DecodingKey::from_ed_der(bits), vec![Algorithm::EdDSA])
            }
            other => return Err(format!("an unsupported key type ({other})")),
        };
        Ok(Key {
            kid: None,
            key,
            algorithms,
        })
    }

    /// A key from one entry of a JWKS, or why it is not used: symmetric (`oct`) keys,
    /// encryption keys, unknown curves and malformed entries are not.
    pub fn from_jwk(jwk: &Value) -> Result<Key, String> {
        let text = |name: &str| jwk.get(name).and_then(Value::as_str);
        if text("use").is_some_and(|u| u != "sig") {
            return Err("not a signing key (`use`)".to_owned());
        }
        let decoded = |name: &str| -> Result<Vec<u8>, String> {
            use base64::Engine as _;
            let value = text(name).ok_or(format!("no `{name}`"))?;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(value.trim_end_matches('='))
                .map_err(|_| format!("`{name}` is not base64url"))
        };
        let (key, mut algorithms) = match text("kty") {
            Some("RSA") => (
                DecodingKey::from_rsa_raw_components(&decoded("n")?, &decoded("e")?),
                RSA_ALGORITHMS.to_vec(),
            ),
            Some("EC") => {
                let (alg, len) = match text("crv") {
                    Some("P-256") => (Algorithm::ES256, 32),
                    Some("P-384") => (Algorithm::ES384, 48),
                    _ => return Err("an EC key on a curve other than P-256 or P-384".to_owned()),
                };
                let (x, y) = (decoded("x")?, decoded("y")?);
                if x.len() != len || y.len() != len {
                    return Err("an EC point of the wrong size".to_owned());
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (DecodingKey::from_ec_der(&point), vec![alg])
            }
            Some("OKP") if text("crv") == Some("Ed25519") => {
                let x = decoded("x")?;
                if x.len() != 32 {
                    return Err("an Ed25519 key is 32 bytes".to_owned());
                }
                (DecodingKey::from_ed_der(&x), vec![Algorithm::EdDSA])
            }
            Some("oct") => return Err("a symmetric key (never used)".to_owned()),
            other => return Err(format!("an unsupported key type ({other:?})")),
        };
        if let Some(alg) = text("alg") {
            let alg: Algorithm = alg.parse().map_err(|_| format!("unknown `alg` {alg}"))?;
            if !algorithms.contains(&alg) {
                return Err(format!("`alg` {alg:?} does not fit the key"));
            }
            algorithms = vec![alg];
        }
        Ok(Key {
            kid: text("kid").map(str::to_owned),
            key,
            algorithms,
        })
    }

    pub(crate) fn fits(&self, header: &Header) -> bool {
        self.algorithms.contains(&header.alg)
            && match (&header.kid, &self.kid) {
                (Some(wanted), Some(kid)) => wanted == kid,
                _ => true,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_asymmetric_well_formed_signing_keys_are_used() {
        let x32 = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let ok = Key::from_jwk(&json!({ "kty": "OKP", "crv": "Ed25519", "x": x32, "kid": "a" }))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.algorithms, vec![Algorithm::EdDSA]);
        assert_eq!(ok.kid.as_deref(), Some("a"));
        for (what, jwk) in [
            ("symmetric", json!({ "kty": "oct", "k": "c2VjcmV0" })),
            // A short Ed25519 key would panic inside the verifier: refused here.
            (
                "short Ed25519",
                json!({ "kty": "OKP", "crv": "Ed25519", "x": "AAAA" }),
            ),
            ("X25519", json!({ "kty": "OKP", "crv": "X25519", "x": x32 })),
            (
                "encryption",
                json!({ "kty": "OKP", "crv": "Ed25519", "x": x32, "use": "enc" }),
            ),
            (
                "EC of another curve",
                json!({ "kty": "EC", "crv": "secp256k1", "x": x32, "y": x32 }),
            ),
            (
                "EC point too short",
                json!({ "kty": "EC", "crv": "P-384", "x": x32, "y": x32 }),
            ),
            (
                "alg of another family",
                json!({ "kty": "OKP", "crv": "Ed25519", "x": x32, "alg": "RS256" }),
            ),
            ("RSA without e", json!({ "kty": "RSA", "n": x32 })),
            (
                "not base64url",
                json!({ "kty": "OKP", "crv": "Ed25519", "x": "!!!" }),
            ),
        ] {
            assert!(Key::from_jwk(&jwk).is_err(), "{what} accepted");
        }
        let set = br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        assert_eq!(crate::auth::jwks::parse(set).map(|k| k.len()), Ok(1));
        assert!(crate::auth::jwks::parse(b"[]").is_err());
    }

    #[test]
    fn a_pem_key_must_be_a_public_key() {
        let private = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        assert!(Key::from_pem(private).is_err());
        let ed = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
        let key = Key::from_pem(ed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.algorithms, vec![Algorithm::EdDSA]);
        assert!(Key::from_pem("not pem").is_err());
    }
}
