//! The PostgreSQL backend: per-thread pools for the write transactions and shared read
//! connections ([`pools`]), the reads of one thread under way together in one query ([`batch`]),
//! and `modify` pipelined in two round trips ([`pipelined`]). [`connect`] opens the connections
//! (TLS, several hosts, transaction-mode poolers).
//!
//! Each operation of [`PgStore`] reads top to bottom: which connection, which shared query
//! ([`crate::queries`]), what it answers.

mod batch;
pub(crate) mod connect;
mod pipelined;
mod pools;

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::dsl;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;
use prefs_domain::{Edit, Error, Preference, User, UserId, Username};

use self::batch::{Batches, batched};
use self::connect::PgConnector;
use self::pipelined::Pipelined;
use self::pools::{Lease, PgPools};
use crate::backend::Backend;
use crate::cache::Read;
use crate::config::StoreConfig;
use crate::error::{Failure, StorageError};
use crate::modify::modify;
use crate::queries::{self, UserKey, found_user, rows_of_user};
use crate::rows::{NewUser, PreferenceRow, UserRow, now_micros, preferences_from};
use crate::schema::users;
use crate::status::PoolStatus;
use crate::user_ids::{Insert, signed_up};
use crate::users::UserScoped;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// The key of the PostgreSQL advisory lock that lets one `migrate` run at a time when several
/// instances start together.
const MIGRATION_LOCK: i64 = 0x7072_6566_735f_6d69; // "prefs_mi"

/// The key of the advisory lock under which a transaction moves the users' id sequence past an
/// explicit id ([`crate::user_ids`]).
const ID_SEQUENCE_LOCK: i64 = 0x7072_6566_735f_6964; // "prefs_id"

/// PostgreSQL's connections and the reads under way.
pub(crate) struct PgStore {
    pools: Arc<PgPools>,
    batches: Arc<Batches>,
    /// The pool wait: how long an operation waits for a connection.
    wait: Duration,
}

impl PgStore {
    /// Pools for `config`'s database, connecting on demand; every connection sets `lock_timeout`
    /// to the pool wait.
    pub(crate) fn new(config: &StoreConfig) -> Result<Self, StorageError> {
        let wait_ms = config.pool_wait.as_millis();
        let setup = format!("SET lock_timeout = {wait_ms}");
        let connector = PgConnector::new(config.database_url.expose(), config.pg_prepared_statements, setup)?;
        let pools = Arc::new(PgPools::new(connector, config.pool_size, wait_ms));
        let batches = Arc::new(Batches::new(pools.clone(), config.namespace_cache_bytes));
        Ok(Self { pools, batches, wait: config.pool_wait })
    }

    /// Runs the migrations under an advisory lock, on a connection taken out of the pool (dropped
    /// afterwards, releasing the lock), on a blocking thread: the migration harness is
    /// synchronous.
    pub(crate) async fn migrate(&self) -> Result<(), StorageError> {
        let backend = Backend::Postgres;
        let unreachable = |failure: Failure| StorageError::Database { backend, source: failure.into() };
        let pool = self.pools.here().map_err(unreachable)?;
        let conn = Lease::checkout(pool, self.wait).await.map_err(unreachable)?.detach();
        let pooled = !self.pools.prepared_statements();
        let migrated = tokio::task::spawn_blocking(move || {
            let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
            if pooled {
                // Behind a transaction-mode pooler, a session's lock could be taken on one server
                // and never released: all the migrations run in one transaction (each in a
                // savepoint), under a transaction's lock.
                return conn.transaction(|conn| {
                    SimpleConnection::batch_execute(
                        conn,
                        &format!(
                            "SET LOCAL lock_timeout = 0; SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"
                        ),
                    )?;
                    conn.run_pending_migrations(MIGRATIONS).map(drop)
                });
            }
            let lock = format!("SET lock_timeout = 0; SELECT pg_advisory_lock({MIGRATION_LOCK})");
            SimpleConnection::batch_execute(&mut conn, &lock)?;
            conn.run_pending_migrations(MIGRATIONS).map(drop)
        })
        .await
        .map_err(|e| StorageError::Migration { backend, source: e.into() })?;
        migrated.map_err(|source| StorageError::Migration { backend, source })
    }

    /// The pools' figures and the read connections, added up.
    pub(crate) fn status(&self) -> PoolStatus {
        self.pools.status()
    }

    /// The preferences `read` finds, ordered by id: in one query with the other reads under way
    /// on this thread, and as remembered while the user is at the same version ([`batched`]).
    pub(crate) async fn read(&self, read: Read) -> UserScoped<Vec<Preference>> {
        UserScoped::new(batched(&self.batches, read, self.wait).await)
    }

