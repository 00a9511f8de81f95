//! [`DieselStore`]: the facade that picks a backend from the URL, the only module that sees
//! both. It implements the ports by delegating to [`SqliteStore`] or [`PgStore`], keeps the
//! users remembered by subject, and lets every user-scoped read and write out only through
//! [`DieselStore::user_scoped`], which notices a removed user.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prefs_domain::{
    Edit, Error, Namespace, Preference, PreferenceId, PreferenceKey, PreferenceStore, Result, User, UserId,
    UserStore, Username,
};

use crate::backend::Backend;
use crate::cache::Read;
use crate::config::StoreConfig;
use crate::error::StorageError;
use crate::postgres::PgStore;
use crate::queries::UserKey;
use crate::sqlite::SqliteStore;
use crate::status::PoolStatus;
use crate::users::{UserScoped, Users};

/// How many times provisioning looks a subject up and tries to sign it up, when a concurrent
/// sign-up took the id it wanted (see [`crate::user_ids`]).
const SIGN_UP_ATTEMPTS: usize = 4;

/// The storage adapter: implements [`UserStore`] and [`PreferenceStore`] over SQLite or
/// PostgreSQL, chosen by the database URL. Cloning is cheap and shares the connections.
///
/// Users provisioned with the identity provider's id take it; the ids the store assigns itself
/// never collide with those, given before or after (SQLite's `AUTOINCREMENT` follows them,
/// PostgreSQL's sequence is moved past them and an insert that still collides is tried again).
///
/// It remembers the users it provisions ([`StoreConfig::user_cache`]), so that
/// [`UserStore::provision`] of a known subject and username (and id, when one is asked for) needs
/// no query. It also remembers the namespaces and single preferences its reads found, while they
/// are still right ([`StoreConfig::namespace_cache_bytes`]). A remembered user stays right while
/// it exists: the store never assigns an id twice, an identity provider never gives one id to two
/// people (so a removed user's id comes back only for the same person), and a changed username or
/// another id asked for misses the cache (the database decides). A user removed meanwhile (by
/// `prefs users remove` or another instance) is noticed by the next read or write for it, which
/// answers [`Error::UserNotFound`] and forgets it; the service then provisions the subject again.
#[derive(Clone)]
pub struct DieselStore {
    backend: Arc<Backends>,
    pool_wait: Duration,
    users: Users,
}

/// The backend a store runs on.
enum Backends {
    /// An embedded SQLite file.
    Sqlite(SqliteStore),
    /// A PostgreSQL server.
    Postgres(PgStore),
}

impl DieselStore {
    /// Sets up a pool for `config.database_url` without connecting yet: connections are made on
    /// demand, so the store works as soon as the database does, and a pooled connection that
    /// broke (PostgreSQL went away) is replaced on its next checkout. [`DieselStore::migrate`] or
    /// [`PreferenceStore::ping`] tells whether the database answers.
    ///
    /// Every SQLite connection runs `PRAGMA busy_timeout` (the pool wait), `journal_mode=WAL`,
    /// `synchronous` as configured and `foreign_keys=ON`; every PostgreSQL connection sets
    /// `lock_timeout` to the pool wait.
    ///
    /// # Errors
    /// [`StorageError::InvalidConfig`] for an unusable URL (see [`Backend::of_url`]), a pool
    /// size of 0 or a pool wait under 1 ms.
    pub async fn connect(config: &StoreConfig) -> Result<Self, StorageError> {
        let backend = Backend::of_url(config.database_url.expose())?;
        if config.pool_size == 0 {
            return Err(StorageError::InvalidConfig("the pool size must be at least 1".into()));
        }
        if config.pool_wait < Duration::from_millis(1) {
            return Err(StorageError::InvalidConfig("the pool wait must be at least 1 ms".into()));
        }
        let backend = match backend {
            Backend::Sqlite => Backends::Sqlite(SqliteStore::new(config)?),
            Backend::Postgres => Backends::Postgres(PgStore::new(config)?),
        };
        Ok(Self {
            backend: Arc::new(backend),
            pool_wait: config.pool_wait,
            users: Users::new(config.user_cache),
        })
    }

    /// Runs the embedded migrations that have not run yet; running it again is a no-op. One run
    /// at a time per database (PostgreSQL takes an advisory lock, SQLite runs them in one
    /// `BEGIN IMMEDIATE` transaction). Works on current-thread runtimes too.
    ///
    /// # Errors
    /// [`StorageError::Database`] when no connection can be had, [`StorageError::Migration`] when
    /// a migration fails.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        match &*self.backend {
            Backends::Sqlite(sqlite) => sqlite.migrate().await,
            Backends::Postgres(postgres) => postgres.migrate().await,
        }
    }

    /// The connections' figures now, for metrics. On SQLite: the read connections (one per
    /// thread that reads) and the writer's, all idle between statements, and the writes queued
    /// for the writer as the waiters.
    pub fn pool_status(&self) -> PoolStatus {
        match &*self.backend {
            Backends::Sqlite(sqlite) => sqlite.status(),
            Backends::Postgres(postgres) => postgres.status(),
        }
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        match *self.backend {
            Backends::Sqlite(_) => Backend::Sqlite,
            Backends::Postgres(_) => Backend::Postgres,
        }
    }
}

