//! Error mapping: every failure becomes a [`Problem`], and each dialect renders problems in its
//! own format ([`Dialect`]). Handlers and extractors return [`Failure<D>`], so an error can only
//! leave a route in that route's dialect.

use std::marker::PhantomData;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use prefs_domain::{Error, FieldError};
use serde_json::Value;

use crate::request_id;

/// What went wrong, independent of how a dialect shows it.
#[derive(Debug)]
pub enum Problem {
    /// No usable bearer token (401); the text says why, for the developer.
    Unauthorized(String),
    /// A request refused whoever sent it (403): a cookie-authenticated write failing the CSRF or
    /// `Origin` check; the text says why.
    Forbidden(String),
    /// A domain or storage error.
    Domain(Error),
    /// One invalid member, to be shown flat rather than as a list (the Open edX PUT).
    Flat(FieldError),
    /// The body is not well-formed JSON (400).
    MalformedJson(String),
    /// The body's content type is not the one the route takes (415); names the expected one.
    UnsupportedMediaType(&'static str),
    /// The body is over the limit in bytes (413).
    PayloadTooLarge(usize),
    /// The body did not arrive whole within the body deadline (408; the connection is closed).
    BodyTimeout(std::time::Duration),
    /// No route matches the path (404).
    NoRoute,
    /// The route exists but not for this method (405), with the allowed methods.
    MethodNotAllowed(&'static str),
    /// The method is none of HTTP's own (501).
    UnknownMethod,
    /// Over a rate limit (429): which one, and the whole seconds (at least 1) until a request
    /// would pass (`Retry-After`).
    TooManyRequests {
        /// The limit.
        limit: Limit,
        /// Seconds to wait.
        retry_after: u64,
    },
}

/// Which limit refused a request: the `limit` label of `prefs_rate_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Requests per user.
    User,
    /// Requests without a valid token per client address.
    Address,
    /// New users per client address.
    Signup,
}

impl Limit {
    /// Every limit.
    pub const ALL: [Self; 3] = [Self::User, Self::Address, Self::Signup];

    /// Its metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Address => "address",
            Self::Signup => "signup",
        }
    }
}

impl Problem {
    /// The HTTP status most dialects use for this problem.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Domain(error) => match error {
                Error::UserNotFound | Error::PreferenceNotFound => StatusCode::NOT_FOUND,
                Error::IdentityMismatch => StatusCode::UNAUTHORIZED,
                Error::Forbidden => StatusCode::FORBIDDEN,
                Error::Invalid(_) | Error::TooManyKeys { .. } => StatusCode::BAD_REQUEST,
                Error::UsernameTaken(_) => StatusCode::CONFLICT,
                Error::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
                Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::Flat(_) | Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnknownMethod => StatusCode::NOT_IMPLEMENTED,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// A stable machine code for the problem answered with `status` (the JSON:API `code` list of
    /// docs/contract.md §3.4).
    pub fn code(&self, status: StatusCode) -> &'static str {
        match status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
            StatusCode::REQUEST_TIMEOUT => "request-timeout",
            StatusCode::PRECONDITION_FAILED => "precondition-failed",
            StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::TOO_MANY_REQUESTS => "too-many-requests",
            StatusCode::BAD_REQUEST if matches!(self, Self::MalformedJson(_)) => "invalid-json",
            StatusCode::BAD_REQUEST => "invalid-value",
            StatusCode::NOT_IMPLEMENTED if matches!(self, Self::UnknownMethod) => "not-implemented",
            _ => "internal",
        }
    }

    /// A message safe to show a client: never the details of an internal error.
    pub fn message(&self) -> String {
        match self {
            Self::Unauthorized(why) => format!("Authentication failed: {why}"),
            Self::Forbidden(why) => why.clone(),
            Self::Domain(Error::UserNotFound) => "No such user.".into(),
            Self::Domain(Error::PreferenceNotFound) => "No such preference.".into(),
            Self::Domain(Error::Forbidden) => "You may not do this to this user's preferences.".into(),
            Self::Domain(Error::Invalid(errors)) => {
                errors.iter().map(|e| e.developer_message.as_str()).collect::<Vec<_>>().join(" ")
            }
            Self::Domain(Error::TooManyKeys { .. }) => "Max number of keys exceeded".into(),
            Self::Domain(Error::PreconditionFailed) => {
                "The resource has changed: If-Match or If-None-Match does not hold.".into()
            }
            Self::Domain(Error::UsernameTaken(name)) => {
                format!("The username '{name}' belongs to another account.")
            }
            Self::Domain(Error::IdentityMismatch) => {
                "The token's user id does not match this account.".into()
            }
            Self::Domain(Error::Unavailable(_)) => "The service is unavailable; try again later.".into(),
            Self::Domain(_) => "Internal error.".into(),
            Self::Flat(error) => error.developer_message.clone(),
            Self::MalformedJson(why) => format!("Malformed JSON: {why}"),
            Self::UnsupportedMediaType(expected) => format!("Content-Type must be {expected}."),
            Self::PayloadTooLarge(limit) => format!("The request body is over the limit of {limit} bytes."),
            Self::BodyTimeout(deadline) => format!("The request body did not arrive within {deadline:?}."),
            Self::NoRoute => "No such route.".into(),
            Self::MethodNotAllowed(allow) => format!("Method not allowed; this route takes {allow}."),
            Self::UnknownMethod => "Unknown method.".into(),
            Self::TooManyRequests { limit, retry_after } => {
                let what = match limit {
                    Limit::User => "Too many requests for this user",
                    Limit::Address => "Too many requests without a valid token from this address",
                    Limit::Signup => "Too many new users from this address",
                };
                format!("{what}; try again in {retry_after} s.")
            }
        }
    }

    /// The invalid members, if this is a validation problem.
    pub fn field_errors(&self) -> Option<&[FieldError]> {
        match self {
            Self::Domain(Error::Invalid(errors)) => Some(errors),
            Self::Flat(error) => Some(std::slice::from_ref(error)),
            _ => None,
        }
    }
}

