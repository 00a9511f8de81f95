//! SQLite's reads: a connection per thread that reads, used inline, and the answers they
//! remember until the database changes.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::BigInt;
use diesel::sqlite::Sqlite;
use prefs_domain::{Error, Preference};
use thread_local::ThreadLocal;

use super::conn::{SqliteConn, inline};
use crate::cache::{Read, Remembered};
use crate::error::Failure;

/// SQLite's read connections: one per thread that reads, opened on its first read and kept.
/// A read runs on the calling thread (an actix worker) at once: WAL readers do not wait for the
/// writer, so a read waits only for the disk.
///
/// They remember what they read ([`Readers::cached`]) for as long as the database has not
/// changed: SQLite's `PRAGMA data_version` changes when any other connection, of this process or
/// another, commits, and every cached read asks it first.
pub(crate) struct Readers {
    readers: ThreadLocal<Slot>,
    open: AtomicUsize,
    /// The answers reads found, each at the epoch it was read at.
    remembered: Option<Remembered>,
    /// Moves whenever a reader finds that the database changed since it last looked; an answer
    /// remembered at an earlier epoch is never used.
    epoch: AtomicI64,
    /// The database URL.
    pub(crate) url: String,
    /// What every connection runs when it is made.
    pub(crate) setup_sql: String,
}

/// One thread's reader: used by its thread only, but closed from another by
/// [`Readers::close_all`].
#[derive(Default)]
struct Slot {
    /// Whether its thread is reading (a read inside another is an error).
    busy: AtomicBool,
    reader: Mutex<Option<Reader>>,
}

/// One thread's read connection, and the `data_version` it last found (`None`: not asked yet).
struct Reader {
    conn: SqliteConn,
    seen: Option<i64>,
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
    /// Read connections to `url`, each running `setup_sql` when it is made, remembering answers
    /// up to `cache` bytes in all ([`Remembered`]).
    pub(crate) fn new(url: &str, setup_sql: String, cache: u64) -> Self {
        Self {
            readers: ThreadLocal::new(),
            open: AtomicUsize::new(0),
            remembered: Remembered::new(cache),
            epoch: AtomicI64::new(0),
            url: url.to_owned(),
            setup_sql,
        }
    }

    /// Runs `work` on this thread's read connection, opening it first if needed.
    pub(crate) fn run<T>(
        &self,
        work: impl FnOnce(&mut SqliteConn) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        self.with_reader(|reader| work(&mut reader.conn))
    }

    /// The preferences `read` finds, as `load` reads them, or as a thread read them last if the
    /// database has not changed since.
    ///
    /// Each reader asks its connection's `data_version` first, and moves the epoch when it
    /// changed. A commit that ended before this read began is thus either found now, or was found
    /// by an earlier read of this thread: either way the epoch moved after the commit, and an
    /// answer is used only at the epoch taken before it was loaded, so only one loaded after the
    /// commit is used.
    pub(crate) fn cached(
        &self,
        read: Read,
        load: impl FnOnce(&mut SqliteConn, &Read) -> Result<Vec<Preference>, Failure>,
    ) -> Result<Vec<Preference>, Failure> {
        self.with_reader(|reader| {
            let Some(remembered) = &self.remembered else { return load(&mut reader.conn, &read) };
            let version = diesel_async::RunQueryDsl::get_result::<i64>(DataVersion, &mut reader.conn);
            let version = Some(inline(version)??);
            if reader.seen != version {
                reader.seen = version;
                self.epoch.fetch_add(1, Ordering::AcqRel);
            }
            let epoch = self.epoch.load(Ordering::Acquire);
            match remembered.get(&read) {
                Some((at, found)) if at == epoch => Ok(found.to_vec()),
                _ => {
                    // Loaded after the epoch was taken: at least as new as it, never older.
                    let found = load(&mut reader.conn, &read)?;
                    remembered.insert(read, epoch, found.as_slice().into());
                    Ok(found)
                }
            }
        })
    }

    /// Runs `work` on this thread's reader. A connection whose query failed is closed, and the
    /// next read opens a new one.
    fn with_reader<T>(&self, work: impl FnOnce(&mut Reader) -> Result<T, Failure>) -> Result<T, Failure> {
        let slot = self.readers.get_or_default();
        let _busy = Busy::enter(&slot.busy)?;
        let mut slot = lock(&slot.reader);
        let reader = match &mut *slot {
            Some(reader) => reader,
            None => {
                let conn = SqliteConn::open(&self.url, &self.setup_sql)?;
                self.open.fetch_add(1, Ordering::Relaxed);
                slot.insert(Reader { conn, seen: None })
            }
        };
        let out = work(reader);
        if let Err(Failure::Query(_)) = out {
            *slot = None;
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
        out
    }

    /// Closes every thread's read connection, waiting for the reads under way, before any read
    /// opens a new one. SQLite shares a database's `-shm` file among all the connections of a
    /// process until the last one closes, read-only if it was read-only when the first opened it:
    /// the writer, once it closed its own connection, closes these so that the next connections
    /// open the files anew.
    pub(crate) fn close_all(&self) {
        let mut slots: Vec<MutexGuard<'_, Option<Reader>>> =
            self.readers.iter().map(|slot| lock(&slot.reader)).collect();
        for slot in &mut slots {
            if slot.take().is_some() {
                self.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// How many read connections are open.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// A reader's connection, also after a read panicked while it held it (the connection is kept,
/// as it would be had the read failed).
fn lock(reader: &Mutex<Option<Reader>>) -> MutexGuard<'_, Option<Reader>> {
    reader.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A thread's read under way: marks its [`Slot`] busy until dropped, even by a panic.
struct Busy<'a>(&'a AtomicBool);

impl<'a> Busy<'a> {
    fn enter(busy: &'a AtomicBool) -> Result<Self, Failure> {
        if busy.swap(true, Ordering::Acquire) {
            return Err(Failure::Domain(Error::Internal(
                "a SQLite read ran inside another on one thread".into(),
            )));
        }
        Ok(Self(busy))
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
