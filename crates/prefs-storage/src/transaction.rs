//! The statements of a write transaction ([`PreferenceStore::modify`]) on each backend.
//! PostgreSQL pipelines them: it sends the statements that do not depend on each other's answers
//! together and then reads the answers, one round trip for each group. SQLite runs them one after
//! the other, in process.
//!
//! [`PreferenceStore::modify`]: prefs_domain::PreferenceStore::modify

use diesel::backend::Backend;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::future::{BoxFuture, FutureExt, join, join_all};

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

/// A write transaction's work, once it has begun.
pub(crate) trait Transaction: AsyncConnection {
    /// Excludes every other writer of `user` until the transaction ends, and reads the user's
    /// preferences in `namespace`, unordered; `None` when the user does not exist.
    async fn lock_and_load(&mut self, user: i64, namespace: &str) -> QueryResult<Option<Vec<PreferenceRow>>>;

    /// Runs `statements` in order at `now` (microseconds); for each, the row it wrote (`None` for
    /// a deletion, and for a rename of a key that does not exist).
    async fn apply(
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

impl QueryFragment<diesel::pg::Pg> for NextVersion {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        out.push_sql("UPDATE users SET version = version + 1 WHERE id = ");
        out.push_bind_param::<BigInt, _>(&self.0)
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
        out.push_bind_param::<Text, _>(&new.value)?;
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

    async fn apply(
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

impl Transaction for AsyncPgConnection {
    /// Moves the user to its next `version`, which PostgreSQL's readers check what they remember
    /// against; the `UPDATE` locks the user's row (writers of the same user, including those
    /// adding new keys, wait for each other). The read is pipelined after it.
    async fn lock_and_load(&mut self, user: i64, namespace: &str) -> QueryResult<Option<Vec<PreferenceRow>>> {
        let conn = &*self;
        let (locked, rows) =
            join(NextVersion(user).execute(&mut &*conn), load!(user, namespace).load(&mut &*conn)).await;
        if locked? == 0 {
            return Ok(None);
        }
        rows.map(Some)
    }

    /// Every statement in one round trip.
    async fn apply(
        &mut self,
        user: i64,
        namespace: &str,
        now: i64,
        statements: &[Statement<'_>],
    ) -> QueryResult<Vec<Option<PreferenceRow>>> {
        let conn = &*self;
        let pipelined =
            statements.iter().map(|statement| -> BoxFuture<'_, QueryResult<Option<PreferenceRow>>> {
                statement!(statement, user, namespace, now,
                query => query.get_result(&mut &*conn).map(OptionalExtension::optional).boxed(),
                query => query.execute(&mut &*conn).map(|done| done.map(|_| None)).boxed())
            });
        join_all(pipelined).await.into_iter().collect()
    }
}
