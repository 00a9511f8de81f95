//! The record dialect (SPEC 3.2), as SelfCommunity's API v2 user preferences:
//! `/api/v2/user/{user_id|me}/preference/[{id}/]`, over the global namespace. Each preference is a
//! record `{id, user_id, key, value, created_at, last_updated_at}` whose value is any JSON.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Utc};
use prefs_domain::{ETag, Error, FieldError, Namespace, Preference, PreferenceId, UserId, UserRef};
use serde_json::{Map, Value, json};
use url::Url;

use crate::auth::Authenticated;
use crate::body::{self, JSON};
use crate::conditional::{self, preconditions, tagged};
use crate::error::{Dialect, Failure, Problem};
use crate::{AppState, read, resource};

/// The record dialect's error format: `{"errors":[{"code","message"}]}`, and for bad fields
/// `{"errors":[{"field","messages":[{"code","message"}]}]}`.
pub struct Records;

impl Dialect for Records {
    fn body(problem: &Problem, status: StatusCode) -> (&'static str, Value) {
        let too_many;
        let fields = match problem {
            Problem::Domain(Error::TooManyKeys { .. }) => {
                too_many = [FieldError::new("key", "too-many-keys", problem.message())];
                Some(&too_many[..])
            }
            other => other.field_errors(),
        };
        let errors: Vec<Value> = match fields {
            Some(fields) => fields
                .iter()
                .map(|f| {
                    let message = json!({ "code": f.code, "message": f.developer_message });
                    if f.field.is_empty() {
                        message
                    } else {
                        json!({ "field": f.field, "messages": [message] })
                    }
                })
                .collect(),
            None => vec![json!({ "code": problem.code(status), "message": problem.message() })],
        };
        ("application/json", json!({ "errors": errors }))
    }
}

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v2")
            .service(
                resource::<Records>("/user/{user_id}/preference/", "GET, HEAD, POST, OPTIONS")
                    .route(read().to(list))
                    .route(web::post().to(create)),
            )
            .service(
                resource::<Records>(
                    "/user/{user_id}/preference/{id}/",
                    "GET, HEAD, PUT, PATCH, DELETE, OPTIONS",
                )
                .route(read().to(get))
                .route(web::put().to(update))
                .route(web::patch().to(update))
                .route(web::delete().to(delete)),
            )
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(Failure::<Records>::from(Problem::NoRoute))
            })),
    );
}

/// `{user_id}`: an integer id or `me`; anything else names no user.
fn user_ref(segment: &str) -> Result<UserRef, Problem> {
    match segment {
        "me" => Ok(UserRef::Me),
        id => id.parse().map(|id| UserRef::Id(UserId(id))).map_err(|_| Problem::Domain(Error::UserNotFound)),
    }
}

/// A record id: an integer, else no record.
fn record_id(segment: &str) -> Result<PreferenceId, Problem> {
    segment.parse().map(PreferenceId).map_err(|_| Problem::Domain(Error::PreferenceNotFound))
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A preference as a record.
fn record(p: &Preference) -> Value {
    json!({
        "id": p.id,
        "user_id": p.user_id,
        "key": p.key,
        "value": p.value,
        "created_at": timestamp(p.created_at),
        "last_updated_at": timestamp(p.updated_at),
    })
}

/// The absolute URL of this request with `changes` applied to its query (`None` removes).
fn with_query(req: &HttpRequest, changes: &[(&str, Option<usize>)]) -> Option<String> {
    let info = req.connection_info();
    let mut url = Url::parse(&format!("{}://{}{}", info.scheme(), info.host(), req.uri())).ok()?;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, _)| !changes.iter().any(|(changed, _)| changed == name))
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    {
        let mut query = url.query_pairs_mut();
        query.clear().extend_pairs(kept);
        for (name, value) in changes {
            if let Some(value) = value {
                query.append_pair(name, &value.to_string());
            }
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    Some(url.into())
}

/// Django REST framework's `LimitOffsetPagination`: `limit` defaults to 20 and is capped at 100,
/// a `limit` that is not a positive integer gives the default, an `offset` that is not a
/// non-negative integer gives 0.
struct Page {
    limit: usize,
    offset: usize,
    key: Option<String>,
}

impl Page {
    const DEFAULT_LIMIT: usize = 20;
    const MAX_LIMIT: usize = 100;

    fn from_query(query: &str) -> Self {
        let mut page = Self { limit: Self::DEFAULT_LIMIT, offset: 0, key: None };
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*name {
                "limit" => {
                    page.limit = value
                        .parse()
                        .ok()
                        .filter(|l| *l > 0)
                        .map_or(Self::DEFAULT_LIMIT, |l: usize| l.min(Self::MAX_LIMIT));
                }
                "offset" => page.offset = value.parse().unwrap_or(0),
                "key" | "search" if !value.is_empty() => page.key = Some(value.into_owned()),
                _ => {}
            }
        }
        page
    }
}

