//! The OpenAPI 3.1 document of every route, built by utoipa from the handlers' annotations.
//! `prefs openapi` prints it, `/openapi.json` serves it, `/docs` shows it in Swagger UI.

use actix_web::{HttpResponse, web};
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Required};
use utoipa::{Modify, OpenApi};

use crate::jsonapi::JsonApi;
use crate::routing::{self, Resource, Verb};
use crate::schemas::{EdxPatch, EdxValue, NamespaceBody, PreferenceJson};
use crate::{csrf, edx, namespaces, ops, records};

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
        edx::get_all, edx::patch, edx::get_one, edx::put, edx::delete, csrf::csrf_token,
        records::list, records::create, records::get, records::put, records::patch, records::delete,
        namespaces::get_all, namespaces::put_all, namespaces::patch, namespaces::delete_all,
        namespaces::get_one, namespaces::put_one, namespaces::delete_one,
        ops::healthz, ops::readyz, ops::metrics, openapi,
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
/// the resources of [`namespaces::RESOURCES`] under [`namespaces::VERSIONED_BASE`]): the same
/// operations, with the `version` parameter, and operation ids ending in `_versioned`.
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
        for versioned in namespaces::RESOURCES.iter().map(|resource| resource.path) {
            let Some(unversioned) = versioned.strip_prefix(namespaces::VERSIONED_BASE) else { continue };
            let Some(mut item) = openapi.paths.paths.get(unversioned).cloned() else { continue };
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

/// Where the document is served.
pub(crate) const RESOURCES: &[Resource] =
    &[Resource::new("/openapi.json", &[(Verb::Get, |route| route.to(openapi))])];

/// Registers [`RESOURCES`].
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    routing::register::<JsonApi>(cfg, RESOURCES);
}

/// This document.
#[utoipa::path(get, operation_id = "ops_openapi", path = "/openapi.json", tag = "Operations",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub(crate) async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
