//! The extractor that turns a request into the [`Actor`] it acts for: its token (from
//! `Authorization: Bearer` or Open edX's `JWT` scheme, else the JWT cookies), verified, within the
//! rate limits, its user provisioned (docs/contract.md §2.1, §4.4).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use prefs_domain::{Actor, Error};

use crate::auth::{MAX_TOKEN_BYTES, Rejection, Verification};
use crate::error::{Dialect, Failure, Problem};
use crate::state::AppState;

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
        let (token, csrf) = crate::csrf::token(req, state.as_ref().map(|s| &s.browser), bearer);
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
