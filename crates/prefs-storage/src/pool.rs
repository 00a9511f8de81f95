//! Connection pools for both backends and the `with_conn!` macro that runs one query body on
//! either.
//!
//! Two things make a checkout safe to abandon halfway (a client disconnecting makes actix drop
//! the request's future):
//! - SQLite connections run their blocking calls through [`Detached`], whose futures may be
//!   dropped at any time. diesel-async's default runtime instead blocks in its drop with
//!   `block_in_place`, which panics on a current-thread runtime such as an actix worker's.
//! - A [`Lease`] dropped before its body finished takes its connection out of the pool instead of
//!   returning it, since the connection may still be running a statement or sit inside an open
//!   transaction. Closing it rolls that transaction back.

use std::error::Error as StdError;
use std::time::Duration;

use deadpool::managed::{Manager, Object};
use diesel::connection::AnsiTransactionManager as SyncAnsiTransactionManager;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError as ConnectError, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::{SpawnBlocking, SyncConnectionWrapper};
use diesel_async::{
    AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection, TransactionManager,
};
use futures_util::future::{BoxFuture, FutureExt, TryFutureExt};

use crate::error::{CheckoutTimeout, Failure};
use crate::schema::users;

/// A pooled SQLite connection: diesel's sync connection, run on tokio's blocking threads.
pub(crate) type SqliteConn = SyncConnectionWrapper<SqliteConnection, Detached>;

/// One pool per backend; [`with_conn!`] dispatches on it.
#[derive(Clone)]
pub(crate) enum Pools {
    /// SQLite.
    Sqlite(Pool<SqliteConn>),
    /// PostgreSQL.
    Postgres(Pool<AsyncPgConnection>),
}

/// Builds a pool whose connections run `setup_sql` once, when they are made.
pub(crate) fn pool<C>(
    url: &str,
    size: usize,
    setup_sql: String,
    recycling_method: RecyclingMethod<C>,
) -> Result<Pool<C>, deadpool::managed::BuildError>
where
    C: AsyncConnection + SimpleAsyncConnection + Send + 'static,
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = ConnectError>,
{
    let mut config = ManagerConfig::default();
    config.recycling_method = recycling_method;
    // Connect on the runtime that builds the pool: a PostgreSQL connection's driver task lives on
    // the runtime that made it, which must outlive every actix worker that may use it.
    let runtime = tokio::runtime::Handle::current();
    config.custom_setup = Box::new(move |url| {
        let setup_sql = setup_sql.clone();
        let url = url.to_owned();
        let task = runtime.spawn(async move {
            let mut conn = C::establish(&url).await?;
            conn.batch_execute(&setup_sql).await.map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        });
        async move { task.await.map_err(|e| ConnectionError::BadConnection(e.to_string()))? }.boxed()
    });
    Pool::builder(AsyncDieselConnectionManager::new_with_config(url, config)).max_size(size).build()
}

/// Runs the blocking calls of a SQLite connection on tokio's blocking pool. Dropping the returned
/// future detaches the call, which finishes on its own; see the module docs.
pub(crate) struct Detached;

impl SpawnBlocking for Detached {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> BoxFuture<'a, Result<R, Box<dyn StdError + Send + Sync + 'static>>>
    where
        R: Send + 'static,
    {
        tokio::task::spawn_blocking(task).map_err(Into::into).boxed()
    }

    fn get_runtime() -> Self {
        Self
    }
}

/// A pooled connection checked out for one operation.
pub(crate) struct Lease<C>
where
    AsyncDieselConnectionManager<C>: Manager,
{
    /// `None` only once taken by [`Lease::detach`] or drop.
    object: Option<Object<AsyncDieselConnectionManager<C>>>,
    /// Whether the operation ran to its end, so the connection is fit to go back to the pool.
    settled: bool,
}

impl<C> Lease<C>
where
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = ConnectError>,
{
    /// Checks a connection out, waiting at most `wait` in all.
    pub(crate) async fn checkout(pool: &Pool<C>, wait: Duration) -> Result<Self, Failure> {
        match tokio::time::timeout(wait, pool.get()).await {
            Ok(Ok(object)) => Ok(Self { object: Some(object), settled: false }),
            Ok(Err(error)) => Err(Failure::Checkout(error)),
            Err(_) => Err(Failure::TimedOut(CheckoutTimeout(wait))),
        }
    }

    /// The connection.
    pub(crate) fn conn(&mut self) -> &mut C {
        self.object.as_mut().expect("a lease holds its connection until dropped")
    }

    /// Marks the operation finished: the connection goes back to the pool when dropped (where
    /// deadpool still discards it if it is broken).
    pub(crate) fn settle(&mut self) {
        self.settled = true;
    }

    /// Takes the connection out of the pool for good.
    pub(crate) fn detach(mut self) -> C {
        Object::take(self.object.take().expect("a lease holds its connection until dropped"))
    }
}

