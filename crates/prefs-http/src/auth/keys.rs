//! Verification keys: what each configured source holds, and which algorithms each key may
//! verify. A key is only ever used with an algorithm of its own type (never HMAC with a public
//! key, never `none`), narrowed by the operator's algorithm list and by a JWK's own `alg`.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde::Deserialize;

/// The shortest HMAC secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Why configured keys cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The HMAC secret is too short to be safe.
    #[error("the JWT secret must be at least {MIN_SECRET_BYTES} bytes")]
    ShortSecret,
    /// A PEM file holds no public key or certificate prefs can use.
    #[error("{0}: no RSA, EC (P-256, P-384) or Ed25519 public key or certificate in PEM form")]
    NoPemKey(String),
    /// A JWK set is not a JSON object with a `keys` array.
    #[error("{0}: not a JWK set (a JSON object with a `keys` array)")]
    NotJwkSet(String),
    /// A source could not be read.
    #[error("{0}: {1}")]
    Unreadable(String, String),
    /// An algorithm name is not one prefs verifies.
    #[error(
        "unknown JWT algorithm `{0}` (known: HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384, EdDSA)"
    )]
    UnknownAlgorithm(String),
    /// No key source is configured.
    #[error("no JWT key configured")]
    NoKeys,
}

/// One verification key.
#[derive(Clone)]
pub(crate) struct Key {
    /// The key's id (`kid`), when its source names one.
    pub(crate) kid: Option<String>,
    /// The algorithms this key may verify.
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) decoding: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("kid", &self.kid).field("algorithms", &self.algorithms).finish()
    }
}

impl Key {
    fn new(kid: Option<String>, algorithms: &[Algorithm], decoding: DecodingKey) -> Self {
        Self { kid, algorithms: algorithms.to_vec(), decoding }
    }

    /// The key with only the algorithms in `allowed` (all when it is empty), or nothing when none
    /// is left.
    pub(crate) fn narrowed(mut self, allowed: &[Algorithm]) -> Option<Self> {
        self.algorithms.retain(|a| allowed.is_empty() || allowed.contains(a));
        (!self.algorithms.is_empty()).then_some(self)
    }
}

/// Parses an algorithm name as JOSE writes it (`RS256`, `EdDSA`).
///
/// # Errors
/// [`KeyError::UnknownAlgorithm`] for any other name, `none` included.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, KeyError> {
    name.trim().parse().map_err(|_| KeyError::UnknownAlgorithm(name.trim().to_owned()))
}

/// The HMAC key of a shared secret.
pub(crate) fn from_secret(secret: &[u8]) -> Result<Key, KeyError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(KeyError::ShortSecret);
    }
    Ok(Key::new(None, AlgorithmFamily::Hmac.algorithms(), DecodingKey::from_secret(secret)))
}

/// Every public key and certificate of a PEM text (`origin` names it in errors). Blocks that
/// hold anything else (a private key, an unsupported curve) are skipped with a warning.
pub(crate) fn from_pem(text: &[u8], origin: &str) -> Result<Vec<Key>, KeyError> {
    let blocks = pem::parse_many(text).map_err(|e| KeyError::Unreadable(origin.into(), e.to_string()))?;
    let keys: Vec<Key> = blocks
        .iter()
        .filter_map(|block| {
            let key = pem_key(&pem::encode(block));
            if key.is_none() {
                tracing::warn!(
                    source = origin,
                    tag = block.tag(),
                    "a PEM block holds no usable public key; skipped"
                );
            }
            key
        })
        .collect();
    if keys.is_empty() { Err(KeyError::NoPemKey(origin.into())) } else { Ok(keys) }
}

/// The key of one PEM block, its algorithms chosen by its type (and an EC key's curve).
fn pem_key(block: &str) -> Option<Key> {
    let block = block.as_bytes();
    if let Ok(key) = DecodingKey::from_rsa_pem(block) {
        return Some(Key::new(None, AlgorithmFamily::Rsa.algorithms(), key));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(block) {
        // The uncompressed point: 65 bytes on P-256, 97 on P-384.
        let algorithm = match key.try_get_as_bytes().map(<[u8]>::len) {
            Ok(65) => Algorithm::ES256,
            Ok(97) => Algorithm::ES384,
            _ => return None,
        };
        return Some(Key::new(None, &[algorithm], key));
    }
    DecodingKey::from_ed_pem(block).ok().map(|key| Key::new(None, &[Algorithm::EdDSA], key))
}

/// The signing keys of a JWK set (`origin` names it in errors). Keys for encryption, symmetric
/// keys (a published set holds no secrets), unsupported curves and keys that do not parse are
/// skipped with a warning, so that one odd key never hides the others.
pub(crate) fn from_jwks(json: &[u8], origin: &str) -> Result<Vec<Key>, KeyError> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(json).map_err(|_| KeyError::NotJwkSet(origin.into()))?;
    Ok(set
        .keys
        .into_iter()
        .filter_map(|value| {
            let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
            let key = serde_json::from_value::<Jwk>(value).ok().and_then(|jwk| jwk_key(&jwk));
            if key.is_none() {
                tracing::warn!(source = origin, kid, "a JWK is not a usable signing key; skipped");
            }
            key
        })
        .collect())
}

fn jwk_key(jwk: &Jwk) -> Option<Key> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return None;
    }
    let family: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa.algorithms(),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
        _ => return None,
    };
    let algorithms: Vec<Algorithm> = match jwk.common.key_algorithm {
        None => family.to_vec(),
        Some(KeyAlgorithm::UNKNOWN_ALGORITHM) => return None,
        Some(alg) => {
            let alg = parse_algorithm(&alg.to_string()).ok()?;
            if !family.contains(&alg) {
                return None;
            }
            vec![alg]
        }
    };
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key { kid: jwk.common.key_id.clone(), algorithms, decoding })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip_and_none_is_unknown() {
        let families =
            [AlgorithmFamily::Hmac, AlgorithmFamily::Rsa, AlgorithmFamily::Ec, AlgorithmFamily::Ed];
        for algorithm in families.iter().flat_map(|f| f.algorithms()) {
            assert_eq!(parse_algorithm(&format!("{algorithm:?}")).unwrap(), *algorithm);
        }
        for name in ["none", "None", "HS1", ""] {
            assert!(parse_algorithm(name).is_err(), "{name}");
        }
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(matches!(from_secret(&[7; 31]), Err(KeyError::ShortSecret)));
        assert_eq!(from_secret(&[7; 32]).unwrap().algorithms, AlgorithmFamily::Hmac.algorithms());
    }

    #[test]
    fn a_jwk_alg_narrows_its_key_and_odd_keys_are_skipped() {
        let rsa = r#"{"kty":"RSA","kid":"r1","alg":"RS512","n":"sXch","e":"AQAB"}"#;
        let wrong_type = r#"{"kty":"RSA","kid":"r2","alg":"ES256","n":"sXch","e":"AQAB"}"#;
        let enc = r#"{"kty":"RSA","kid":"r3","use":"enc","n":"sXch","e":"AQAB"}"#;
        let secret = r#"{"kty":"oct","kid":"s","k":"c2VjcmV0"}"#;
        let json = format!(r#"{{"keys":[{rsa},{wrong_type},{enc},{secret},{{"kty":"nope"}}]}}"#);
        let keys = from_jwks(json.as_bytes(), "test").unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("r1"));
        assert_eq!(keys[0].algorithms, [Algorithm::RS512]);
        assert!(matches!(from_jwks(b"[]", "test"), Err(KeyError::NotJwkSet(_))));
    }
}
