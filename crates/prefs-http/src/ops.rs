//! Operational endpoints: liveness, readiness and metrics (the API's own description is
//! [`crate::openapi`]'s).

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{Failure, Problem};
use crate::jsonapi::{JsonApi, JsonApiErrors};
use crate::routing::{self, Resource, Verb};
use crate::state::AppState;

/// The operational resources.
pub(crate) const RESOURCES: &[Resource] = &[
    Resource::new("/healthz", &[(Verb::Get, |route| route.to(healthz))]),
    Resource::new("/readyz", &[(Verb::Get, |route| route.to(readyz))]),
    Resource::new("/metrics", &[(Verb::Get, |route| route.to(metrics))]),
];

/// Registers [`RESOURCES`].
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    routing::register::<JsonApi>(cfg, RESOURCES);
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
