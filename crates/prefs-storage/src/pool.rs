//! Connection pools for both backends and the `with_conn!` macro that runs one query body on
//! either.
//!
//! A SQLite connection runs a whole `with_conn!` body in one trip to tokio's blocking threads
//! ([`run_blocking`]): its statements execute inline there ([`Inline`]), so a request crosses
//! threads once, not once per statement, and the body's future may be dropped at any time (the
//! trip finishes on its own and returns the connection to the pool). SQLite write transactions
//! go to the [`Writer`] thread instead, which commits them in batches.
//!
//! A PostgreSQL body runs where it is awaited, on a connection of its thread's own pool
//! ([`PgPools`]). A [`Lease`] dropped before its body finished
//! takes its connection out of the pool instead of returning it, since the connection may still
//! be running a statement or sit inside an open transaction. Closing it rolls that transaction
//! back.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{Manager, Object};
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError as ConnectError, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::{SpawnBlocking, SyncConnectionWrapper};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection, TransactionManager};
use futures_util::future::{BoxFuture, FutureExt};
use prefs_domain::Error;
use thread_local::ThreadLocal;

use crate::error::{CheckoutTimeout, Failure};
use crate::writer::Writer;

/// A pooled SQLite connection: diesel's sync connection, whose statements run inline on the
/// blocking thread of [`run_blocking`].
pub(crate) type SqliteConn = SyncConnectionWrapper<SqliteConnection, Inline>;

/// One pool per backend; [`with_conn!`] dispatches on it.
#[derive(Clone)]
pub(crate) enum Pools {
    /// SQLite: the pool for reads and single statements, and the writer for transactions.
    Sqlite {
        /// Connections for reads and single statements.
        pool: Pool<SqliteConn>,
        /// Runs the write transactions.
        writer: Writer,
    },
    /// PostgreSQL.
    Postgres(Arc<PgPools>),
}

/// PostgreSQL: one pool per thread that uses the store (each actix worker). A connection's
/// driver task runs on the runtime that opened it, so a query never leaves its worker's thread,
/// and a worker that stops (at shutdown) takes only its own connections with it.
pub(crate) struct PgPools {
    pools: ThreadLocal<Pool<AsyncPgConnection>>,
    url: String,
    size: usize,
    setup_sql: String,
}

impl PgPools {
    /// Pools of `size` connections to `url`, each running `setup_sql` when it is made.
    pub(crate) fn new(url: &str, size: usize, setup_sql: String) -> Self {
        Self { pools: ThreadLocal::new(), url: url.to_owned(), size, setup_sql }
    }

    /// This thread's pool.
    pub(crate) fn here(&self) -> Result<&Pool<AsyncPgConnection>, Failure> {
        // A connection the server closed reports itself closed (its driver task ended), so the
        // fast check replaces it without a `SELECT 1` round trip before every query.
        let build = || pool(&self.url, self.size, self.setup_sql.clone(), RecyclingMethod::Fast);
        self.pools.get_or_try(build).map_err(|e| Failure::Domain(Error::Internal(e.to_string().into())))
    }

    /// The pools' figures, added up.
    pub(crate) fn status(&self) -> deadpool::Status {
        let zero = deadpool::Status { max_size: 0, size: 0, available: 0, waiting: 0 };
        self.pools.iter().map(Pool::status).fold(zero, |all, one| deadpool::Status {
            max_size: all.max_size + one.max_size,
            size: all.size + one.size,
            available: all.available + one.available,
            waiting: all.waiting + one.waiting,
        })
    }
}

/// How a connection type is opened: where its blocking or background work runs.
pub(crate) trait Establish: AsyncConnection + SimpleAsyncConnection + Send + 'static {
    /// Opens a connection to `url` and runs `setup_sql` on it.
    fn open(url: String, setup_sql: String) -> BoxFuture<'static, ConnectionResult<Self>>;
}

/// Opens and sets up a connection (which runs `setup_sql` once, when it is made).
pub(crate) async fn open<C: Establish>(url: &str, setup_sql: &str) -> ConnectionResult<C> {
    let mut conn = C::establish(url).await?;
    conn.batch_execute(setup_sql).await.map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// A task that ended without an answer (it panicked) as a connection error.
fn lost(error: impl std::fmt::Debug) -> ConnectionError {
    ConnectionError::BadConnection(format!("connecting failed: {error:?}"))
}

impl Establish for SqliteConn {
    /// Opening a file and setting its journal mode block (on a lock, for up to the busy timeout):
    /// on a blocking thread.
    fn open(url: String, setup_sql: String) -> BoxFuture<'static, ConnectionResult<Self>> {
        let task = tokio::task::spawn_blocking(move || inline(open(&url, &setup_sql)).map_err(lost)?);
        async move { task.await.map_err(lost)? }.boxed()
    }
}

impl Establish for AsyncPgConnection {
    /// Where the pool needs it: the connection's driver task runs on this thread's runtime.
    fn open(url: String, setup_sql: String) -> BoxFuture<'static, ConnectionResult<Self>> {
        async move { open(&url, &setup_sql).await }.boxed()
    }
}

