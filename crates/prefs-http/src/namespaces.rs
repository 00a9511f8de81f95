//! The client namespace dialect (SPEC 3.3), as PACE's user API app preferences:
//! `/preferences/{clientId}[/{key}]`, one JSON object per user and client application, with
//! JSON:API errors.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use prefs_domain::{ClientId, ETag, Error, Namespace, Preference, UserId, UserRef};
use serde_json::{Map, Value};

use crate::auth::Authenticated;
use crate::body::{self, JSON, MERGE_PATCH};
use crate::conditional::{self, preconditions, tagged};
use crate::error::{Dialect, Failure, Problem};
use crate::jsonapi::{self, MEDIA_TYPE};
use crate::{AppState, read, resource};

/// JSON:API errors with PACE's statuses: limits are 413, internal errors 501.
pub struct Namespaces;

impl Dialect for Namespaces {
    fn status(problem: &Problem) -> StatusCode {
        let over_limit = |errors: &[prefs_domain::FieldError]| errors.iter().any(|e| e.code == "too-large");
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

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource::<Namespaces>("/preferences/{client_id}", "GET, HEAD, PUT, PATCH, DELETE, OPTIONS")
            .route(read().to(get_all))
            .route(web::put().to(put_all))
            .route(web::patch().to(patch))
            .route(web::delete().to(delete_all)),
    )
    .service(
        resource::<Namespaces>("/preferences/{client_id}/{key}", "GET, HEAD, PUT, DELETE, OPTIONS")
            .route(read().to(get_one))
            .route(web::put().to(put_one))
            .route(web::delete().to(delete_one)),
    );
}

/// The namespace of the path (`global` and malformed ids name no namespace: 404) and the user:
/// the actor, or `?user_id=` (an integer; anything else names no user).
fn target(client_id: &str, req: &HttpRequest) -> Result<(Namespace, UserRef), Problem> {
    let namespace = ClientId::parse(client_id).map(Namespace::Client).map_err(|_| Problem::NoRoute)?;
    let user_id =
        url::form_urlencoded::parse(req.query_string().as_bytes()).find(|(name, _)| name == "user_id");
    let user = match user_id {
        None => UserRef::Me,
        Some((_, id)) => id.parse().map(|id| UserRef::Id(UserId(id))).map_err(|_| Error::UserNotFound)?,
    };
    Ok((namespace, user))
}

fn object(preferences: Vec<Preference>) -> Value {
    let members: Map<String, Value> =
        preferences.into_iter().map(|p| (p.key.as_str().to_owned(), p.value.into_json())).collect();
    Value::Object(members)
}

/// A request body that must be a JSON object.
async fn object_body(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    content_type: &'static str,
) -> Result<Map<String, Value>, Problem> {
    body::require_content_type(req, content_type)?;
    match body::read_json(req, payload, state.service.limits().max_body_bytes).await? {
        Value::Object(members) => Ok(members),
        _ => Err(Error::invalid(prefs_domain::FieldError::new(
            "",
            "invalid-value",
            "The body must be a JSON object.",
        ))
        .into()),
    }
}

/// `GET /preferences/{clientId}`: the namespace as one object, `{}` if never set.
async fn get_all(
    auth: Authenticated<Namespaces>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Namespaces>> {
    let (namespace, user) = target(&path, &req)?;
    let preferences = state.service.namespace(&auth.actor, &user, &namespace).await?;
    let etag = ETag::of_namespace(&preferences);
    Ok(conditional::read(&req, &etag, &object(preferences))?)
}

/// `PUT /preferences/{clientId}`: replaces the namespace; `null` members are absent; 204.
async fn put_all(
    auth: Authenticated<Namespaces>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Failure<Namespaces>> {
    let (namespace, user) = target(&path, &req)?;
    let members = object_body(&state, &req, payload, JSON).await?;
    let after = state.service.replace(&auth.actor, &user, &namespace, &members, &preconditions(&req)).await?;
    Ok(tagged(HttpResponse::NoContent(), &ETag::of_namespace(&after)).finish())
}

/// `PATCH /preferences/{clientId}`: an RFC 7396 merge patch; 200 with the merged object.
async fn patch(
    auth: Authenticated<Namespaces>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Failure<Namespaces>> {
    let (namespace, user) = target(&path, &req)?;
    let patch = object_body(&state, &req, payload, MERGE_PATCH).await?;
    let after =
        state.service.merge_patch(&auth.actor, &user, &namespace, &patch, &preconditions(&req)).await?;
    Ok(tagged(HttpResponse::Ok(), &ETag::of_namespace(&after)).json(object(after)))
}

/// `DELETE /preferences/{clientId}`: empties the namespace; 204.
async fn delete_all(
    auth: Authenticated<Namespaces>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Namespaces>> {
    let (namespace, user) = target(&path, &req)?;
    state.service.replace(&auth.actor, &user, &namespace, &Map::new(), &preconditions(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /preferences/{clientId}/{key}`: one member's value.
async fn get_one(
    auth: Authenticated<Namespaces>,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Namespaces>> {
    let (client_id, key) = path.into_inner();
    let (namespace, user) = target(&client_id, &req)?;
    let preference = state.service.preference(&auth.actor, &user, &namespace, &key).await?;
    Ok(conditional::read(&req, &ETag::of_preference(&preference), &preference.value)?)
}

/// `PUT /preferences/{clientId}/{key}`: sets one member to the body; 204.
async fn put_one(
    auth: Authenticated<Namespaces>,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Failure<Namespaces>> {
    let (client_id, key) = path.into_inner();
    let (namespace, user) = target(&client_id, &req)?;
    body::require_content_type(&req, JSON)?;
    let value = body::read_json(&req, payload, state.service.limits().max_body_bytes).await?;
    let stored = state.service.put(&auth.actor, &user, &namespace, &key, value, &preconditions(&req)).await?;
    Ok(tagged(HttpResponse::NoContent(), &ETag::of_preference(&stored)).finish())
}

/// `DELETE /preferences/{clientId}/{key}`: removes one member; 204, also when it was not set.
async fn delete_one(
    auth: Authenticated<Namespaces>,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Namespaces>> {
    let (client_id, key) = path.into_inner();
    let (namespace, user) = target(&client_id, &req)?;
    match state.service.delete(&auth.actor, &user, &namespace, &key, &preconditions(&req)).await {
        Ok(()) | Err(Error::PreferenceNotFound) => Ok(HttpResponse::NoContent().finish()),
        Err(error) => Err(error.into()),
    }
}
