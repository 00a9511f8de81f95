//! Token verification: the key a token's header selects, its signature, `exp`, `nbf`, `iss`,
//! `aud`, `sub` and `crit`, then the principal its claims describe. Verified tokens are
//! remembered, so that a client sending its token again costs a lookup.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use prefs_domain::Principal;
use serde_json::Value;

use super::claims::ClaimMap;
use super::keyring::{KeyRing, KeySources, Secret};
use super::keys::{Key, KeyError};

/// How long past `exp` (and before `nbf`) a token is still accepted, in seconds.
pub const LEEWAY_SECONDS: u64 = 60;

/// How much memory [`Verifier`] spends remembering tokens it verified (estimated: each token's
/// text, what it grants, and their allocations).
pub const TOKEN_CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// Token verification settings.
#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    /// Where keys come from, and the algorithms accepted.
    pub keys: KeySources,
    /// Accepted `iss` values; empty: `iss` is not checked.
    pub issuers: Vec<String>,
    /// Accepted `aud` values; empty: `aud` is not checked.
    pub audiences: Vec<String>,
    /// Clients whose tokens are accepted; empty: any client's.
    pub client_ids: Vec<String>,
    /// Which claims say what.
    pub claims: ClaimMap,
}

impl JwtConfig {
    /// HMAC tokens signed with `secret`, the default claims, no issuer or audience check.
    pub fn with_secret(secret: &[u8]) -> Self {
        let keys = KeySources { secret: Some(Secret(secret.to_vec())), ..KeySources::default() };
        Self { keys, ..Self::default() }
    }
}

/// Why a token is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The token is not valid: 401, with the reason in words a client developer understands.
    Unauthorized(String),
    /// The keys to check it with are not loaded yet (the identity provider's key set has not been
    /// fetched once): 503.
    KeysUnavailable,
}

impl From<String> for Rejection {
    fn from(reason: String) -> Self {
        Self::Unauthorized(reason)
    }
}

impl From<&str> for Rejection {
    fn from(reason: &str) -> Self {
        Self::Unauthorized(reason.to_owned())
    }
}

/// The keys a token may be checked against.
enum Candidates<'k> {
    /// These.
    Keys(Vec<&'k Key>),
    /// None: the token names a key (`kid`) no key has, and no key without an id fits.
    UnknownKid,
    /// None: no key the token may name verifies its algorithm.
    WrongAlgorithm,
}

/// Verifies tokens, and remembers the tokens it verified (up to [`TOKEN_CACHE_BYTES`]). Only
/// tokens that passed every check are remembered, each under its exact text, with the key
/// generation they were checked against: once the keys change they are checked again, and a
/// remembered token is still refused once its `exp` (or before its `nbf`) is past the leeway.
pub struct Verifier {
    ring: Arc<KeyRing>,
    validation: Validation,
    claims: ClaimMap,
    client_ids: Vec<String>,
    verified: quick_cache::sync::Cache<String, Verified, TokenWeight>,
}

/// What [`Verifier::verify`] found a token to be.
#[derive(Debug, Clone)]
pub struct Verification {
    /// Who it names, and what it grants.
    pub principal: Principal,
    /// Whether the token was remembered from an earlier verification (so an earlier request
    /// carried it), rather than verified afresh.
    pub remembered: bool,
}

/// A token that passed verification: what it grants, and when.
#[derive(Clone)]
struct Verified {
    principal: Principal,
    exp: u64,
    nbf: Option<u64>,
    generation: u64,
}

