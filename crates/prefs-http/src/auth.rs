//! Bearer JWT authentication (SPEC 2): verification with exactly one configured key and
//! algorithm, the claims prefs reads, and the extractor that turns a request into an [`Actor`].

use std::collections::BTreeSet;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use prefs_domain::{Actor, ClientId, Principal, Username};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::{Dialect, Failure, Problem};

/// The shortest HS256 secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// How long past `exp` (and before `nbf`) a token is still accepted, in seconds.
pub const LEEWAY_SECONDS: u64 = 60;

/// The key tokens are verified with.
#[derive(Clone)]
pub enum JwtKey {
    /// HS256 with a shared secret of at least [`MIN_SECRET_BYTES`].
    Secret(Vec<u8>),
    /// RS256 or ES256 (chosen by the key's type) with a PEM public key.
    PublicKeyPem(Vec<u8>),
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Secret(_) => "Secret(<redacted>)",
            Self::PublicKeyPem(_) => "PublicKeyPem(..)",
        })
    }
}

/// Token verification settings.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The verification key.
    pub key: JwtKey,
    /// The required `iss`, if any.
    pub issuer: Option<String>,
    /// The required `aud`, if any; without one, `aud` is not checked.
    pub audience: Option<String>,
}

/// Why a [`JwtConfig`] cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The HS256 secret is too short to be safe.
    #[error("the JWT secret must be at least {MIN_SECRET_BYTES} bytes")]
    ShortSecret,
    /// The PEM holds neither an RSA nor an EC public key.
    #[error("the JWT public key file holds no RSA or EC public key in PEM form")]
    BadPublicKey,
}

/// How much memory [`Verifier`] spends remembering tokens it verified (estimated: each token's
/// text, what it grants, and their allocations).
pub const TOKEN_CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// Verifies bearer tokens, and remembers the tokens it verified (up to [`TOKEN_CACHE_BYTES`]),
/// so that a client sending the same token again costs a lookup instead of a signature check.
/// Only tokens that passed every check are remembered, each under its exact text (any other
/// string, however close, is verified in full), and a remembered token is still refused once
/// its `exp` (or before its `nbf`) is past the leeway.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    verified: quick_cache::sync::Cache<String, Verified, TokenWeight>,
}

/// A token that passed verification: what it grants, and when.
#[derive(Clone)]
struct Verified {
    principal: Principal,
    exp: u64,
    nbf: Option<u64>,
}

impl Verified {
    /// Is the token valid at `now` (seconds since the epoch), as jsonwebtoken would decide?
    fn valid_at(&self, now: u64) -> Result<(), String> {
        if self.exp.saturating_add(LEEWAY_SECONDS) < now {
            return Err("invalid token (ExpiredSignature)".into());
        }
        match self.nbf {
            Some(nbf) if nbf > now.saturating_add(LEEWAY_SECONDS) => {
                Err("invalid token (ImmatureSignature)".into())
            }
            _ => Ok(()),
        }
    }
}

/// Weighs a remembered token by an estimate of the memory it takes.
#[derive(Clone)]
struct TokenWeight;

impl quick_cache::Weighter<String, Verified> for TokenWeight {
    fn weight(&self, token: &String, verified: &Verified) -> u64 {
        /// The entry itself, and what the allocator and the cache's table add to it.
        const ENTRY: usize = std::mem::size_of::<(String, Verified)>() + 64;
        /// A B-tree leaf, which holds up to 11 scopes.
        const SCOPES: usize = 288;
        let principal = &verified.principal;
        let strings = token.len()
            + principal.subject.len()
            + principal.username.as_str().len()
            + principal.scopes.iter().map(|scope| scope.len() + 16).sum::<usize>()
            + principal.client_id.as_ref().map_or(0, |client| client.as_str().len());
        let scopes =
            if principal.scopes.is_empty() { 0 } else { SCOPES * principal.scopes.len().div_ceil(11) };
        (ENTRY + strings + scopes) as u64
    }
}

