//! The record dialect (docs/contract.md §3.2), as SelfCommunity's API v2 user preferences:
//! `/api/v2/user/{user_id|me}/preference/[{id}/]`, over the global namespace. Each preference is a
//! record `{id, user_id, key, value, created_at, last_updated_at}` whose value is any JSON.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Utc};
use prefs_domain::{
    Action, ETag, Error, FieldCode, FieldError, Namespace, Preference, PreferenceId, PreferenceKey,
    PreferenceValue, UserId, UserRef,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;
use utoipa::{IntoParams, IntoResponses, ToSchema};

use crate::authenticated::Authenticated;
use crate::body::{self, FORM, JSON, MULTIPART};
use crate::conditional::{self, preconditions, tagged};
use crate::error::{Dialect, Failure, Problem};
use crate::routing::{self, Resource, Verb};
use crate::schemas::PreferenceJson;
use crate::state::AppState;

/// The dialect's route table: the list of a user's records, and one record.
pub(crate) const RESOURCES: &[Resource] = &[
    Resource::new(
        "/api/v2/user/{user_id}/preference/",
        &[(Verb::Get, |route| route.to(list)), (Verb::Post, |route| route.to(create))],
    ),
    Resource::new(
        "/api/v2/user/{user_id}/preference/{id}/",
        &[
            (Verb::Get, |route| route.to(get)),
            (Verb::Put, |route| route.to(put)),
            (Verb::Patch, |route| route.to(patch)),
            (Verb::Delete, |route| route.to(delete)),
        ],
    ),
];

/// The path parameter of the list route.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct RecordUserPath {
    /// An integer user id, or `me`
    user_id: String,
}

/// The path parameters of a record's route: the user, as in [`RecordUserPath`] (and documented
/// there), and the record's id (any text: one that is not an integer names no record).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct RecordPath {
    #[param(ignore)]
    user_id: String,
    /// The record id
    #[param(value_type = i64)]
    id: String,
}

/// A preference as a record.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": 7, "user_id": 1, "key": "layout", "value": {"columns": 2},
    "created_at": "2026-11-26T14:00:00.000000Z", "last_updated_at": "2026-11-26T14:05:00.000000Z"}))]
pub struct Record {
    /// Assigned by prefs; stable across updates and renames.
    pub id: i64,
    /// The owner.
    pub user_id: i64,
    /// 1 to 255 characters without control characters.
    #[schema(value_type = String)]
    pub key: PreferenceKey,
    /// Any JSON but `null`.
    #[schema(value_type = PreferenceJson)]
    pub value: PreferenceValue,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// RFC 3339, UTC; moves on every update.
    #[schema(format = DateTime)]
    pub last_updated_at: String,
}

impl From<&Preference> for Record {
    fn from(p: &Preference) -> Self {
        let timestamp = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Micros, true);
        Self {
            id: p.id.0,
            user_id: p.user_id.0,
            key: p.key.clone(),
            value: p.value.clone(),
            created_at: timestamp(p.created_at),
            last_updated_at: timestamp(p.updated_at),
        }
    }
}

/// A page of records, as Django REST framework's `LimitOffsetPagination`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordPage {
    /// How many records match.
    pub count: usize,
    /// The absolute URL of the next page, if any.
    pub next: Option<String>,
    /// The absolute URL of the previous page, if any.
    pub previous: Option<String>,
    /// This page, ordered by id.
    pub results: Vec<Record>,
}

/// A record `POST` or `PUT` body: both members are required. `id`, `user_id` and the timestamps
/// are read-only and ignored.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"key": "layout", "value": {"columns": 2}}))]
pub struct RecordBody {
    /// 1 to 255 characters without control characters, unique per user.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    pub key: String,
    /// Any JSON but `null`.
    #[schema(value_type = PreferenceJson)]
    pub value: Value,
}

/// A record `PATCH` body: a new key (a rename), a new value, or both.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"value": {"columns": 3}}))]
pub struct RecordPatch {
    /// 1 to 255 characters without control characters, unique per user.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    pub key: Option<String>,
    /// Any JSON but `null`.
    #[schema(value_type = Option<PreferenceJson>)]
    pub value: Option<Value>,
}

