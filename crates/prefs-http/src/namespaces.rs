//! The client namespace dialect (docs/contract.md §3.3), as PACE's user API app preferences:
//! `/preferences/{clientId}[/{key}]`, one JSON object per user and client application, with
//! JSON:API errors.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use prefs_domain::{
    Action, ClientId, ETag, Error, FieldCode, FieldError, Namespace, Preference, PreferenceValue, UserId,
    UserRef,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, IntoResponses};

use crate::authenticated::Authenticated;
use crate::body::{self, JSON, JSON_API, MERGE_PATCH};
use crate::conditional::{self, preconditions, tagged};
use crate::error::{Dialect, Failure, Problem};
use crate::jsonapi::{self, JsonApiErrors, MEDIA_TYPE};
use crate::object::Object;
use crate::routing::{Handler, Resource, Verb};
use crate::schemas::{NamespaceBody, PreferenceJson};
use crate::state::AppState;

/// A namespace's methods, at each of its paths.
const NAMESPACE: &[(Verb, Handler)] = &[
    (Verb::Get, |route| route.to(get_all)),
    (Verb::Put, |route| route.to(put_all)),
    (Verb::Patch, |route| route.to(patch)),
    (Verb::Delete, |route| route.to(delete_all)),
];
/// A member's methods, at each of its paths.
const MEMBER: &[(Verb, Handler)] = &[
    (Verb::Get, |route| route.to(get_one)),
    (Verb::Put, |route| route.to(put_one)),
    (Verb::Delete, |route| route.to(delete_one)),
];
/// The dialect's route table: a client's namespace and one member of it, and the same two under
/// PACE's base path ([`VERSIONED_BASE`]), where `{version}` is `YYYY-N`.
pub(crate) const RESOURCES: &[Resource] = &[
    Resource::new("/preferences/{client_id}", NAMESPACE),
    Resource::new("/preferences/{client_id}/{key}", MEMBER),
    Resource::new("/user/{version}/preferences/{client_id}", NAMESPACE),
    Resource::new("/user/{version}/preferences/{client_id}/{key}", MEMBER),
];
/// The base path PACE versions its API under, as documented routes spell it.
pub(crate) const VERSIONED_BASE: &str = "/user/{version}";
/// What `{version}` matches: PACE's `YYYY-N` (`2025-1`); any other is no route (404).
pub(crate) const VERSION_PATTERN: &str = r"\d{4}-\d+";

/// The content types a `PUT` takes: JSON, as `application/json` or JSON:API's media type.
const PUT_TYPES: &[&str] = &[JSON, JSON_API];
const PUT_TYPES_NAMED: &str = "application/json or application/vnd.api+json";
/// The content types a `PATCH` takes: a merge patch, as such or as JSON:API's media type.
const PATCH_TYPES: &[&str] = &[MERGE_PATCH, JSON_API];
const PATCH_TYPES_NAMED: &str = "application/merge-patch+json or application/vnd.api+json";

/// The path parameters of a namespace route (`{version}` is matched by the route and unused).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct NamespacePath {
    /// The client application's id, percent-encoded: 1 to 255 bytes without control characters, not `global`
    #[param(min_length = 1, max_length = 255, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    client_id: String,
}

/// The path parameters of a member route: the namespace, as in [`NamespacePath`] (and documented
/// there), and the member's key.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct MemberPath {
    #[param(ignore)]
    client_id: String,
    /// The member, percent-encoded: 1 to 255 bytes without control characters
    #[param(min_length = 1, max_length = 255, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    key: String,
}

/// The query parameter of every namespace route, read by [`target`] (which tells a malformed or
/// repeated one apart from an absent one).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(dead_code, reason = "describes the query in the OpenAPI document; `target` reads it")]
struct ActingFor {
    /// Act for this user (admin: read and write; staff: read)
    user_id: Option<i64>,
}

