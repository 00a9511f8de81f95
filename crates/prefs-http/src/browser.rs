//! Browser clients, as Open edX's micro-frontends are: the JWT cookie pair the LMS sets
//! (`edx-jwt-cookie-header-payload` and `edx-jwt-cookie-signature`) instead of an `Authorization`
//! header, Django's CSRF protection for the writes such cookies authenticate (the `csrftoken`
//! cookie, the `X-CSRFToken` header, masked or not, and the `Origin` check), the CSRF token API
//! Open edX's frontend library calls (`GET /csrf/api/v1/token`), and CORS for the origins
//! configured ([`BrowserConfig`]).
//!
//! CORS: one actix-cors middleware around the whole application puts
//! `Access-Control-Allow-Origin`, `-Allow-Credentials`, `-Expose-Headers` and `Vary` on every answer
//! to a listed origin, errors included; a preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered by the route it asks about (its `OPTIONS` route), which
//! adds its own methods, the headers allowed and `Access-Control-Max-Age`. A plain `OPTIONS`
//! answers `Allow` as before.

use std::fmt;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{Condition, Next};
use actix_web::{HttpRequest, HttpResponse, web};
use rand::Rng;
use serde::Serialize;
use subtle::ConstantTimeEq;
use url::Url;
use utoipa::ToSchema;

use crate::edx::Edx;
use crate::error::Problem;
use crate::{AppState, read, resource};

/// The cookie holding the token's header and payload (`<header>.<payload>`), readable by pages.
pub const JWT_HEADER_PAYLOAD_COOKIE: &str = "edx-jwt-cookie-header-payload";
/// The cookie holding the token's signature (HTTP-only where the LMS sets it).
pub const JWT_SIGNATURE_COOKIE: &str = "edx-jwt-cookie-signature";
/// Django's CSRF cookie.
pub const CSRF_COOKIE: &str = "csrftoken";
/// The header a page sends the CSRF token in.
pub const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrftoken");
/// Open edX's CSRF token API.
pub(crate) const CSRF_TOKEN: &str = "/csrf/api/v1/token";
pub(crate) const CSRF_TOKEN_ALLOW: &str = "GET, HEAD, OPTIONS";

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
    fn cors_allows(&self, origin: &str) -> bool {
        self.any_origin() || self.lists(origin)
    }

    /// Whether `origin` is listed by name (so trusted with credentials).
    fn lists(&self, origin: &str) -> bool {
        origin != "*" && self.cors_origins.iter().any(|o| o == origin)
    }
}

/// The CORS middleware of the whole application: nothing at all unless origins are configured.
/// Preflights pass through to the routes' `OPTIONS` ([`options`]).
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

/// `OPTIONS` on a resource that answers `allow`: 204 with `Allow`; for a preflight from an
/// origin CORS allows, also the resource's methods, the headers a page may send and how long to
/// remember it (the CORS middleware adds the origin, credentials and `Vary`).
pub(crate) async fn options(req: HttpRequest, allow: &'static str) -> HttpResponse {
    let mut response = HttpResponse::NoContent();
    let preflight = req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let origin = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok());
    let config = req.app_data::<web::Data<AppState>>().map(|state| &state.browser);
    if let (true, Some(origin), Some(config)) = (preflight, origin, config)
        && config.cors_allows(origin)
    {
        response
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, allow))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, MAX_AGE_SECONDS));
    }
    response.finish()
}

/// Every cookie of the request's `Cookie` headers, as (name, value), in order.
fn cookies(req: &HttpRequest) -> impl Iterator<Item = (&str, &str)> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.trim(), value.trim().trim_matches('"')))
}

/// The first non-empty value of cookie `name`.
fn cookie<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    cookies(req).find(|(n, v)| *n == name && !v.is_empty()).map(|(_, v)| v)
}

/// The token a request authenticates with, and for a token from the JWT cookies, whether the
/// request passes the CSRF checks (to be enforced once the token is known to be good, as Open
/// edX does). With cookies off, or an `Authorization` header (which wins), or neither cookie:
/// `bearer`'s answer. One cookie of the two (what a browser holds after a failed refresh) is a
/// 401.
pub(crate) fn token(
    req: &HttpRequest,
    config: Option<&BrowserConfig>,
    bearer: fn(&HttpRequest) -> Result<&str, String>,
) -> (Result<String, String>, Result<(), Problem>) {
    let from_header = || (bearer(req).map(str::to_owned), Ok(()));
    let Some(config) = config.filter(|c| c.jwt_cookies) else { return from_header() };
    if req.headers().contains_key(header::AUTHORIZATION) {
        return from_header();
    }
    match (cookie(req, JWT_HEADER_PAYLOAD_COOKIE), cookie(req, JWT_SIGNATURE_COOKIE)) {
        (None, None) => from_header(),
        (Some(header_payload), Some(signature)) => {
            (Ok(format!("{header_payload}.{signature}")), csrf(req, config))
        }
        (Some(_), None) | (None, Some(_)) => (
            Err(format!(
                "only one of the cookies {JWT_HEADER_PAYLOAD_COOKIE} and {JWT_SIGNATURE_COOKIE} was sent; sign in again"
            )),
            Ok(()),
        ),
    }
}