/// A record `POST` or `PUT` body as a form: `value` is JSON text (Django REST framework's
/// `JSONField` reads form input so), `key` is text.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"key": "layout", "value": "{\"columns\": 2}"}))]
pub struct RecordForm {
    /// 1 to 255 characters without control characters, unique per user.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    pub key: String,
    /// JSON text of any value but `null` (`"dark"` with its quotes, `2`, `{"columns": 2}`).
    pub value: String,
}

/// A record `PATCH` body as a form: either field, as in [`RecordForm`].
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"value": "{\"columns\": 3}"}))]
pub struct RecordFormPatch {
    /// 1 to 255 characters without control characters, unique per user.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    pub key: Option<String>,
    /// JSON text of any value but `null`.
    pub value: Option<String>,
}

/// A record `POST` or `PUT` body as `multipart/form-data`: the fields of a [`RecordForm`].
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"key": "layout", "value": "{\"columns\": 2}"}))]
pub struct RecordMultipart {
    /// 1 to 255 characters without control characters, unique per user.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    pub key: String,
    /// JSON text of any value but `null`.
    pub value: String,
}

/// A record `PATCH` body as `multipart/form-data`: the fields of a [`RecordFormPatch`].
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"value": "{\"columns\": 3}"}))]
pub struct RecordMultipartPatch {
    /// 1 to 255 characters without control characters, unique per user.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    pub key: Option<String>,
    /// JSON text of any value but `null`.
    pub value: Option<String>,
}

/// One message of a record-dialect error.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordMessage {
    /// A stable code: `required`, `null`, `invalid`, `invalid-key`, `exists`, `too-large`,
    /// `too-many-keys`, `too-deep`, or a general one such as `not-found`.
    pub code: String,
    /// For people.
    pub message: String,
}

/// One error of the record dialect: general, or about a field.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum RecordError {
    /// About one field.
    Field {
        /// The field.
        field: String,
        /// What is wrong with it.
        messages: Vec<RecordMessage>,
    },
    /// About the request as a whole.
    General(RecordMessage),
}

/// The record dialect's error body.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"errors": [{"field": "value", "messages": [{"code": "null", "message": "This field may not be null."}]}]}))]
pub struct RecordErrors {
    /// The errors.
    pub errors: Vec<RecordError>,
}

/// The errors any record operation may answer.
#[derive(IntoResponses)]
#[expect(dead_code, reason = "describes responses in the OpenAPI document; errors are built from `Problem`")]
enum RecordReadErrors {
    #[response(status = 401, description = "No valid token")]
    Unauthorized(RecordErrors),
    #[response(status = 404, description = "Unknown or hidden user, or not one of the user's records")]
    NotFound(RecordErrors),
    #[response(status = 412, description = "If-Match does not hold")]
    PreconditionFailed(RecordErrors),
    #[response(status = 429, description = "Over a rate limit", headers(("Retry-After" = u64, description = "Whole seconds until a request would pass")))]
    TooManyRequests(RecordErrors),
    #[response(status = 503, description = "Database unavailable")]
    Unavailable(RecordErrors),
}

/// The further errors of operations that take a body, beside [`RecordReadErrors`].
#[derive(IntoResponses)]
#[expect(dead_code, reason = "describes responses in the OpenAPI document; errors are built from `Problem`")]
enum RecordBodyErrors {
    #[response(status = 400, description = "Malformed JSON or an invalid field")]
    BadRequest(RecordErrors),
    #[response(status = 403, description = "Staff writing another user's records")]
    Forbidden(RecordErrors),
    #[response(
        status = 408,
        description = "The body did not arrive whole within the body deadline; the connection is closed"
    )]
    RequestTimeout(RecordErrors),
    #[response(status = 413, description = "Body over the limit")]
    TooLarge(RecordErrors),
    #[response(status = 415, description = "Not application/json")]
    UnsupportedMediaType(RecordErrors),
}

/// The record dialect's error format: `{"errors":[{"code","message"}]}`, and for bad fields
/// `{"errors":[{"field","messages":[{"code","message"}]}]}`.
pub struct Records;

