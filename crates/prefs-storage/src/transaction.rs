//! The statements of a write transaction ([`PreferenceStore::modify`]) on each backend.
//! PostgreSQL pipelines them: it sends the statements that do not depend on each other's answers
//! together and then reads the answers, so a write costs two round trips (`BEGIN`, the lock and
//! the read; the changes and `COMMIT`). SQLite runs them one after the other, in process, inside
//! the [`Writer`](crate::writer::Writer)'s batch.
//!
//! [`PreferenceStore::modify`]: prefs_domain::PreferenceStore::modify

use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{
    AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection, TransactionManager,
};
use futures_util::future::{BoxFuture, FutureExt, OptionFuture, join, join_all, join3};

use crate::error::Failure;
use crate::pool::PgPools;
use crate::rows::{NewPreference, PreferenceRow};
use crate::schema::preferences;
use crate::sqlite::SqliteConn;
use crate::store::{in_namespace, user_exists};

/// One change of a write, ready to run.
pub(crate) enum Statement<'a> {
    /// Insert, or update the value of the existing key (which keeps its id and `created_at`).
    Put(NewPreference<'a>),
    /// Delete a key.
    Delete(&'a str),
    /// Rename a key.
    Rename {
        /// The key now.
        from: &'a str,
        /// Its new name.
        to: &'a str,
    },
}

/// A write transaction's work: the lock and read first, the changes last.
pub(crate) trait Transaction {
    /// Excludes every other writer of `user` until the transaction ends, and reads the user's
    /// preferences in `namespace`, unordered; `None` when the user does not exist.
    async fn lock_and_load(&mut self, user: i64, namespace: &str) -> QueryResult<Option<Vec<PreferenceRow>>>;

    /// Runs `statements` in order at `now` (microseconds), as the transaction's last work; for
    /// each, the row it wrote (`None` for a deletion, and for a rename of a key that does not
    /// exist). On PostgreSQL the transaction commits with them, in the same round trip, when no
    /// rename is among them: when one fails, PostgreSQL rolls the whole transaction back instead.
    /// On SQLite the writer commits the batch that holds the transaction once every transaction
    /// of the batch has run.
    async fn commit_with(
        &mut self,
        user: i64,
        namespace: &str,
        now: i64,
        statements: &[Statement<'_>],
    ) -> QueryResult<Vec<Option<PreferenceRow>>>;
}

/// `UPDATE users SET version = version + 1 WHERE id = $1`: moves a user to its next version, as
/// one fixed statement that PostgreSQL prepares once per connection (diesel's `UPDATE` DSL is
/// parsed again by the server on every run).
#[derive(QueryId)]
struct NextVersion(i64);

impl QueryFragment<Pg> for NextVersion {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("UPDATE users SET version = version + 1 WHERE id = ");
        out.push_bind_param::<BigInt, _>(&self.0)
    }
}

/// `BEGIN`, `COMMIT` or `ROLLBACK` as a statement PostgreSQL prepares once per connection (cached
/// by its text). Prepared, it keeps its place in a pipeline: diesel-async sends a statement that must be
/// prepared first only once it is, and the statements after it wait their turn, where a simple
/// query (`batch_execute`) would be sent at once, ahead of them.
struct Control(&'static str);

impl QueryId for Control {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for Control {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(self.0);
        Ok(())
    }
}

/// The namespace's preferences, unordered.
macro_rules! load {
    ($user:expr, $namespace:expr) => {
        in_namespace($user, $namespace).select(PreferenceRow::as_select())
    };
}

/// A [`Statement`] as a query, run as each backend runs it: `$returning` runs a put or rename
/// (bound to `$row`, it returns the written row), `$counted` a deletion (bound to `$count`).
macro_rules! statement {
    ($statement:expr, $user:expr, $namespace:expr, $now:expr, $row:ident => $returning:expr, $count:ident => $counted:expr) => {
        match $statement {
            Statement::Put(new) => {
                let $row = Upsert(new);
                $returning
            }
            Statement::Delete(key) => {
                let $count =
                    diesel::delete(in_namespace($user, $namespace).filter(preferences::key.eq(*key)));
                $counted
            }
            Statement::Rename { from, to } => {
                let $row = diesel::update(in_namespace($user, $namespace).filter(preferences::key.eq(*from)))
                    .set((
                        preferences::key.eq(*to),
                        preferences::updated_at.eq($now),
                        preferences::version.eq(preferences::version + 1),
                    ))
                    .returning(PreferenceRow::as_returning());
                $returning
            }
        }
    };
}

/// `INSERT … ON CONFLICT … DO UPDATE … RETURNING` of one preference, as one fixed statement that
/// both backends prepare once per connection and then reuse. (diesel's upsert DSL marks every
/// `DO UPDATE` unsafe to cache, since a changeset may skip `None` fields; SQLite would parse it
/// again on each run, and PostgreSQL prepare it in a round trip of its own.)
pub(crate) struct Upsert<'a>(&'a NewPreference<'a>);

impl QueryId for Upsert<'_> {
    type QueryId = Upsert<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB> QueryFragment<DB> for Upsert<'_>
where
    DB: Backend,
    i64: ToSql<BigInt, DB>,
    str: ToSql<Text, DB>,
    String: ToSql<Text, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let new = self.0;
        out.push_sql(
            "INSERT INTO preferences (user_id, namespace, key, value, created_at, updated_at, version) VALUES (",
        );
        out.push_bind_param::<BigInt, _>(&new.user_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(new.namespace)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(new.key)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(new.value)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&new.created_at)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&new.updated_at)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&new.version)?;
        out.push_sql(
            ") ON CONFLICT (user_id, namespace, key) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at, version = preferences.version + 1 \
             RETURNING id, user_id, namespace, key, value, created_at, updated_at, version",
        );
        Ok(())
    }
}

