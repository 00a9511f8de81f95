//! PostgreSQL's connections ([`PgPools`]): one pool per thread for the write transactions, and
//! read connections each thread's reads share. [`PgPools::read`] runs a read on them,
//! [`PgPools::transaction`] a write transaction on a pooled connection.
//!
//! A [`Lease`] dropped before its operation finished takes its connection out of the pool instead
//! of returning it, since the connection may still be running a statement or sit inside an open
//! transaction. Closing it rolls that transaction back.

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::Object;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolableConnection, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection, TransactionManager};
use futures_util::future::{BoxFuture, FutureExt};
use prefs_domain::Error;
use thread_local::ThreadLocal;

use super::connect::PgConnector;
use crate::error::{CheckoutTimeout, Failure};
use crate::modify::finish;
use crate::status::PoolStatus;

/// How many read connections each thread keeps on PostgreSQL, at most.
pub(crate) const READERS: usize = 2;

/// PostgreSQL: one pool per thread that uses the store (each actix worker) for the write
/// transactions, and up to [`READERS`] read connections per thread that its reads share.
/// tokio-postgres pipelines the reads sent on one connection (it sends each without waiting for
/// the answers before it), so many reads cost PostgreSQL one wake-up and prefs no pool checkout;
/// a second connection is opened when the first is busy, so that one slow read does not hold
/// every other read back. A connection's driver task runs on the runtime that opened it, so a
/// query never leaves its worker's thread, and a worker that stops (at shutdown) takes only its
/// own connections with it.
pub(crate) struct PgPools {
    pools: ThreadLocal<Pool<AsyncPgConnection>>,
    /// Each thread's read connections (up to [`READERS`]), shared by all the thread's reads.
    readers: ThreadLocal<tokio::sync::Mutex<Vec<Arc<AsyncPgConnection>>>>,
    connector: Arc<PgConnector>,
    size: usize,
    /// `lock_timeout` in milliseconds: a session setting of each connection, or behind a
    /// transaction-mode pooler one of each transaction ([`PgPools::begin_sql`]).
    lock_timeout_ms: u128,
}

impl PgPools {
    /// Pools of `size` connections made by `connector`.
    pub(crate) fn new(connector: PgConnector, size: usize, lock_timeout_ms: u128) -> Self {
        Self {
            pools: ThreadLocal::new(),
            readers: ThreadLocal::new(),
            connector: Arc::new(connector),
            size,
            lock_timeout_ms,
        }
    }

    /// Whether statements may stay prepared across transactions: `false` behind a
    /// transaction-mode pooler, where every statement runs in a transaction and no session
    /// setting holds ([`StoreConfig::pg_prepared_statements`](crate::StoreConfig)).
    pub(crate) fn prepared_statements(&self) -> bool {
        self.connector.prepared_statements()
    }

    /// What begins a transaction: `BEGIN`, and behind a transaction-mode pooler the transaction's
    /// `lock_timeout` with it (a session's would hold on whichever server ran it).
    pub(crate) fn begin_sql(&self) -> String {
        match self.transaction_setup() {
            None => "BEGIN".to_owned(),
            Some(setup) => format!("BEGIN; {setup}"),
        }
    }

    /// Behind a transaction-mode pooler, what each transaction sets first: its `lock_timeout`.
    pub(crate) fn transaction_setup(&self) -> Option<String> {
        (!self.prepared_statements()).then(|| format!("SET LOCAL lock_timeout = {}", self.lock_timeout_ms))
    }