impl Dialect for Records {
    fn body(problem: &Problem, status: StatusCode) -> (&'static str, Value) {
        let too_many;
        let fields = match problem {
            Problem::Domain(Error::TooManyKeys { .. }) => {
                too_many = [FieldError::new("key", FieldCode::TooManyKeys, problem.message())];
                Some(&too_many[..])
            }
            other => other.field_errors(),
        };
        let errors = match fields {
            Some(fields) => fields
                .iter()
                .map(|f| {
                    let message = RecordMessage {
                        code: f.code.as_str().to_owned(),
                        message: f.developer_message.clone(),
                    };
                    if f.field.is_empty() {
                        RecordError::General(message)
                    } else {
                        RecordError::Field { field: f.field.clone(), messages: vec![message] }
                    }
                })
                .collect(),
            None => vec![RecordError::General(RecordMessage {
                code: problem.code(status).to_owned(),
                message: problem.message(),
            })],
        };
        ("application/json", serde_json::to_value(RecordErrors { errors }).unwrap_or_default())
    }
}

/// Registers [`RESOURCES`], and the dialect's 404 for any other path under its prefix.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    routing::register::<Records>(cfg, RESOURCES);
    cfg.service(
        web::resource("/api/v2/{tail:.*}")
            .to(|| async { Err::<HttpResponse, _>(Failure::<Records>::from(Problem::NoRoute)) }),
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

/// The absolute URL of this request as the client called it ([`crate::client::url`]) with
/// `changes` applied to its query (`None` removes).
fn with_query(req: &HttpRequest, changes: &[(&str, Option<usize>)]) -> Option<String> {
    let mut url = crate::client::url(req)?;
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
    /// Every `key` and `search` filter given: a record must have exactly each of these keys.
    keys: Vec<String>,
}

impl Page {
    const DEFAULT_LIMIT: usize = 20;
    const MAX_LIMIT: usize = 100;

    fn from_query(query: &str) -> Result<Self, Problem> {
        let mut params = crate::query::single(query, &["limit", "offset", "key", "search"])?;
        let limit = params.get("limit").and_then(|l| l.parse().ok()).filter(|l| *l > 0);
        Ok(Self {
            limit: limit.map_or(Self::DEFAULT_LIMIT, |l: usize| l.min(Self::MAX_LIMIT)),
            offset: params.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0),
            keys: ["key", "search"]
                .iter()
                .filter_map(|name| params.remove(name))
                .filter(|k| !k.is_empty())
                .collect(),
        })
    }
}

/// A page of the user's records, ordered by id.
#[utoipa::path(get, operation_id = "record_list", path = "/api/v2/user/{user_id}/preference/", tag = "Records",
    params(RecordUserPath,
        ("limit" = Option<String>, Query, description = "Page size: 20 by default, at most 100; anything but a positive integer gives 20"),
        ("offset" = Option<String>, Query, description = "Records to skip; anything but a non-negative integer gives 0"),
        ("key" = Option<String>, Query, description = "Only the record with exactly this key"),
        ("search" = Option<String>, Query, description = "The same as `key`; with both, both apply")),
    responses(
        (status = 200, description = "A page", body = RecordPage),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "A query parameter given more than once", body = RecordErrors),
        RecordReadErrors),
    security(("bearer" = [])))]
pub(crate) async fn list(
    auth: Authenticated<Records>,
    state: web::Data<AppState>,
    path: web::Path<RecordUserPath>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Records>> {
    let target = user_ref(&path.user_id)?;
    let page = Page::from_query(req.query_string())?;
    let all = state.service.namespace(&auth.actor, &target, &Namespace::Global).await?;
    let matching: Vec<&Preference> =
        all.iter().filter(|p| page.keys.iter().all(|k| p.key.as_str() == k)).collect();
    let count = matching.len();
    let results = matching.iter().skip(page.offset).take(page.limit).map(|p| Record::from(*p)).collect();
    let after = page.offset.saturating_add(page.limit);
    let next = (after < count)
        .then(|| with_query(&req, &[("limit", Some(page.limit)), ("offset", Some(after))]))
        .flatten();
    let previous = (page.offset > 0)
        .then(|| {
            let offset = page.offset.checked_sub(page.limit).filter(|o| *o > 0);
            with_query(&req, &[("limit", Some(page.limit)), ("offset", offset)])
        })
        .flatten();
    Ok(conditional::read_untagged(&req, &RecordPage { count, next, previous, results })?)
}

/// One record.
#[utoipa::path(get, operation_id = "record_get", path = "/api/v2/user/{user_id}/preference/{id}/", tag = "Records",
    params(RecordUserPath, RecordPath),
    responses(
        (status = 200, description = "The record", body = Record),
        (status = 304, description = "Not modified (If-None-Match)"),
        RecordReadErrors),
    security(("bearer" = [])))]
