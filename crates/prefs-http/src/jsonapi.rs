//! JSON:API error objects (docs/contract.md §3.4): the client namespace dialect's format, and the
//! format of everything outside the other dialects' routes.

use actix_web::http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::{Dialect, Problem};
use crate::request_id;

/// The JSON:API media type.
pub const MEDIA_TYPE: &str = "application/vnd.api+json";

/// The JSON:API error format.
pub struct JsonApi;

impl Dialect for JsonApi {
    fn body(problem: &Problem, status: StatusCode) -> (&'static str, Value) {
        (MEDIA_TYPE, errors(problem, status))
    }
}

/// A JSON:API error object.
#[derive(Debug, Serialize, ToSchema)]
pub struct JsonApiError {
    /// The request id (also in the `Request-Id` header).
    pub id: String,
    /// The HTTP status, as a string.
    pub status: String,
    /// A stable code: `unauthorized`, `forbidden`, `not-found`, `invalid-json`, `invalid-value`,
    /// `unsupported-media-type`, `payload-too-large`, `precondition-failed`, `method-not-allowed`,
    /// `conflict`, `too-many-requests`, `unavailable`, `internal`.
    pub code: String,
    /// The status's reason phrase.
    pub title: String,
    /// What went wrong.
    pub detail: String,
    /// The member at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<JsonApiSource>,
}

/// Where in the request body an error is.
#[derive(Debug, Serialize, ToSchema)]
pub struct JsonApiSource {
    /// A JSON Pointer (RFC 6901) to the member.
    pub pointer: String,
}

/// A JSON:API error document.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"errors": [{"id": "d4ls0fc5ts2rq3dp8qd0", "status": "403", "code": "forbidden",
    "title": "Forbidden", "detail": "You may not do this to this user's preferences."}]}))]
pub struct JsonApiErrors {
    /// The errors.
    pub errors: Vec<JsonApiError>,
}

/// The error document for `problem`: one object per invalid member, with its JSON Pointer.
pub fn errors(problem: &Problem, status: StatusCode) -> Value {
    let id = request_id::current();
    let object = |detail: &str, pointer: Option<String>| JsonApiError {
        id: id.clone(),
        status: status.as_str().to_owned(),
        code: problem.code(status).to_owned(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        detail: detail.to_owned(),
        source: pointer.map(|pointer| JsonApiSource { pointer }),
    };
    let errors = match problem.field_errors() {
        Some(fields) => fields
            .iter()
            .map(|f| {
                let pointer = (!f.field.is_empty()).then(|| format!("/{}", pointer_escape(&f.field)));
                object(&f.developer_message, pointer)
            })
            .collect(),
        None => vec![object(&problem.message(), None)],
    };
    serde_json::to_value(JsonApiErrors { errors }).unwrap_or_default()
}

/// Escapes a member name for a JSON Pointer (RFC 6901).
fn pointer_escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}