/// The errors any namespace operation may answer.
#[derive(IntoResponses)]
#[expect(dead_code, reason = "describes responses in the OpenAPI document; errors are built from `Problem`")]
enum NamespaceReadErrors {
    #[response(
        status = 400,
        description = "A query parameter given more than once",
        content_type = "application/vnd.api+json"
    )]
    BadRequest(JsonApiErrors),
    #[response(status = 401, description = "No valid token", content_type = "application/vnd.api+json")]
    Unauthorized(JsonApiErrors),
    #[response(
        status = 403,
        description = "Missing scope, another client's namespace without its scope, or staff writing",
        content_type = "application/vnd.api+json"
    )]
    Forbidden(JsonApiErrors),
    #[response(
        status = 404,
        description = "`global`, an unknown member, or another user without a role",
        content_type = "application/vnd.api+json"
    )]
    NotFound(JsonApiErrors),
    #[response(
        status = 412,
        description = "If-Match / If-None-Match does not hold",
        content_type = "application/vnd.api+json"
    )]
    PreconditionFailed(JsonApiErrors),
    #[response(
        status = 429,
        description = "Over a rate limit",
        content_type = "application/vnd.api+json",
        headers(("Retry-After" = u64, description = "Whole seconds until a request would pass"))
    )]
    TooManyRequests(JsonApiErrors),
    #[response(
        status = 501,
        description = "Internal error (as PACE documents it)",
        content_type = "application/vnd.api+json"
    )]
    Internal(JsonApiErrors),
    #[response(status = 503, description = "Database unavailable", content_type = "application/vnd.api+json")]
    Unavailable(JsonApiErrors),
}

/// The further errors of operations that take a body, beside [`NamespaceReadErrors`].
#[derive(IntoResponses)]
#[expect(dead_code, reason = "describes responses in the OpenAPI document; errors are built from `Problem`")]
enum NamespaceBodyErrors {
    #[response(
        status = 400,
        description = "Malformed JSON, not an object, an invalid key, or a query parameter given more than once",
        content_type = "application/vnd.api+json"
    )]
    BadRequest(JsonApiErrors),
    #[response(
        status = 408,
        description = "The body did not arrive whole within the body deadline; the connection is closed",
        content_type = "application/vnd.api+json"
    )]
    RequestTimeout(JsonApiErrors),
    #[response(
        status = 413,
        description = "Body, key or value over its limit, or too many keys",
        content_type = "application/vnd.api+json"
    )]
    TooLarge(JsonApiErrors),
    #[response(status = 415, description = "Wrong content type", content_type = "application/vnd.api+json")]
    UnsupportedMediaType(JsonApiErrors),
}

/// JSON:API errors with PACE's statuses: limits are 413, internal errors 501.
pub struct Namespaces;

impl Dialect for Namespaces {
    fn status(problem: &Problem) -> StatusCode {
        let over_limit = |errors: &[FieldError]| errors.iter().any(|e| e.code == FieldCode::TooLarge);
        match problem {
            Problem::Domain(Error::TooManyKeys { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Problem::Domain(Error::Invalid(errors)) if over_limit(errors) => StatusCode::PAYLOAD_TOO_LARGE,
            Problem::Domain(Error::Internal(_)) => StatusCode::NOT_IMPLEMENTED,
            other => other.status(),
        }
    }

    fn body(problem: &Problem, status: StatusCode) -> (&'static str, Value) {
        (MEDIA_TYPE, jsonapi::errors(problem, status))
    }
}

/// Registers [`RESOURCES`], `{version}` as the router matches it ([`pattern`]).
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    for resource in RESOURCES {
        cfg.service(resource.service::<Namespaces>(pattern(resource.path)));
    }
}

/// The router's pattern of a route: `{version}` matches [`VERSION_PATTERN`] only.
fn pattern(path: &str) -> String {
    path.replace("{version}", &format!("{{version:{VERSION_PATTERN}}}"))
}

/// The namespace of the path (`global` and malformed ids name no namespace: 404) and the user:
/// the actor, or `?user_id=` (an integer; anything else names no user; given twice, 400).
fn target(client_id: &str, req: &HttpRequest) -> Result<(Namespace, UserRef), Problem> {
    let namespace = ClientId::parse(client_id).map(Namespace::Client).map_err(|_| Problem::NoRoute)?;
    let user = match crate::query::single(req.query_string(), &["user_id"])?.remove("user_id") {
        None => UserRef::Me,
        Some(id) => id.parse().map(|id| UserRef::Id(UserId(id))).map_err(|_| Error::UserNotFound)?,
    };
    Ok((namespace, user))
}

/// [`target`], with access to it decided for a write before the body is read (docs/contract.md
/// §4.3): the user comes back as [`UserRef::Known`].
async fn writable_target(
    state: &AppState,
    auth: &Authenticated<Namespaces>,
    client_id: &str,
    req: &HttpRequest,
) -> Result<(Namespace, UserRef), Problem> {
    let (namespace, user) = target(client_id, req)?;
    let user = state.service.authorize(&auth.actor, &user, &namespace, Action::Write).await?;
    Ok((namespace, UserRef::Known(user)))
}

/// The namespace as one JSON object.
fn object(preferences: &[Preference]) -> Object<'_, &PreferenceValue> {
    Object::new(preferences, |value| value)
}

