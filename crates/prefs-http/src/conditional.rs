//! Conditional requests over HTTP (docs/contract.md §3.5): reading `If-Match` / `If-None-Match`,
//! and answering reads with a strong `ETag`, a 304 or a 412. Writes pass the preconditions to the
//! domain, which checks them inside the write's transaction.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use prefs_domain::{Condition, ETag, Preconditions, ReadOutcome};
use serde::Serialize;

use crate::error::Problem;

/// The request's preconditions.
pub fn preconditions(req: &HttpRequest) -> Preconditions {
    let condition = |name| req.headers().get(name).map(|v| Condition::parse(v.to_str().unwrap_or_default()));
    Preconditions { if_match: condition(header::IF_MATCH), if_none_match: condition(header::IF_NONE_MATCH) }
}

/// Answers a read of `body`, tagged `etag`: 200 with the body, or 304 without it.
///
/// # Errors
/// [`Problem::Domain`] with `PreconditionFailed` when `If-Match` does not match.
pub fn read(req: &HttpRequest, etag: &ETag, body: &impl Serialize) -> Result<HttpResponse, Problem> {
    Ok(match preconditions(req).check_read(etag)? {
        ReadOutcome::NotModified => tagged(HttpResponse::NotModified(), etag).finish(),
        ReadOutcome::Full => tagged(HttpResponse::Ok(), etag).json(body),
    })
}

/// Answers a read of a representation with no tag of its own (a page of a list): the tag is a
/// digest of the body.
///
/// # Errors
/// As [`read`].
pub fn read_untagged(req: &HttpRequest, body: &impl Serialize) -> Result<HttpResponse, Problem> {
    let bytes = serde_json::to_vec(body).map_err(|e| prefs_domain::Error::Internal(e.into()))?;
    read(req, &ETag::of_bytes(&bytes), body)
}

/// Adds the `ETag` header.
pub fn tagged(mut response: HttpResponseBuilder, etag: &ETag) -> HttpResponseBuilder {
    response.insert_header((header::ETAG, etag.to_string()));
    response
}
