//! Authentication: the token a request carries (`Authorization: Bearer` or Open edX's `JWT`
//! scheme), its verification against the configured keys ([`Verifier`]), and the extractor that
//! turns a request into an [`Actor`]. What the contract says of tokens is in
//! `docs/contract.md` (Identity and access).

mod claims;
mod keyring;
mod keys;
mod verify;

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpRequest, web};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use prefs_domain::{Actor, Error};
use serde::{Deserialize, Serialize};

pub use claims::{ClaimMap, ClaimPath, claim_list, value_list};
pub use keyring::{KeySources, Secret};
pub use keys::{KeyError, MIN_SECRET_BYTES, parse_algorithm};
pub use verify::{JwtConfig, LEEWAY_SECONDS, Rejection, TOKEN_CACHE_BYTES, Verification, Verifier};

use crate::AppState;
use crate::error::{Dialect, Failure, Problem};

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
        // The `Authorization` header, else (when enabled) the JWT cookies, which writes need a CSRF
        // token with.
        let (token, csrf) = crate::browser::token(req, state.as_ref().map(|s| &s.browser), bearer);
        let token = token.and_then(|token| match token.len() {
            0..=MAX_TOKEN_BYTES => Ok(token),
            _ => Err(format!("the token is longer than {MAX_TOKEN_BYTES} bytes")),
        });
        let client = crate::client::address(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| Problem::Unauthorized("not configured".into()))?;
            let token = token.map_err(Rejection::Unauthorized);
            let verified = match &token {
                Ok(token) => state.verifier.verify(token).await,
                Err(why) => Err(why.clone()),
            };
            let Verification { principal, remembered } = verified.map_err(|r| match r {
                // No valid token: counted per client address, 429 over the limit. Only these
                // count, so the users behind one address do not share a budget.
                Rejection::Unauthorized(why) => match state.rate_limiters.address(client) {
                    Ok(()) => Problem::Unauthorized(why),
                    Err(too_many) => too_many,
                },
                Rejection::KeysUnavailable => Problem::Domain(Error::Unavailable(
                    "the identity provider's keys are not loaded yet".into(),
                )),
            })?;
            state.rate_limiters.user(&principal.subject)?;
            csrf?;
            // New users are admitted per client address before they are created. A remembered
            // token was admitted when it was first used (a refused one is forgotten, so that its
            // next use is checked again): known users cost no lookup.
            if !remembered
                && state.rate_limiters.limits_signups()
                && state.service.is_new(&principal).await?
                && let Err(refused) = state.rate_limiters.signup(client)
            {
                if let Ok(token) = &token {
                    state.verifier.forget(token);
                }
                return Err(refused.into());
            }
            let actor = state.service.sign_in(principal).await?;
            Ok(Self { actor, dialect: PhantomData })
        })
    }
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

/// The token of the `Authorization` header, `Bearer <token>` or Open edX's `JWT <token>` (scheme
/// names are case-insensitive); never the query string. Two `Authorization` headers are refused.
fn bearer(req: &HttpRequest) -> Result<&str, String> {
    let mut values = req.headers().get_all(header::AUTHORIZATION);
    let value = values.next().ok_or("no Authorization header")?;
    if values.next().is_some() {
        return Err("more than one Authorization header".into());
    }
    let value = value.to_str().map_err(|_| "the Authorization header is not text")?;
    match value.split_once(' ') {
        Some((scheme, token))
            if (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("jwt"))
                && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err("the Authorization header is not `Bearer <token>` or `JWT <token>`".into()),
    }
}
