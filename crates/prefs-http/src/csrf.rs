//! Browser clients signed in at the LMS (docs/contract.md §2.7): the JWT cookie
//! pair instead of an `Authorization` header, Django's CSRF protection for the writes such cookies
//! authenticate (the `csrftoken` cookie, the `X-CSRFToken` header, masked or not, and the `Origin`
//! check), and the CSRF token API Open edX's frontend library calls (`GET /csrf/api/v1/token`).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use rand::Rng;
use serde::Serialize;
use subtle::ConstantTimeEq;
use url::Url;
use utoipa::ToSchema;

use crate::browser::{
    BrowserConfig, CSRF_COOKIE, CSRF_COOKIE_MAX_AGE, CSRF_HEADER, JWT_HEADER_PAYLOAD_COOKIE,
    JWT_SIGNATURE_COOKIE,
};
use crate::error::Problem;
use crate::state::AppState;

/// Open edX's CSRF token API (in the Open edX dialect's route table).
pub(crate) const CSRF_TOKEN: &str = "/csrf/api/v1/token";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser::SameSite;

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
    fn the_cookie_holds_the_secret_as_configured() {
        let lax = BrowserConfig {
            csrf_cookie_same_site: SameSite::Lax,
            csrf_cookie_secure: false,
            ..BrowserConfig::default()
        };
        assert_eq!(
            csrf_cookie(&[b'a'; 32], &lax),
            format!("csrftoken={}; Max-Age=31449600; Path=/; SameSite=Lax", "a".repeat(32))
        );
    }
}