impl DieselStore {
    /// The way out of every read and write of one user's data: forgets the remembered users when
    /// `out` finds the user gone ([`UserScoped::noticed`]).
    fn user_scoped<T>(&self, out: UserScoped<T>) -> Result<T> {
        out.noticed(&self.users)
    }

    /// The preferences `read` finds, ordered by id, or as remembered while they are still right.
    async fn read(&self, read: Read) -> Result<Vec<Preference>> {
        let found = match &*self.backend {
            Backends::Sqlite(sqlite) => sqlite.read(read),
            Backends::Postgres(postgres) => postgres.read(read).await,
        };
        self.user_scoped(found)
    }

    /// The user `key` names, as the database has it.
    async fn user(&self, key: UserKey<'_>) -> Result<Option<User>> {
        let found = match &*self.backend {
            Backends::Sqlite(sqlite) => sqlite.user(&key),
            Backends::Postgres(postgres) => postgres.user(key).await,
        };
        Ok(found?)
    }

    /// The user of `subject` as the database has it, signed up (or renamed) if need be: the
    /// uncached part of [`UserStore::provision`].
    async fn find_or_sign_up(&self, subject: &str, username: &Username, id: Option<UserId>) -> Result<User> {
        for _ in 0..SIGN_UP_ATTEMPTS {
            match self.user(UserKey::Subject(subject.into())).await? {
                Some(user) if id.is_some_and(|id| id != user.id) => return Err(Error::IdentityMismatch),
                Some(user) if user.username == *username => return Ok(user),
                Some(_) => {}
                // A new subject: the id it brings must be free (no write for a token that lies).
                None if let Some(id) = id => match self.user(UserKey::Id(id.0)).await? {
                    Some(holder) if holder.subject != subject => return Err(Error::IdentityMismatch),
                    // Signed up meanwhile.
                    Some(_) => continue,
                    None => {}
                },
                None => {}
            }
            match self.sign_up(subject, username, id).await {
                // The id was taken meanwhile: by this subject (a concurrent first sign-in), by
                // another, or, without `id`, by an explicit insert under way. Look again.
                Err(Error::IdentityMismatch) => {}
                // A concurrent first sign-in of this subject may have inserted it with this
                // username first: PostgreSQL then reports the username's unique index, which
                // `ON CONFLICT (subject)` does not cover. Look again.
                Err(Error::UsernameTaken(name)) => match self.user(UserKey::Subject(subject.into())).await? {
                    Some(user) if user.username == *username => {}
                    _ => return Err(Error::UsernameTaken(name)),
                },
                signed_up => return signed_up,
            }
        }
        match id {
            Some(_) => Err(Error::IdentityMismatch),
            // Explicit inserts took every id drawn meanwhile: a moment later some will be free.
            None => Err(Error::Unavailable("no free user id after several attempts".into())),
        }
    }

    /// Records a new subject, or a subject's new username: one atomic upsert on the subject.
    /// With `id`, the new user takes it ([`crate::user_ids`]), and a subject whose user has
    /// another id is [`Error::IdentityMismatch`], as is an id another subject's user holds.
    async fn sign_up(&self, subject: &str, username: &Username, id: Option<UserId>) -> Result<User> {
        let signed_up = match &*self.backend {
            Backends::Sqlite(sqlite) => sqlite.sign_up(subject, username, id).await,
            Backends::Postgres(postgres) => postgres.sign_up(subject, username, id).await,
        };
        Ok(signed_up?)
    }
}