/// A request body that must be a JSON object.
async fn object_body(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    (accepted, named): (&[&str], &'static str),
) -> Result<Map<String, Value>, Problem> {
    body::require_content_type_in(req, accepted, named)?;
    match body::read_json(req, payload, state.service.limits().max_body_bytes).await? {
        Value::Object(members) => Ok(members),
        _ => Err(Error::invalid(FieldError::new(
            "",
            FieldCode::InvalidValue,
            "The body must be a JSON object.",
        ))
        .into()),
    }
}

/// The user's namespace of this client.
///
/// One JSON object, `{}` if never set.
#[utoipa::path(get, operation_id = "namespace_get_all", path = "/preferences/{client_id}", tag = "Client namespaces", 
    params(NamespacePath, ActingFor),
    responses(
        (status = 200, description = "The namespace", body = Object, example = json!({"sidebar": {"open": true}, "recent": ["a"]})),
        (status = 304, description = "Not modified (If-None-Match)"),
        NamespaceReadErrors),
    security(("bearer" = ["user:preferences:read"])))]
pub(crate) async fn get_all(
    auth: Authenticated<Namespaces>,
    state: web::Data<AppState>,
    path: web::Path<NamespacePath>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Namespaces>> {
    let (namespace, user) = target(&path.client_id, &req)?;
    let preferences = state.service.namespace(&auth.actor, &user, &namespace).await?;
    let etag = ETag::of_namespace(&preferences);
    Ok(conditional::read(&req, &etag, &object(&preferences))?)
}

/// Replaces the whole namespace.
///
/// A `null` member means the key is absent.
#[utoipa::path(put, operation_id = "namespace_put_all", path = "/preferences/{client_id}", tag = "Client namespaces", 
    params(NamespacePath, ActingFor),
    request_body(content(
        (NamespaceBody = "application/json", example = json!({"sidebar": {"open": true}})),
        (NamespaceBody = "application/vnd.api+json", example = json!({"sidebar": {"open": true}})))),
    responses(
        (status = 204, description = "Replaced"),
        NamespaceReadErrors,
        NamespaceBodyErrors),
    security(("bearer" = ["user:preferences:write"])))]
pub(crate) async fn put_all(
    auth: Authenticated<Namespaces>,
    state: web::Data<AppState>,
    path: web::Path<NamespacePath>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Failure<Namespaces>> {
    let (namespace, user) = writable_target(&state, &auth, &path.client_id, &req).await?;
    let members = object_body(&state, &req, payload, (PUT_TYPES, PUT_TYPES_NAMED)).await?;
    let after = state.service.replace(&auth.actor, &user, &namespace, &members, &preconditions(&req)).await?;
    Ok(tagged(HttpResponse::NoContent(), &ETag::of_namespace(&after)).finish())
}

/// Merges a patch into the namespace.
///
/// An RFC 7396 merge patch: `null` deletes, objects merge. Answers the merged object. An extension
/// of PACE's API.
#[utoipa::path(patch, operation_id = "namespace_patch", path = "/preferences/{client_id}", tag = "Client namespaces", 
    params(NamespacePath, ActingFor),
    request_body(content(
        (NamespaceBody = "application/merge-patch+json", example = json!({"sidebar": {"width": null}})),
        (NamespaceBody = "application/vnd.api+json", example = json!({"sidebar": {"width": null}})))),
    responses(
        (status = 200, description = "The merged namespace", body = Object),
        NamespaceReadErrors,
        NamespaceBodyErrors),
    security(("bearer" = ["user:preferences:write"])))]
