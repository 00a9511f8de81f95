//! Operational endpoints: liveness and readiness.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::error::{Failure, Problem};
use crate::jsonapi::JsonApi;
use crate::{AppState, read, resource};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource::<JsonApi>("/healthz", "GET, HEAD, OPTIONS").route(read().to(healthz)))
        .service(resource::<JsonApi>("/readyz", "GET, HEAD, OPTIONS").route(read().to(readyz)));
}

/// The process is up.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The database answers: 200, else 503.
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, Failure<JsonApi>> {
    state.service.ping().await.map_err(Problem::from)?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ready" })))
}