impl Verifier {
    /// Prepares verification for `config`.
    ///
    /// # Errors
    /// [`KeyError`] when the key is unusable.
    pub fn new(config: &JwtConfig) -> Result<Self, KeyError> {
        let (key, algorithm) = match &config.key {
            JwtKey::Secret(secret) if secret.len() < MIN_SECRET_BYTES => return Err(KeyError::ShortSecret),
            JwtKey::Secret(secret) => (DecodingKey::from_secret(secret), Algorithm::HS256),
            JwtKey::PublicKeyPem(pem) => DecodingKey::from_rsa_pem(pem)
                .map(|k| (k, Algorithm::RS256))
                .or_else(|_| DecodingKey::from_ec_pem(pem).map(|k| (k, Algorithm::ES256)))
                .map_err(|_| KeyError::BadPublicKey)?,
        };
        // `Validation::new` accepts exactly this one algorithm: never `none`, never HS with a
        // public key. Header fields such as `kid`, `jku` or `jwk` are never used to pick a key.
        let mut validation = Validation::new(algorithm);
        let mut required = vec!["exp", "sub"];
        required.extend(config.issuer.as_ref().map(|_| "iss"));
        required.extend(config.audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &config.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        // About 1 KiB a token (TokenWeight) of the usual size.
        let tokens = usize::try_from(TOKEN_CACHE_BYTES / 1024).unwrap_or(usize::MAX);
        let verified = quick_cache::sync::Cache::with_weighter(tokens, TOKEN_CACHE_BYTES, TokenWeight);
        Ok(Self { key, validation, verified })
    }

    /// Verifies `token` and reads its principal.
    ///
    /// # Errors
    /// A reason fit for a 401 answer.
    pub fn verify(&self, token: &str) -> Result<Principal, String> {
        self.verify_at(token, jsonwebtoken::get_current_timestamp())
    }

    /// [`Verifier::verify`] at `now`, seconds since the epoch: the clock a remembered token is
    /// checked against (a token verified afresh is checked against jsonwebtoken's own clock).
    fn verify_at(&self, token: &str, now: u64) -> Result<Principal, String> {
        if let Some(verified) = self.verified.get(token) {
            verified.valid_at(now)?;
            return Ok(verified.principal);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| format!("invalid token ({e})"))?
            .claims;
        let (exp, nbf) = (claims.exp, claims.nbf);
        let principal = claims.into_principal()?;
        self.verified.insert(token.to_owned(), Verified { principal: principal.clone(), exp, nbf });
        Ok(principal)
    }
}

/// The claims prefs reads from a token (and writes when it mints one).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Claims {
    /// The subject: the user's stable identity.
    pub sub: String,
    /// The username, preferred over `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// The username when `preferred_username` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Roles; `staff` and `admin` mean something to prefs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Space-separated OAuth scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The client application the token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The authorized party, used when `client_id` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

impl Claims {
    fn into_principal(self) -> Result<Principal, String> {
        let name = self.preferred_username.or(self.username).unwrap_or_else(|| self.sub.clone());
        let username =
            Username::parse(&name).map_err(|e| format!("the token's username is unusable: {e}"))?;
        let client_id = match self.client_id.or(self.azp) {
            Some(client) => {
                Some(ClientId::parse(&client).map_err(|e| format!("the token's client id: {e}"))?)
            }
            None => None,
        };
        let scopes: BTreeSet<String> =
            self.scope.unwrap_or_default().split_ascii_whitespace().map(str::to_owned).collect();
        Ok(Principal {
            staff: self.roles.iter().any(|r| r == "staff"),
            admin: self.roles.iter().any(|r| r == "admin"),
            subject: self.sub,
            username,
            scopes,
            client_id,
        })
    }
}

/// Mints an HS256 token for `claims` (the `prefs token` command and `--dev` mode).
///
/// # Errors
/// When the claims cannot be encoded.
pub fn mint(secret: &[u8], claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret))
}