impl Query for Upsert<'_> {
    type SqlType = (BigInt, BigInt, Text, Text, Text, BigInt, BigInt, BigInt);
}

impl Transaction for SqliteConn {
    /// The database-wide write lock is already held (`BEGIN IMMEDIATE`). The user's `version`
    /// stays: SQLite's readers go by `PRAGMA data_version`, and a write of one more page would
    /// cost every transaction.
    async fn lock_and_load(&mut self, user: i64, namespace: &str) -> QueryResult<Option<Vec<PreferenceRow>>> {
        if !user_exists(user).get_result(self).await? {
            return Ok(None);
        }
        load!(user, namespace).load(self).await.map(Some)
    }

    async fn commit_with(
        &mut self,
        user: i64,
        namespace: &str,
        now: i64,
        statements: &[Statement<'_>],
    ) -> QueryResult<Vec<Option<PreferenceRow>>> {
        let mut written = Vec::with_capacity(statements.len());
        for statement in statements {
            written.push(statement!(statement, user, namespace, now,
                query => query.get_result(self).await.optional()?,
                query => query.execute(self).await.map(|_| None)?));
        }
        Ok(written)
    }
}

/// A PostgreSQL write transaction whose `BEGIN` goes with its first statements and whose `COMMIT`
/// goes with its last, managed here rather than by diesel-async's transaction manager (which sends
/// each alone). [`Pipelined::end`] commits or rolls back what is still open; a transaction whose
/// future is dropped leaves its connection unsettled, and the [`Lease`](crate::pool::Lease)
/// closes it.
pub(crate) struct Pipelined<'c> {
    conn: &'c mut AsyncPgConnection,
    /// Whether `BEGIN` was sent and no `COMMIT` has answered since.
    open: bool,
    /// Behind a transaction-mode pooler, what begins the transaction, sent as a simple query: a
    /// statement prepared outside the transaction could be run by another server. `BEGIN`,
    /// `COMMIT` and `ROLLBACK` then go alone, `COMMIT` once every statement has answered (so
    /// each statement is closed inside the transaction).
    simple_begin: Option<String>,
}

