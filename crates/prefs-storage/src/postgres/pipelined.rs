//! A PostgreSQL write transaction ([`PreferenceStore::modify`]) pipelined: the statements that do
//! not depend on each other's answers go together, and then their answers are read, so a write
//! costs two round trips (`BEGIN`, the lock and the read; the changes and `COMMIT`).
//!
//! [`PreferenceStore::modify`]: prefs_domain::PreferenceStore::modify

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::BigInt;
use diesel_async::{
    AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection, TransactionManager,
};
use futures_util::future::{BoxFuture, FutureExt, OptionFuture, join, join_all, join3};

use super::pools::PgPools;
use crate::error::Failure;
use crate::modify::{Statement, Transaction};
use crate::queries::{self, Upsert};
use crate::rows::PreferenceRow;

/// `UPDATE users SET version = version + 1 WHERE id = $1`: moves a user to its next version, as
/// one fixed statement that PostgreSQL prepares once per connection. Hand-written for speed:
/// diesel's `UPDATE` DSL is not cacheable, so the server would parse it again on every write.
#[derive(QueryId)]
struct NextVersion(i64);

impl QueryFragment<Pg> for NextVersion {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("UPDATE users SET version = version + 1 WHERE id = ");
        out.push_bind_param::<BigInt, _>(&self.0)
    }
}

/// `BEGIN`, `COMMIT` or `ROLLBACK` as a statement PostgreSQL prepares once per connection (cached
/// by its text); diesel's DSL has no statement for them. Prepared, it keeps its place in a pipeline: diesel-async sends a statement that must be
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

/// A PostgreSQL write transaction whose `BEGIN` goes with its first statements and whose `COMMIT`
/// goes with its last, managed here rather than by diesel-async's transaction manager (which sends
/// each alone). [`Pipelined::end`] commits or rolls back what is still open; a transaction whose
/// future is dropped leaves its connection unsettled, and the [`Lease`](super::pools::Lease)
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
    async fn lock_and_load(
        &mut self,
        user: i64,
        namespace: &str,
    ) -> Result<Option<Vec<PreferenceRow>>, Failure> {
        self.open = true;
        let conn = &*self.conn;
        let simple_begin = self.simple_begin.as_deref();
        let begin = async move {
            match simple_begin {
                Some(begin) => (&mut &*conn).batch_execute(begin).await,
                None => Control("BEGIN").execute(&mut &*conn).await.map(drop),
            }
        };
        let load = queries::in_namespace(user, namespace).select(PreferenceRow::as_select());
        let (begun, locked, rows) =
            join3(begin, NextVersion(user).execute(&mut &*conn), load.load(&mut &*conn)).await;
        begun?;
        if locked? == 0 {
            return Ok(None);
        }
        Ok(Some(rows?))
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
    ) -> Result<Vec<Option<PreferenceRow>>, Failure> {
        let conn = &*self.conn;
        let pipelined =
            statements.iter().map(|statement| -> BoxFuture<'_, QueryResult<Option<PreferenceRow>>> {
                match statement {
                    Statement::Put(new) => {
                        Upsert(new).get_result(&mut &*conn).map(OptionalExtension::optional).boxed()
                    }
                    Statement::Delete(key) => queries::delete_key(user, namespace, key)
                        .execute(&mut &*conn)
                        .map(|done| done.map(|_| None))
                        .boxed(),
                    Statement::Rename { from, to } => queries::rename(user, namespace, from, to, now)
                        .returning(PreferenceRow::as_returning())
                        .get_result(&mut &*conn)
                        .map(OptionalExtension::optional)
                        .boxed(),
                }
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
        Ok(written.into_iter().collect::<QueryResult<_>>()?)
    }
}