pub(crate) async fn get(
    auth: Authenticated<Records>,
    state: web::Data<AppState>,
    path: web::Path<RecordPath>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Records>> {
    let RecordPath { user_id: user, id } = path.into_inner();
    let target = user_ref(&user)?;
    let preference = state.service.record(&auth.actor, &target, record_id(&id)?).await?;
    Ok(conditional::read(&req, &ETag::of_preference(&preference), &Record::from(&preference))?)
}

/// The `key` and `value` members of a record body; `id`, `user_id` and the timestamps are
/// read-only and ignored. `required` makes a missing member an error.
fn fields(body: Value, required: bool) -> Result<(Option<String>, Option<Value>), Problem> {
    let Value::Object(mut members) = body else {
        return Err(Error::invalid(FieldError::new("", FieldCode::Invalid, "Expected a JSON object.")).into());
    };
    let mut errors = Vec::new();
    let mut take = |members: &mut Map<String, Value>, name: &str| match members.remove(name) {
        None if required => {
            errors.push(FieldError::new(name, FieldCode::Required, "This field is required."));
            None
        }
        None => None,
        Some(Value::Null) => {
            errors.push(FieldError::new(name, FieldCode::Null, "This field may not be null."));
            None
        }
        Some(value) => Some(value),
    };
    let key = take(&mut members, "key");
    let value = take(&mut members, "value");
    let key = match key {
        Some(Value::String(key)) => Some(key),
        Some(_) => {
            errors.push(FieldError::new("key", FieldCode::Invalid, "Not a valid string."));
            None
        }
        None => None,
    };
    if errors.is_empty() { Ok((key, value)) } else { Err(Error::Invalid(errors).into()) }
}

/// A record body: JSON, or a form (`application/x-www-form-urlencoded`, `multipart/form-data`)
/// whose fields are read as Django REST framework reads form input ([`form_members`]).
async fn json_body(state: &AppState, req: &HttpRequest, payload: web::Payload) -> Result<Value, Problem> {
    let limit = state.service.limits().max_body_bytes;
    match body::content_type(req).as_deref() {
        Some(JSON) => body::read_json(req, payload, limit).await,
        Some(kind @ (FORM | MULTIPART)) => {
            form_members(body::read_form(req, payload, limit, kind == MULTIPART).await?).map(Value::Object)
        }
        _ => Err(Problem::UnsupportedMediaType(
            "application/json, application/x-www-form-urlencoded or multipart/form-data",
        )),
    }
}

/// The members of a form body, as SelfCommunity's serializer reads them: `value` is a
/// `JSONField`, whose form input is JSON text (text that is not JSON is `invalid`); `key` is text,
/// or the string its text is when that is a JSON string (`"theme"` is `theme`). A field sent twice
/// counts as its last; other fields are ignored, as in a JSON body.
fn form_members(fields: Vec<(String, String)>) -> Result<Map<String, Value>, Problem> {
    let last = |name: &str| fields.iter().rev().find(|(n, _)| n == name).map(|(_, text)| text.as_str());
    let mut members = Map::new();
    if let Some(text) = last("key") {
        let key = match serde_json::from_str::<Value>(text) {
            Ok(Value::String(key)) => key,
            _ => text.to_owned(),
        };
        members.insert("key".to_owned(), Value::String(key));
    }
    if let Some(text) = last("value") {
        match body::parse_json(text.as_bytes()) {
            Ok(value) if !text.trim().is_empty() => {
                members.insert("value".to_owned(), value);
            }
            _ => {
                let invalid = FieldError::new("value", FieldCode::Invalid, "Value must be valid JSON.");
                return Err(Error::invalid(invalid).into());
            }
        }
    }
    Ok(members)
}

/// Creates a record; its key must be new for the user.
#[utoipa::path(post, operation_id = "record_create", path = "/api/v2/user/{user_id}/preference/", tag = "Records",
    params(RecordUserPath),
    request_body(content(
        (RecordBody = "application/json"),
        (RecordForm = "application/x-www-form-urlencoded"),
        (RecordMultipart = "multipart/form-data"))),
    responses(
        (status = 201, description = "Created; `Location` names it", body = Record),
        RecordReadErrors,
        RecordBodyErrors),
    security(("bearer" = [])))]