/// Builds a pool whose connections run `setup_sql` once, when they are made.
pub(crate) fn pool<C: Establish>(
    url: &str,
    size: usize,
    setup_sql: String,
    recycling_method: RecyclingMethod<C>,
) -> Result<Pool<C>, deadpool::managed::BuildError>
where
    AsyncDieselConnectionManager<C>: Manager<Type = C, Error = ConnectError>,
{
    let mut config = ManagerConfig::default();
    config.recycling_method = recycling_method;
    config.custom_setup = Box::new(move |url| C::open(url.to_owned(), setup_sql.clone()));
    Pool::builder(AsyncDieselConnectionManager::new_with_config(url, config)).max_size(size).build()
}

/// Runs a SQLite connection's blocking calls right away, on the calling thread: every SQLite
/// body runs on a blocking thread already ([`run_blocking`]).
pub(crate) struct Inline;

impl SpawnBlocking for Inline {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> BoxFuture<'a, Result<R, Box<dyn StdError + Send + Sync + 'static>>>
    where
        R: Send + 'static,
    {
        futures_util::future::ready(Ok(task())).boxed()
    }

    fn get_runtime() -> Self {
        Self
    }
}

/// The output of `future`, which must finish at its first poll: a SQLite body, whose statements
/// run inline ([`Inline`]), so it never waits for anything.
pub(crate) fn inline<F: Future>(future: F) -> Result<F::Output, Failure> {
    future
        .now_or_never()
        .ok_or_else(|| Failure::Domain(Error::Internal("a SQLite call did not finish inline".into())))
}

/// Runs `work` on a checked-out SQLite connection in one trip to a blocking thread. Dropping the
/// returned future detaches the trip, which still finishes and returns the connection to the
/// pool.
pub(crate) async fn run_blocking<T: Send + 'static>(
    mut lease: Lease<SqliteConn>,
    work: impl FnOnce(&mut SqliteConn) -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    let trip = tokio::task::spawn_blocking(move || {
        let out = work(lease.conn());
        lease.settle();
        out
    });
    trip.await.map_err(|e| Failure::Domain(Error::Internal(format!("a database task failed: {e}").into())))?
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

/// Runs `body` with `conn` bound to a connection of `store` (a [`DieselStore`]), for whichever
/// backend it has. The body is written once and compiled once per backend; it is an `async` block
/// returning `Result<T, Failure>` (so `?` and `return` work inside), and the macro evaluates to
/// `prefs_domain::Result<T>`. On SQLite the body runs on another thread, so what it uses must be
/// owned (`'static`): it takes its captures by move.
///
/// `with_conn!(store, transaction |conn| body)` runs the body in a write transaction, committed if
/// it returns `Ok` and rolled back otherwise: on SQLite through the [`Writer`], on PostgreSQL in a
/// transaction of its own.
///
/// [`DieselStore`]: crate::DieselStore
macro_rules! with_conn {
    ($store:expr, transaction |$conn:ident| $body:expr) => {{
        let store = &$store;
        let out = match &store.pools {
            $crate::pool::Pools::Sqlite { writer, .. } => {
                writer
                    .run(store.pool_wait, move |$conn| {
                        $crate::pool::inline($crate::pool::body(async move { $body }))?
                    })
                    .await
            }
            $crate::pool::Pools::Postgres(pools) => {
                $crate::pool::with_conn!(@postgres pools, store.pool_wait, |conn| {
                    type Manager = <::diesel_async::AsyncPgConnection as ::diesel_async::AsyncConnection>::TransactionManager;
                    <Manager as ::diesel_async::TransactionManager<_>>::begin_transaction(conn).await?;
                    let out = $crate::pool::body(async {
                        let $conn = &mut *conn;
                        $body
                    })
                    .await;
                    $crate::pool::finish(conn, out).await
                })
            }
        };
        out.map_err(::prefs_domain::Error::from)
    }};
    ($store:expr, |$conn:ident| $body:expr) => {{
        let store = &$store;
        let out = match &store.pools {
            $crate::pool::Pools::Sqlite { pool, .. } => {
                $crate::pool::body(async {
                    let lease = $crate::pool::Lease::checkout(pool, store.pool_wait).await?;
                    $crate::pool::run_blocking(lease, move |$conn| {
                        $crate::pool::inline($crate::pool::body(async move { $body }))?
                    })
                    .await
                })
                .await
            }
            $crate::pool::Pools::Postgres(pools) => {
                $crate::pool::with_conn!(@postgres pools, store.pool_wait, |$conn| $body)
            }
        };
        out.map_err(::prefs_domain::Error::from)
    }};
    (@postgres $pools:expr, $wait:expr, |$conn:ident| $body:expr) => {
        $crate::pool::body(async {
            let mut lease = $crate::pool::Lease::checkout($pools.here()?, $wait).await?;
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
