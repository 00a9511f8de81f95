//! The Open edX dialect (docs/contract.md §3.1): `/api/user/v1/preferences/{username}[/]` and
//! `/api/user/v1/preferences/{username}/{key}`, over the global namespace. Values are strings.

use std::collections::BTreeMap;

use actix_web::http::{StatusCode, header};
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, HttpResponse, web};
use prefs_domain::edx::{self, Python};
use prefs_domain::{Action, ETag, Error, Namespace, PreferenceValue, UserRef};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use utoipa::{IntoParams, IntoResponses, ToSchema};

use crate::authenticated::Authenticated;
use crate::body::{self, JSON, MERGE_PATCH};
use crate::conditional::{self, preconditions, tagged};
use crate::csrf;
use crate::error::{Dialect, Failure, Problem};
use crate::object::Object;
use crate::routing::{Handler, Resource, Verb};
use crate::schemas::{EdxPatch, EdxValue};
use crate::state::AppState;

/// The list's methods, at both of its paths.
const LIST: &[(Verb, Handler)] =
    &[(Verb::Get, |route| route.to(get_all)), (Verb::Patch, |route| route.to(patch))];

/// The dialect's route table: the list, without and with the trailing slash Open edX clients and
/// documents use, one preference, and Open edX's CSRF token API (docs/contract.md §2.7).
pub(crate) const RESOURCES: &[Resource] = &[
    Resource::new("/api/user/v1/preferences/{username}", LIST),
    Resource::alias("/api/user/v1/preferences/{username}/", LIST),
    Resource::new(
        "/api/user/v1/preferences/{username}/{key}",
        &[
            (Verb::Get, |route| route.to(get_one)),
            (Verb::Put, |route| route.to(put)),
            (Verb::Delete, |route| route.to(delete)),
        ],
    ),
    Resource::new(csrf::CSRF_TOKEN, &[(Verb::Get, |route| route.to(csrf::csrf_token))]),
];

/// The path parameters of the list routes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct EdxUserPath {
    /// The user, percent-encoded
    username: String,
}

/// The path parameters of the one-preference routes: the user, as in [`EdxUserPath`] (and
/// documented there), and the key.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct EdxKeyPath {
    #[param(ignore)]
    username: String,
    /// The preference key, percent-encoded: at most 255 characters, one of them from `[-_a-zA-Z0-9]`
    #[param(
        max_length = 255,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[-_a-zA-Z0-9][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    key: String,
}

/// An Open edX error.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"developer_message": "No such user.", "user_message": "Not found."}))]
pub struct EdxMessage {
    /// What a developer should know.
    pub developer_message: String,
    /// What an end user may be shown.
    pub user_message: String,
}

/// An Open edX error body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EdxError {
    /// Validation errors naming members.
    Fields(EdxFieldErrors),
    /// Anything else.
    Message(EdxMessage),
}

/// Open edX validation errors, one per bad member.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"field_errors": {"time_zone": {
    "developer_message": "Value 'Mars/Base' not valid for preference 'time_zone': Not in timezone set.",
    "user_message": "Value 'Mars/Base' is not a valid time zone selection."}}}))]
pub struct EdxFieldErrors {
    /// By preference key.
    pub field_errors: BTreeMap<String, EdxMessage>,
}

/// The errors any Open edX operation may answer.
#[derive(IntoResponses)]
#[expect(dead_code, reason = "describes responses in the OpenAPI document; errors are built from `Problem`")]
enum EdxReadErrors {
    #[response(status = 401, description = "No valid token")]
    Unauthorized(EdxMessage),
    #[response(
        status = 404,
        description = "Unknown user, another user's preferences without a role, or an unknown key"
    )]
    NotFound(EdxMessage),
    #[response(status = 412, description = "If-Match does not hold")]
    PreconditionFailed(EdxMessage),
    #[response(status = 429, description = "Over a rate limit", headers(("Retry-After" = u64, description = "Whole seconds until a request would pass")))]
    TooManyRequests(EdxMessage),
    #[response(status = 503, description = "Database unavailable")]
    Unavailable(EdxMessage),
}

/// The further errors of operations that take a body, beside [`EdxReadErrors`].
#[derive(IntoResponses)]
#[expect(dead_code, reason = "describes responses in the OpenAPI document; errors are built from `Problem`")]
enum EdxBodyErrors {
    #[response(
        status = 400,
        description = "Malformed JSON, no data, an invalid key or value: `field_errors` for a PATCH, flat otherwise"
    )]
    BadRequest(EdxError),
    #[response(status = 403, description = "Staff writing another user's preferences")]
    Forbidden(EdxMessage),
    #[response(
        status = 408,
        description = "The body did not arrive whole within the body deadline; the connection is closed"
    )]
    RequestTimeout(EdxMessage),
    #[response(status = 413, description = "Body over the limit")]
    TooLarge(EdxMessage),
    #[response(status = 415, description = "Wrong content type")]
    UnsupportedMediaType(EdxMessage),
}