/// `GET .../preference/`: a page of records ordered by id.
async fn list(
    auth: Authenticated<Records>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Records>> {
    let target = user_ref(&path)?;
    let page = Page::from_query(req.query_string());
    let all = state.service.namespace(&auth.actor, &target, &Namespace::Global).await?;
    let matching: Vec<&Preference> =
        all.iter().filter(|p| page.key.as_deref().is_none_or(|k| p.key.as_str() == k)).collect();
    let count = matching.len();
    let results: Vec<Value> = matching.iter().skip(page.offset).take(page.limit).map(|p| record(p)).collect();
    let next = (page.offset + page.limit < count)
        .then(|| with_query(&req, &[("limit", Some(page.limit)), ("offset", Some(page.offset + page.limit))]))
        .flatten();
    let previous = (page.offset > 0)
        .then(|| {
            let offset = page.offset.checked_sub(page.limit).filter(|o| *o > 0);
            with_query(&req, &[("limit", Some(page.limit)), ("offset", offset)])
        })
        .flatten();
    let page = json!({ "count": count, "next": next, "previous": previous, "results": results });
    Ok(conditional::read_untagged(&req, &page)?)
}

/// `GET .../preference/{id}/`.
async fn get(
    auth: Authenticated<Records>,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Records>> {
    let (user, id) = path.into_inner();
    let target = user_ref(&user)?;
    let preference = state.service.record(&auth.actor, &target, record_id(&id)?).await?;
    Ok(conditional::read(&req, &ETag::of_preference(&preference), &record(&preference))?)
}

/// The `key` and `value` members of a record body; `id`, `user_id` and the timestamps are
/// read-only and ignored. `required` makes a missing member an error.
fn fields(body: Value, required: bool) -> Result<(Option<String>, Option<Value>), Problem> {
    let Value::Object(mut members) = body else {
        return Err(Error::invalid(FieldError::new("", "invalid", "Expected a JSON object.")).into());
    };
    let mut errors = Vec::new();
    let mut take = |members: &mut Map<String, Value>, name: &str| match members.remove(name) {
        None if required => {
            errors.push(FieldError::new(name, "required", "This field is required."));
            None
        }
        None => None,
        Some(Value::Null) => {
            errors.push(FieldError::new(name, "null", "This field may not be null."));
            None
        }
        Some(value) => Some(value),
    };
    let key = take(&mut members, "key");
    let value = take(&mut members, "value");
    let key = match key {
        Some(Value::String(key)) => Some(key),
        Some(_) => {
            errors.push(FieldError::new("key", "invalid", "Not a valid string."));
            None
        }
        None => None,
    };
    if errors.is_empty() { Ok((key, value)) } else { Err(Error::Invalid(errors).into()) }
}

/// A JSON record body.
async fn json_body(state: &AppState, req: &HttpRequest, payload: web::Payload) -> Result<Value, Problem> {
    body::require_content_type(req, JSON)?;
    body::read_json(req, payload, state.service.limits().max_body_bytes).await
}

/// `POST .../preference/`: 201 with the record and its `Location`.
async fn create(
    auth: Authenticated<Records>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Failure<Records>> {
    let target = user_ref(&path)?;
    let (Some(key), Some(value)) = fields(json_body(&state, &req, payload).await?, true)? else {
        return Err(Problem::Domain(Error::Internal("required record fields went missing".into())).into());
    };
    let created = state.service.create_record(&auth.actor, &target, &key, value).await?;
    let location = with_query(&req, &[])
        .and_then(|url| Url::parse(&url).ok())
        .and_then(|url| url.join(&format!("{}/", created.id)).ok())
        .map(String::from)
        .unwrap_or_default();
    let mut response = tagged(HttpResponse::Created(), &ETag::of_preference(&created));
    Ok(response.insert_header((header::LOCATION, location)).json(record(&created)))
}

/// `PUT .../preference/{id}/` (key and value required) and `PATCH` (either may be absent).
async fn update(
    auth: Authenticated<Records>,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Failure<Records>> {
    let (user, id) = path.into_inner();
    let (target, id) = (user_ref(&user)?, record_id(&id)?);
    let (key, value) =
        fields(json_body(&state, &req, payload).await?, req.method() == actix_web::http::Method::PUT)?;
    let conditions = preconditions(&req);
    let updated =
        state.service.update_record(&auth.actor, &target, id, key.as_deref(), value, &conditions).await?;
    Ok(tagged(HttpResponse::Ok(), &ETag::of_preference(&updated)).json(record(&updated)))
}

/// `DELETE .../preference/{id}/`: 204.
async fn delete(
    auth: Authenticated<Records>,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Records>> {
    let (user, id) = path.into_inner();
    let target = user_ref(&user)?;
    state.service.delete_record(&auth.actor, &target, record_id(&id)?, &preconditions(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}
