//! Reading request bodies: the content type a route takes, the size limit, and JSON parsing, all
//! reported as [`Problem`]s so each dialect can show them its own way.

use actix_web::{HttpMessage, HttpRequest, web};
use futures_util::StreamExt;
use serde_json::Value;

use crate::error::Problem;

/// `application/json`.
pub const JSON: &str = "application/json";
/// `application/merge-patch+json` (RFC 7396).
pub const MERGE_PATCH: &str = "application/merge-patch+json";

/// Checks that the request's content type is `expected` (parameters such as `charset` allowed).
///
/// # Errors
/// [`Problem::UnsupportedMediaType`] otherwise, a missing content type included.
pub fn require_content_type(req: &HttpRequest, expected: &'static str) -> Result<(), Problem> {
    match req.mime_type() {
        Ok(Some(mime)) if mime.essence_str().eq_ignore_ascii_case(expected) => Ok(()),
        _ => Err(Problem::UnsupportedMediaType(expected)),
    }
}

/// Reads the whole body, refusing more than `limit` bytes (declared or sent), and parses it as
/// JSON. An empty body reads as `null`, which no route takes as a body, so each route reports
/// it in its own words.
///
/// # Errors
/// [`Problem::PayloadTooLarge`] over the limit, [`Problem::MalformedJson`] when it does not parse.
pub async fn read_json(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<Value, Problem> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(Problem::PayloadTooLarge(limit));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Problem::MalformedJson(format!("the body could not be read ({e})")))?;
        if body.len() + chunk.len() > limit {
            return Err(Problem::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body).map_err(|e| Problem::MalformedJson(e.to_string()))
}
