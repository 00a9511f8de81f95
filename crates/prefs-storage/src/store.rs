//! [`DieselStore`]: the storage ports over a pool of SQLite or PostgreSQL connections.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use diesel::connection::SimpleConnection;
use diesel::dsl;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use prefs_domain::{
    Change, Edit, Error, FieldCode, FieldError, Namespace, Preference, PreferenceId, PreferenceKey,
    PreferenceStore, Result, User, UserId, UserStore, Username,
};
use quick_cache::sync::Cache;

use crate::PoolStatus;
use crate::config::{Backend, StoreConfig};
use crate::error::{Failure, StorageError, user_conflict};
use crate::pool::{Lease, PgPools, Pools, with_conn};
use crate::postgres::PgConnector;
use crate::read::Read;
use crate::readers::Readers;
use crate::rows::{NewPreference, NewUser, UserRow, namespace_from, now_micros, preferences_from};
use crate::schema::{preferences, users};
use crate::sqlite;
use crate::transaction::{Statement, Transaction};
use crate::user_ids::InsertWithId;
use crate::writer::Writer;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// The key of the PostgreSQL advisory lock that lets one `migrate` run at a time when several
/// instances start together.
const MIGRATION_LOCK: i64 = 0x7072_6566_735f_6d69; // "prefs_mi"

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
    pub(crate) pools: Pools,
    pub(crate) pool_wait: Duration,
    users: Option<Arc<Cache<String, User>>>,
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
        let wait_ms = config.pool_wait.as_millis();
        let url = config.database_url.expose();
        let pools = match backend {
            Backend::Sqlite => {
                let setup = format!(
                    "PRAGMA busy_timeout = {wait_ms}; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;",
                    config.sqlite_synchronous.pragma()
                );
                let readers = Arc::new(Readers::new(url, setup, config.namespace_cache_bytes));
                let writer = Writer::start(readers.clone(), config.pool_wait).map_err(|e| {
                    StorageError::InvalidConfig(format!("cannot start the SQLite writer: {e}"))
                })?;
                Pools::Sqlite { readers, writer }
            }
            Backend::Postgres => {
                let setup = format!("SET lock_timeout = {wait_ms}");
                let connector = PgConnector::new(url, config.pg_prepared_statements, setup)?;
                Pools::Postgres(Arc::new(PgPools::new(
                    connector,
                    config.pool_size,
                    wait_ms,
                    config.namespace_cache_bytes,
                )))
            }
        };
        let users = (config.user_cache > 0).then(|| Arc::new(Cache::new(config.user_cache)));
        Ok(Self { pools, pool_wait: config.pool_wait, users })
    }

    /// Runs the embedded migrations that have not run yet; running it again is a no-op. One run
    /// at a time per database (PostgreSQL takes an advisory lock, SQLite runs them in one
    /// `BEGIN IMMEDIATE` transaction). Works on current-thread runtimes too.
    ///
    /// # Errors
    /// [`StorageError::Database`] when no connection can be had, [`StorageError::Migration`] when
    /// a migration fails.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        let backend = self.backend();
        let unreachable = |failure: Failure| StorageError::Database { backend, source: failure.into() };
        let migrated = match &self.pools {
            Pools::Sqlite { readers, .. } => {
                // On a connection of its own, on a blocking thread: it may wait for the lock.
                let (url, setup_sql) = (readers.url.clone(), readers.setup_sql.clone());
                let migrate = tokio::task::spawn_blocking(move || {
                    let mut conn = SqliteConnection::establish(&url).map_err(Failure::from)?;
                    conn.batch_execute(&setup_sql)?;
                    Ok::<_, Failure>(conn.immediate_transaction(|conn| {
                        conn.run_pending_migrations(SQLITE_MIGRATIONS).map(drop)
                    }))
                });
                migrate
                    .await
                    .map_err(|e| StorageError::Migration { backend, source: e.into() })?
                    .map_err(unreachable)?
            }
            Pools::Postgres(pools) => {
                // The migration harness is synchronous: run it on a blocking thread over a
                // connection taken out of the pool (dropped afterwards, releasing the lock).
                let pool = pools.here().map_err(unreachable)?;
                let conn = Lease::checkout(pool, self.pool_wait).await.map_err(unreachable)?.detach();
                let pooled = !pools.prepared_statements();
                tokio::task::spawn_blocking(move || {
                    let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
                    if pooled {
                        // Behind a transaction-mode pooler, a session's lock could be taken on
                        // one server and never released: all the migrations run in one
                        // transaction (each in a savepoint), under a transaction's lock.
                        return conn.transaction(|conn| {
                            conn.batch_execute(&format!(
                                "SET LOCAL lock_timeout = 0; SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"
                            ))?;
                            conn.run_pending_migrations(POSTGRES_MIGRATIONS).map(drop)
                        });
                    }
                    conn.batch_execute(&format!(
                        "SET lock_timeout = 0; SELECT pg_advisory_lock({MIGRATION_LOCK})"
                    ))?;
                    conn.run_pending_migrations(POSTGRES_MIGRATIONS).map(drop)
                })
                .await
                .map_err(|e| StorageError::Migration { backend, source: e.into() })?
            }
        };
        migrated.map_err(|source| StorageError::Migration { backend, source })
    }

    /// The connections' figures now, for metrics. On SQLite: the read connections (one per
    /// thread that reads) and the writer's, all idle between statements, and the writes queued
    /// for the writer as the waiters.
    pub fn pool_status(&self) -> PoolStatus {
        match &self.pools {
            Pools::Sqlite { readers, writer } => {
                let open = readers.open() + 1;
                PoolStatus { max_size: open, size: open, available: open, waiting: writer.queued() }
            }
            Pools::Postgres(pools) => pools.status(),
        }
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }
}