    /// A connection to read on: one of this thread's shared read connections
    /// ([`PgPools::reader`]), or behind a transaction-mode pooler a pooled connection inside a
    /// transaction of its own.
    pub(crate) async fn reading(&self, wait: Duration) -> Result<Reading, Failure> {
        if self.prepared_statements() {
            return Ok(Reading::Shared(self.reader(wait).await?));
        }
        let deadline = tokio::time::Instant::now() + wait;
        let mut attempts = 0;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let mut lease = Lease::checkout(self.here()?, left).await?;
            match lease.conn().batch_execute("BEGIN").await {
                Ok(()) => return Ok(Reading::Leased(Box::new(lease))),
                // The server closed this idle connection (a restart, an idle timeout), which it
                // may not know yet: the lease, unsettled, closes it; another is tried.
                Err(error) => {
                    attempts += 1;
                    if attempts > 2 {
                        return Err(error.into());
                    }
                }
            }
        }
    }

    /// A read connection of this thread: the one with the fewest reads under way, or a new one
    /// (opened within `wait`) when each has some and fewer than [`READERS`] are open.
    pub(crate) async fn reader(&self, wait: Duration) -> Result<Arc<AsyncPgConnection>, Failure> {
        let timed_out = |_| Failure::TimedOut(CheckoutTimeout(wait));
        let deadline = tokio::time::Instant::now() + wait;
        let mut readers = tokio::time::timeout_at(deadline, self.readers.get_or_default().lock())
            .await
            .map_err(timed_out)?;
        // An idle connection the server closed (a restart, a failover) goes: its driver ended.
        readers.retain_mut(|conn| Arc::get_mut(conn).is_none_or(|conn| !conn.is_broken()));
        // Each reader is held by the list and by every read under way on it.
        if let Some(idlest) = readers.iter().min_by_key(|conn| Arc::strong_count(conn))
            && (Arc::strong_count(idlest) == 1 || readers.len() >= READERS)
        {
            return Ok(idlest.clone());
        }
        let conn = tokio::time::timeout_at(deadline, self.connector.connect()).await.map_err(timed_out)??;
        let conn = Arc::new(conn);
        readers.push(conn.clone());
        Ok(conn)
    }

    /// Stops handing out `conn`, on which a read failed.
    pub(crate) async fn retire(&self, conn: &Arc<AsyncPgConnection>) {
        if let Some(readers) = self.readers.get() {
            readers.lock().await.retain(|reader| !Arc::ptr_eq(reader, conn));
        }
    }

    /// Stops handing out every thread's read connections (the server they reach takes no
    /// writes): reads open new ones, which go to the host that takes writes when the URL names
    /// several (`target_session_attrs=read-write`).
    pub(crate) async fn reconnect(&self) {
        for readers in self.readers.iter() {
            readers.lock().await.clear();
        }
    }

    /// Runs `body` on a connection to read on ([`PgPools::reading`]), as `&mut &AsyncPgConnection`
    /// (which cannot begin a transaction). A read that failed is tried once more on another
    /// connection (reads change nothing): the server may have closed the first one (a restart, an
    /// idle timeout).
    pub(crate) async fn read<T>(
        &self,
        wait: Duration,
        mut body: impl for<'c> FnMut(&'c mut &'c AsyncPgConnection) -> BoxFuture<'c, Result<T, Failure>>,
    ) -> Result<T, Failure> {
        let mut tried = false;
        loop {
            let reading = self.reading(wait).await?;
            let out = {
                let mut conn: &AsyncPgConnection = reading.conn();
                body(&mut conn).await
            };
            let out = reading.finish(self, out).await;
            if let Err(Failure::Query(_)) = &out
                && !std::mem::replace(&mut tried, true)
            {
                continue;
            }
            break out;
        }
    }

    /// Runs `body` in a transaction of its own on a pooled connection, committed if it returns
    /// `Ok` and rolled back otherwise.
    pub(crate) async fn transaction<T>(
        &self,
        wait: Duration,
        body: impl for<'c> FnOnce(&'c mut AsyncPgConnection) -> BoxFuture<'c, Result<T, Failure>>,
    ) -> Result<T, Failure> {
        let mut lease = Lease::checkout(self.here()?, wait).await?;
        let conn = lease.conn();
        let out = async {
            type Manager = <AsyncPgConnection as AsyncConnection>::TransactionManager;
            Manager::begin_transaction(&mut *conn).await?;
            if let Some(setup) = self.transaction_setup() {
                // Behind a transaction-mode pooler: the lock timeout of this transaction.
                if let Err(error) = conn.batch_execute(&setup).await {
                    return finish(conn, Err(error.into())).await;
                }
            }
            let out = body(&mut *conn).await;
            finish(conn, out).await
        }
        .await;
        lease.settle_unless_read_only(&out);
        out
    }

    /// This thread's pool.
    pub(crate) fn here(&self) -> Result<&Pool<AsyncPgConnection>, Failure> {
        self.pools
            .get_or_try(|| self.build())
            .map_err(|e| Failure::Domain(Error::Internal(e.to_string().into())))
    }

    /// A pool whose connections run the setup once, when they are made.
    fn build(&self) -> Result<Pool<AsyncPgConnection>, deadpool::managed::BuildError> {
        let connector = self.connector.clone();
        let mut config = ManagerConfig::default();
        // A connection the server closed reports itself closed (its driver task ended), so the
        // fast check replaces it without a `SELECT 1` round trip before every query.
        config.recycling_method = RecyclingMethod::Fast;
        config.custom_setup = Box::new(move |_| {
            let connector = connector.clone();
            async move { connector.connect().await }.boxed()
        });
        // The connector has the URL (parsed, its TLS settings applied); the manager's is unused.
        Pool::builder(AsyncDieselConnectionManager::new_with_config("postgres://", config))
            .max_size(self.size)
            .build()
    }

    /// The pools' figures and the read connections, added up (a read connection is never
    /// waited for: reads share it).
    pub(crate) fn status(&self) -> PoolStatus {
        let (threads, open) = self.readers.iter().fold((0, 0), |(threads, open), readers| {
            (threads + 1, open + readers.try_lock().map_or(READERS, |readers| readers.len()))
        });
        let readers = PoolStatus { max_size: threads * READERS, size: open, available: open, waiting: 0 };
        self.pools.iter().map(Pool::status).fold(readers, |all, one| PoolStatus {
            max_size: all.max_size + one.max_size,
            size: all.size + one.size,
            available: all.available + one.available,
            waiting: all.waiting + one.waiting,
        })
    }
}