/// Django's CSRF checks for a cookie-authenticated request: a write (anything but `GET`, `HEAD`,
/// `OPTIONS`, `TRACE`) must come from prefs' own origin or a listed one when it names its
/// `Origin`, and carry `X-CSRFToken` matching the `csrftoken` cookie.
fn csrf(req: &HttpRequest, config: &BrowserConfig) -> Result<(), Problem> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE) {
        return Ok(());
    }
    let refuse = |why: &str| Err(Problem::Forbidden(format!("CSRF Failed: {why}")));
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes());
        if !(config.lists(&origin) || own_origin(req, &origin)) {
            return refuse(&format!("Origin checking failed - {origin} does not match any trusted origins."));
        }
    }
    // Every `csrftoken` cookie counts: a page may hold prefs' own and a domain-wide one of the LMS.
    let secrets: Vec<[u8; SECRET_LENGTH]> = cookies(req)
        .filter(|(name, _)| *name == CSRF_COOKIE)
        .filter_map(|(_, value)| unmask(value))
        .collect();
    if secrets.is_empty() {
        return refuse("CSRF cookie not set.");
    }
    let Some(sent) = req.headers().get(CSRF_HEADER) else {
        return refuse("CSRF token missing.");
    };
    let Some(sent) = sent.to_str().ok().and_then(unmask) else {
        return refuse("CSRF token from the 'X-Csrftoken' HTTP header has incorrect length or characters.");
    };
    if secrets.iter().any(|secret| bool::from(secret.ct_eq(&sent))) {
        Ok(())
    } else {
        refuse("CSRF token from the 'X-Csrftoken' HTTP header incorrect.")
    }
}

/// Whether `origin` is the request's own: the same scheme, host and port as the public URL, else
/// as it was sent to (`Host`, or what a trusted proxy says; see [`crate::client::url`]).
fn own_origin(req: &HttpRequest, origin: &str) -> bool {
    match (crate::client::url(req), Url::parse(origin)) {
        (Some(own), Ok(theirs)) => theirs.origin().is_tuple() && own.origin() == theirs.origin(),
        _ => false,
    }
}

/// The characters of CSRF secrets and tokens, in Django's order (`CSRF_ALLOWED_CHARS`:
/// `string.ascii_letters + string.digits`), which masking depends on.
const CHARS: &[u8; 62] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
/// The length of a secret; a masked token is twice as long (mask, then cipher).
const SECRET_LENGTH: usize = 32;

/// The index of `c` in [`CHARS`].
fn index(c: u8) -> Option<usize> {
    match c {
        b'a'..=b'z' => Some(usize::from(c - b'a')),
        b'A'..=b'Z' => Some(usize::from(c - b'A') + 26),
        b'0'..=b'9' => Some(usize::from(c - b'0') + 52),
        _ => None,
    }
}

/// The secret of a CSRF value: a 32-character secret as it is, or a 64-character masked token
/// unmasked as Django's `_unmask_cipher_token` does (the first half is the mask, the second the
/// cipher; each secret character is the cipher's minus the mask's, modulo 62). Anything else
/// (another length, a character outside `[a-zA-Z0-9]`) is none.
fn unmask(value: &str) -> Option<[u8; SECRET_LENGTH]> {
    let indices: Vec<usize> = value.bytes().map(index).collect::<Option<_>>()?;
    let mut secret = [0u8; SECRET_LENGTH];
    match indices.len() {
        SECRET_LENGTH => secret.copy_from_slice(value.as_bytes()),
        n if n == 2 * SECRET_LENGTH => {
            let (mask, cipher) = indices.split_at(SECRET_LENGTH);
            for (out, (m, c)) in secret.iter_mut().zip(mask.iter().zip(cipher)) {
                *out = CHARS[(c + CHARS.len() - m) % CHARS.len()];
            }
        }
        _ => return None,
    }
    Some(secret)
}

/// A masked token for `secret` (Django's `_mask_cipher_secret`): a fresh random mask, then each
/// secret character plus the mask's, modulo 62. Every call gives another token for the same
/// secret, so the token in a page says nothing about the cookie.
fn mask(secret: &[u8; SECRET_LENGTH]) -> String {
    let mut rng = rand::rng();
    let mask: Vec<usize> = (0..SECRET_LENGTH).map(|_| rng.random_range(0..CHARS.len())).collect();
    let cipher = secret.iter().zip(&mask).map(|(s, m)| {
        let s = index(*s).unwrap_or_default();
        CHARS[(s + m) % CHARS.len()]
    });
    mask.iter().map(|m| CHARS[*m]).chain(cipher).map(char::from).collect()
}