impl<C> Drop for Lease<C>
where
    AsyncDieselConnectionManager<C>: Manager,
{
    fn drop(&mut self) {
        if let Some(object) = self.object.take().filter(|_| !self.settled) {
            drop(Object::take(object));
        }
    }
}

/// Pins the output type of a `with_conn!` body so `?` knows what to convert into.
pub(crate) fn body<T, F: Future<Output = Result<T, Failure>>>(future: F) -> F {
    future
}

/// What a write transaction needs that differs between the backends.
pub(crate) trait WriteTransaction: AsyncConnection {
    /// Begins a transaction for writing.
    async fn begin_write(&mut self) -> QueryResult<()>;

    /// Excludes every other writer of `user` until the transaction ends; returns whether the user
    /// exists.
    async fn lock_user(&mut self, user: i64) -> QueryResult<bool>;
}

impl WriteTransaction for SqliteConn {
    /// `BEGIN IMMEDIATE` takes the database's write lock up front, so writers queue on the busy
    /// timeout instead of failing when a read lock cannot be upgraded.
    async fn begin_write(&mut self) -> QueryResult<()> {
        self.spawn_blocking(|conn| SyncAnsiTransactionManager::begin_transaction_sql(conn, "BEGIN IMMEDIATE"))
            .await
    }

    /// The database-wide write lock is already held.
    async fn lock_user(&mut self, user: i64) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(users::table.find(user))).get_result(self).await
    }
}

impl WriteTransaction for AsyncPgConnection {
    /// A plain `BEGIN` (READ COMMITTED); [`WriteTransaction::lock_user`] does the excluding.
    async fn begin_write(&mut self) -> QueryResult<()> {
        <Self as AsyncConnection>::TransactionManager::begin_transaction(self).await
    }

    /// `SELECT … FOR UPDATE` on the user's row: writers of the same user, including those adding
    /// new keys, wait for each other.
    async fn lock_user(&mut self, user: i64) -> QueryResult<bool> {
        let row = users::table.find(user).select(users::id).for_update().get_result::<i64>(self).await;
        Ok(row.optional()?.is_some())
    }
}

/// Commits when `out` is `Ok`, else rolls back and returns `out`'s error unchanged.
pub(crate) async fn finish<C: AsyncConnection, T>(
    conn: &mut C,
    out: Result<T, Failure>,
) -> Result<T, Failure> {
    match out {
        Ok(value) => {
            C::TransactionManager::commit_transaction(conn).await?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = C::TransactionManager::rollback_transaction(conn).await {
                // The pool discards the connection (its transaction state is broken).
                tracing::warn!(error = %rollback, "rollback failed");
            }
            Err(error)
        }
    }
}

/// Runs `body` with `conn` bound to a pooled connection of `store` (a [`DieselStore`]), for
/// whichever backend it has. The body is written once and compiled once per backend; it is an
/// `async` block returning `Result<T, Failure>` (so `?` and `return` work inside), and the macro
/// evaluates to `prefs_domain::Result<T>`.
///
/// `with_conn!(store, transaction |conn| body)` runs the body in a write transaction
/// ([`WriteTransaction::begin_write`]), committed if it returns `Ok` and rolled back otherwise.
///
/// [`DieselStore`]: crate::DieselStore
macro_rules! with_conn {
    ($store:expr, transaction |$conn:ident| $body:expr) => {
        $crate::pool::with_conn!($store, |conn| {
            $crate::pool::WriteTransaction::begin_write(conn).await?;
            let out = $crate::pool::body(async {
                let $conn = &mut *conn;
                $body
            })
            .await;
            $crate::pool::finish(conn, out).await
        })
    };
    ($store:expr, |$conn:ident| $body:expr) => {{
        let store = &$store;
        let out = match &store.pools {
            $crate::pool::Pools::Sqlite(pool) => {
                $crate::pool::with_conn!(@lease pool, store.pool_wait, $conn, $body)
            }
            $crate::pool::Pools::Postgres(pool) => {
                $crate::pool::with_conn!(@lease pool, store.pool_wait, $conn, $body)
            }
        };
        out.map_err(::prefs_domain::Error::from)
    }};
    (@lease $pool:expr, $wait:expr, $conn:ident, $body:expr) => {
        $crate::pool::body(async {
            let mut lease = $crate::pool::Lease::checkout($pool, $wait).await?;
            let out = $crate::pool::body(async {
                let $conn = lease.conn();
                $body
            })
            .await;
            lease.settle();
            out
        })
        .await
    };
}

pub(crate) use with_conn;
