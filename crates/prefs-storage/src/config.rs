//! How to reach the database: [`StoreConfig`], the [`Backend`] a URL selects, and URL redaction.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use url::Url;

use crate::backend::Backend;
use crate::error::StorageError;

/// SQLite's `synchronous` setting (docs/contract.md §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSynchronous {
    /// `synchronous=FULL`: an acknowledged write survives a power loss. The default.
    #[default]
    Full,
    /// `synchronous=NORMAL`: faster writes; a write survives a crash of the process but may be
    /// lost on a power loss (`PREFS_SQLITE_SYNCHRONOUS=normal`).
    Normal,
}

impl SqliteSynchronous {
    /// The PRAGMA value.
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

impl FromStr for SqliteSynchronous {
    type Err = StorageError;

    /// Parses `full` or `normal`, in any case.
    fn from_str(s: &str) -> Result<Self, StorageError> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            _ => Err(StorageError::InvalidConfig(format!(
                "SQLite synchronous must be `full` or `normal`, not {s:?}"
            ))),
        }
    }
}

impl Backend {
    /// Picks the backend from a database URL: `postgres://` and `postgresql://` are PostgreSQL;
    /// `sqlite://path`, a `file:` URI or a plain path is SQLite.
    ///
    /// # Errors
    /// [`StorageError::InvalidConfig`] for an empty URL, another scheme, or an in-memory SQLite
    /// database (each pooled connection would get its own empty one).
    pub fn of_url(url: &str) -> Result<Self, StorageError> {
        let has_scheme =
            |scheme: &str| url.get(..scheme.len()).is_some_and(|s| s.eq_ignore_ascii_case(scheme));
        let invalid = |reason: &str| Err(StorageError::InvalidConfig(format!("{reason}: {}", redact(url))));
        if has_scheme("postgres://") || has_scheme("postgresql://") {
            Ok(Self::Postgres)
        } else if url.trim().is_empty() {
            invalid("the database URL is empty")
        } else if url.contains("://") && !has_scheme("sqlite://") && !has_scheme("file:") {
            invalid("expected a postgres://, postgresql://, sqlite:// or file: URL, or a path")
        } else if url.contains(":memory:") || url.contains("mode=memory") {
            invalid("an in-memory SQLite database cannot be pooled; use a file")
        } else {
            Ok(Self::Sqlite)
        }
    }
}

/// A database URL: `postgres://…` / `postgresql://…`, or for SQLite `sqlite://path`, a `file:`
/// URI or a plain path. `Debug` shows it with any password redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, password included: for connecting, never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl<T: Into<String>> From<T> for DatabaseUrl {
    fn from(url: T) -> Self {
        Self(url.into())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redact(&self.0), f)
    }
}

/// Where the database is and how to pool connections to it.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The database.
    pub database_url: DatabaseUrl,
    /// The most PostgreSQL connections held at once for writes by each thread that uses the store
    /// (`PREFS_DB_POOL_SIZE`; each actix worker has its own pool); its reads share up to 2 more.
    /// SQLite needs no pool: each thread reads over a connection of its own, and one writer
    /// thread writes.
    pub pool_size: usize,
    /// The longest an operation waits for a connection (a free slot, a new connection or the
    /// check of a pooled one), for the SQLite writer to start it, and for a lock held by another
    /// writer (SQLite `busy_timeout`, PostgreSQL `lock_timeout`); past it the operation is
    /// [`Unavailable`](prefs_domain::Error::Unavailable).
    pub pool_wait: Duration,
    /// SQLite durability; ignored for PostgreSQL.
    pub sqlite_synchronous: SqliteSynchronous,
    /// How many users to remember by subject (`PREFS_USER_CACHE`), so that a request's token
    /// resolves to its user without a query; 0 turns the cache off. A user removed through
    /// another instance is noticed on its next read or write (see
    /// [`DieselStore`](crate::DieselStore)); preferences are remembered apart, within
    /// [`StoreConfig::namespace_cache_bytes`].
    pub user_cache: usize,
    /// About how much memory the store spends remembering the namespaces, and the single
    /// preferences (by key or id), its reads found (`PREFS_NAMESPACE_CACHE_BYTES`, in all, shared by
    /// every thread; an estimate from the size of the preferences, of their keys' and values' text,
    /// and of the allocator's overhead); 0 turns the cache off. Each answer is remembered with what
    /// tells whether it is still right, checked on every read: on SQLite the database's
    /// `PRAGMA data_version`, which any commit to it moves, by this process or another;
    /// on PostgreSQL the user's version, which every write of the user's preferences moves, and
    /// which the read's query returns. So the cache never answers with a value older than an
    /// acknowledged write.
    pub namespace_cache_bytes: u64,
    /// Whether PostgreSQL connections keep the statements they prepare, for the connection's life
    /// (`PREFS_PG_PREPARED_STATEMENTS`, default `true`). Set it to `false` behind a
    /// transaction-mode pooler (PgBouncer `pool_mode=transaction`, the transaction poolers of
    /// managed databases), where consecutive transactions of one connection may run on different
    /// server connections: then no statement outlives its transaction, every statement runs
    /// inside a transaction, and no session setting is relied on. It costs a round trip or two
    /// per operation; session-mode poolers and direct connections need it `true`. Ignored for
    /// SQLite.
    pub pg_prepared_statements: bool,
}