impl Verified {
    /// Is the token valid at `now` (seconds since the epoch), as jsonwebtoken would decide?
    fn valid_at(&self, now: u64) -> Result<(), Rejection> {
        if self.exp.saturating_add(LEEWAY_SECONDS) < now {
            return Err(plain(&ErrorKind::ExpiredSignature).into());
        }
        match self.nbf {
            Some(nbf) if nbf > now.saturating_add(LEEWAY_SECONDS) => {
                Err(plain(&ErrorKind::ImmatureSignature).into())
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
    /// Loads the keys of `config` and starts keeping them current.
    ///
    /// # Errors
    /// [`KeyError`] when no key source is configured or a local one is unusable.
    pub fn new(config: &JwtConfig) -> Result<Self, KeyError> {
        let ring = KeyRing::start(&config.keys)?;
        // The algorithm list is set per token, to the one algorithm its key was selected for.
        let mut validation = Validation::new(Algorithm::HS256);
        let mut required = vec!["exp", "sub"];
        required.extend((!config.issuers.is_empty()).then_some("iss"));
        required.extend((!config.audiences.is_empty()).then_some("aud"));
        validation.set_required_spec_claims(&required);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        if !config.issuers.is_empty() {
            validation.set_issuer(&config.issuers);
        }
        if config.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&config.audiences);
        }
        // About 1 KiB a token (TokenWeight) of the usual size.
        let tokens = usize::try_from(TOKEN_CACHE_BYTES / 1024).unwrap_or(usize::MAX);
        let verified = quick_cache::sync::Cache::with_weighter(tokens, TOKEN_CACHE_BYTES, TokenWeight);
        Ok(Self {
            ring,
            validation,
            claims: config.claims.clone(),
            client_ids: config.client_ids.clone(),
            verified,
        })
    }

    /// Whether every key source has loaded keys at least once.
    pub fn ready(&self) -> bool {
        self.ring.ready()
    }

    /// Verifies `token` and reads its principal.
    ///
    /// # Errors
    /// A [`Rejection`].
    pub async fn verify(&self, token: &str) -> Result<Verification, Rejection> {
        self.verify_at(token, jsonwebtoken::get_current_timestamp()).await
    }

    /// Forgets `token`, if it is remembered: its next use is verified afresh
    /// ([`Verification::remembered`] is then `false`).
    pub fn forget(&self, token: &str) {
        self.verified.remove(token);
    }

    /// [`Verifier::verify`] at `now`, seconds since the epoch: the clock a remembered token is
    /// checked against (a token verified afresh is checked against jsonwebtoken's own clock).
    async fn verify_at(&self, token: &str, now: u64) -> Result<Verification, Rejection> {
        let generation = self.ring.generation();
        if let Some(verified) = self.verified.get(token).filter(|v| v.generation == generation) {
            verified.valid_at(now)?;
            return Ok(Verification { principal: verified.principal, remembered: true });
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| plain(e.kind()))?;
        if header.crit.is_some() {
            return Err(
                "the token marks header parameters as critical (`crit`) that prefs does not support".into()
            );
        }
        let (all, fresh);
        all = self.ring.keys();
        let mut keys = candidates(&all, header.alg, header.kid.as_deref());
        if let Candidates::UnknownKid = keys
            && self.ring.refresh_for_unknown_key().await
        {
            fresh = self.ring.keys();
            keys = candidates(&fresh, header.alg, header.kid.as_deref());
        }
        let keys = match keys {
            Candidates::Keys(keys) => keys,
            _ if !self.ring.ready() => return Err(Rejection::KeysUnavailable),
            Candidates::UnknownKid => {
                return Err("the token is signed with a key prefs does not know (its `kid`)".into());
            }
            Candidates::WrongAlgorithm => {
                return Err(format!("the token's algorithm {:?} is not accepted", header.alg).into());
            }
        };
        let claims = self.check(token, header.alg, &keys)?;
        let number = |name: &str| claims.get(name).and_then(Value::as_u64);
        let (exp, nbf) = (number("exp").unwrap_or_default(), number("nbf"));
        let principal = self.claims.principal(&claims)?;
        if !self.client_ids.is_empty()
            && !principal
                .client_id
                .as_ref()
                .is_some_and(|c| self.client_ids.iter().any(|id| id == c.as_str()))
        {
            return Err("the token was issued to a client prefs does not accept".into());
        }
        self.verified
            .insert(token.to_owned(), Verified { principal: principal.clone(), exp, nbf, generation });
        Ok(Verification { principal, remembered: false })
    }

    /// Checks the signature with each of `keys` until one verifies, then the claims.
    fn check(&self, token: &str, algorithm: Algorithm, keys: &[&Key]) -> Result<Value, Rejection> {
        let mut validation = self.validation.clone();
        validation.algorithms = vec![algorithm];
        let mut last = ErrorKind::InvalidSignature;
        for key in keys {
            match jsonwebtoken::decode::<Value>(token, &key.decoding, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::InvalidSignature
                            | ErrorKind::InvalidEcdsaKey
                            | ErrorKind::InvalidEddsaKey
                            | ErrorKind::InvalidRsaKey(_)
                            | ErrorKind::InvalidKeyFormat
                    ) =>
                {
                    last = e.into_kind();
                }
                Err(e) => return Err(plain(e.kind()).into()),
            }
        }
        Err(plain(&last).into())
    }
}

