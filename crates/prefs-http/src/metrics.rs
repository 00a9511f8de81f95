//! Prometheus metrics: requests by route pattern, method and status with a latency histogram
//! (actix-web-prom; unmatched paths share one label value and made-up methods are refused before
//! they are counted, so scanners cannot grow the label set), and the database pool's figures,
//! sampled when `/metrics` is scraped.

use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, TextEncoder};

use crate::error::Limit;

/// The database pool's figures at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// The most connections the pool opens.
    pub max_size: usize,
    /// Connections open now.
    pub size: usize,
    /// Of those, idle ones.
    pub available: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
}

/// Reads the pool's figures.
pub type PoolProbe = Arc<dyn Fn() -> PoolStats + Send + Sync>;

/// The metrics of one process.
#[derive(Clone)]
pub struct Metrics {
    pub(crate) middleware: PrometheusMetrics,
    pool: PoolProbe,
    gauges: [IntGauge; 4],
    rate_limited: IntCounterVec,
}

impl Metrics {
    /// Registers the request metrics (prefix `prefs_`) and the pool gauges.
    ///
    /// # Errors
    /// When a metric cannot be registered (a name clash).
    pub fn new(pool: PoolProbe) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let middleware = PrometheusMetricsBuilder::new("prefs")
            .mask_unmatched_patterns("UNKNOWN")
            // Swagger UI's assets sit behind one catch-all pattern the middleware cannot label.
            .exclude_regex(format!("^{}", crate::DOCS))
            .build()?;
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let gauge = IntGauge::new(name, help)?;
            middleware.registry.register(Box::new(gauge.clone()))?;
            Ok(gauge)
        };
        let gauges = [
            gauge("prefs_db_pool_max_size", "The most database connections the pools open")?,
            gauge("prefs_db_pool_connections", "Database connections open")?,
            gauge("prefs_db_pool_idle", "Database connections open and idle")?,
            gauge("prefs_db_pool_waiting", "Requests waiting for a database connection")?,
        ];
        let rate_limited = IntCounterVec::new(
            Opts::new("prefs_rate_limited_total", "Requests refused for being over a rate limit"),
            &["limit"],
        )?;
        middleware.registry.register(Box::new(rate_limited.clone()))?;
        for limit in Limit::ALL {
            rate_limited.with_label_values(&[limit.label()]);
        }
        Ok(Self { middleware, pool, gauges, rate_limited })
    }

    /// The counter of requests refused by `limit`.
    pub(crate) fn rate_limited(&self, limit: Limit) -> IntCounter {
        self.rate_limited.with_label_values(&[limit.label()])
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let stats = (self.pool)();
        for (gauge, value) in
            self.gauges.iter().zip([stats.max_size, stats.size, stats.available, stats.waiting])
        {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        let mut text = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.middleware.registry.gather(), &mut text);
        String::from_utf8(text).unwrap_or_default()
    }
}

/// Middleware: a request whose method is none of HTTP's own (RFC 9110's and `PATCH`) is answered
/// 501 in the JSON:API format before the metrics middleware sees it, so that the method label
/// only ever takes those nine values.
///
/// # Errors
/// Passes on the inner service's errors.
pub(crate) async fn refuse_unknown_methods(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ];
    if KNOWN.contains(req.method()) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let refusal: HttpResponse =
        crate::error::Failure::<crate::jsonapi::JsonApi>::from(crate::error::Problem::UnknownMethod)
            .error_response();
    Ok(req.into_response(refusal).map_into_right_body())
}