impl StoreConfig {
    /// The default [`StoreConfig::pool_size`].
    pub const DEFAULT_POOL_SIZE: usize = 8;
    /// The default [`StoreConfig::pool_wait`]: 5 s.
    pub const DEFAULT_POOL_WAIT: Duration = Duration::from_secs(5);
    /// The default [`StoreConfig::user_cache`].
    pub const DEFAULT_USER_CACHE: usize = 100_000;
    /// The default [`StoreConfig::namespace_cache_bytes`]: 24 MiB.
    pub const DEFAULT_NAMESPACE_CACHE_BYTES: u64 = 24 << 20;

    /// A configuration for `database_url` with the defaults: 8 connections, a 5 s wait,
    /// `synchronous=FULL`, 100,000 cached users, 24 MiB of cached namespaces and PostgreSQL
    /// prepared statements kept.
    pub fn new(database_url: impl Into<DatabaseUrl>) -> Self {
        Self {
            database_url: database_url.into(),
            pool_size: Self::DEFAULT_POOL_SIZE,
            pool_wait: Self::DEFAULT_POOL_WAIT,
            sqlite_synchronous: SqliteSynchronous::default(),
            user_cache: Self::DEFAULT_USER_CACHE,
            namespace_cache_bytes: Self::DEFAULT_NAMESPACE_CACHE_BYTES,
            pg_prepared_statements: true,
        }
    }
}

/// What replaces a password in a redacted URL.
const REDACTED: &str = "REDACTED";

/// The URL with any password (in the user info, or a `password` query parameter) replaced, for
/// logs and error messages.
pub(crate) fn redact(url: &str) -> Cow<'_, str> {
    let Ok(mut parsed) = Url::parse(url) else {
        // Not a URL (a plain path), or a malformed one: hide whatever sits between the scheme
        // and the last `@`, where user info would be.
        return match (url.find("://"), url.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                Cow::Owned(format!("{}://{REDACTED}{}", &url[..scheme_end], &url[at..]))
            }
            _ => Cow::Borrowed(url),
        };
    };
    let query_password = parsed.query_pairs().any(|(k, _)| k == "password");
    if parsed.password().is_none() && !query_password {
        return Cow::Borrowed(url);
    }
    if parsed.password().is_some() {
        // Only fails for URLs that cannot have user info, which have no password either.
        let _ = parsed.set_password(Some(REDACTED));
    }
    if query_password {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" { REDACTED.into() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    Cow::Owned(parsed.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_follows_the_scheme() {
        for url in ["postgres://u@h/db", "postgresql://h/db", "POSTGRES://h/db"] {
            assert_eq!(Backend::of_url(url).unwrap(), Backend::Postgres, "{url}");
        }
        for url in [
            "sqlite://prefs.db",
            "sqlite:///var/lib/prefs.db",
            "file:prefs.db?mode=rwc",
            "prefs.db",
            "/tmp/x.db",
        ] {
            assert_eq!(Backend::of_url(url).unwrap(), Backend::Sqlite, "{url}");
        }
        for url in ["", "mysql://u:secret@h/db", ":memory:", "sqlite://:memory:", "file:x?mode=memory"] {
            let err = Backend::of_url(url).unwrap_err();
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        let cases = [
            ("postgres://app:s3cret@db:5432/prefs", "postgres://app:REDACTED@db:5432/prefs"),
            (
                "postgres://db/prefs?user=app&password=s3cret",
                "postgres://db/prefs?user=app&password=REDACTED",
            ),
            ("postgres://app:p@ss@db/prefs", "postgres://app:REDACTED@db/prefs"),
            ("postgres://app@db/prefs", "postgres://app@db/prefs"),
            ("prefs.db", "prefs.db"),
            ("postgres://app:s3cret@[oops/prefs", "postgres://REDACTED@[oops/prefs"),
        ];
        for (url, expected) in cases {
            assert_eq!(redact(url), expected, "{url}");
        }
        let config = StoreConfig::new("postgres://app:s3cret@db/prefs");
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn synchronous_parses_in_any_case() {
        assert_eq!("FULL".parse::<SqliteSynchronous>().unwrap(), SqliteSynchronous::Full);
        assert_eq!("normal".parse::<SqliteSynchronous>().unwrap(), SqliteSynchronous::Normal);
        assert!("off".parse::<SqliteSynchronous>().is_err());
    }
}
