//! The one error type of the domain and its ports.

use std::fmt;

/// What is wrong with a member: a stable machine code, shown to clients as [`FieldCode::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FieldCode {
    /// Not a valid preference key.
    InvalidKey,
    /// Not a valid value.
    InvalidValue,
    /// Not valid otherwise (a body field of the wrong type, a username, a subject, an id).
    Invalid,
    /// `null` where a value is needed.
    Null,
    /// A field the body must have is missing.
    Required,
    /// Empty, or only whitespace (Open edX).
    Empty,
    /// Nested deeper than the limit.
    TooDeep,
    /// Over a size limit: a key, a value, or the namespace's stored bytes.
    TooLarge,
    /// Over the namespace's number of keys.
    TooManyKeys,
    /// The key is taken.
    Exists,
    /// Not JSON (Open edX reads values as JSON text).
    InvalidJson,
    /// Nothing to write (an Open edX patch that is not an object, or empty).
    NoData,
    /// A query parameter given more than once.
    Ambiguous,
}

impl FieldCode {
    /// The code as clients see it: `invalid-key`, `invalid-value`, `invalid`, `null`,
    /// `required`, `empty`, `too-deep`, `too-large`, `too-many-keys`, `exists`, `invalid-json`,
    /// `no-data`, `ambiguous`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidKey => "invalid-key",
            Self::InvalidValue => "invalid-value",
            Self::Invalid => "invalid",
            Self::Null => "null",
            Self::Required => "required",
            Self::Empty => "empty",
            Self::TooDeep => "too-deep",
            Self::TooLarge => "too-large",
            Self::TooManyKeys => "too-many-keys",
            Self::Exists => "exists",
            Self::InvalidJson => "invalid-json",
            Self::NoData => "no-data",
            Self::Ambiguous => "ambiguous",
        }
    }
}

impl fmt::Display for FieldCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem with one member of a request: which member, a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The member at fault: a preference key, or a body field such as `value`.
    pub field: String,
    /// What is wrong with it.
    pub code: FieldCode,
    /// What a developer should know.
    pub developer_message: String,
    /// What an end user may be shown.
    pub user_message: String,
}

impl FieldError {
    /// A field error whose developer and user messages are the same.
    pub fn new(field: &str, code: FieldCode, message: impl Into<String>) -> Self {
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