impl DieselStore {
    /// Forgets every remembered user when `out` says that one of them is gone: users are removed
    /// rarely, and the subject's next provisioning must then ask the database, whichever user
    /// this store remembers for it.
    fn noticing<T>(&self, out: Result<T>) -> Result<T> {
        if let Err(Error::UserNotFound) = out {
            self.forget_users();
        }
        out
    }

    /// The user of `subject` as the database has it, signed up (or renamed) if need be: the
    /// uncached part of [`UserStore::provision`].
    async fn find_or_sign_up(&self, subject: &str, username: &Username, id: Option<UserId>) -> Result<User> {
        for _ in 0..SIGN_UP_ATTEMPTS {
            match self.stored_user_by_subject(subject).await? {
                Some(user) if id.is_some_and(|id| id != user.id) => return Err(Error::IdentityMismatch),
                Some(user) if user.username == *username => return Ok(user),
                Some(_) => {}
                // A new subject: the id it brings must be free (no write for a token that lies).
                None if let Some(id) = id => match self.user_by_id(id).await? {
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
                Err(Error::UsernameTaken(name)) => match self.stored_user_by_subject(subject).await? {
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
        let (subject, username) = (subject.to_owned(), username.clone());
        with_conn!(
            self,
            transaction | conn | {
                let new =
                    NewUser { subject: &subject, username: username.as_str(), created_at: now_micros() };
                let row = match id {
                    Some(id) => conn.insert_with_id(&new, id.0).await,
                    None => {
                        diesel::insert_into(users::table)
                            .values(&new)
                            .on_conflict(users::subject)
                            .do_update()
                            .set(users::username.eq(excluded(users::username)))
                            .returning(UserRow::as_returning())
                            .get_result(conn)
                            .await
                    }
                }
                .map_err(|e| user_conflict(e, &username))?;
                let user = User::try_from(row)?;
                if id.is_some_and(|id| id != user.id) {
                    // The subject's user has another id: rolled back, its username unchanged.
                    return Err(Error::IdentityMismatch.into());
                }
                Ok(user)
            }
        )
    }

    /// The user with this subject as the database has it, if any.
    async fn stored_user_by_subject(&self, subject: &str) -> Result<Option<User>> {
        // Lookups by a unique key use `get_result`, not `first`: `first` binds a `LIMIT`, and
        // SQLite re-plans a statement whose `LIMIT` is re-bound, on every call.
        with_conn!(self, |conn| {
            let found: Option<UserRow> = users::table
                .filter(users::subject.eq(subject))
                .select(UserRow::as_select())
                .get_result(conn)
                .await
                .optional()?;
            Ok(found.map(User::try_from).transpose()?)
        })
    }

    /// The preferences `read` finds, ordered by id, or as this thread remembers them while they
    /// are still right: on SQLite while the database has not changed, on PostgreSQL (in one query
    /// with the other reads under way) while the user is at the same version.
    async fn read(&self, read: Read) -> Result<Vec<Preference>> {
        let found = match &self.pools {
            Pools::Sqlite { readers, .. } => {
                readers.cached(read, |conn, read| Ok(namespace_from(crate::read::load(conn, read)?)?))
            }
            Pools::Postgres(pools) => crate::read::batched(pools, read, self.pool_wait).await,
        };
        self.noticing(found.map_err(Error::from))
    }

    fn forget_users(&self) {
        if let Some(users) = &self.users {
            users.clear();
        }
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

/// Inside a `with_conn!` body: the rows of preferences `$query` selects, all of user `$user`;
/// when there are none, [`Error::UserNotFound`] unless the user exists.
macro_rules! rows_of_user {
    ($conn:expr, $user:expr, $query:expr) => {{
        let rows: Vec<$crate::rows::PreferenceRow> =
            $query.select($crate::rows::PreferenceRow::as_select()).load($conn).await?;
        if rows.is_empty() && !$crate::store::user_exists($user).get_result::<bool>($conn).await? {
            return Err(::prefs_domain::Error::UserNotFound.into());
        }
        rows
    }};
}

pub(crate) use rows_of_user;

/// Puts `written` in place of the preference with its id, or adds it.
fn keep(after: &mut Vec<Preference>, written: Preference) {
    match after.iter_mut().find(|p| p.id == written.id) {
        Some(old) => *old = written,
        None => after.push(written),
    }
}

/// Whether user `user` exists.
pub(crate) fn user_exists(user: i64) -> dsl::select<dsl::exists<dsl::Find<users::table, i64>>> {
    diesel::select(dsl::exists(users::table.find(user)))
}

/// The preferences of one user in one namespace, unordered.
#[diesel::dsl::auto_type]
pub(crate) fn in_namespace<'a>(user: i64, namespace: &'a str) -> _ {
    preferences::table.filter(preferences::user_id.eq(user)).filter(preferences::namespace.eq(namespace))
}

#[async_trait]
impl UserStore for DieselStore {
    async fn provision(&self, subject: &str, username: &Username, id: Option<UserId>) -> Result<User> {
        if id.is_some_and(|id| id.0 <= 0) {
            return Err(
                FieldError::new("id", FieldCode::Invalid, "A user id must be a positive integer.").into()
            );
        }
        // A remembered user of another id proves nothing (it may be gone): the database decides.
        let fits = |user: &User| user.username == *username && id.is_none_or(|id| id == user.id);
        let cached = self.users.as_ref().and_then(|users| users.get(subject));
        if let Some(user) = cached.filter(fits) {
            return Ok(user);
        }
        // The common case, on every request the cache missed: one indexed read, no write.
        let user = self.find_or_sign_up(subject, username, id).await?;
        if let Some(users) = &self.users {
            users.insert(user.subject.clone(), user.clone());
        }
        Ok(user)
    }

    async fn user_by_subject(&self, subject: &str) -> Result<Option<User>> {
        if let Some(user) = self.users.as_ref().and_then(|users| users.get(subject)) {
            return Ok(Some(user));
        }
        self.stored_user_by_subject(subject).await
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>> {
        with_conn!(self, |conn| {
            let row: Option<UserRow> =
                users::table.find(id.0).select(UserRow::as_select()).get_result(conn).await.optional()?;
            Ok(row.map(User::try_from).transpose()?)
        })
    }

    async fn user_by_username(&self, username: &Username) -> Result<Option<User>> {
        with_conn!(self, |conn| {
            let row: Option<UserRow> = users::table
                .filter(users::username.eq(username.as_str()))
                .select(UserRow::as_select())
                .get_result(conn)
                .await
                .optional()?;
            Ok(row.map(User::try_from).transpose()?)
        })
    }

    async fn remove_user(&self, id: UserId) -> Result<bool> {
        // Preferences go with the user row: ON DELETE CASCADE (SQLite: foreign_keys=ON).
        let removed = with_conn!(
            self,
            transaction | conn | Ok(diesel::delete(users::table.find(id.0)).execute(conn).await? > 0)
        )?;
        self.forget_users();
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
        let found = with_conn!(self, |conn| {
            let all = preferences::table
                .filter(preferences::user_id.eq(user.0))
                .order((preferences::namespace, preferences::id));
            Ok(preferences_from(rows_of_user!(conn, user.0, all))?)
        });
        self.noticing(found)
    }

    async fn modify(&self, user: UserId, namespace: &Namespace, edit: Arc<Edit>) -> Result<Vec<Preference>> {
        let (user, namespace) = (user.0, namespace.as_str().to_owned());
        let written = with_conn!(
            self,
            pipelined | conn | {
                let Some(rows) = Transaction::lock_and_load(conn, user, &namespace).await? else {
                    return Err(Error::UserNotFound.into());
                };
                let mut after = namespace_from(rows)?;
                let changes = edit(&after)?;
                let now = now_micros();
                let statements: Vec<Statement<'_>> = changes
                    .iter()
                    .map(|change| match change {
                        Change::Put { key, value } => Statement::Put(NewPreference {
                            user_id: user,
                            namespace: &namespace,
                            key: key.as_str(),
                            value: value.as_json_text(),
                            created_at: now,
                            updated_at: now,
                            version: 1,
                        }),
                        Change::Delete { key } => Statement::Delete(key.as_str()),
                        Change::Rename { from, to } => {
                            Statement::Rename { from: from.as_str(), to: to.as_str() }
                        }
                    })
                    .collect();
                // `after` follows the changes: every written row comes back (`RETURNING`), so the
                // namespace needs no second read.
                let written = Transaction::commit_with(conn, user, &namespace, now, &statements).await?;
                for (change, row) in changes.iter().zip(written) {
                    match (change, row) {
                        (Change::Delete { key }, _) => after.retain(|p| p.key != *key),
                        (_, Some(row)) => keep(&mut after, row.try_into()?),
                        (_, None) => {
                            return Err(Error::Internal(format!("{change:?} wrote nothing").into()).into());
                        }
                    }
                }
                after.sort_unstable_by_key(|p| p.id);
                Ok(after)
            }
        );
        self.noticing(written)
    }

    /// The database answers and takes writes, so the instance is not ready while every write
    /// would fail. SQLite: a write transaction through the writer, as every write goes, holding
    /// one statement that writes no row; it fails as a write would on a file or folder SQLite
    /// may not write, or while another process holds the write lock past the pool wait.
    /// PostgreSQL: a server in recovery (a standby) or with `default_transaction_read_only` would
    /// refuse every write, so the instance is not ready until it does (or, with several hosts
    /// and `target_session_attrs=read-write`, until its connections move to the new primary).
    async fn ping(&self) -> Result<()> {
        if let Pools::Sqlite { writer, .. } = &self.pools {
            // `BEGIN IMMEDIATE` alone succeeds on a file SQLite opened read-only; a write statement
            // does not. Matching no row, it changes no page: its commit neither syncs nor tells
            // the readers the database changed, and it joins the writes queued with it.
            let probe = |conn: &mut sqlite::SqliteConn| {
                let statement = "UPDATE users SET version = version WHERE 0";
                sqlite::inline(diesel_async::SimpleAsyncConnection::batch_execute(conn, statement))?
                    .map_err(Failure::from)
            };
            return writer.run(self.pool_wait, probe).await.map_err(Error::from);
        }
        let writable = with_conn!(self, |conn| {
            let writable =
                dsl::sql::<diesel::sql_types::Bool>("current_setting('transaction_read_only') = 'off'");
            Ok(diesel::select(writable).get_result::<bool>(conn).await?)
        })?;
        if writable {
            return Ok(());
        }
        if let Pools::Postgres(pools) = &self.pools {
            // Connections made now go to whichever host takes writes.
            pools.reconnect().await;
        }
        Err(Error::Unavailable("the PostgreSQL server accepts no writes (read-only: a standby, or default_transaction_read_only)".into()))
    }
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::{BigInt, Text};

    use super::*;
    use crate::config::SqliteSynchronous;

    #[derive(QueryableByName, Debug, PartialEq)]
    struct Pragmas {
        #[diesel(sql_type = Text)]
        journal_mode: String,
        #[diesel(sql_type = BigInt)]
        synchronous: i64,
        #[diesel(sql_type = BigInt)]
        foreign_keys: i64,
        #[diesel(sql_type = BigInt)]
        busy_timeout: i64,
    }

    #[tokio::test]
    async fn sqlite_connections_are_durable_and_wait_for_locks() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("prefs.db").to_str().unwrap().to_owned();
        for (synchronous, expected) in [(SqliteSynchronous::Full, 2), (SqliteSynchronous::Normal, 1)] {
            let config = StoreConfig {
                sqlite_synchronous: synchronous,
                pool_wait: Duration::from_millis(1234),
                ..StoreConfig::new(&url)
            };
            let store = DieselStore::connect(&config).await.unwrap();
            let pragmas = with_conn!(store, |conn| {
                let query = diesel::sql_query(
                    "SELECT (SELECT * FROM pragma_journal_mode) AS journal_mode, \
                     (SELECT * FROM pragma_synchronous) AS synchronous, \
                     (SELECT * FROM pragma_foreign_keys) AS foreign_keys, \
                     (SELECT * FROM pragma_busy_timeout) AS busy_timeout",
                );
                Ok(query.get_result::<Pragmas>(conn).await?)
            })
            .unwrap();
            let wanted = Pragmas {
                journal_mode: "wal".into(),
                synchronous: expected,
                foreign_keys: 1,
                busy_timeout: 1234,
            };
            assert_eq!(pragmas, wanted, "{synchronous:?}");
        }
    }

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
