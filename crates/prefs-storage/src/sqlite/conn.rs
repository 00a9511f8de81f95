//! [`SqliteConn`]: diesel's synchronous SQLite connection as a diesel-async connection, so that
//! the queries both backends share ([`crate::queries`]) run on it as they do on PostgreSQL's.
//! Every call runs at once, on the
//! calling thread, and its future is ready at its first poll ([`inline`]): a SQLite call only
//! ever waits for the disk or for the busy timeout, and prefs makes its calls where that is
//! allowed (a worker thread's reads, the writer thread's transactions).
//!
//! diesel-async's own `SyncConnectionWrapper` is made for the other case, a connection driven
//! from async code on other threads: it turns every query into SQL text and owned binds to send
//! them off, and so loses diesel's prepared-statement cache by type. Run in place, a query goes
//! straight to diesel's `load`, which finds its prepared statement without building any SQL.

use std::future::{Ready, ready};

use diesel::connection::{CacheSize, Connection, Instrumentation, LoadConnection, SimpleConnection};
use diesel::query_builder::{AsQuery, AstPass, Query, QueryFragment, QueryId};
use diesel::row::IntoOwnedRow;
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::{ConnectionError, ConnectionResult, QueryResult};
use diesel_async::{AnsiTransactionManager, AsyncConnection, AsyncConnectionCore, SimpleAsyncConnection};
use futures_util::FutureExt;
use futures_util::stream::{self, Iter};
use prefs_domain::Error;

use crate::error::Failure;

/// A SQLite connection for diesel-async's query API, run inline.
pub(crate) struct SqliteConn {
    conn: SqliteConnection,
    /// diesel-async's record of the open transaction and savepoints.
    transaction: AnsiTransactionManager,
}

/// A row copied out of SQLite's buffers, so that it outlives the statement.
type OwnedRow =
    <<SqliteConnection as LoadConnection>::Row<'static, 'static> as IntoOwnedRow<'static, Sqlite>>::OwnedRow;

impl SqliteConn {
    /// Opens and sets up a connection to `url`, which runs `setup_sql` once, now.
    pub(crate) fn open(url: &str, setup_sql: &str) -> ConnectionResult<Self> {
        let mut conn = SqliteConnection::establish(url)?;
        conn.batch_execute(setup_sql).map_err(ConnectionError::CouldntSetupConfiguration)?;
        Ok(Self { conn, transaction: AnsiTransactionManager::default() })
    }
}

impl SimpleAsyncConnection for SqliteConn {
    async fn batch_execute(&mut self, query: &str) -> QueryResult<()> {
        self.conn.batch_execute(query)
    }
}

impl AsyncConnectionCore for SqliteConn {
    type ExecuteFuture<'conn, 'query> = Ready<QueryResult<usize>>;
    type LoadFuture<'conn, 'query> = Ready<QueryResult<Self::Stream<'conn, 'query>>>;
    type Stream<'conn, 'query> = Iter<std::vec::IntoIter<QueryResult<OwnedRow>>>;
    type Row<'conn, 'query> = OwnedRow;
    type Backend = Sqlite;

    fn load<'conn, 'query, T>(&'conn mut self, source: T) -> Self::LoadFuture<'conn, 'query>
    where
        T: AsQuery + 'query,
        T::Query: QueryFragment<Sqlite> + QueryId + 'query,
    {
        let rows = LoadConnection::load(&mut self.conn, Untyped(source.as_query())).map(|cursor| {
            let mut cache = Default::default();
            stream::iter(until_error(cursor.map(|row| row.map(|row| row.into_owned(&mut cache)))))
        });
        ready(rows)
    }

    fn execute_returning_count<'conn, 'query, T>(
        &'conn mut self,
        source: T,
    ) -> Self::ExecuteFuture<'conn, 'query>
    where
        T: QueryFragment<Sqlite> + QueryId + 'query,
    {
        ready(self.conn.execute_returning_count(&source))
    }
}

impl AsyncConnection for SqliteConn {
    type TransactionManager = AnsiTransactionManager;

    async fn establish(database_url: &str) -> ConnectionResult<Self> {
        let conn = SqliteConnection::establish(database_url)?;
        Ok(Self { conn, transaction: AnsiTransactionManager::default() })
    }

    fn transaction_state(&mut self) -> &mut AnsiTransactionManager {
        &mut self.transaction
    }

    fn instrumentation(&mut self) -> &mut dyn Instrumentation {
        self.conn.instrumentation()
    }

    fn set_instrumentation(&mut self, instrumentation: impl Instrumentation) {
        self.conn.set_instrumentation(instrumentation);
    }

    fn set_prepared_statement_cache_size(&mut self, size: CacheSize) {
        self.conn.set_prepared_statement_cache_size(size);
    }
}

/// A query whose rows diesel's `load` hands back undecoded: diesel-async decodes them itself,
/// and does not promise what diesel's `load` asks of the row type.
struct Untyped<T>(T);

impl<T> Query for Untyped<T> {
    type SqlType = diesel::sql_types::Untyped;
}

impl<T: QueryFragment<Sqlite>> QueryFragment<Sqlite> for Untyped<T> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }
}

impl<T: QueryId> QueryId for Untyped<T> {
    type QueryId = T::QueryId;
    const HAS_STATIC_QUERY_ID: bool = T::HAS_STATIC_QUERY_ID;
}

/// The items of `cursor` up to its first error, which is the last one. SQLite starts a statement
/// over when it is stepped again after an error, and diesel's cursor steps it again: past an
/// error that comes after some rows (a damaged page, `SQLITE_CORRUPT`) the cursor would give those
/// rows and the error again, without end.
fn until_error<T, E>(cursor: impl Iterator<Item = Result<T, E>>) -> Vec<Result<T, E>> {
    let mut items = Vec::new();
    for item in cursor {
        let failed = item.is_err();
        items.push(item);
        if failed {
            break;
        }
    }
    items
}

/// The output of `future`, which must finish at its first poll: SQLite work, whose statements run
/// inline, so it never waits for anything.
pub(crate) fn inline<F: Future>(future: F) -> Result<F::Output, Failure> {
    future
        .now_or_never()
        .ok_or_else(|| Failure::Domain(Error::Internal("a SQLite call did not finish inline".into())))
}

#[cfg(test)]
mod tests {
    use super::until_error;

    #[test]
    fn a_cursor_is_read_up_to_its_first_error() {
        // As SQLite's cursor past a damaged page: the rows before it and the error, over and over.
        let endless = [Ok(1), Ok(2), Err("malformed")].into_iter().cycle();
        assert_eq!(until_error(endless), [Ok(1), Ok(2), Err("malformed")]);
        assert_eq!(until_error([Ok::<_, ()>(1), Ok(2)].into_iter()), [Ok(1), Ok(2)]);
    }
}