impl<'c> Pipelined<'c> {
    /// A transaction on `conn`, a connection of `pools`, begun by [`Transaction::lock_and_load`].
    pub(crate) fn new(conn: &'c mut AsyncPgConnection, pools: &PgPools) -> Self {
        let simple_begin = (!pools.prepared_statements()).then(|| pools.begin_sql());
        Self { conn, open: false, simple_begin }
    }

    /// Ends the transaction with `COMMIT` or `ROLLBACK`.
    async fn control(&mut self, end: &'static str) -> QueryResult<()> {
        if self.simple_begin.is_some() {
            self.conn.batch_execute(end).await
        } else {
            Control(end).execute(&mut *self.conn).await.map(drop)
        }
    }

    /// Ends the transaction if it is still open: commits it when `out` is `Ok`, else rolls it back
    /// and returns `out`'s error unchanged. A connection whose `COMMIT` or `ROLLBACK` fails is
    /// marked broken, so the pool closes it (which rolls back whatever is left).
    pub(crate) async fn end<T>(mut self, out: Result<T, Failure>) -> Result<T, Failure> {
        if !self.open {
            return out;
        }
        let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = self.control(end).await;
        if let Err(error) = ended {
            <AsyncPgConnection as AsyncConnection>::TransactionManager::transaction_manager_status_mut(
                self.conn,
            )
            .set_in_error();
            if out.is_ok() {
                return Err(error.into());
            }
            tracing::warn!(%error, "rollback failed");
        }
        out
    }
}

impl Transaction for Pipelined<'_> {
    /// Begins, then moves the user to its next `version`, which PostgreSQL's readers check what
    /// they remember against; the `UPDATE` locks the user's row (writers of the same user,
    /// including those adding new keys, wait for each other). The read comes after it, all in one
    /// round trip.
    async fn lock_and_load(&mut self, user: i64, namespace: &str) -> QueryResult<Option<Vec<PreferenceRow>>> {
        self.open = true;
        let conn = &*self.conn;
        let simple_begin = self.simple_begin.as_deref();
        let begin = async move {
            match simple_begin {
                Some(begin) => (&mut &*conn).batch_execute(begin).await,
                None => Control("BEGIN").execute(&mut &*conn).await.map(drop),
            }
        };
        let (begun, locked, rows) =
            join3(begin, NextVersion(user).execute(&mut &*conn), load!(user, namespace).load(&mut &*conn))
                .await;
        begun?;
        if locked? == 0 {
            return Ok(None);
        }
        rows.map(Some)
    }

    /// Every statement and `COMMIT` in one round trip, unless a rename is among them: a rename of
    /// a key that is not there writes nothing, which the caller must see before the transaction
    /// commits (in [`Pipelined::end`]).
    async fn commit_with(
        &mut self,
        user: i64,
        namespace: &str,
        now: i64,
        statements: &[Statement<'_>],
    ) -> QueryResult<Vec<Option<PreferenceRow>>> {
        let conn = &*self.conn;
        let pipelined =
            statements.iter().map(|statement| -> BoxFuture<'_, QueryResult<Option<PreferenceRow>>> {
                statement!(statement, user, namespace, now,
                query => query.get_result(&mut &*conn).map(OptionalExtension::optional).boxed(),
                query => query.execute(&mut &*conn).map(|done| done.map(|_| None)).boxed())
            });
        let last = !statements.iter().any(|statement| matches!(statement, Statement::Rename { .. }));
        if self.simple_begin.is_some() {
            let written: Vec<_> = join_all(pipelined).await.into_iter().collect::<QueryResult<_>>()?;
            if last {
                self.control("COMMIT").await?;
                self.open = false;
            }
            return Ok(written);
        }
        let commit = last.then(|| Control("COMMIT").execute(&mut &*conn));
        let (written, committed) = join(join_all(pipelined), OptionFuture::from(commit)).await;
        if let Some(committed) = committed {
            committed?;
            self.open = false;
        }
        written.into_iter().collect()
    }
}
