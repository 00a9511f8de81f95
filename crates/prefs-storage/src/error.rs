//! Errors: [`StorageError`] for setting the store up, and the one place where diesel and pool
//! failures become [`prefs_domain::Error`].
//!
//! The rule: anything that may go away by itself (no connection within the pool wait, a refused
//! or closed connection, a lock wait that timed out — SQLite `SQLITE_BUSY`/`SQLITE_LOCKED`,
//! PostgreSQL `lock_timeout` —, a read-only or full disk) is [`Error::Unavailable`]; a unique
//! violation of `users.username` during provisioning is [`Error::UsernameTaken`], and one of
//! `users.id` [`Error::IdentityMismatch`]; everything else is [`Error::Internal`].

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use diesel::result::{ConnectionError, DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::PoolError as ConnectError;
use prefs_domain::{Error, Username};

use crate::backend::Backend;

/// Why the store could not be set up or migrated. Its messages never include a password from the
/// database URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The configuration cannot work: an unsupported or in-memory database URL, a pool of size 0,
    /// or an unknown setting.
    #[error("invalid storage configuration: {0}")]
    InvalidConfig(String),
    /// No connection to the database could be had.
    #[error("cannot reach the {backend} database")]
    Database {
        /// Which database.
        backend: Backend,
        /// What went wrong, as the ports report it.
        #[source]
        source: Error,
    },
    /// Running the embedded migrations failed.
    #[error("migrating the {backend} database failed")]
    Migration {
        /// Which database.
        backend: Backend,
        /// What went wrong.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

/// No connection came free (or could be made) within the pool wait.
#[derive(Debug, thiserror::Error)]
#[error("no database connection within {0:?}")]
pub(crate) struct CheckoutTimeout(pub(crate) Duration);

/// A failure inside the adapter, before translation. `?` works on diesel, pool and domain errors
/// alike inside a backend's operation; the port methods translate it once, on the way out.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A query, transaction or migration statement failed.
    Query(DieselError),
    /// The pool could not hand out a connection.
    Checkout(deadpool::managed::PoolError<ConnectError>),
    /// No connection within the pool wait.
    TimedOut(CheckoutTimeout),
    /// Already a domain error (an `edit` error, a corrupt row, `UserNotFound`, ...): passed on
    /// unchanged.
    Domain(Error),
}

impl Failure {
    /// Whether the database refused a write because it accepts none: PostgreSQL's SQLSTATE 25006
    /// (a standby, or `default_transaction_read_only`), SQLite's `SQLITE_READONLY` (a file or
    /// folder it may not write).
    pub(crate) fn read_only(&self) -> bool {
        match self {
            Self::Query(DieselError::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, _)) => true,
            Self::Query(DieselError::DatabaseError(_, info)) => {
                info.message().contains("attempt to write a readonly database")
            }
            _ => false,
        }
    }
}

impl From<DieselError> for Failure {
    fn from(error: DieselError) -> Self {
        Self::Query(error)
    }
}

/// A connection that could not be made, as the pool reports it.
impl From<ConnectionError> for Failure {
    fn from(error: ConnectionError) -> Self {
        Self::Checkout(deadpool::managed::PoolError::Backend(ConnectError::ConnectionError(error)))
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self::Domain(error)
    }
}

impl From<Failure> for Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Domain(error) => error,
            Failure::TimedOut(timeout) => Error::Unavailable(timeout.into()),
            Failure::Query(error) if query_unavailable(&error) => Error::Unavailable(error.into()),
            Failure::Query(error) => Error::Internal(error.into()),
            Failure::Checkout(error) if checkout_unavailable(&error) => Error::Unavailable(error.into()),
            Failure::Checkout(error) => Error::Internal(error.into()),
        }
    }
}

/// A failure that many operations share (the one PostgreSQL query that answered many reads, the
/// SQLite commit of a batch of writes), told to each as an [`Error`] of its kind:
/// [`Error::Unavailable`] or [`Error::Internal`], with its cause.
#[derive(Debug, Clone)]
pub(crate) struct Shared(Arc<Error>);

impl Shared {
    pub(crate) fn new(failure: Failure) -> Self {
        Self(Arc::new(failure.into()))
    }

    /// The error for one of the operations.
    pub(crate) fn error(&self) -> Error {
        match *self.0 {
            Error::Unavailable(_) => Error::Unavailable(Box::new(self.clone())),
            _ => Error::Internal(Box::new(self.clone())),
        }
    }
}

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Error::Unavailable(cause) | Error::Internal(cause) => cause.fmt(f),
            other => other.fmt(f),
        }
    }
}

impl StdError for Shared {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &*self.0 {
            Error::Unavailable(cause) | Error::Internal(cause) => cause.source(),
            _ => None,
        }
    }
}