/// The Open edX error format: `{developer_message, user_message}`, or `{field_errors: {...}}` for
/// validation errors naming members.
pub struct Edx;

impl Dialect for Edx {
    fn body(problem: &Problem, status: StatusCode) -> (&'static str, Value) {
        let message = |developer: &str, user: &str| EdxMessage {
            developer_message: developer.to_owned(),
            user_message: user.to_owned(),
        };
        let body = match problem {
            Problem::Domain(Error::Invalid(errors)) if errors.iter().all(|e| !e.field.is_empty()) => {
                let field_errors = errors
                    .iter()
                    .map(|e| (e.field.clone(), message(&e.developer_message, &e.user_message)))
                    .collect();
                EdxError::Fields(EdxFieldErrors { field_errors })
            }
            Problem::Flat(error) => EdxError::Message(message(&error.developer_message, &error.user_message)),
            Problem::Domain(Error::Invalid(errors)) => {
                EdxError::Message(message(&errors[0].developer_message, &errors[0].user_message))
            }
            other => EdxError::Message(message(&other.message(), user_message(status))),
        };
        ("application/json", serde_json::to_value(body).unwrap_or_default())
    }
}

/// What an end user may be told for a non-validation error.
fn user_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "You must sign in.",
        StatusCode::FORBIDDEN => "You are not allowed to change this user's preferences.",
        StatusCode::NOT_FOUND => "Not found.",
        StatusCode::REQUEST_TIMEOUT => "The request took too long to arrive; please try again.",
        StatusCode::PRECONDITION_FAILED => "The preferences have changed; reload and try again.",
        StatusCode::SERVICE_UNAVAILABLE => "The service is unavailable; please try again later.",
        StatusCode::TOO_MANY_REQUESTS => "Too many requests; please try again later.",
        status if status.is_server_error() => "Something went wrong; please try again later.",
        _ => "The request could not be processed.",
    }
}

/// Registers [`RESOURCES`], and Open edX's 404 for any other path under its prefix.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    let vary = || DefaultHeaders::new().add((header::VARY, "Accept"));
    for resource in RESOURCES {
        cfg.service(resource.service::<Edx>(resource.path).wrap(vary()));
    }
    cfg.service(
        web::resource("/api/user/v1/{tail:.*}")
            .wrap(vary())
            .to(|| async { Err::<HttpResponse, _>(Failure::<Edx>::from(Problem::NoRoute)) }),
    );
}

/// How a stored value shows in this dialect, where values are strings: a string as itself, any
/// other JSON value (written through another dialect) as its compact JSON text. Written from the
/// value's text, which for a string already is the JSON string: nothing is parsed.
struct EdxText<'a>(&'a PreferenceValue);

impl Serialize for EdxText<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.0.as_json_text();
        if text.starts_with('"') { self.0.serialize(serializer) } else { serializer.serialize_str(text) }
    }
}

/// Every global preference of the user.
///
/// The answer is an object of string values, `{"key": "value"}`. The same operation is served with
/// a trailing slash.
#[utoipa::path(get, operation_id = "edx_get_all", path = "/api/user/v1/preferences/{username}", tag = "Open edX",
    params(EdxUserPath),
    responses(
        (status = 200, description = "The preferences; values are strings", body = BTreeMap<String, String>,
            example = json!({"pref-lang": "fr", "time_zone": "Europe/Paris"})),
        (status = 304, description = "Not modified (If-None-Match)"),
        EdxReadErrors),
    security(("bearer" = [])))]
pub(crate) async fn get_all(
    auth: Authenticated<Edx>,
    state: web::Data<AppState>,
    path: web::Path<EdxUserPath>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Edx>> {
    let target = UserRef::Username(path.into_inner().username);
    let preferences = state.service.namespace(&auth.actor, &target, &Namespace::Global).await?;
    let etag = ETag::of_namespace(&preferences);
    Ok(conditional::read(&req, &etag, &Object::new(&preferences, EdxText))?)
}

/// Sets and deletes several preferences at once.
///
/// An RFC 7396 merge patch: `null` deletes (its key is not validated); any other value is stored
/// as the string Python's `str()` gives for it (`true` as `"True"`, `{"a": null}` as
/// `"{'a': None}"`), as Open edX stores it; all or nothing.
#[utoipa::path(patch, operation_id = "edx_patch", path = "/api/user/v1/preferences/{username}", tag = "Open edX",
    params(EdxUserPath),
    request_body(content = EdxPatch, content_type = "application/merge-patch+json",
        example = json!({"pref-lang": "fr", "old-key": null})),
    responses(
        (status = 204, description = "Written"),
        EdxReadErrors,
        EdxBodyErrors),
    security(("bearer" = [])))]