impl fmt::Debug for DieselStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DieselStore")
            .field("backend", &self.backend())
            .field("pool_wait", &self.pool_wait)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl UserStore for DieselStore {
    async fn provision(&self, subject: &str, username: &Username, id: Option<UserId>) -> Result<User> {
        prefs_domain::validate_user_id(id)?;
        // A remembered user of another id proves nothing (it may be gone): the database decides.
        let fits = |user: &User| user.username == *username && id.is_none_or(|id| id == user.id);
        let cached = self.users.get(subject);
        if let Some(user) = cached.filter(fits) {
            return Ok(user);
        }
        // The common case, on every request the cache missed: one indexed read, no write.
        let user = self.find_or_sign_up(subject, username, id).await?;
        self.users.insert(&user);
        Ok(user)
    }

    async fn user_by_subject(&self, subject: &str) -> Result<Option<User>> {
        if let Some(user) = self.users.get(subject) {
            return Ok(Some(user));
        }
        self.user(UserKey::Subject(subject.into())).await
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>> {
        self.user(UserKey::Id(id.0)).await
    }

    async fn user_by_username(&self, username: &Username) -> Result<Option<User>> {
        self.user(UserKey::Username(username.as_str().into())).await
    }

    async fn remove_user(&self, id: UserId) -> Result<bool> {
        let removed = match &*self.backend {
            Backends::Sqlite(sqlite) => sqlite.remove_user(id).await,
            Backends::Postgres(postgres) => postgres.remove_user(id).await,
        }?;
        self.users.forget_all();
        Ok(removed)
    }
}

#[async_trait]
impl PreferenceStore for DieselStore {
    async fn namespace(&self, user: UserId, namespace: &Namespace) -> Result<Vec<Preference>> {
        self.read(Read::Namespace(user.0, namespace.as_str().to_owned())).await
    }

    async fn preference(
        &self,
        user: UserId,
        namespace: &Namespace,
        key: &PreferenceKey,
    ) -> Result<Option<Preference>> {
        let read = Read::Key(user.0, namespace.as_str().to_owned(), key.as_str().to_owned());
        Ok(self.read(read).await?.into_iter().next())
    }

    async fn preference_by_id(
        &self,
        user: UserId,
        namespace: &Namespace,
        id: PreferenceId,
    ) -> Result<Option<Preference>> {
        Ok(self.read(Read::Id(user.0, namespace.as_str().to_owned(), id.0)).await?.into_iter().next())
    }

    async fn all_preferences(&self, user: UserId) -> Result<Vec<Preference>> {
        let found = match &*self.backend {
            Backends::Sqlite(sqlite) => sqlite.all_preferences(user),
            Backends::Postgres(postgres) => postgres.all_preferences(user).await,
        };
        self.user_scoped(found)
    }

    async fn modify(&self, user: UserId, namespace: &Namespace, edit: Arc<Edit>) -> Result<Vec<Preference>> {
        let written = match &*self.backend {
            Backends::Sqlite(sqlite) => sqlite.modify(user, namespace.as_str(), edit).await,
            Backends::Postgres(postgres) => postgres.modify(user, namespace.as_str(), edit).await,
        };
        self.user_scoped(written)
    }

    /// The database answers and takes writes, so the instance is not ready while every write
    /// would fail. SQLite: a write transaction through the writer, as every write goes, holding
    /// one statement that writes no row; it fails as a write would on a file or folder SQLite
    /// may not write, or while another process holds the write lock past the pool wait.
    /// PostgreSQL: a server in recovery (a standby) or with `default_transaction_read_only` would
    /// refuse every write, so the instance is not ready until it does (or, with several hosts
    /// and `target_session_attrs=read-write`, until its connections move to the new primary).
    async fn ping(&self) -> Result<()> {
        let pinged = match &*self.backend {
            Backends::Sqlite(sqlite) => sqlite.ping().await,
            Backends::Postgres(postgres) => postgres.ping().await,
        };
        Ok(pinged?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unusable_configurations_are_refused_without_leaking_passwords() {
        let zero = StoreConfig { pool_size: 0, ..StoreConfig::new("prefs.db") };
        assert!(matches!(DieselStore::connect(&zero).await, Err(StorageError::InvalidConfig(_))));
        let no_wait = StoreConfig { pool_wait: Duration::ZERO, ..StoreConfig::new("prefs.db") };
        assert!(matches!(DieselStore::connect(&no_wait).await, Err(StorageError::InvalidConfig(_))));
        for url in ["mysql://app:s3cret@db/prefs", "sqlite://:memory:"] {
            let error = DieselStore::connect(&StoreConfig::new(url)).await.unwrap_err();
            assert!(matches!(error, StorageError::InvalidConfig(_)), "{error:?}");
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_postgres_is_unavailable_and_the_password_stays_hidden() {
        // Nothing listens on port 1; connecting does not need the server, using it does.
        let config = StoreConfig {
            pool_wait: Duration::from_secs(2),
            ..StoreConfig::new("postgres://app:s3cret@127.0.0.1:1/prefs")
        };
        let store = DieselStore::connect(&config).await.unwrap();
        assert!(!format!("{config:?} {store:?}").contains("s3cret"));
        assert!(matches!(store.ping().await, Err(Error::Unavailable(_))));
        let error = store.migrate().await.unwrap_err();
        assert!(matches!(&error, StorageError::Database { backend: Backend::Postgres, .. }), "{error:?}");
        let mut chain = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            chain = format!("{chain}: {cause}");
            source = cause.source();
        }
        assert!(!chain.contains("s3cret"), "{chain}");
    }
}
