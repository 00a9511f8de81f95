//! Request ids: every response carries `Request-Id` (the caller's, when it is a well-formed xid,
//! else a new one), and error bodies and log lines of the request name it ([`current`]).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;

/// The request id header.
pub const HEADER: HeaderName = HeaderName::from_static("request-id");

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being served, for error bodies and log lines; empty outside a request.
pub fn current() -> String {
    CURRENT.try_with(Clone::clone).unwrap_or_default()
}

/// Whether `id` is a well-formed xid: 20 characters of lowercase base32hex.
fn well_formed(id: &str) -> bool {
    id.len() == 20 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'v'))
}

/// Middleware: assigns the request id, serves the request within it, and echoes it in the
/// response.
///
/// # Errors
/// Passes on the inner service's errors.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| well_formed(v))
        .map_or_else(|| xid::new().to_string(), str::to_owned);
    let mut response = CURRENT.scope(id.clone(), next.call(req)).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_well_formed_and_odd_ones_are_not() {
        assert!(well_formed(&xid::new().to_string()));
        for bad in [
            "",
            "short",
            "9m4e2mr0ui3e8a215n4g9m4e2mr0ui3e8a215n4g",
            "9M4E2MR0UI3E8A215N4G",
            "9m4e2mr0ui3e8a215n4z",
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
    }
}
