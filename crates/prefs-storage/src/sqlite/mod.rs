//! The SQLite backend: an embedded file, read inline on the calling thread over a connection of
//! that thread's own ([`readers`]: WAL readers never wait for the writer, and a point read costs
//! less than handing it to another thread and back), and written by one writer thread per process
//! ([`writer`]), which commits the transactions queued meanwhile together.
//!
//! Each operation of [`SqliteStore`] reads top to bottom: which connection, which shared query
//! ([`crate::queries`]), what it answers.

mod conn;
mod readers;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use prefs_domain::{Edit, Preference, User, UserId, Username};

use self::conn::{SqliteConn, inline};
use self::readers::Readers;
use self::writer::Writer;
use crate::backend::Backend;
use crate::cache::Read;
use crate::config::StoreConfig;
use crate::error::{Failure, StorageError};
use crate::modify::{Statement, Transaction, modify};
use crate::queries::{self, Upsert, UserKey, found_user, rows_of_user};
use crate::rows::{NewUser, PreferenceRow, UserRow, namespace_from, now_micros, preferences_from};
use crate::schema::users;
use crate::status::PoolStatus;
use crate::user_ids::{Insert, signed_up};
use crate::users::UserScoped;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// SQLite's connections: a read connection per thread, and the writer for everything that
/// writes.
pub(crate) struct SqliteStore {
    /// Runs reads.
    readers: Arc<Readers>,
    /// Runs the write transactions.
    writer: Writer,
    /// The pool wait: how long a write waits for the writer.
    wait: Duration,
}