/// The keys of `all` a token signed with `algorithm` is checked against: the keys its `kid`
/// names, or when no key has that id, the keys without an id of their own (a secret, PEM keys);
/// with no `kid`, every key of the algorithm's type. Header fields such as `jku`, `x5u`, `jwk` or
/// `x5c` never choose a key.
fn candidates<'k>(all: &'k [Key], algorithm: Algorithm, kid: Option<&str>) -> Candidates<'k> {
    let known = kid.is_none_or(|kid| all.iter().any(|k| k.kid.as_deref() == Some(kid)));
    let keys: Vec<&Key> = all
        .iter()
        .filter(|k| match kid {
            Some(_) if known => k.kid.as_deref() == kid,
            Some(_) => k.kid.is_none(),
            None => true,
        })
        .filter(|k| k.algorithms.contains(&algorithm))
        .collect();
    match (keys.is_empty(), known) {
        (false, _) => Candidates::Keys(keys),
        (true, false) => Candidates::UnknownKid,
        (true, true) => Candidates::WrongAlgorithm,
    }
}

/// A verification failure in words a client developer understands (never a library's message).
fn plain(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (`nbf`)".into(),
        ErrorKind::InvalidIssuer => "the token's issuer (`iss`) is not accepted".into(),
        ErrorKind::InvalidAudience => "the token's audience (`aud`) is not accepted".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("the token's `{claim}` claim is malformed"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
            "the token's algorithm is not accepted".into()
        }
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => "the token's signature does not verify".into(),
        _ => "the token is malformed (not a signed JWT with JSON header and claims)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Claims, mint};

    const SECRET: &[u8] = b"a test secret that is long enough for HS256";

    fn verifier() -> Verifier {
        Verifier::new(&JwtConfig::with_secret(SECRET)).unwrap()
    }

    fn token(exp: u64, nbf: Option<u64>) -> String {
        let claims =
            Claims { sub: "sub-1".into(), username: Some("ada".into()), exp, nbf, ..Claims::default() };
        mint(SECRET, &claims).unwrap()
    }

    fn reason(rejection: Rejection) -> String {
        match rejection {
            Rejection::Unauthorized(reason) => reason,
            Rejection::KeysUnavailable => panic!("keys unavailable"),
        }
    }

    #[tokio::test]
    async fn a_remembered_token_expires_like_a_fresh_one() {
        let now = jsonwebtoken::get_current_timestamp();
        let verifier = verifier();
        let token = token(now + 10, None);
        assert_eq!(verifier.verify(&token).await.unwrap().principal.username.as_str(), "ada");
        assert_eq!(verifier.verified.len(), 1, "remembered");
        let last = now + 10 + LEEWAY_SECONDS;
        assert_eq!(verifier.verify_at(&token, last).await.unwrap().principal.subject, "sub-1");
        let expired = reason(verifier.verify_at(&token, last + 1).await.unwrap_err());
        assert_eq!(expired, "the token has expired");
    }

    #[tokio::test]
    async fn a_remembered_token_is_not_valid_before_its_nbf() {
        let now = jsonwebtoken::get_current_timestamp();
        let verifier = verifier();
        let token = token(now + 600, Some(now + 30));
        verifier.verify(&token).await.unwrap();
        assert_eq!(verifier.verified.len(), 1, "remembered");
        let first = now + 30 - LEEWAY_SECONDS;
        verifier.verify_at(&token, first).await.unwrap();
        let early = reason(verifier.verify_at(&token, first - 1).await.unwrap_err());
        assert!(early.contains("not valid yet"), "{early}");
    }

    #[tokio::test]
    async fn only_the_exact_verified_text_is_remembered() {
        let now = jsonwebtoken::get_current_timestamp();
        let verifier = verifier();
        let good = token(now + 600, None);
        verifier.verify(&good).await.unwrap();
        // The same header and claims under another signature, and the token with a byte more.
        let (signed, _) = good.rsplit_once('.').unwrap();
        let forged = format!("{signed}.{}", "A".repeat(43));
        assert_eq!(
            reason(verifier.verify(&forged).await.unwrap_err()),
            "the token's signature does not verify"
        );
        assert!(verifier.verify(&format!("{good}A")).await.is_err());
        let expired = token(now - 3600, None);
        assert!(verifier.verify(&expired).await.is_err());
        assert_eq!(verifier.verified.len(), 1, "nothing but the good token is remembered");
    }
}
