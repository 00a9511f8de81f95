//! What every request handler shares ([`AppState`]), built by the binary crate.

use prefs_domain::PreferenceService;

use crate::auth::Verifier;
use crate::browser::BrowserConfig;
use crate::metrics::Metrics;
use crate::rate_limits::RateLimiters;
use crate::traffic::Traffic;

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