pub(crate) async fn patch(
    auth: Authenticated<Namespaces>,
    state: web::Data<AppState>,
    path: web::Path<NamespacePath>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Failure<Namespaces>> {
    let (namespace, user) = writable_target(&state, &auth, &path.client_id, &req).await?;
    let patch = object_body(&state, &req, payload, (PATCH_TYPES, PATCH_TYPES_NAMED)).await?;
    let after =
        state.service.merge_patch(&auth.actor, &user, &namespace, &patch, &preconditions(&req)).await?;
    Ok(tagged(HttpResponse::Ok(), &ETag::of_namespace(&after)).json(object(&after)))
}

/// Empties the namespace. An extension of PACE's API.
#[utoipa::path(delete, operation_id = "namespace_delete_all", path = "/preferences/{client_id}", tag = "Client namespaces", 
    params(NamespacePath, ActingFor),
    responses(
        (status = 204, description = "Emptied"),
        NamespaceReadErrors),
    security(("bearer" = ["user:preferences:write"])))]
pub(crate) async fn delete_all(
    auth: Authenticated<Namespaces>,
    state: web::Data<AppState>,
    path: web::Path<NamespacePath>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Namespaces>> {
    let (namespace, user) = target(&path.client_id, &req)?;
    state.service.replace(&auth.actor, &user, &namespace, &Map::new(), &preconditions(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// One member's value. An extension of PACE's API.
#[utoipa::path(get, operation_id = "namespace_get_one", path = "/preferences/{client_id}/{key}", tag = "Client namespaces", 
    params(NamespacePath, MemberPath, ActingFor),
    responses(
        (status = 200, description = "The value (any JSON)", body = PreferenceJson),
        (status = 304, description = "Not modified (If-None-Match)"),
        NamespaceReadErrors),
    security(("bearer" = ["user:preferences:read"])))]
pub(crate) async fn get_one(
    auth: Authenticated<Namespaces>,
    state: web::Data<AppState>,
    path: web::Path<MemberPath>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Namespaces>> {
    let MemberPath { client_id, key } = path.into_inner();
    let (namespace, user) = target(&client_id, &req)?;
    let preference = state.service.preference(&auth.actor, &user, &namespace, &key).await?;
    Ok(conditional::read(&req, &ETag::of_preference(&preference), &preference.value)?)
}

/// Sets one member.
///
/// The body is the value: any JSON but `null`, as `application/json` or
/// `application/vnd.api+json`. An extension of PACE's API.
#[utoipa::path(put, operation_id = "namespace_put_one", path = "/preferences/{client_id}/{key}", tag = "Client namespaces", 
    params(NamespacePath, MemberPath, ActingFor),
    request_body(content = PreferenceJson, description = "Any JSON but `null`; also taken as `application/vnd.api+json`",
        content_type = "application/json", example = json!("dark")),
    responses(
        (status = 204, description = "Written"),
        NamespaceReadErrors,
        NamespaceBodyErrors),
    security(("bearer" = ["user:preferences:write"])))]
pub(crate) async fn put_one(
    auth: Authenticated<Namespaces>,
    state: web::Data<AppState>,
    path: web::Path<MemberPath>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Failure<Namespaces>> {
    let MemberPath { client_id, key } = path.into_inner();
    let (namespace, user) = writable_target(&state, &auth, &client_id, &req).await?;
    body::require_content_type_in(&req, PUT_TYPES, PUT_TYPES_NAMED)?;
    let value = body::read_json(&req, payload, state.service.limits().max_body_bytes).await?;
    let stored = state.service.put(&auth.actor, &user, &namespace, &key, value, &preconditions(&req)).await?;
    Ok(tagged(HttpResponse::NoContent(), &ETag::of_preference(&stored)).finish())
}

/// Removes one member.
///
/// 204 also when it was not set. An extension of PACE's API.
#[utoipa::path(delete, operation_id = "namespace_delete_one", path = "/preferences/{client_id}/{key}", tag = "Client namespaces", 
    params(NamespacePath, MemberPath, ActingFor),
    responses(
        (status = 204, description = "Removed"),
        NamespaceReadErrors,
        NamespaceBodyErrors),
    security(("bearer" = ["user:preferences:write"])))]
pub(crate) async fn delete_one(
    auth: Authenticated<Namespaces>,
    state: web::Data<AppState>,
    path: web::Path<MemberPath>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Namespaces>> {
    let MemberPath { client_id, key } = path.into_inner();
    let (namespace, user) = target(&client_id, &req)?;
    match state.service.delete(&auth.actor, &user, &namespace, &key, &preconditions(&req)).await {
        Ok(()) | Err(Error::PreferenceNotFound) => Ok(HttpResponse::NoContent().finish()),
        Err(error) => Err(error.into()),
    }
}