    /// Every preference of `user`, ordered by namespace and id.
    pub(crate) async fn all_preferences(&self, user: UserId) -> UserScoped<Vec<Preference>> {
        let out = self
            .pools
            .read(self.wait, move |conn| {
                async move {
                    let query = queries::all_of(user.0).select(PreferenceRow::as_select());
                    let rows = query.load(conn).await?;
                    let exists = || queries::user_exists(user.0).get_result(conn);
                    Ok(preferences_from(rows_of_user(rows, exists).await?)?)
                }
                .boxed()
            })
            .await;
        UserScoped::new(out)
    }

    /// The user `key` names, as the database has it.
    pub(crate) async fn user(&self, key: UserKey<'_>) -> Result<Option<User>, Failure> {
        let key = key.into_owned();
        self.pools
            .read(self.wait, move |conn| {
                let key = key.clone();
                async move {
                    let row: Option<UserRow> = match key {
                        UserKey::Subject(subject) => queries::user_by_subject(&subject)
                            .select(UserRow::as_select())
                            .get_result(conn)
                            .await
                            .optional()?,
                        UserKey::Id(id) => queries::user_by_id(id)
                            .select(UserRow::as_select())
                            .get_result(conn)
                            .await
                            .optional()?,
                        UserKey::Username(username) => queries::user_by_username(&username)
                            .select(UserRow::as_select())
                            .get_result(conn)
                            .await
                            .optional()?,
                    };
                    found_user(row)
                }
                .boxed()
            })
            .await
    }

    /// Records a new subject, or a subject's new username, in one transaction: with `id`, the new
    /// user takes it, once the id sequence is moved past it (never back) under an advisory lock,
    /// so that the ids PostgreSQL assigns never collide with it ([`crate::user_ids`]).
    pub(crate) async fn sign_up(
        &self,
        subject: &str,
        username: &Username,
        id: Option<UserId>,
    ) -> Result<User, Failure> {
        let (subject, username) = (subject.to_owned(), username.clone());
        self.pools
            .transaction(self.wait, move |conn| {
                async move {
                    let new =
                        NewUser { subject: &subject, username: username.as_str(), created_at: now_micros() };
                    let row = match id {
                        Some(UserId(id)) => {
                            conn.batch_execute(&format!(
                                "SELECT pg_advisory_xact_lock({ID_SEQUENCE_LOCK}); \
                             SELECT setval('users_id_seq', {id}) FROM users_id_seq WHERE last_value < {id}"
                            ))
                            .await?;
                            Insert { new: &new, id }.get_result(conn).await
                        }
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
                    };
                    signed_up(row, &username, id)
                }
                .boxed()
            })
            .await
    }

    /// Removes user `id` and, by `ON DELETE CASCADE`, its preferences.
    pub(crate) async fn remove_user(&self, id: UserId) -> Result<bool, Failure> {
        self.pools
            .transaction(self.wait, move |conn| {
                async move { Ok(diesel::delete(users::table.find(id.0)).execute(conn).await? > 0) }.boxed()
            })
            .await
    }

    /// Runs `edit` on `namespace` in a [`Pipelined`] transaction on a pooled connection, which
    /// [`modify`] begins and commits with its first and last statements, and which is rolled back
    /// if it fails between the two.
    pub(crate) async fn modify(
        &self,
        user: UserId,
        namespace: &str,
        edit: Arc<Edit>,
    ) -> UserScoped<Vec<Preference>> {
        let out = async {
            let mut lease = Lease::checkout(self.pools.here()?, self.wait).await?;
            let mut transaction = Pipelined::new(lease.conn(), &self.pools);
            let out = modify(&mut transaction, user.0, namespace, &*edit).await;
            let out = transaction.end(out).await;
            lease.settle_unless_read_only(&out);
            out
        };
        UserScoped::new(out.await)
    }

    /// Whether the server takes writes: a server in recovery (a standby) or with
    /// `default_transaction_read_only` would refuse every write, so the instance is not ready
    /// until it does (or, with several hosts and `target_session_attrs=read-write`, until its
    /// connections move to the new primary).
    pub(crate) async fn ping(&self) -> Result<(), Failure> {
        let writable = self
            .pools
            .read(self.wait, |conn| {
                async move {
                    let writable = dsl::sql::<diesel::sql_types::Bool>(
                        "current_setting('transaction_read_only') = 'off'",
                    );
                    Ok(diesel::select(writable).get_result::<bool>(conn).await?)
                }
                .boxed()
            })
            .await?;
        if writable {
            return Ok(());
        }
        // Connections made now go to whichever host takes writes.
        self.pools.reconnect().await;
        Err(Error::Unavailable(
            "the PostgreSQL server accepts no writes (read-only: a standby, or default_transaction_read_only)".into(),
        )
        .into())
    }
}
