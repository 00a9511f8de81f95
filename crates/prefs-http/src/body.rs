//! Reading request bodies: the content type a route takes, the size limit, the body deadline, and
//! JSON parsing, all reported as [`Problem`]s so each dialect can show them its own way. Handlers
//! read a body only once access is decided (docs/contract.md §4.3).

use actix_web::{HttpMessage, HttpRequest, web};
use futures_util::StreamExt;
use serde_json::Value;

use crate::deadlines::Deadlines;
use crate::error::Problem;
use crate::request_id;
use crate::state::AppState;

/// `application/json`.
pub const JSON: &str = "application/json";
/// `application/merge-patch+json` (RFC 7396).
pub const MERGE_PATCH: &str = "application/merge-patch+json";
/// `application/vnd.api+json` (JSON:API), taken as JSON by the client namespace dialect.
pub const JSON_API: &str = "application/vnd.api+json";
/// `application/x-www-form-urlencoded`.
pub const FORM: &str = "application/x-www-form-urlencoded";
/// `multipart/form-data`.
pub const MULTIPART: &str = "multipart/form-data";

/// The essence of the request's content type (`application/json` for
/// `application/json; charset=utf-8`), lower-cased, if it has a valid one.
pub fn content_type(req: &HttpRequest) -> Option<String> {
    match req.mime_type() {
        Ok(Some(mime)) => Some(mime.essence_str().to_ascii_lowercase()),
        _ => None,
    }
}

/// Checks that the request's content type is one of `accepted`; `named` lists them for the 415.
///
/// # Errors
/// [`Problem::UnsupportedMediaType`] otherwise, a missing content type included.
pub fn require_content_type_in(
    req: &HttpRequest,
    accepted: &[&str],
    named: &'static str,
) -> Result<(), Problem> {
    match content_type(req) {
        Some(essence) if accepted.contains(&essence.as_str()) => Ok(()),
        _ => Err(Problem::UnsupportedMediaType(named)),
    }
}

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
/// JSON ([`parse_json`]). An empty body reads as `null`, which no route takes as a body, so each
/// route reports it in its own words.
///
/// # Errors
/// [`Problem::PayloadTooLarge`] over the limit, [`Problem::MalformedJson`] when it does not parse.
pub async fn read_json(req: &HttpRequest, payload: web::Payload, limit: usize) -> Result<Value, Problem> {
    parse_json(&read_bytes(req, payload, limit).await?)
}

/// Parses a body or a form field as JSON: numbers keep their text, and a number with a fraction
/// or an exponent beyond `f64`'s range (`1e400`) is refused. Empty text reads as `null`.
///
/// # Errors
/// [`Problem::MalformedJson`] when it does not parse.
pub fn parse_json(body: &[u8]) -> Result<Value, Problem> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    // serde_json checks the text (and words the errors); numbers are then read again keeping their
    // text exactly as sent (`1E16` stays `1E16`), which serde_json's own reading does not.
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map_err(|e| Problem::MalformedJson(e.to_string()))?;
    let text = std::str::from_utf8(body).map_err(|e| Problem::MalformedJson(e.to_string()))?;
    let value = prefs_domain::parse_exact(text).map_err(|e| Problem::MalformedJson(e.to_string()))?;
    if prefs_domain::out_of_range_number(&value) {
        return Err(Problem::MalformedJson("number out of range".to_owned()));
    }
    Ok(value)
}

/// Reads the whole body, refusing more than `limit` bytes (declared or sent), within the body
/// deadline ([`Deadlines::body`], counted from here).
///
/// # Errors
/// [`Problem::PayloadTooLarge`] over the limit, [`Problem::MalformedJson`] when it cannot be read,
/// [`Problem::BodyTimeout`] (logged) when it is not whole by the deadline.
pub async fn read_bytes(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, Problem> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(Problem::PayloadTooLarge(limit));
    }
    let deadline = req
        .app_data::<web::Data<AppState>>()
        .map_or_else(|| Deadlines::default().body, |state| state.traffic.deadlines.body);
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024));
    match tokio::time::timeout(deadline, read_into(&mut body, &mut payload, limit)).await {
        Ok(read) => read.map(|()| body),
        Err(_) => {
            let request_id = request_id::current();
            tracing::warn!(%request_id, received = body.len(), ?declared, ?deadline, "request body too slow: 408");
            Err(Problem::BodyTimeout(deadline))
        }
    }
}

/// Appends the body's chunks to `body` until it ends, refusing more than `limit` bytes.
async fn read_into(
    body: &mut web::BytesMut,
    payload: &mut web::Payload,
    limit: usize,
) -> Result<(), Problem> {
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Problem::MalformedJson(format!("the body could not be read ({e})")))?;
        if body.len() + chunk.len() > limit {
            return Err(Problem::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(())
}

/// The fields of a form body, `application/x-www-form-urlencoded` or `multipart/form-data`, as
/// `(name, text)` in the order sent. The whole body is read first, within `limit`.
///
/// # Errors
/// As [`read_bytes`]; [`Problem::MalformedJson`] for a multipart body that does not parse or a
/// field that is not UTF-8.
pub async fn read_form(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    multipart: bool,
) -> Result<Vec<(String, String)>, Problem> {
    let bytes = read_bytes(req, payload, limit).await?.freeze();
    if !multipart {
        return Ok(url::form_urlencoded::parse(&bytes)
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect());
    }
    let malformed =
        |e: &dyn std::fmt::Display| Problem::MalformedJson(format!("a malformed multipart body ({e})"));
    let stream = futures_util::stream::once(async move { Ok::<_, actix_web::error::PayloadError>(bytes) });
    let mut parts = actix_multipart::Multipart::new(req.headers(), stream);
    let mut fields = Vec::new();
    while let Some(part) = parts.next().await {
        let mut part = part.map_err(|e| malformed(&e))?;
        let name = part.name().unwrap_or_default().to_owned();
        let mut content = Vec::new();
        while let Some(chunk) = part.next().await {
            content.extend_from_slice(&chunk.map_err(|e| malformed(&e))?);
        }
        let text = String::from_utf8(content).map_err(|e| malformed(&e))?;
        fields.push((name, text));
    }
    Ok(fields)
}
