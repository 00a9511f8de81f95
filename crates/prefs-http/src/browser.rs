//! Browser clients, as Open edX's micro-frontends are: what prefs offers them
//! ([`BrowserConfig`]), the names of the JWT cookie pair the LMS sets
//! (`edx-jwt-cookie-header-payload` and `edx-jwt-cookie-signature`) and of Django's CSRF cookie
//! and header, and CORS for the origins configured. Reading the cookies, the CSRF checks and the
//! CSRF token API (`GET /csrf/api/v1/token`) are the private module `csrf`'s.
//!
//! CORS: one actix-cors middleware around the whole application puts
//! `Access-Control-Allow-Origin`, `-Allow-Credentials`, `-Expose-Headers` and `Vary` on every answer
//! to a listed origin, errors included; a preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered by the `OPTIONS` route of the resource it asks about, which
//! adds its own methods, the headers allowed and `Access-Control-Max-Age`. A plain `OPTIONS`
//! answers `Allow` as before.

use std::fmt;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName};
use actix_web::middleware::{Condition, Next};
use url::Url;

/// The cookie holding the token's header and payload (`<header>.<payload>`), readable by pages.
pub const JWT_HEADER_PAYLOAD_COOKIE: &str = "edx-jwt-cookie-header-payload";
/// The cookie holding the token's signature (HTTP-only where the LMS sets it).
pub const JWT_SIGNATURE_COOKIE: &str = "edx-jwt-cookie-signature";
/// Django's CSRF cookie.
pub const CSRF_COOKIE: &str = "csrftoken";
/// The header a page sends the CSRF token in.
pub const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrftoken");

/// The request headers a page may send cross-origin: Open edX's frontend library sends
/// `USE-JWT-COOKIE` on every request and `X-CSRFToken` on writes.
pub const ALLOWED_HEADERS: &str =
    "Authorization, Content-Type, If-Match, If-None-Match, USE-JWT-COOKIE, X-CSRFToken, Request-Id";
/// The response headers a page may read.
pub const EXPOSED_HEADERS: [&str; 4] = ["ETag", "Location", "Request-Id", "Retry-After"];
/// How long a browser may remember a preflight's answer, in seconds (Chromium's ceiling).
pub const MAX_AGE_SECONDS: u32 = 7200;
/// How long the CSRF cookie lives, in seconds: Django's default (`CSRF_COOKIE_AGE`, a year).
pub const CSRF_COOKIE_MAX_AGE: u32 = 31_449_600;

/// The `SameSite` attribute of the CSRF cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent on cross-site requests too: needed when pages and prefs are on different sites.
    /// Browsers require `Secure` with it.
    #[default]
    None,
    /// Sent on same-site requests (and top-level navigations).
    Lax,
    /// Sent on same-site requests only.
    Strict,
}

impl fmt::Display for SameSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::Lax => "Lax",
            Self::Strict => "Strict",
        })
    }
}

/// What prefs offers pages running in a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserConfig {
    /// Origins (`https://apps.example.com`) that may call prefs from a page, with credentials;
    /// or `*` alone: any origin, without credentials. Empty: no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Authenticate requests without an `Authorization` header by the JWT cookie pair.
    pub jwt_cookies: bool,
    /// `SameSite` of the CSRF cookie prefs sets.
    pub csrf_cookie_same_site: SameSite,
    /// Whether the CSRF cookie is `Secure` (sent over HTTPS only).
    pub csrf_cookie_secure: bool,
}

impl Default for BrowserConfig {
    /// No CORS, no JWT cookies; a CSRF cookie that survives cross-site answers
    /// (`SameSite=None; Secure`).
    fn default() -> Self {
        Self {
            cors_origins: Vec::new(),
            jwt_cookies: false,
            csrf_cookie_same_site: SameSite::None,
            csrf_cookie_secure: true,
        }
    }
}

/// Why a [`BrowserConfig`] cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BrowserConfigError {
    /// `*` among other origins.
    #[error("PREFS_CORS_ORIGINS: `*` (any origin, without credentials) must stand alone")]
    WildcardAmongOrigins,
    /// `null`, which any sandboxed page or local file sends.
    #[error("PREFS_CORS_ORIGINS: `null` cannot be trusted (any sandboxed page or local file sends it)")]
    NullOrigin,
    /// Not an origin as browsers send it.
    #[error(
        "PREFS_CORS_ORIGINS: `{0}` is not an origin as browsers send it (scheme://host[:port], lowercase, no path{1})"
    )]
    BadOrigin(String, String),
    /// `SameSite=None` without `Secure`, which browsers drop.
    #[error(
        "a SameSite=None CSRF cookie must be Secure (browsers drop it otherwise): set PREFS_CSRF_COOKIE_SAMESITE to lax or strict to serve pages over plain HTTP"
    )]
    InsecureSameSiteNone,
}

