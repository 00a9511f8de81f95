//! JSON:API error objects (SPEC 3.4): the client namespace dialect's format, and the format of
//! everything outside the other dialects' routes.

use actix_web::http::StatusCode;
use serde_json::{Value, json};

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

/// `{"errors":[...]}` for `problem`: one object per invalid member, with its JSON Pointer.
pub fn errors(problem: &Problem, status: StatusCode) -> Value {
    let id = request_id::current();
    let object = |code: &str, detail: &str, pointer: Option<String>| {
        let mut error = json!({
            "id": id,
            "status": status.as_str(),
            "code": code,
            "title": status.canonical_reason().unwrap_or("Error"),
            "detail": detail,
        });
        if let Some(pointer) = pointer {
            error["source"] = json!({ "pointer": pointer });
        }
        error
    };
    let list: Vec<Value> = match problem.field_errors() {
        Some(fields) => fields
            .iter()
            .map(|f| {
                let pointer = (!f.field.is_empty()).then(|| format!("/{}", pointer_escape(&f.field)));
                object(problem.code(status), &f.developer_message, pointer)
            })
            .collect(),
        None => vec![object(problem.code(status), &problem.message(), None)],
    };
    json!({ "errors": list })
}

/// Escapes a member name for a JSON Pointer (RFC 6901).
fn pointer_escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}
