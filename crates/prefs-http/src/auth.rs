//! Authentication: tokens, their verification against the configured keys ([`Verifier`]), and the
//! middleware that keeps answers to credentialed requests out of shared caches. The extractor that
//! reads a request's token is the private module `authenticated`. What the contract says of tokens is in
//! `docs/contract.md` (Identity and access).

mod claims;
mod keyring;
mod keys;
mod verify;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

pub use claims::{ClaimMap, ClaimPath, claim_list, value_list};
pub use keyring::{KeySources, Secret};
pub use keys::{KeyError, MIN_SECRET_BYTES, parse_algorithm};
pub use verify::{JwtConfig, LEEWAY_SECONDS, Rejection, TOKEN_CACHE_BYTES, Verification, Verifier};

/// The claims of a token prefs mints (`prefs token`, `--dev`), with the default claim names.
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

/// Mints an HS256 token for `claims` (the `prefs token` command and `--dev` mode).
///
/// # Errors
/// When the claims cannot be encoded.
pub fn mint(secret: &[u8], claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret))
}

/// Middleware: answers to requests that carry credentials (an `Authorization` header or cookies)
/// are `Cache-Control: private, no-cache`: a shared cache never keeps them, and a client
/// revalidates with the `ETag` before it uses what it kept. An answer that says otherwise (the
/// CSRF route's `no-store`) keeps its own.
///
/// # Errors
/// Passes on the inner service's errors.
pub(crate) async fn private_answers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let credentials =
        req.headers().contains_key(header::AUTHORIZATION) || req.headers().contains_key(header::COOKIE);
    let mut response = next.call(req).await?;
    if credentials && !response.headers().contains_key(header::CACHE_CONTROL) {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    }
    Ok(response)
}

/// The longest token accepted, in bytes: real tokens are far smaller, and verifying a huge one
/// would be work done for an attacker.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