pub(crate) async fn patch(
    auth: Authenticated<Edx>,
    state: web::Data<AppState>,
    path: web::Path<EdxUserPath>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Failure<Edx>> {
    let target = owner(&state, &auth, path.into_inner().username).await?;
    body::require_content_type(&req, MERGE_PATCH)?;
    let text = json_text(&req, payload, &state).await?;
    let patch = edx::normalize_patch(&text)?;
    let after = state
        .service
        .merge_patch(&auth.actor, &target, &Namespace::Global, &patch, &preconditions(&req))
        .await?;
    Ok(tagged(HttpResponse::NoContent(), &ETag::of_namespace(&after)).finish())
}

/// One preference.
///
/// The answer is the value as a JSON string.
#[utoipa::path(get, operation_id = "edx_get_one", path = "/api/user/v1/preferences/{username}/{key}", tag = "Open edX",
    params(EdxUserPath, EdxKeyPath),
    responses(
        (status = 200, description = "The value", body = String, content_type = "application/json", example = json!("fr")),
        (status = 304, description = "Not modified (If-None-Match)"),
        EdxReadErrors),
    security(("bearer" = [])))]
pub(crate) async fn get_one(
    auth: Authenticated<Edx>,
    state: web::Data<AppState>,
    path: web::Path<EdxKeyPath>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Edx>> {
    let EdxKeyPath { username, key } = path.into_inner();
    let preference =
        state.service.preference(&auth.actor, &UserRef::Username(username), &Namespace::Global, &key).await?;
    let etag = ETag::of_preference(&preference);
    Ok(conditional::read(&req, &etag, &EdxText(&preference.value))?)
}

/// Creates or updates one preference.
///
/// The body is the JSON value: a string (trimmed), or any other value but `null`, stored as the
/// string Python's `str()` gives for it (`5` as `"5"`, `true` as `"True"`). Errors are flat.
#[utoipa::path(put, operation_id = "edx_put", path = "/api/user/v1/preferences/{username}/{key}", tag = "Open edX",
    params(EdxUserPath, EdxKeyPath),
    request_body(content = EdxValue, content_type = "application/json", example = json!("en")),
    responses(
        (status = 204, description = "Written"),
        EdxReadErrors,
        EdxBodyErrors),
    security(("bearer" = [])))]
pub(crate) async fn put(
    auth: Authenticated<Edx>,
    state: web::Data<AppState>,
    path: web::Path<EdxKeyPath>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Failure<Edx>> {
    let EdxKeyPath { username, key } = path.into_inner();
    let target = owner(&state, &auth, username).await?;
    body::require_content_type(&req, JSON)?;
    let text = json_text(&req, payload, &state).await?;
    let value = if text.is_empty() {
        Python::None
    } else {
        Python::from_json(&text).map_err(|e| Problem::MalformedJson(e.to_string()))?
    };
    let (key, value) = edx::normalize_member(&key, &value).map_err(Problem::Flat)?;
    let stored = state
        .service
        .put(
            &auth.actor,
            &target,
            &Namespace::Global,
            key.as_str(),
            Value::String(value),
            &preconditions(&req),
        )
        .await
        .map_err(flat)?;
    Ok(tagged(HttpResponse::NoContent(), &ETag::of_preference(&stored)).finish())
}

/// Deletes one preference.
#[utoipa::path(delete, operation_id = "edx_delete", path = "/api/user/v1/preferences/{username}/{key}", tag = "Open edX",
    params(EdxUserPath, EdxKeyPath),
    responses(
        (status = 204, description = "Deleted"),
        EdxReadErrors,
        EdxBodyErrors),
    security(("bearer" = [])))]
pub(crate) async fn delete(
    auth: Authenticated<Edx>,
    state: web::Data<AppState>,
    path: web::Path<EdxKeyPath>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Edx>> {
    let EdxKeyPath { username, key } = path.into_inner();
    let target = UserRef::Username(username);
    state
        .service
        .delete(&auth.actor, &target, &Namespace::Global, &key, &preconditions(&req))
        .await
        .map_err(flat)?;
    Ok(HttpResponse::NoContent().finish())
}

/// The body's text, once it is known to be JSON (or empty): Open edX's values are converted from
/// the text ([`edx::Python`]), so that numbers and the order of members are as sent.
async fn json_text(req: &HttpRequest, payload: web::Payload, state: &AppState) -> Result<String, Problem> {
    let bytes = body::read_bytes(req, payload, state.service.limits().max_body_bytes).await?;
    body::parse_json(&bytes)?;
    String::from_utf8(bytes.to_vec()).map_err(|e| Problem::MalformedJson(e.to_string()))
}

/// The single-preference routes answer validation errors flat, not as `field_errors`.
fn flat(error: Error) -> Problem {
    match error {
        Error::Invalid(mut errors) if !errors.is_empty() => Problem::Flat(errors.swap_remove(0)),
        other => Problem::Domain(other),
    }
}

/// Decides access for a write before the body is looked at (docs/contract.md §4.3), so that a
/// hidden user is a 404 and a staff write a 403 whatever the body holds.
async fn owner(
    state: &AppState,
    auth: &Authenticated<Edx>,
    username: String,
) -> Result<UserRef, Failure<Edx>> {
    let target = UserRef::Username(username);
    let user = state.service.authorize(&auth.actor, &target, &Namespace::Global, Action::Write).await?;
    Ok(UserRef::Known(user))
}