impl BrowserConfig {
    /// Checks the origins and the cookie settings.
    ///
    /// # Errors
    /// The first thing wrong.
    pub fn validate(&self) -> Result<(), BrowserConfigError> {
        if self.csrf_cookie_same_site == SameSite::None && !self.csrf_cookie_secure {
            return Err(BrowserConfigError::InsecureSameSiteNone);
        }
        if self.cors_origins.iter().any(|o| o == "*") && self.cors_origins.len() > 1 {
            return Err(BrowserConfigError::WildcardAmongOrigins);
        }
        for origin in self.cors_origins.iter().filter(|o| *o != "*") {
            if origin == "null" {
                return Err(BrowserConfigError::NullOrigin);
            }
            let canonical = Url::parse(origin)
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https"))
                .map(|url| url.origin().ascii_serialization());
            if canonical.as_deref() != Some(origin.as_str()) {
                let hint = canonical.map(|c| format!("; did you mean `{c}`?")).unwrap_or_default();
                return Err(BrowserConfigError::BadOrigin(origin.clone(), hint));
            }
        }
        Ok(())
    }

    /// Whether prefs answers CORS at all.
    pub fn cors_enabled(&self) -> bool {
        !self.cors_origins.is_empty()
    }

    /// Whether any origin may call, without credentials (`*`).
    fn any_origin(&self) -> bool {
        self.cors_origins.iter().any(|o| o == "*")
    }

    /// Whether `origin` gets CORS answers.
    pub(crate) fn cors_allows(&self, origin: &str) -> bool {
        self.any_origin() || self.lists(origin)
    }

    /// Whether `origin` is listed by name (so trusted with credentials).
    pub(crate) fn lists(&self, origin: &str) -> bool {
        origin != "*" && self.cors_origins.iter().any(|o| o == origin)
    }
}

/// The CORS middleware of the whole application: nothing at all unless origins are configured.
/// Preflights pass through to the routes' `OPTIONS` ([`crate::routing::options`]).
pub(crate) fn cors(config: &BrowserConfig) -> Condition<Cors> {
    let mut cors =
        Cors::default().disable_preflight().block_on_origin_mismatch(false).expose_headers(EXPOSED_HEADERS);
    if config.any_origin() {
        cors = cors.allow_any_origin().send_wildcard();
    } else {
        for origin in &config.cors_origins {
            cors = cors.allowed_origin(origin);
        }
        cors = cors.supports_credentials();
    }
    Condition::new(config.cors_enabled(), cors)
}

/// Middleware, outside [`cors`]: an answer that allows no origin carries no CORS header either
/// (actix-cors adds `Access-Control-Allow-Credentials` and `-Expose-Headers` to every answer).
///
/// # Errors
/// Passes on the inner service's errors.
pub(crate) async fn tidy(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
        headers.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_be_as_browsers_send_them() {
        let with = |origins: &[&str]| BrowserConfig {
            cors_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            ..BrowserConfig::default()
        };
        assert_eq!(with(&["https://apps.example.com", "http://127.0.0.1:8000"]).validate(), Ok(()));
        assert_eq!(with(&["*"]).validate(), Ok(()));
        assert_eq!(
            with(&["*", "https://a.example"]).validate(),
            Err(BrowserConfigError::WildcardAmongOrigins)
        );
        assert_eq!(with(&["null"]).validate(), Err(BrowserConfigError::NullOrigin));
        for bad in
            ["https://apps.example.com/", "https://Apps.example.com", "apps.example.com", "ftp://x.example"]
        {
            assert!(matches!(with(&[bad]).validate(), Err(BrowserConfigError::BadOrigin(..))), "{bad}");
        }
        let insecure = BrowserConfig { csrf_cookie_secure: false, ..BrowserConfig::default() };
        assert_eq!(insecure.validate(), Err(BrowserConfigError::InsecureSameSiteNone));
        let lax = BrowserConfig { csrf_cookie_same_site: SameSite::Lax, ..insecure };
        assert_eq!(lax.validate(), Ok(()));
    }
}
