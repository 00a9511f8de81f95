//! The OpenAPI 3.1 document of every route, built by utoipa from the handlers' annotations.
//! `prefs openapi` prints it, `/openapi.json` serves it, `/docs` shows it in Swagger UI.

use utoipa::openapi::Required;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, schema};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::{browser, edx, namespaces, ops, records};

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
        edx::get_all, edx::patch, edx::get_one, edx::put, edx::delete, browser::csrf_token,
        records::list, records::create, records::get, records::put, records::patch, records::delete,
        namespaces::get_all, namespaces::put_all, namespaces::patch, namespaces::delete_all,
        namespaces::get_one, namespaces::put_one, namespaces::delete_one,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi,
    ),
    components(schemas(
        records::RecordBody, records::RecordPatch, records::RecordForm, records::RecordFormPatch,
        records::RecordMultipart, records::RecordMultipartPatch,
        records::RecordErrors, records::RecordError, records::RecordMessage,
        edx::EdxError, edx::EdxMessage, edx::EdxFieldErrors,
        PreferenceJson, EdxValue, EdxPatch, NamespaceBody,
    )),
    modifiers(&BearerAuth, &VersionedNamespaces),
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

/// The client namespace operations again under PACE's base path (`/user/{version}/preferences/...`,
/// [`namespaces::ROUTES`]): the same operations, with the `version` parameter, and operation ids
/// ending in `_versioned`.
struct VersionedNamespaces;

impl Modify for VersionedNamespaces {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let version = ParameterBuilder::new()
            .name("version")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("PACE's API version, `YYYY-N` (`2025-1`); any version is served the same"))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(format!("^{}$", namespaces::VERSION_PATTERN))),
            ))
            .build();
        for (unversioned, versioned) in namespaces::ROUTES[1..].iter().flat_map(|(namespace, member)| {
            [(namespaces::ROUTES[0].0, *namespace), (namespaces::ROUTES[0].1, *member)]
        }) {
            let Some(mut item) = openapi.paths.paths.get(unversioned).cloned() else { continue };
            debug_assert_eq!(versioned, format!("{}{unversioned}", namespaces::VERSIONED_BASE));
            for operation in
                [&mut item.get, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten()
            {
                operation.operation_id = operation.operation_id.take().map(|id| format!("{id}_versioned"));
                operation.parameters.get_or_insert_default().insert(0, RefOr::T(version.clone()));
            }
            openapi.paths.paths.insert(versioned.to_owned(), item);
        }
    }
}

/// A preference value: any JSON but `null`.
pub struct PreferenceJson;

impl PartialSchema for PreferenceJson {
    fn schema() -> RefOr<Schema> {
        let mut any = OneOfBuilder::new().description(Some("Any JSON value but null"));
        for kind in json_kinds(ObjectBuilder::new().schema_type(Type::String).build()) {
            any = any.item(kind);
        }
        any.into()
    }
}

/// One schema per JSON type but null, `string` as given: an object of anything, an array of
/// anything, a string, a number, a boolean. (Spelled out type by type, not as a list of types,
/// which code generators read as a union without the array's items.)
fn json_kinds(string: schema::Object) -> [Schema; 5] {
    [
        Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .additional_properties(Some(AdditionalProperties::FreeForm(true)))
                .build(),
        ),
        Schema::Array(
            schema::ArrayBuilder::new()
                .items(RefOr::T(Schema::Object(
                    ObjectBuilder::new().schema_type(SchemaType::AnyValue).build(),
                )))
                .build(),
        ),
        Schema::Object(string),
        Schema::Object(ObjectBuilder::new().schema_type(Type::Number).build()),
        Schema::Object(ObjectBuilder::new().schema_type(Type::Boolean).build()),
    ]
}

impl ToSchema for PreferenceJson {}

/// An Open edX value as a client may send it: a string with something besides white space (it is
/// trimmed), or any other JSON value but `null`, stored as the string Python's `str()` gives for
/// it (`true` as `"True"`, `5` as `"5"`).
pub struct EdxValue;

impl PartialSchema for EdxValue {
    fn schema() -> RefOr<Schema> {
        let mut any = OneOfBuilder::new().description(Some(
            "A non-blank string (trimmed), or any other JSON value but null, stored as the string Python's \
             `str()` gives for it (`true` as `\"True\"`, `{\"a\": null}` as `\"{'a': None}\"`)",
        ));
        // Not blank, and no U+0000 (refused as Open edX refuses it).
        let string = ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"^[^\x00]*\S[^\x00]*$"));
        for kind in json_kinds(string.build()) {
            any = any.item(kind);
        }
        any.into()
    }
}

impl ToSchema for EdxValue {}

/// An Open edX PATCH body: at least one member; each an [`EdxValue`], or `null` to delete. A key
/// has at most 255 characters, one of them from `[-_a-zA-Z0-9]` (it is trimmed).
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
            .property_names(Some(edx_key_schema()))
            .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::OneOf(member)))))
            .into()
    }
}

impl ToSchema for EdxPatch {}

/// A client namespace as a body: an object of at most 1,000 members (the default limit) whose
/// names are 1 to 255 bytes without control characters; `null` members are absent (PUT) or
/// deleted (PATCH).
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

/// Characters no key holds: control characters.
const NOT_CONTROL: &str = r"[^\x00-\x1f\x7f-\x9f]";

/// A preference key: 1 to 255 characters without control characters (in a client namespace, at
/// most 255 bytes: longer is 413).
fn key_schema() -> schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(255))
        .pattern(Some(format!("^{NOT_CONTROL}+$")))
        .build()
}

/// An Open edX key: as [`key_schema`], with one character from `[-_a-zA-Z0-9]`.
fn edx_key_schema() -> schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(255))
        .pattern(Some(format!("^{NOT_CONTROL}*[-_a-zA-Z0-9]{NOT_CONTROL}*$")))
        .build()
}