/// Maps the unique violations of inserting a user: of `users.username` to
/// [`Error::UsernameTaken`], of `users.id` (the id is another user's) to
/// [`Error::IdentityMismatch`]; other errors pass.
pub(crate) fn user_conflict(error: DieselError, username: &Username) -> Failure {
    match &error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            match constraint(info.as_ref()) {
                name if name.contains("username") => {
                    Failure::Domain(Error::UsernameTaken(username.as_str().to_owned()))
                }
                "users_pkey" | "UNIQUE constraint failed: users.id" => {
                    Failure::Domain(Error::IdentityMismatch)
                }
                _ => Failure::Query(error),
            }
        }
        _ => Failure::Query(error),
    }
}

/// The violated constraint: PostgreSQL names it (`users_username_key`, `users_pkey`); SQLite only
/// says it in the message (`UNIQUE constraint failed: users.username`).
fn constraint(info: &(dyn DatabaseErrorInformation + Send + Sync)) -> &str {
    info.constraint_name().unwrap_or_else(|| info.message())
}

/// Messages of transient database errors that diesel reports as `Unknown`: diesel keeps neither
/// SQLite result codes nor PostgreSQL SQLSTATEs for those, only the message.
const TRANSIENT_MESSAGES: &[&str] = &[
    // SQLite: SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CANTOPEN.
    "database is locked",
    "database table is locked",
    "database or disk is full",
    "attempt to write a readonly database",
    "disk I/O error",
    "unable to open database file",
    // PostgreSQL: lock_not_available (lock_timeout), deadlock_detected, admin_shutdown,
    // cannot_connect_now, disk_full, too_many_connections, recovery conflicts.
    "lock timeout",
    "deadlock detected",
    "terminating connection",
    "the database system is",
    "No space left on device",
    "too many clients",
    "conflict with recovery",
];

fn query_unavailable(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(
            DatabaseErrorKind::UnableToSendCommand
            | DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::ReadOnlyTransaction
            | DatabaseErrorKind::SerializationFailure,
            _,
        )
        | DieselError::BrokenTransactionManager => true,
        DieselError::DatabaseError(_, info) => TRANSIENT_MESSAGES.iter().any(|m| info.message().contains(m)),
        DieselError::RollbackErrorOnCommit { commit_error, .. } => query_unavailable(commit_error),
        _ => false,
    }
}

fn checkout_unavailable(error: &deadpool::managed::PoolError<ConnectError>) -> bool {
    use deadpool::managed::PoolError;
    match error {
        PoolError::Timeout(_) | PoolError::Closed => true,
        PoolError::Backend(ConnectError::ConnectionError(ConnectionError::InvalidConnectionUrl(_))) => false,
        PoolError::Backend(ConnectError::ConnectionError(_)) => true,
        PoolError::Backend(ConnectError::QueryError(error)) => query_unavailable(error),
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(message: &str) -> Failure {
        Failure::Query(DieselError::DatabaseError(DatabaseErrorKind::Unknown, Box::new(message.to_owned())))
    }

    #[test]
    fn transient_failures_are_unavailable() {
        for failure in [
            unknown("database is locked"),
            unknown("database or disk is full"),
            unknown("attempt to write a readonly database"),
            unknown("canceling statement due to lock timeout"),
            unknown("terminating connection due to administrator command"),
            Failure::Query(DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection,
                Box::new(String::new()),
            )),
            Failure::TimedOut(CheckoutTimeout(Duration::from_secs(5))),
            Failure::Checkout(deadpool::managed::PoolError::Timeout(deadpool::managed::TimeoutType::Wait)),
            Failure::Checkout(deadpool::managed::PoolError::Backend(ConnectError::ConnectionError(
                ConnectionError::BadConnection("connection refused".into()),
            ))),
        ] {
            assert!(matches!(Error::from(failure), Error::Unavailable(_)));
        }
    }

    #[test]
    fn other_failures_are_internal_and_domain_errors_pass_unchanged() {
        assert!(matches!(Error::from(unknown("syntax error")), Error::Internal(_)));
        assert!(matches!(Error::from(Failure::Query(DieselError::NotFound)), Error::Internal(_)));
        let unique = DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new("UNIQUE constraint failed: preferences.user_id".to_owned()),
        );
        let alice = Username::parse("alice").unwrap();
        assert!(matches!(Error::from(user_conflict(unique, &alice)), Error::Internal(_)));
        let unique = DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new("UNIQUE constraint failed: users.username".to_owned()),
        );
        assert!(
            matches!(Error::from(user_conflict(unique, &alice)), Error::UsernameTaken(u) if u == "alice")
        );
        let unique = DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new("UNIQUE constraint failed: users.id".to_owned()),
        );
        assert!(matches!(Error::from(user_conflict(unique, &alice)), Error::IdentityMismatch));
        let edit_error = Error::TooManyKeys { limit: 3 };
        assert!(matches!(Error::from(Failure::Domain(edit_error)), Error::TooManyKeys { limit: 3 }));
    }
}
