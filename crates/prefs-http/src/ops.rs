//! Operational endpoints: liveness, readiness, metrics and the API's own description.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::error::{Failure, Problem};
use crate::jsonapi::{JsonApi, JsonApiErrors};
use crate::openapi::ApiDoc;
use crate::{AppState, read, resource};

/// Every operational resource and its methods.
pub(crate) const RESOURCES: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/openapi.json"];
pub(crate) const ALLOW: &str = "GET, HEAD, OPTIONS";

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    let [healthz_path, readyz_path, metrics_path, openapi_path] = RESOURCES;
    cfg.service(resource::<JsonApi>(healthz_path, ALLOW).route(read().to(healthz)))
        .service(resource::<JsonApi>(readyz_path, ALLOW).route(read().to(readyz)))
        .service(resource::<JsonApi>(metrics_path, ALLOW).route(read().to(metrics)))
        .service(resource::<JsonApi>(openapi_path, ALLOW).route(read().to(openapi)));
}

/// A health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// `ok` or `ready`.
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(get, operation_id = "ops_healthz", path = "/healthz", tag = "Operations",
    responses((status = 200, description = "Up", body = Status, example = json!({"status": "ok"}))))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Status { status: "ok" })
}

/// The database answers.
#[utoipa::path(get, operation_id = "ops_readyz", path = "/readyz", tag = "Operations",
    responses((status = 200, description = "Ready", body = Status, example = json!({"status": "ready"})),
        (status = 503, description = "The database does not answer, or the identity provider's keys are not loaded yet", body = JsonApiErrors, content_type = "application/vnd.api+json")))]
pub(crate) async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, Failure<JsonApi>> {
    if !state.verifier.ready() {
        let why = "the identity provider's keys are not loaded yet";
        return Err(Problem::from(prefs_domain::Error::Unavailable(why.into())).into());
    }
    state.service.ping().await.map_err(Problem::from)?;
    Ok(HttpResponse::Ok().json(Status { status: "ready" }))
}

/// Prometheus metrics.
///
/// `prefs_http_requests_total` and `prefs_http_requests_duration_seconds` by route pattern, method
/// and status (unmatched paths are `UNKNOWN`), and the database pool's figures.
#[utoipa::path(get, operation_id = "ops_metrics", path = "/metrics", tag = "Operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4")))]
pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(state.metrics.render())
}

/// This document.
#[utoipa::path(get, operation_id = "ops_openapi", path = "/openapi.json", tag = "Operations",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub(crate) async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
