//! The one error type of the domain and its ports.

use std::fmt;

/// A problem with one member of a request: which member, a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The member at fault: a preference key, or a body field such as `value`.
    pub field: String,
    /// A stable machine code: `invalid-key`, `invalid-value`, `null`, `required`, `empty`,
    /// `too-deep`, `too-large`, `too-many-keys`, `exists`.
    pub code: &'static str,
    /// What a developer should know.
    pub developer_message: String,
    /// What an end user may be shown.
    pub user_message: String,
}

impl FieldError {
    /// A field error whose developer and user messages are the same.
    pub fn new(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self { field: field.to_owned(), code, developer_message: message.clone(), user_message: message }
    }

    /// Replaces the developer message.
    #[must_use]
    pub fn with_developer_message(mut self, message: impl Into<String>) -> Self {
        self.developer_message = message.into();
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.developer_message)
    }
}

/// What can go wrong in a prefs operation. Adapters translate their own failures into it once,
/// at the seam; dialects translate it into their own error bodies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The user is unknown, or hidden from the actor (the two are indistinguishable on purpose).
    #[error("no such user")]
    UserNotFound,
    /// The preference (or record) does not exist for this user.
    #[error("no such preference")]
    PreferenceNotFound,
    /// The actor may see the target but not do this to it.
    #[error("forbidden")]
    Forbidden,
    /// The request is invalid; every bad member is listed, and nothing was written.
    #[error("invalid request: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// The write would leave more keys in the namespace than the limit.
    #[error("more than {limit} keys")]
    TooManyKeys {
        /// The configured maximum.
        limit: usize,
    },
    /// A precondition (`If-Match`, `If-None-Match`) does not hold; nothing was written.
    #[error("precondition failed")]
    PreconditionFailed,
    /// The token's username already belongs to another subject.
    #[error("username {0} belongs to another user")]
    UsernameTaken(String),
    /// The token's user id at the identity provider ([`Principal::provider_id`]) cannot be its
    /// account's: the user bound to the token's subject has another id, another subject's user
    /// holds the id, or (at sign-in) the id is not positive. Nothing was written, and two people
    /// are never merged into one account. The HTTP layer answers 401: the token is not good for
    /// prefs.
    ///
    /// [`Principal::provider_id`]: crate::Principal::provider_id
    #[error("user id mismatch: the subject's user has another id, or another subject's user has this one")]
    IdentityMismatch,
    /// The storage backend cannot be reached or timed out; retrying later may work.
    #[error("storage unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else that went wrong; never shown to clients.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// An [`Error::Invalid`] with a single member.
    pub fn invalid(error: FieldError) -> Self {
        Self::Invalid(vec![error])
    }
}

impl From<FieldError> for Error {
    fn from(error: FieldError) -> Self {
        Self::invalid(error)
    }
}

/// The result type of the domain and its ports.
pub type Result<T, E = Error> = std::result::Result<T, E>;
