//! The actix-web HTTP adapter of prefs: the API dialects over one
//! [`PreferenceService`](prefs_domain::PreferenceService), bearer JWT authentication, request ids,
//! and the mapping of every error into the format of the dialect whose route it happened on.
//!
//! Build the application with [`app`]; the binary crate wraps it in an `HttpServer`.

mod access_log;
pub mod auth;
mod authenticated;
mod body;
pub mod browser;
pub mod client;
mod conditional;
mod csrf;
pub mod deadlines;
mod edx;
pub mod error;
mod jsonapi;
pub mod metrics;
mod namespaces;
mod object;
pub mod openapi;
mod ops;
mod query;
pub mod rate_limits;
mod records;
pub mod request_id;
mod routing;
mod schemas;
mod state;
pub mod traffic;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, HttpResponse, web};
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

pub use auth::{ClaimMap, Claims, JwtConfig, KeySources, Secret, Verifier};
pub use browser::{BrowserConfig, BrowserConfigError, SameSite};
use error::{Failure, Problem};
pub use metrics::{Metrics, PoolStats};
pub use openapi::ApiDoc;
pub use rate_limits::RateLimiters;
pub use routing::{Resource, Verb};
pub use state::AppState;
pub use traffic::Traffic;

/// Every dialect's route table.
const TABLES: &[&[Resource]] =
    &[edx::RESOURCES, records::RESOURCES, namespaces::RESOURCES, ops::RESOURCES, openapi::RESOURCES];

/// Every resource the application serves, from the route tables its routes are registered from:
/// the OpenAPI document is checked against them.
pub fn routes() -> impl Iterator<Item = &'static Resource> {
    TABLES.iter().flat_map(|table| table.iter())
}

/// Every resource of [`routes`] as `(path, Allow value)`.
pub const RESOURCES: &[(&str, &str)] = &routing::allow_list::<{ routing::count(TABLES) }>(TABLES);

/// Where Swagger UI is served.
pub const DOCS: &str = "/docs";

/// The whole application: every dialect's routes, the operational endpoints, and JSON:API 404s
/// for anything else.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let prometheus = state.metrics.middleware.clone();
    let cors = browser::cors(&state.browser);
    let cors_enabled = state.browser.cors_enabled();
    let docs = SwaggerUi::new(format!("{DOCS}/{{_:.*}}"))
        .config(SwaggerConfig::new(["/openapi.json"]).validator_url("none").try_it_out_enabled(true));
    // Routes are tried in order: the API first, the documentation (a catch-all pattern) last.
    App::new()
        .app_data(state)
        .configure(edx::routes)
        .configure(records::routes)
        .configure(namespaces::routes)
        .configure(ops::routes)
        .configure(openapi::routes)
        .service(docs)
        .service(web::redirect(DOCS, format!("{DOCS}/")))
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(Failure::<jsonapi::JsonApi>::from(Problem::NoRoute))
        }))
        // CORS on every answer to a listed origin, 404s and errors included; preflights go on to
        // the routes' OPTIONS. Outside it, answers that allow no origin lose actix-cors' headers.
        .wrap(cors)
        .wrap(Condition::new(cors_enabled, from_fn(browser::tidy)))
        .wrap(from_fn(auth::private_answers))
        .wrap(prometheus)
        .wrap(from_fn(metrics::refuse_unknown_methods))
        .wrap(from_fn(deadlines::answers))
        .wrap(from_fn(access_log::middleware))
        .wrap(from_fn(request_id::middleware))
}