impl SqliteStore {
    /// Read connections and the writer for `config`'s database (opened on demand). Every
    /// connection runs `PRAGMA busy_timeout` (the pool wait), `journal_mode=WAL`, `synchronous`
    /// as configured and `foreign_keys=ON`.
    pub(crate) fn new(config: &StoreConfig) -> Result<Self, StorageError> {
        let setup = format!(
            "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;",
            config.pool_wait.as_millis(),
            config.sqlite_synchronous.pragma()
        );
        let url = config.database_url.expose();
        let readers = Arc::new(Readers::new(url, setup, config.namespace_cache_bytes));
        let writer = Writer::start(readers.clone(), config.pool_wait)
            .map_err(|e| StorageError::InvalidConfig(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Self { readers, writer, wait: config.pool_wait })
    }

    /// Runs the migrations in one `BEGIN IMMEDIATE` transaction, on a connection of its own, on a
    /// blocking thread (it may wait for the lock).
    pub(crate) async fn migrate(&self) -> Result<(), StorageError> {
        let backend = Backend::Sqlite;
        let (url, setup_sql) = (self.readers.url.clone(), self.readers.setup_sql.clone());
        let migrate = tokio::task::spawn_blocking(move || {
            let mut conn = SqliteConnection::establish(&url).map_err(Failure::from)?;
            conn.batch_execute(&setup_sql)?;
            Ok::<_, Failure>(
                conn.immediate_transaction(|conn| conn.run_pending_migrations(MIGRATIONS).map(drop)),
            )
        });
        migrate
            .await
            .map_err(|e| StorageError::Migration { backend, source: e.into() })?
            .map_err(|failure| StorageError::Database { backend, source: failure.into() })?
            .map_err(|source| StorageError::Migration { backend, source })
    }

    /// The read connections (one per thread that reads) and the writer's, all idle between
    /// statements, and the writes queued for the writer as the waiters.
    pub(crate) fn status(&self) -> PoolStatus {
        let open = self.readers.open() + 1;
        PoolStatus { max_size: open, size: open, available: open, waiting: self.writer.queued() }
    }

    /// The preferences `read` finds, ordered by id, or as a thread read them last while nobody
    /// committed to the database since ([`Readers::cached`]).
    pub(crate) fn read(&self, read: Read) -> UserScoped<Vec<Preference>> {
        UserScoped::new(self.readers.cached(read, |conn, read| {
            inline(async {
                let (user, rows) = match read {
                    Read::Namespace(user, namespace) => {
                        let query = queries::in_namespace(*user, namespace);
                        (*user, query.select(PreferenceRow::as_select()).load(conn).await?)
                    }
                    Read::Key(user, namespace, key) => {
                        let query = queries::of_key(*user, namespace, key);
                        (*user, query.select(PreferenceRow::as_select()).load(conn).await?)
                    }
                    Read::Id(user, namespace, id) => {
                        let query = queries::of_id(*user, namespace, *id);
                        (*user, query.select(PreferenceRow::as_select()).load(conn).await?)
                    }
                };
                let exists = || queries::user_exists(user).get_result(conn);
                Ok(namespace_from(rows_of_user(rows, exists).await?)?)
            })?
        }))
    }

    /// Every preference of `user`, ordered by namespace and id.
    pub(crate) fn all_preferences(&self, user: UserId) -> UserScoped<Vec<Preference>> {
        UserScoped::new(self.readers.run(|conn| {
            inline(async {
                let rows = queries::all_of(user.0).select(PreferenceRow::as_select()).load(conn).await?;
                let exists = || queries::user_exists(user.0).get_result(conn);
                Ok(preferences_from(rows_of_user(rows, exists).await?)?)
            })?
        }))
    }

    /// The user `key` names, as the database has it.
    pub(crate) fn user(&self, key: &UserKey<'_>) -> Result<Option<User>, Failure> {
        self.readers.run(|conn| {
            inline(async {
                let row: Option<UserRow> = match key {
                    UserKey::Subject(subject) => queries::user_by_subject(subject)
                        .select(UserRow::as_select())
                        .get_result(conn)
                        .await
                        .optional()?,
                    &UserKey::Id(id) => queries::user_by_id(id)
                        .select(UserRow::as_select())
                        .get_result(conn)
                        .await
                        .optional()?,
                    UserKey::Username(username) => queries::user_by_username(username)
                        .select(UserRow::as_select())
                        .get_result(conn)
                        .await
                        .optional()?,
                };
                found_user(row)
            })?
        })
    }

    /// Records a new subject, or a subject's new username, in one write transaction: with `id`,
    /// the new user takes it (`AUTOINCREMENT` follows an explicit id by itself).
    pub(crate) async fn sign_up(
        &self,
        subject: &str,
        username: &Username,
        id: Option<UserId>,
    ) -> Result<User, Failure> {
        let (subject, username) = (subject.to_owned(), username.clone());
        self.writer
            .run(self.wait, move |conn| {
                let new =
                    NewUser { subject: &subject, username: username.as_str(), created_at: now_micros() };
                let row = inline(async {
                    match id {
                        Some(id) => Insert { new: &new, id: id.0 }.get_result(conn).await,
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
                })?;
                signed_up(row, &username, id)
            })
            .await
    }

    /// Removes user `id` and, by `ON DELETE CASCADE` (`foreign_keys=ON`), its preferences.
    pub(crate) async fn remove_user(&self, id: UserId) -> Result<bool, Failure> {
        self.writer
            .run(self.wait, move |conn| {
                Ok(inline(diesel::delete(users::table.find(id.0)).execute(conn))?? > 0)
            })
            .await
    }

    /// Runs `edit` on `namespace` in a transaction of the writer's next batch.
    pub(crate) async fn modify(
        &self,
        user: UserId,
        namespace: &str,
        edit: Arc<Edit>,
    ) -> UserScoped<Vec<Preference>> {
        let namespace = namespace.to_owned();
        let out = self
            .writer
            .run(self.wait, move |conn| inline(modify(&mut InBatch(conn), user.0, &namespace, &*edit))?)
            .await;
        UserScoped::new(out)
    }

    /// A write transaction through the writer, as every write goes, holding one statement that
    /// writes no row: it fails as a write would on a file or folder SQLite may not write, or
    /// while another process holds the write lock past the pool wait. (`BEGIN IMMEDIATE` alone
    /// succeeds on a file SQLite opened read-only; a write statement does not.) Matching no row,
    /// it changes no page: its commit neither syncs nor tells the readers the database changed,
    /// and it joins the writes queued with it.
    pub(crate) async fn ping(&self) -> Result<(), Failure> {
        let probe = |conn: &mut SqliteConn| {
            let statement = "UPDATE users SET version = version WHERE 0";
            inline(diesel_async::SimpleAsyncConnection::batch_execute(conn, statement))?
                .map_err(Failure::from)
        };
        self.writer.run(self.wait, probe).await
    }
}

/// A write transaction inside the writer's batch, which already holds the database-wide write
/// lock (`BEGIN IMMEDIATE`) and commits it.
struct InBatch<'c>(&'c mut SqliteConn);

impl Transaction for InBatch<'_> {
    /// The user's `version` stays: SQLite's readers go by `PRAGMA data_version`, and a write of
    /// one more page would cost every transaction.
    async fn lock_and_load(
        &mut self,
        user: i64,
        namespace: &str,
    ) -> Result<Option<Vec<PreferenceRow>>, Failure> {
        if !queries::user_exists(user).get_result::<bool>(self.0).await? {
            return Ok(None);
        }
        let query = queries::in_namespace(user, namespace).select(PreferenceRow::as_select());
        Ok(Some(query.load(self.0).await?))
    }

    /// The statements one after the other, in process.
    async fn commit_with(
        &mut self,
        user: i64,
        namespace: &str,
        now: i64,
        statements: &[Statement<'_>],
    ) -> Result<Vec<Option<PreferenceRow>>, Failure> {
        let mut written = Vec::with_capacity(statements.len());
        for statement in statements {
            written.push(match statement {
                Statement::Put(new) => Upsert(new).get_result(self.0).await.optional()?,
                Statement::Delete(key) => {
                    queries::delete_key(user, namespace, key).execute(self.0).await?;
                    None
                }
                Statement::Rename { from, to } => queries::rename(user, namespace, from, to, now)
                    .returning(PreferenceRow::as_returning())
                    .get_result(self.0)
                    .await
                    .optional()?,
            });
        }
        Ok(written)
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
            let store = SqliteStore::new(&config).unwrap();
            let pragmas = store
                .readers
                .run(|conn| {
                    let query = diesel::sql_query(
                        "SELECT (SELECT * FROM pragma_journal_mode) AS journal_mode, \
                         (SELECT * FROM pragma_synchronous) AS synchronous, \
                         (SELECT * FROM pragma_foreign_keys) AS foreign_keys, \
                         (SELECT * FROM pragma_busy_timeout) AS busy_timeout",
                    );
                    Ok(inline(query.get_result::<Pragmas>(conn))??)
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
}
