//! SQLite's reads: a connection per thread that reads, used inline, and the namespaces each one
//! remembers until the database changes.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::BigInt;
use diesel::sqlite::Sqlite;
use prefs_domain::{Error, Preference};
use thread_local::ThreadLocal;

use crate::error::Failure;
use crate::pool::open;
use crate::read::{Read, Remembered};
use crate::sqlite::{SqliteConn, inline};

/// SQLite's read connections: one per thread that reads, opened on its first read and kept.
/// A read runs on the calling thread (an actix worker) at once: WAL readers do not wait for the
/// writer, so a read waits only for the disk.
///
/// Each also remembers the namespaces it read last ([`Readers::cached`]), for as long as the
/// database has not changed: SQLite's `PRAGMA data_version` changes when any other connection,
/// of this process or another, commits, and every cached read asks it first.
pub(crate) struct Readers {
    readers: ThreadLocal<RefCell<Option<Reader>>>,
    open: AtomicUsize,
    /// How many bytes each reader remembers ([`Remembered`]); 0: nothing.
    cache: u64,
    /// The database URL.
    pub(crate) url: String,
    /// What every connection runs when it is made.
    pub(crate) setup_sql: String,
}

/// One thread's read connection and what it remembers, tagged with the `data_version` it was
/// read at.
struct Reader {
    conn: SqliteConn,
    remembered: Option<Remembered>,
}

/// `PRAGMA data_version`, as a query of its own type, which diesel prepares once per connection
/// (`sql_query` and `sql` text are prepared anew every time).
#[derive(QueryId)]
struct DataVersion;

impl QueryFragment<Sqlite> for DataVersion {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql("PRAGMA data_version");
        Ok(())
    }
}

impl Query for DataVersion {
    type SqlType = BigInt;
}

impl Readers {
    /// Read connections to `url`, each running `setup_sql` when it is made and remembering
    /// answers up to `cache` bytes ([`Remembered`]).
    pub(crate) fn new(url: &str, setup_sql: String, cache: u64) -> Self {
        Self { readers: ThreadLocal::new(), open: AtomicUsize::new(0), cache, url: url.to_owned(), setup_sql }
    }

    /// Runs `work` on this thread's read connection, opening it first if needed.
    pub(crate) fn run<T>(
        &self,
        work: impl FnOnce(&mut SqliteConn) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        self.with_reader(|reader| work(&mut reader.conn))
    }

    /// The preferences `read` finds, as `load` reads them, or as this thread read them last if
    /// the database has not changed since.
    pub(crate) fn cached(
        &self,
        read: Read,
        load: impl FnOnce(&mut SqliteConn, &Read) -> Result<Vec<Preference>, Failure>,
    ) -> Result<Vec<Preference>, Failure> {
        self.with_reader(|reader| {
            let Some(remembered) = &mut reader.remembered else { return load(&mut reader.conn, &read) };
            let version = diesel_async::RunQueryDsl::get_result::<i64>(DataVersion, &mut reader.conn);
            let version = inline(version)??;
            match remembered.get(&read) {
                Some((at, found)) if at == version => Ok(found.to_vec()),
                _ => {
                    // Read after the version: what it reads is at least as new, never older.
                    let found = load(&mut reader.conn, &read)?;
                    remembered.insert(read, version, found.as_slice().into());
                    Ok(found)
                }
            }
        })
    }

    /// Runs `work` on this thread's reader. A connection whose query failed is closed, and the
    /// next read opens a new one.
    fn with_reader<T>(&self, work: impl FnOnce(&mut Reader) -> Result<T, Failure>) -> Result<T, Failure> {
        let mut slot = self.readers.get_or_default().try_borrow_mut().map_err(|_| {
            Failure::Domain(Error::Internal("a SQLite read ran inside another on one thread".into()))
        })?;
        let reader = match &mut *slot {
            Some(reader) => reader,
            None => {
                let conn = inline(open(&self.url, &self.setup_sql))??;
                self.open.fetch_add(1, Ordering::Relaxed);
                slot.insert(Reader { conn, remembered: Remembered::new(self.cache) })
            }
        };
        let out = work(reader);
        if let Err(Failure::Query(_)) = out {
            *slot = None;
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
        out
    }

    /// How many read connections are open.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}