/// A pooled PostgreSQL connection checked out for one operation.
pub(crate) struct Lease {
    /// `None` only once taken by [`Lease::detach`] or drop.
    object: Option<Object<AsyncDieselConnectionManager<AsyncPgConnection>>>,
    /// Whether the operation ran to its end, so the connection is fit to go back to the pool.
    settled: bool,
}

impl Lease {
    /// Checks a connection out, waiting at most `wait` in all.
    pub(crate) async fn checkout(pool: &Pool<AsyncPgConnection>, wait: Duration) -> Result<Self, Failure> {
        match tokio::time::timeout(wait, pool.get()).await {
            Ok(Ok(object)) => Ok(Self { object: Some(object), settled: false }),
            Ok(Err(error)) => Err(Failure::Checkout(error)),
            Err(_) => Err(Failure::TimedOut(CheckoutTimeout(wait))),
        }
    }

    /// The connection.
    pub(crate) fn conn(&mut self) -> &mut AsyncPgConnection {
        self.object.as_mut().expect("a lease holds its connection until dropped")
    }

    /// Marks the operation finished: the connection goes back to the pool when dropped (where
    /// deadpool still discards it if it is broken).
    pub(crate) fn settle(&mut self) {
        self.settled = true;
    }

    /// Settles the lease ([`Lease::settle`]) unless `out` is a refused write: a server that refuses
    /// writes (a standby, after a failover) keeps its connections, so this one is closed and the
    /// next is made anew, to the host that takes writes now (`target_session_attrs=read-write`).
    pub(crate) fn settle_unless_read_only<T>(&mut self, out: &Result<T, Failure>) {
        if !matches!(out, Err(failure) if failure.read_only()) {
            self.settle();
        }
    }

    /// Takes the connection out of the pool for good.
    pub(crate) fn detach(mut self) -> AsyncPgConnection {
        Object::take(self.object.take().expect("a lease holds its connection until dropped"))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(object) = self.object.take().filter(|_| !self.settled) {
            drop(Object::take(object));
        }
    }
}

/// A connection a read runs on ([`PgPools::reading`]).
pub(crate) enum Reading {
    /// One of the thread's shared read connections.
    Shared(Arc<AsyncPgConnection>),
    /// A pooled connection inside a transaction of its own (behind a transaction-mode pooler).
    Leased(Box<Lease>),
}

impl Reading {
    /// The connection.
    pub(crate) fn conn(&self) -> &AsyncPgConnection {
        match self {
            Self::Shared(conn) => conn,
            Self::Leased(lease) => lease.object.as_ref().expect("a lease holds its connection until dropped"),
        }
    }

    /// Ends the read with its outcome `out`: a shared connection on which a query failed is
    /// retired; a leased one's transaction is committed (or rolled back), and the connection goes
    /// back to the pool only when all went well.
    pub(crate) async fn finish<T>(self, pools: &PgPools, out: Result<T, Failure>) -> Result<T, Failure> {
        match self {
            Self::Shared(conn) => {
                if let Err(Failure::Query(_)) = &out {
                    pools.retire(&conn).await;
                }
                out
            }
            Self::Leased(mut lease) => {
                let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
                let ended = lease.conn().batch_execute(end).await;
                match (out, ended) {
                    (Ok(value), Ok(())) => {
                        lease.settle();
                        Ok(value)
                    }
                    (Ok(_), Err(error)) => Err(error.into()),
                    (Err(error), ended) => {
                        if ended.is_ok() && !matches!(error, Failure::Query(_)) {
                            lease.settle();
                        }
                        Err(error)
                    }
                }
            }
        }
    }
}
