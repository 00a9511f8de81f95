//! The OpenAPI 3.1 document of every route, built by utoipa from the handlers' annotations.
//! `prefs openapi` prints it, `/openapi.json` serves it, `/docs` shows it in Swagger UI.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

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
    components(schemas(records::RecordBody)),
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
