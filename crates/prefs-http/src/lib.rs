//! The actix-web HTTP adapter of prefs: the API dialects over one [`PreferenceService`], bearer
//! JWT authentication, request ids, and the mapping of every error into the format of the dialect
//! whose route it happened on.
//!
//! Build the application with [`app`]; the binary crate wraps it in an `HttpServer`.

pub mod auth;
mod body;
pub mod browser;
pub mod client;
mod conditional;
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
pub mod traffic;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::{Condition, DefaultHeaders, from_fn};
use actix_web::{App, HttpRequest, HttpResponse, Resource, Route, guard, web};
use prefs_domain::PreferenceService;
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

pub use auth::{ClaimMap, Claims, JwtConfig, KeySources, Secret, Verifier};
pub use browser::{BrowserConfig, BrowserConfigError, SameSite};
use error::{Dialect, Failure, Problem};
pub use metrics::{Metrics, PoolStats};
pub use openapi::ApiDoc;
pub use rate_limits::RateLimiters;
pub use traffic::Traffic;

/// What every request handler shares.
pub struct AppState {
    /// The domain service.
    pub service: PreferenceService,
    /// The token verifier.
    pub verifier: Verifier,
    /// The process's metrics.
    pub metrics: Metrics,
    /// What pages in a browser get: CORS, JWT cookies, CSRF.
    pub browser: BrowserConfig,
    /// Deadlines, rate limits, trusted proxies.
    pub traffic: Traffic,
    /// The rate limiters, built from `traffic.rate_limits`.
    pub rate_limiters: RateLimiters,
}

/// Every resource the application serves, with the methods it answers (`Allow`). The OpenAPI
/// document is checked against this list.
pub const RESOURCES: &[(&str, &str)] = &[
    (edx::LIST, edx::LIST_ALLOW),
    (edx::LIST_SLASH, edx::LIST_ALLOW),
    (edx::ONE, edx::ONE_ALLOW),
    (records::LIST, records::LIST_ALLOW),
    (records::ONE, records::ONE_ALLOW),
    (namespaces::ROUTES[0].0, namespaces::NAMESPACE_ALLOW),
    (namespaces::ROUTES[0].1, namespaces::MEMBER_ALLOW),
    (namespaces::ROUTES[1].0, namespaces::NAMESPACE_ALLOW),
    (namespaces::ROUTES[1].1, namespaces::MEMBER_ALLOW),
    (ops::RESOURCES[0], ops::ALLOW),
    (ops::RESOURCES[1], ops::ALLOW),
    (ops::RESOURCES[2], ops::ALLOW),
    (ops::RESOURCES[3], ops::ALLOW),
    (browser::CSRF_TOKEN, browser::CSRF_TOKEN_ALLOW),
];

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
        .configure(browser::routes)
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
        .wrap(from_fn(request_id::middleware))
}

/// A resource of dialect `D` that answers `OPTIONS` (CORS preflights included) and wrong methods
/// (405) itself, and sends `Allow` on every response. `allow` lists the methods the caller
/// registers, plus `OPTIONS`.
fn resource<D: Dialect>(
    path: impl Into<String>,
    allow: &'static str,
) -> Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::resource(path.into())
        .wrap(DefaultHeaders::new().add((header::ALLOW, allow)))
        .route(web::route().method(Method::OPTIONS).to(move |req: HttpRequest| browser::options(req, allow)))
        .default_service(web::to(move || async move {
            Err::<HttpResponse, _>(Failure::<D>::from(Problem::MethodNotAllowed(allow)))
        }))
}

/// A route for `GET` and `HEAD` (actix sends no body for `HEAD`).
fn read() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}
