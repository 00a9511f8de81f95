//! SQLite's reads: a connection per thread that reads, used inline, and the namespaces each one
//! remembers until the database changes.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::BigInt;
use diesel::sqlite::Sqlite;
use prefs_domain::{Error, Preference};
use serde_json::Value;
use thread_local::ThreadLocal;

use crate::error::Failure;
use crate::pool::open;
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
    /// How many bytes each reader remembers ([`weight`]); 0: nothing.
    cache: u64,
    /// The database URL.
    pub(crate) url: String,
    /// What every connection runs when it is made.
    pub(crate) setup_sql: String,
}

/// One thread's read connection and what it remembers.
struct Reader {
    conn: SqliteConn,
    /// The `data_version` the cached namespaces were read at.
    version: i64,
    namespaces: Option<quick_cache::unsync::Cache<Read, Weighed, ByWeight>>,
}

/// A read a reader remembers the answer to: a user's whole namespace, or one preference of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Read {
    /// Every preference of user `.0` in namespace `.1`.
    Namespace(i64, String),
    /// User `.0`'s preference of key `.2` in namespace `.1`, if any.
    Key(i64, String, String),
    /// User `.0`'s preference of id `.2` in namespace `.1`, if any.
    Id(i64, String, i64),
}

/// A cached answer and its [`weight`].
struct Weighed {
    preferences: Vec<Preference>,
    weight: u64,
}

/// Weighs a cached namespace by its [`weight`], computed once, when it is cached.
struct ByWeight;

impl quick_cache::Weighter<Read, Weighed> for ByWeight {
    fn weight(&self, _: &Read, value: &Weighed) -> u64 {
        value.weight
    }
}

/// What a preference takes before its key's and value's heap memory: itself and its value's
/// shared allocation (two counts and the value).
const PREFERENCE_BYTES: u64 = (std::mem::size_of::<Preference>()
    + 2 * std::mem::size_of::<usize>()
    + std::mem::size_of::<Value>()) as u64;

/// What a namespace weighs in a reader's cache: an estimate of the memory it takes.
fn weight(preferences: &[Preference]) -> u64 {
    preferences.iter().map(|p| PREFERENCE_BYTES + p.key.as_str().len() as u64 + heap(p.value.as_json())).sum()
}

/// An estimate of the heap memory a JSON value holds beyond its own (inline) size.
fn heap(value: &Value) -> u64 {
    const SLOT: u64 = std::mem::size_of::<Value>() as u64;
    /// What a map allocates for its first entries, and for each entry (key and value).
    const MAP: u64 = 512;
    const ENTRY: u64 = std::mem::size_of::<String>() as u64 + SLOT;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.len() as u64,
        Value::Array(items) => items.iter().map(|item| SLOT + heap(item)).sum(),
        Value::Object(members) => {
            MAP + members.iter().map(|(key, item)| ENTRY + key.len() as u64 + heap(item)).sum::<u64>()
        }
    }
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
    /// namespaces up to `cache` bytes ([`weight`]).
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
        load: impl FnOnce(&mut SqliteConn) -> Result<Vec<Preference>, Failure>,
    ) -> Result<Vec<Preference>, Failure> {
        self.with_reader(|reader| {
            let Some(namespaces) = &mut reader.namespaces else { return load(&mut reader.conn) };
            let version = diesel_async::RunQueryDsl::get_result::<i64>(DataVersion, &mut reader.conn);
            let version = inline(version)??;
            if version != reader.version {
                namespaces.clear();
                reader.version = version;
            }
            if let Some(found) = namespaces.get(&read) {
                return Ok(found.preferences.clone());
            }
            // Read after the version: what it reads is at least as new, never older.
            let found = load(&mut reader.conn)?;
            namespaces.insert(read, Weighed { weight: weight(&found), preferences: found.clone() });
            Ok(found)
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
                let namespaces = (self.cache > 0).then(|| {
                    // About 2 KiB an answer: a namespace of 10 short values (single
                    // preferences weigh less; the weight, not this count, bounds the cache).
                    let items = usize::try_from(self.cache / 2048).unwrap_or(usize::MAX).max(1);
                    quick_cache::unsync::Cache::with_weighter(items, self.cache, ByWeight)
                });
                slot.insert(Reader { conn, version: -1, namespaces })
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

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use prefs_domain::{Namespace, PreferenceId, PreferenceKey, PreferenceValue, UserId};
    use serde_json::json;

    use super::*;

    #[test]
    fn a_namespace_weighs_about_the_memory_it_takes() {
        let preference = |key: &str, value| Preference {
            id: PreferenceId(1),
            user_id: UserId(1),
            namespace: Namespace::Global,
            key: PreferenceKey::parse(key).unwrap(),
            value: PreferenceValue::from_stored(value),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 1,
        };
        let each = PREFERENCE_BYTES;
        assert_eq!(weight(&[]), 0);
        assert_eq!(weight(&[preference("on", json!(true))]), each + 2);
        assert_eq!(weight(&[preference("lang", json!("fr"))]), each + 4 + 2);
        let long = "x".repeat(10_000);
        assert!(weight(&[preference("k", json!(long))]) > 10_000);
        // Every level of nesting counts.
        let flat = weight(&[preference("k", json!({"a": 1}))]);
        let nested = weight(&[preference("k", json!({"a": {"b": [1, 2, {"c": "d"}]}}))]);
        assert!(flat > each + 512 && nested > flat + 512, "{flat} {nested}");
    }
}
