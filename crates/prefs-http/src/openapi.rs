//! The OpenAPI 3.1 document of every route, built by utoipa from the handlers' annotations.
//! `prefs openapi` prints it, `/openapi.json` serves it, `/docs` shows it in Swagger UI.

use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, schema};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::{edx, namespaces, ops, records};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "prefs",
        description = "User preferences behind your users' own identity, in three REST dialects over one store: \
            Open edX (`/api/user/v1/preferences`), records (`/api/v2/user/{user_id}/preference/`) and per-client \
            namespaces (`/preferences/{client_id}`). Every API call takes `Authorization: Bearer <JWT>`. GET answers \
            carry a strong `ETag`: send it back in `If-None-Match` for a 304, or in `If-Match` on a write for a 412 \
            when the resource changed meanwhile. Every answer carries a `Request-Id` header.",
        license(name = "Apache-2.0")
    ),
    paths(
        edx::get_all, edx::patch, edx::get_one, edx::put, edx::delete,
        records::list, records::create, records::get, records::put, records::patch, records::delete,
        namespaces::get_all, namespaces::put_all, namespaces::patch, namespaces::delete_all,
        namespaces::get_one, namespaces::put_one, namespaces::delete_one,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi,
    ),
    components(schemas(records::RecordBody, records::RecordPatch, PreferenceJson, EdxValue, EdxPatch, NamespaceBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "Open edX", description = "Open edX's user preferences API: string values, the global namespace."),
        (name = "Records", description = "SelfCommunity-style records: any JSON value, the global namespace."),
        (name = "Client namespaces", description = "PACE-style app preferences: one JSON object per user and \
            client. Needs scope `user:preferences:read` / `user:preferences:write`, and the token's own client \
            (`client_id`, else `azp`) unless it holds `user:preferences:read:{client_id}` / \
            `user:preferences:write:{client_id}`."),
        (name = "Operations", description = "Health, readiness, metrics and this document."),
    )
)]
pub struct ApiDoc;

/// The `bearer` security scheme: a JWT from the identity provider.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "A JWT with `sub` and `exp`; `preferred_username` (else `username`, else `sub`) names the user; \
                 `roles` may hold `staff` (read anyone's) and `admin` (read and write anyone's); `scope` lists \
                 OAuth scopes; `client_id` (else `azp`) names the client application.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_default()
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// A preference value: any JSON but `null`.
pub struct PreferenceJson;

impl PartialSchema for PreferenceJson {
    fn schema() -> RefOr<Schema> {
        let types = vec![Type::Object, Type::Array, Type::String, Type::Number, Type::Boolean];
        ObjectBuilder::new()
            .schema_type(SchemaType::Array(types))
            .description(Some("Any JSON value but null"))
            .into()
    }
}

impl ToSchema for PreferenceJson {}

/// An Open edX value as a client may send it: a string with something besides white space (it is
/// trimmed), or a number (stored as its string form).
pub struct EdxValue;

impl PartialSchema for EdxValue {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"\S")))
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .into()
    }
}

impl ToSchema for EdxValue {}

/// An Open edX PATCH body: at least one member; each an [`EdxValue`], or `null` to delete.
pub struct EdxPatch;

impl PartialSchema for EdxPatch {
    fn schema() -> RefOr<Schema> {
        let member = OneOfBuilder::new()
            .item(EdxValue::schema())
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build();
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .min_properties(Some(1))
            .property_names(Some(key_schema()))
            .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::OneOf(member)))))
            .into()
    }
}

impl ToSchema for EdxPatch {}

/// A client namespace as a body: an object of at most 1,000 members (the default limit) with
/// valid keys; `null` members are absent (PUT) or deleted (PATCH).
pub struct NamespaceBody;

impl PartialSchema for NamespaceBody {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .max_properties(Some(prefs_domain::Limits::default().max_keys))
            .property_names(Some(key_schema()))
            .into()
    }
}

impl ToSchema for NamespaceBody {}

/// A preference key.
fn key_schema() -> schema::Object {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[A-Za-z0-9_.:-]{1,255}$")).build()
}