pub(crate) async fn create(
    auth: Authenticated<Records>,
    state: web::Data<AppState>,
    path: web::Path<RecordUserPath>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Failure<Records>> {
    let target = user_ref(&path.user_id)?;
    // Access is decided before the body is read (docs/contract.md §4.3).
    let user = state.service.authorize(&auth.actor, &target, &Namespace::Global, Action::Write).await?;
    let target = UserRef::Known(user);
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
    Ok(response.insert_header((header::LOCATION, location)).json(Record::from(&created)))
}

/// Replaces a record's key and value (both required).
#[utoipa::path(put, operation_id = "record_put", path = "/api/v2/user/{user_id}/preference/{id}/", tag = "Records",
    params(RecordUserPath, RecordPath),
    request_body(content(
        (RecordBody = "application/json"),
        (RecordForm = "application/x-www-form-urlencoded"),
        (RecordMultipart = "multipart/form-data"))),
    responses(
        (status = 200, description = "The record", body = Record),
        RecordReadErrors,
        RecordBodyErrors),
    security(("bearer" = [])))]
pub(crate) async fn put(
    auth: Authenticated<Records>,
    state: web::Data<AppState>,
    path: web::Path<RecordPath>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Failure<Records>> {
    update(auth, state, path, req, payload, true).await
}

/// Changes a record's key (a rename keeps its id) and/or value.
#[utoipa::path(patch, operation_id = "record_patch", path = "/api/v2/user/{user_id}/preference/{id}/", tag = "Records",
    params(RecordUserPath, RecordPath),
    request_body(content(
        (RecordPatch = "application/json"),
        (RecordFormPatch = "application/x-www-form-urlencoded"),
        (RecordMultipartPatch = "multipart/form-data"))),
    responses(
        (status = 200, description = "The record", body = Record),
        RecordReadErrors,
        RecordBodyErrors),
    security(("bearer" = [])))]
pub(crate) async fn patch(
    auth: Authenticated<Records>,
    state: web::Data<AppState>,
    path: web::Path<RecordPath>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Failure<Records>> {
    update(auth, state, path, req, payload, false).await
}

/// `PUT` (`required`: key and value) and `PATCH` of a record.
async fn update(
    auth: Authenticated<Records>,
    state: web::Data<AppState>,
    path: web::Path<RecordPath>,
    req: HttpRequest,
    payload: web::Payload,
    required: bool,
) -> Result<HttpResponse, Failure<Records>> {
    let RecordPath { user_id: user, id } = path.into_inner();
    let (target, id) = (user_ref(&user)?, record_id(&id)?);
    // Access is decided before the body is read (docs/contract.md §4.3).
    let target = UserRef::Known(state.service.authorize_record(&auth.actor, &target, id).await?);
    let (key, value) = fields(json_body(&state, &req, payload).await?, required)?;
    let conditions = preconditions(&req);
    let updated =
        state.service.update_record(&auth.actor, &target, id, key.as_deref(), value, &conditions).await?;
    Ok(tagged(HttpResponse::Ok(), &ETag::of_preference(&updated)).json(Record::from(&updated)))
}

/// Deletes a record.
#[utoipa::path(delete, operation_id = "record_delete", path = "/api/v2/user/{user_id}/preference/{id}/", tag = "Records",
    params(RecordUserPath, RecordPath),
    responses(
        (status = 204, description = "Deleted"),
        RecordReadErrors,
        RecordBodyErrors),
    security(("bearer" = [])))]
pub(crate) async fn delete(
    auth: Authenticated<Records>,
    state: web::Data<AppState>,
    path: web::Path<RecordPath>,
    req: HttpRequest,
) -> Result<HttpResponse, Failure<Records>> {
    let RecordPath { user_id: user, id } = path.into_inner();
    let target = user_ref(&user)?;
    state.service.delete_record(&auth.actor, &target, record_id(&id)?, &preconditions(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}