/// The acting user of a request of dialect `D`: a verified token, its user provisioned.
/// Authentication comes before anything else a handler does.
pub struct Authenticated<D> {
    /// The actor.
    pub actor: Actor,
    dialect: PhantomData<D>,
}

impl<D: Dialect> FromRequest for Authenticated<D> {
    type Error = Failure<D>;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let principal = bearer(req).and_then(|token| match &state {
            Some(state) => state.verifier.verify(token),
            None => Err("authentication is not configured".into()),
        });
        Box::pin(async move {
            let principal = principal.map_err(Problem::Unauthorized)?;
            let state = state.ok_or_else(|| Problem::Unauthorized("not configured".into()))?;
            let actor = state.service.sign_in(principal).await?;
            Ok(Self { actor, dialect: PhantomData })
        })
    }
}

/// The longest token accepted, in bytes: real tokens are far smaller, and verifying a huge one
/// would be work done for an attacker.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The bearer token of the `Authorization` header (never the query string).
fn bearer(req: &HttpRequest) -> Result<&str, String> {
    let value = req.headers().get(header::AUTHORIZATION).ok_or("no Authorization header")?;
    let value = value.to_str().map_err(|_| "the Authorization header is not text")?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            if token.len() > MAX_TOKEN_BYTES {
                return Err(format!("the token is longer than {MAX_TOKEN_BYTES} bytes"));
            }
            Ok(token.trim())
        }
        _ => Err("the Authorization header is not `Bearer <token>`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a test secret that is long enough for HS256";

    fn verifier() -> Verifier {
        Verifier::new(&JwtConfig { key: JwtKey::Secret(SECRET.to_vec()), issuer: None, audience: None })
            .unwrap()
    }

    fn token(exp: u64, nbf: Option<u64>) -> String {
        let claims =
            Claims { sub: "sub-1".into(), username: Some("ada".into()), exp, nbf, ..Claims::default() };
        mint(SECRET, &claims).unwrap()
    }

    #[test]
    fn a_remembered_token_expires_like_a_fresh_one() {
        let now = jsonwebtoken::get_current_timestamp();
        let verifier = verifier();
        let token = token(now + 10, None);
        assert_eq!(verifier.verify(&token).unwrap().username.as_str(), "ada");
        assert_eq!(verifier.verified.len(), 1, "remembered");
        let last = now + 10 + LEEWAY_SECONDS;
        assert_eq!(verifier.verify_at(&token, last).unwrap().subject, "sub-1");
        let expired = verifier.verify_at(&token, last + 1).unwrap_err();
        assert!(expired.contains("ExpiredSignature"), "{expired}");
    }

    #[test]
    fn a_remembered_token_is_not_valid_before_its_nbf() {
        let now = jsonwebtoken::get_current_timestamp();
        let verifier = verifier();
        let token = token(now + 600, Some(now + 30));
        verifier.verify(&token).unwrap();
        assert_eq!(verifier.verified.len(), 1, "remembered");
        let first = now + 30 - LEEWAY_SECONDS;
        verifier.verify_at(&token, first).unwrap();
        let early = verifier.verify_at(&token, first - 1).unwrap_err();
        assert!(early.contains("ImmatureSignature"), "{early}");
    }

    #[test]
    fn only_the_exact_verified_text_is_remembered() {
        let now = jsonwebtoken::get_current_timestamp();
        let verifier = verifier();
        let good = token(now + 600, None);
        verifier.verify(&good).unwrap();
        // The same header and claims under another signature, and the token with a byte more.
        let (signed, _) = good.rsplit_once('.').unwrap();
        let forged = format!("{signed}.{}", "A".repeat(43));
        assert!(verifier.verify(&forged).unwrap_err().contains("InvalidSignature"));
        assert!(verifier.verify(&format!("{good}A")).is_err());
        let expired = token(now - 3600, None);
        assert!(verifier.verify(&expired).is_err());
        assert_eq!(verifier.verified.len(), 1, "nothing but the good token is remembered");
    }
}
