//! The Open edX dialect (SPEC 3.1): `/api/user/v1/preferences/{username}[/]` and
//! `/api/user/v1/preferences/{username}/{key}`, over the global namespace. Values are strings.

use actix_web::http::{StatusCode, header};
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, HttpResponse, web};
use prefs_domain::{Action, ETag, Error, Namespace, Preference, UserRef, edx};
use serde_json::{Map, Value, json};

use crate::auth::Authenticated;
use crate::body::{self, JSON, MERGE_PATCH};
use crate::conditional::{self, preconditions, tagged};
use crate::error::{Dialect, Failure, Problem};
use crate::{AppState, read, resource};

/// The Open edX error format: `{developer_message, user_message}`, or `{field_errors: {...}}` for
/// validation errors naming members.
pub struct Edx;

impl Dialect for Edx {
    fn body(problem: &Problem, status: StatusCode) -> (&'static str, Value) {
        let message =
            |developer: &str, user: &str| json!({ "developer_message": developer, "user_message": user });
        let body = match problem {
            Problem::Domain(Error::Invalid(errors)) if errors.iter().all(|e| !e.field.is_empty()) => {
                let fields: Map<String, Value> = errors
                    .iter()
                    .map(|e| (e.field.clone(), message(&e.developer_message, &e.user_message)))
                    .collect();
                json!({ "field_errors": fields })
            }
            Problem::Flat(error) => message(&error.developer_message, &error.user_message),
            Problem::Domain(Error::Invalid(errors)) => {
                message(&errors[0].developer_message, &errors[0].user_message)
            }
            other => message(&other.message(), user_message(status)),
        };
        ("application/json", body)
    }
}

/// What an end user may be told for a non-validation error.
fn user_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "You must sign in.",
        StatusCode::FORBIDDEN => "You are not allowed to change this user's preferences.",
        StatusCode::NOT_FOUND => "Not found.",
        StatusCode::PRECONDITION_FAILED => "The preferences have changed; reload and try again.",
        StatusCode::SERVICE_UNAVAILABLE => "The service is unavailable; please try again later.",
        status if status.is_server_error() => "Something went wrong; please try again later.",
        _ => "The request could not be processed.",
    }
}

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    let vary = || DefaultHeaders::new().add((header::VARY, "Accept"));
    cfg.service(
        web::scope("/api/user/v1")
            .wrap(vary())
            .service(
                resource::<Edx>("/preferences/{username}", "GET, HEAD, PATCH, OPTIONS")
                    .route(read().to(get_all))
                    .route(web::patch().to(patch)),
            )
            .service(
                resource::<Edx>("/preferences/{username}/", "GET, HEAD, PATCH, OPTIONS")
                    .route(read().to(get_all))
                    .route(web::patch().to(patch)),
            )
            .service(
                resource::<Edx>("/preferences/{username}/{key}", "GET, HEAD, PUT, DELETE, OPTIONS")
                    .route(read().to(get_one))
                    .route(web::put().to(put))
                    .route(web::delete().to(delete)),
            )
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(Failure::<Edx>::from(Problem::NoRoute))
            })),
    );
}

/// How a stored value shows in this dialect, where values are strings: a string as itself, any
/// other JSON value (written through another dialect) as its compact JSON text.
fn as_edx_string(preference: Preference) -> String {
    match preference.value.into_json() {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// `GET /api/user/v1/preferences/{username}`: every global preference as `{"key": "value"}`.
async fn get_all(
    auth: Authenticated<Edx>,
    state: web::Data<AppState>,
    username: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Edx>> {
    let target = UserRef::Username(username.into_inner());
    let preferences = state.service.namespace(&auth.actor, &target, &Namespace::Global).await?;
    let etag = ETag::of_namespace(&preferences);
    let map: Map<String, Value> = preferences
        .into_iter()
        .map(|p| (p.key.as_str().to_owned(), Value::String(as_edx_string(p))))
        .collect();
    Ok(conditional::read(&req, &etag, &map)?)
}

/// `PATCH /api/user/v1/preferences/{username}`: a merge patch of string values; 204.
async fn patch(
    auth: Authenticated<Edx>,
    state: web::Data<AppState>,
    username: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Failure<Edx>> {
    let target = owner(&state, &auth, username.into_inner()).await?;
    body::require_content_type(&req, MERGE_PATCH)?;
    let body = body::read_json(&req, payload, state.service.limits().max_body_bytes).await?;
    let patch = edx::normalize_patch(&body)?;
    let after = state
        .service
        .merge_patch(&auth.actor, &target, &Namespace::Global, &patch, &preconditions(&req))
        .await?;
    Ok(tagged(HttpResponse::NoContent(), &ETag::of_namespace(&after)).finish())
}

/// `GET /api/user/v1/preferences/{username}/{key}`: the value as a JSON string.
async fn get_one(
    auth: Authenticated<Edx>,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Edx>> {
    let (username, key) = path.into_inner();
    let preference =
        state.service.preference(&auth.actor, &UserRef::Username(username), &Namespace::Global, &key).await?;
    let etag = ETag::of_preference(&preference);
    Ok(conditional::read(&req, &etag, &as_edx_string(preference))?)
}

/// `PUT /api/user/v1/preferences/{username}/{key}`: sets one value; 204. Errors are flat.
async fn put(
    auth: Authenticated<Edx>,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Failure<Edx>> {
    let (username, key) = path.into_inner();
    let target = owner(&state, &auth, username).await?;
    body::require_content_type(&req, JSON)?;
    let body = body::read_json(&req, payload, state.service.limits().max_body_bytes).await?;
    let flat = |error: Error| match error {
        Error::Invalid(mut errors) if !errors.is_empty() => Problem::Flat(errors.swap_remove(0)),
        other => Problem::Domain(other),
    };
    let key_checked = prefs_domain::merge_patch::parse_key(&key).map_err(Problem::Flat)?;
    let value = edx::normalize_value(key_checked.as_str(), &body).map_err(Problem::Flat)?;
    let stored = state
        .service
        .put(&auth.actor, &target, &Namespace::Global, &key, Value::String(value), &preconditions(&req))
        .await
        .map_err(flat)?;
    Ok(tagged(HttpResponse::NoContent(), &ETag::of_preference(&stored)).finish())
}

/// `DELETE /api/user/v1/preferences/{username}/{key}`: 204, or 404 when the key is not set.
async fn delete(
    auth: Authenticated<Edx>,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Edx>> {
    let (username, key) = path.into_inner();
    let target = UserRef::Username(username);
    state.service.delete(&auth.actor, &target, &Namespace::Global, &key, &preconditions(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Resolves the user a write is for before the body is looked at, so that a hidden user is a 404
/// and a staff write a 403 whatever the body holds.
async fn owner(
    state: &AppState,
    auth: &Authenticated<Edx>,
    username: String,
) -> Result<UserRef, Failure<Edx>> {
    let user = state.service.user(&auth.actor, &UserRef::Username(username), Action::Write).await?;
    Ok(UserRef::Id(user.id))
}
