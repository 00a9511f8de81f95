//! The prefs binary's library: command-line configuration, wiring of the storage and HTTP
//! adapters into a server, and logging. `main.rs` only dispatches commands.

pub mod cli;
pub mod telemetry;
pub mod users;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{HttpServer, dev::Server, web};
use anyhow::Context;
use prefs_domain::{Limits, PreferenceService};
use prefs_http::{AppState, BrowserConfig, JwtConfig, Metrics, PoolStats, RateLimiters, Traffic, Verifier};
use prefs_storage::{DieselStore, StoreConfig};

/// Everything `prefs serve` needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port.
    pub bind: String,
    /// The database.
    pub store: StoreConfig,
    /// Whether to run migrations at start.
    pub migrate: bool,
    /// How tokens are verified.
    pub jwt: JwtConfig,
    /// Size and count limits.
    pub limits: Limits,
    /// HTTP worker threads; by default one per core.
    pub workers: Option<usize>,
    /// What pages in a browser get: CORS, Open edX's JWT cookies, CSRF.
    pub browser: BrowserConfig,
    /// Deadlines, rate limits, trusted proxies.
    pub traffic: Traffic,
}

/// A bound, ready-to-run server.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Connects to the database, runs migrations (unless disabled), prepares token verification
    /// and binds the listener.
    ///
    /// # Errors
    /// When the database, the key or the address is unusable.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.browser.validate()?;
        if settings.browser.cors_enabled() || settings.browser.jwt_cookies {
            let browser = &settings.browser;
            tracing::info!(cors_origins = ?browser.cors_origins, jwt_cookies = browser.jwt_cookies, "browser clients");
        }
        let verifier = Verifier::new(&settings.jwt)?;
        if settings.jwt.audiences.is_empty() {
            tracing::warn!("PREFS_JWT_AUDIENCE is not set: tokens are accepted whatever their `aud`");
        }
        let store = DieselStore::connect(&settings.store).await.context("connecting to the database")?;
        if settings.migrate {
            store.migrate().await.context("running migrations")?;
        }
        tracing::info!(backend = %store.backend(), "storage ready");
        let probe = store.clone();
        let metrics = Metrics::new(Arc::new(move || {
            let status = probe.pool_status();
            PoolStats {
                max_size: status.max_size,
                size: status.size,
                available: status.available,
                waiting: status.waiting,
            }
        }))
        .map_err(|e| anyhow::anyhow!("registering metrics: {e}"))?;
        let state = web::Data::new(AppState {
            service: PreferenceService::new(Arc::new(store), settings.limits),
            verifier,
            rate_limiters: RateLimiters::new(&settings.traffic.rate_limits, &metrics),
            metrics,
            browser: settings.browser.clone(),
            traffic: settings.traffic.clone(),
        });
        let listener =
            TcpListener::bind(&settings.bind).with_context(|| format!("binding {}", settings.bind))?;
        let port = listener.local_addr()?.port();
        prefs_http::deadlines::limit_sends(&listener, settings.traffic.deadlines.send)
            .context("setting the send deadline on the listening socket")?;
        let mut server = HttpServer::new(move || prefs_http::app(state.clone()));
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        let server = server.listen(listener)?.run();
        Ok(Self { port, server })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT; in-flight requests finish first.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