/// A new random secret.
fn new_secret() -> [u8; SECRET_LENGTH] {
    let mut rng = rand::rng();
    std::array::from_fn(|_| CHARS[rng.random_range(0..CHARS.len())])
}

/// The `Set-Cookie` value for the CSRF cookie holding `secret`.
fn csrf_cookie(secret: &[u8; SECRET_LENGTH], config: &BrowserConfig) -> String {
    let secret = String::from_utf8_lossy(secret);
    let secure = if config.csrf_cookie_secure { "; Secure" } else { "" };
    format!(
        "{CSRF_COOKIE}={secret}; Max-Age={CSRF_COOKIE_MAX_AGE}; Path=/; SameSite={}{secure}",
        config.csrf_cookie_same_site
    )
}

/// A CSRF token.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"csrfToken": "Xa2dRnPNtE3xUhq7Kd0sF9pgJVzWmLbYc4oBTy1iGk8eQwHuZr6OjAvDl5SnCIf7"}))]
pub struct CsrfToken {
    /// The token to send back in `X-CSRFToken` (a masked form of the `csrftoken` cookie's
    /// secret).
    #[serde(rename = "csrfToken")]
    pub csrf_token: String,
}

/// A CSRF token for writes authenticated by the JWT cookies.
///
/// As Open edX's CSRF API: sets the `csrftoken` cookie (keeping the secret of a valid one the
/// request carries) and answers a masked token for it, which a page sends back as `X-CSRFToken`
/// on `PUT`, `PATCH`, `POST` and `DELETE`. Needs no authentication; requests authenticated by an
/// `Authorization` header need no CSRF token.
#[utoipa::path(get, operation_id = "csrf_token", path = "/csrf/api/v1/token", tag = "Open edX",
    responses(
        (status = 200, description = "A token; the `csrftoken` cookie is set", body = CsrfToken,
            headers(("Set-Cookie" = String, description = "`csrftoken`, the secret the token masks"))),
    ))]
pub(crate) async fn csrf_token(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let secret = cookies(&req)
        .filter(|(name, _)| *name == CSRF_COOKIE)
        .find_map(|(_, value)| unmask(value))
        .unwrap_or_else(new_secret);
    HttpResponse::build(StatusCode::OK)
        .insert_header((header::SET_COOKIE, csrf_cookie(&secret, &state.browser)))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(CsrfToken { csrf_token: mask(&secret) })
}

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource::<Edx>(CSRF_TOKEN, CSRF_TOKEN_ALLOW).route(read().to(csrf_token)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked token for `secret` with a given mask, as Django computes it.
    fn mask_with(secret: &str, mask: &str) -> String {
        let cipher: String = secret
            .bytes()
            .zip(mask.bytes())
            .map(|(s, m)| char::from(CHARS[(index(s).unwrap() + index(m).unwrap()) % 62]))
            .collect();
        format!("{mask}{cipher}")
    }

    #[test]
    fn masks_unmask_to_their_secret() {
        let secret = new_secret();
        assert!(secret.iter().all(|c| index(*c).is_some()));
        for _ in 0..100 {
            let token = mask(&secret);
            assert_eq!(token.len(), 64);
            assert_eq!(unmask(&token), Some(secret));
        }
        assert_eq!(unmask(std::str::from_utf8(&secret).unwrap()), Some(secret));
    }

    #[test]
    fn unmasking_is_djangos() {
        // The mask of all `a` (index 0) leaves the secret as it is; `b` shifts every character by one.
        let secret = "abcdefghijklmnopqrstuvwxyzABCDE9";
        assert_eq!(unmask(&mask_with(secret, &"a".repeat(32))).unwrap(), secret.as_bytes());
        let shifted = mask_with(secret, &"b".repeat(32));
        assert!(shifted.ends_with("bcdefghijklmnopqrstuvwxyzABCDEFa"), "{shifted}");
        assert_eq!(unmask(&shifted).unwrap(), secret.as_bytes());
        // Wrapping past `9` (index 61) back to `a`.
        assert_eq!(unmask(&mask_with("9".repeat(32).as_str(), &"9".repeat(32))).unwrap(), [b'9'; 32]);
        for bad in ["", "short", &"a".repeat(33), &format!("{}-", "a".repeat(31)), &"é".repeat(16)] {
            assert_eq!(unmask(bad), None, "{bad}");
        }
    }

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
        assert_eq!(
            csrf_cookie(&[b'a'; 32], &lax),
            format!("csrftoken={}; Max-Age=31449600; Path=/; SameSite=Lax", "a".repeat(32))
        );
    }
}