impl From<Error> for Problem {
    fn from(error: Error) -> Self {
        Self::Domain(error)
    }
}

/// How one API dialect shows problems.
pub trait Dialect: 'static {
    /// The dialect's status for `problem`; by default [`Problem::status`].
    fn status(problem: &Problem) -> StatusCode {
        problem.status()
    }

    /// The error body and its content type.
    fn body(problem: &Problem, status: StatusCode) -> (&'static str, Value);
}

/// A [`Problem`] on its way out of a route of dialect `D`.
pub struct Failure<D> {
    problem: Problem,
    dialect: PhantomData<D>,
}

impl<D, P: Into<Problem>> From<P> for Failure<D> {
    fn from(problem: P) -> Self {
        Self { problem: problem.into(), dialect: PhantomData }
    }
}

impl<D> std::fmt::Debug for Failure<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.problem.fmt(f)
    }
}

impl<D> std::fmt::Display for Failure<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.problem.message())
    }
}

impl<D: Dialect> ResponseError for Failure<D> {
    fn status_code(&self) -> StatusCode {
        D::status(&self.problem)
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() && !matches!(self.problem, Problem::UnknownMethod) {
            // Logged once, here, with the cause; the client gets a generic message.
            let cause = match &self.problem {
                Problem::Domain(Error::Unavailable(e) | Error::Internal(e)) => format!("{e:#}"),
                other => format!("{other:?}"),
            };
            tracing::error!(request_id = %request_id::current(), status = status.as_u16(), %cause, "request failed");
        }
        let (content_type, body) = D::body(&self.problem, status);
        let mut response = HttpResponseBuilder::new(status);
        response.insert_header((header::CONTENT_TYPE, content_type));
        match &self.problem {
            Problem::Unauthorized(_) | Problem::Domain(Error::IdentityMismatch) => {
                response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            Problem::MethodNotAllowed(allow) => {
                response.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
            }
            // The rest of the body may still be on its way: the connection is not reused.
            Problem::BodyTimeout(_) => {
                response.force_close();
            }
            Problem::TooManyRequests { retry_after, .. } => {
                response.insert_header((header::RETRY_AFTER, *retry_after));
            }
            _ => {}
        }
        response.body(body.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edx::Edx;
    use crate::jsonapi::JsonApi;
    use crate::records::Records;

    /// A token whose user id at the identity provider is not its account's is answered as not
    /// authenticated, in every dialect's own error format.
    #[test]
    fn an_identity_mismatch_is_401_in_every_dialect() {
        let problem = Problem::Domain(Error::IdentityMismatch);
        let status = problem.status();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let message = "The token's user id does not match this account.";
        assert_eq!(problem.message(), message);
        let (_, edx) = Edx::body(&problem, status);
        assert_eq!(edx["developer_message"], message);
        assert_eq!(edx["user_message"], "You must sign in.");
        let (_, records) = Records::body(&problem, status);
        assert_eq!(records["errors"][0]["code"], "unauthorized");
        assert_eq!(records["errors"][0]["message"], message);
        let (_, jsonapi) = JsonApi::body(&problem, status);
        assert_eq!(jsonapi["errors"][0]["status"], "401");
        assert_eq!(jsonapi["errors"][0]["code"], "unauthorized");
        assert_eq!(jsonapi["errors"][0]["detail"], message);
        let response = Failure::<JsonApi>::from(Error::IdentityMismatch).error_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers().get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
    }
}
