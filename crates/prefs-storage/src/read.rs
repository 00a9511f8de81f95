//! The reads of one user's preferences that the ports answer most ([`Read`]), and how each
//! backend answers them: SQLite one at a time ([`load`]), from its readers' caches
//! ([`Readers::cached`](crate::readers::Readers::cached)); PostgreSQL many in one query
//! ([`Batch`]): the reads of one thread under way at once ([`batched`]).

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use prefs_domain::{Error, Preference};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::error::{CheckoutTimeout, Failure, Shared};
use crate::pool::{PgPools, READERS, with_conn};
use crate::rows::{PreferenceRow, namespace_from};
use crate::schema::preferences;
use crate::sqlite::{SqliteConn, inline};
use crate::store::{in_namespace, rows_of_user};

/// A read of one user's preferences in one namespace: all of them, or the one of a key or id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Read {
    /// Every preference of user `.0` in namespace `.1`.
    Namespace(i64, String),
    /// User `.0`'s preference of key `.2` in namespace `.1`, if any.
    Key(i64, String, String),
    /// User `.0`'s preference of id `.2` in namespace `.1`, if any.
    Id(i64, String, i64),
}

/// Answers to [`Read`]s, each with the version it was read at, up to a weight in bytes: an
/// estimate of the memory they take ([`weight`]). One per store, shared by every thread, so a
/// user's answer is remembered once however many threads serve the user. Both backends remember
/// answers this way; each has its own versions (on SQLite the store's epoch, which moves when a
/// reader sees that the database changed; PostgreSQL's `users.version`).
pub(crate) struct Remembered(quick_cache::sync::Cache<Read, Weighed, ByWeight>);

impl Remembered {
    /// Remembers up to `bytes`; `None` when `bytes` is 0.
    pub(crate) fn new(bytes: u64) -> Option<Self> {
        // About 2 KiB an answer: a namespace of 10 short values (single preferences weigh less;
        // the weight, not this count, bounds the cache).
        let items = usize::try_from(bytes / 2048).unwrap_or(usize::MAX).max(1);
        (bytes > 0).then(|| Self(quick_cache::sync::Cache::with_weighter(items, bytes, ByWeight)))
    }

    /// What `read` found, and the version it found it at (shared: a caller copies the
    /// preferences out only once it knows they are still right).
    pub(crate) fn get(&self, read: &Read) -> Option<(i64, Arc<[Preference]>)> {
        self.0.get(read).map(|answer| (answer.version, answer.preferences))
    }

    /// Remembers that `read` found `preferences` at `version`.
    pub(crate) fn insert(&self, read: Read, version: i64, preferences: Arc<[Preference]>) {
        let weight = weight(&read, &preferences);
        self.0.insert(read, Weighed { weight, version, preferences });
    }
}

/// A remembered answer and its [`weight`].
#[derive(Clone)]
struct Weighed {
    preferences: Arc<[Preference]>,
    version: i64,
    weight: u64,
}

/// Weighs a remembered answer by its [`weight`], computed once, when it is cached.
#[derive(Clone)]
struct ByWeight;

impl quick_cache::Weighter<Read, Weighed> for ByWeight {
    fn weight(&self, _: &Read, value: &Weighed) -> u64 {
        value.weight
    }
}

/// What the allocator takes for an allocation of `bytes`: glibc's chunks carry an 8-byte header,
/// are 16-byte aligned, and 32 bytes at least.
const fn allocated(bytes: usize) -> u64 {
    let chunk = (bytes + 8).next_multiple_of(16);
    (if chunk < 32 { 32 } else { chunk }) as u64
}

/// What an answer weighs: an estimate of the memory it takes, allocator overhead included. Each
/// preference is kept in the answer's shared slice, its key's shared text (two counts and the
/// text), and its value's shared allocation (two counts, a pointer to its text, and the slot of
/// its tree, which values read back as text leave empty: answers serialize the text) with its text.
fn weight(read: &Read, preferences: &[Preference]) -> u64 {
    const COUNTS: usize = 2 * std::mem::size_of::<usize>();
    const VALUE: u64 =
        allocated(COUNTS + std::mem::size_of::<Box<str>>() + std::mem::size_of::<OnceLock<Value>>());
    /// The cache's slot: the read and the answer, and about as much again for its tables.
    const SLOT: u64 = 2 * std::mem::size_of::<(Read, Weighed)>() as u64;
    let strings = match read {
        Read::Namespace(_, namespace) | Read::Id(_, namespace, _) => allocated(namespace.len()),
        Read::Key(_, namespace, key) => allocated(namespace.len()) + allocated(key.len()),
    };
    let slice = allocated(COUNTS + std::mem::size_of_val(preferences));
    let each = |p: &Preference| {
        allocated(COUNTS + p.key.as_str().len()) + VALUE + allocated(p.value.as_json_text().len())
    };
    SLOT + strings + slice + preferences.iter().map(each).sum::<u64>()
}

/// SQLite: the rows `read` finds; [`Error::UserNotFound`] when there are none and the user does
/// not exist.
pub(crate) fn load(conn: &mut SqliteConn, read: &Read) -> Result<Vec<PreferenceRow>, Failure> {
    inline(crate::pool::body(async {
        Ok(match read {
            Read::Namespace(user, namespace) => rows_of_user!(conn, *user, in_namespace(*user, namespace)),
            Read::Key(user, namespace, key) => {
                rows_of_user!(conn, *user, in_namespace(*user, namespace).filter(preferences::key.eq(key)))
            }
            Read::Id(user, namespace, id) => {
                rows_of_user!(conn, *user, in_namespace(*user, namespace).filter(preferences::id.eq(*id)))
            }
        })
    }))?
}

/// PostgreSQL: many [`Read`]s in one query, each with the user's version the thread remembers
/// an answer at (-1 for none). For each read it returns the user's version now and, only when that
/// is not the remembered one, the rows; no row at all when the user does not exist. Its text
/// never changes, so the connection prepares it once.
#[derive(QueryId, Default)]
struct Batch {
    users: Vec<i64>,
    namespaces: Vec<String>,
    keys: Vec<Option<String>>,
    ids: Vec<Option<i64>>,
    known: Vec<i64>,
}

/// What [`Batch`] found for one read: the user's version and, unless it is the remembered one,
/// the rows; `None` when the user does not exist.
type Found = Option<(i64, Vec<PreferenceRow>)>;

impl Batch {
    /// The query for `reads` (each with its remembered version), in their order.
    fn of<'a>(reads: impl IntoIterator<Item = (&'a Read, i64)>) -> Self {
        let mut batch = Self::default();
        for (read, known) in reads {
            let (user, namespace, key, id) = match read {
                Read::Namespace(user, namespace) => (user, namespace, None, None),
                Read::Key(user, namespace, key) => (user, namespace, Some(key.clone()), None),
                Read::Id(user, namespace, id) => (user, namespace, None, Some(*id)),
            };
            batch.users.push(*user);
            batch.namespaces.push(namespace.clone());
            batch.keys.push(key);
            batch.ids.push(id);
            batch.known.push(known);
        }
        batch
    }

    /// Runs the query on `conn`: what it found for each read, in the reads' order.
    async fn run(&self, conn: &mut &AsyncPgConnection) -> Result<Vec<Found>, Failure> {
        let tagged: Vec<(i64, Option<i64>, Option<PreferenceRow>)> = self.load(conn).await?;
        let mut found: Vec<Found> = self.users.iter().map(|_| None).collect();
        for (position, version, row) in tagged {
            let slot = usize::try_from(position - 1).ok().and_then(|i| found.get_mut(i));
            let slot = slot
                .ok_or_else(|| Error::Internal(format!("a batched read came back as {position}").into()))?;
            if let Some(version) = version {
                slot.get_or_insert_with(|| (version, Vec::new())).1.extend(row);
            }
        }
        Ok(found)
    }
}

impl QueryFragment<Pg> for Batch {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // The user's version is looked up once per read (by its primary key); the preferences
        // only when it is not the known one: a condition on the outer row alone, which
        // PostgreSQL checks before it runs the scan (a one-time filter; `OFFSET 0` keeps both
        // subqueries from being merged into the join, where the check would come after the scan).
        // A read of a whole namespace has neither key nor id, and `coalesce` then matches every
        // row of it; the index on (user_id, namespace, key) finds the namespace's rows either way.
        out.push_sql(
            "SELECT q.n, q.version, p.id, p.user_id, p.namespace, p.key, p.value, p.created_at, \
             p.updated_at, p.version FROM (SELECT r.*, \
             (SELECT u.version FROM users u WHERE u.id = r.user_id) AS version FROM unnest(",
        );
        out.push_bind_param::<Array<BigInt>, _>(&self.users)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.namespaces)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.keys)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&self.ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.known)?;
        out.push_sql(
            ") WITH ORDINALITY AS r (user_id, namespace, key, id, known, n) OFFSET 0) q \
             LEFT JOIN LATERAL (SELECT * FROM preferences p WHERE q.version <> q.known \
             AND p.user_id = q.user_id AND p.namespace = q.namespace \
             AND p.key = coalesce(q.key, p.key) AND p.id = coalesce(q.id, p.id) OFFSET 0) p ON true",
        );
        Ok(())
    }
}

impl Query for Batch {
    type SqlType =
        (BigInt, Nullable<BigInt>, Nullable<(BigInt, BigInt, Text, Text, Text, BigInt, BigInt, BigInt)>);
}

/// What one read gets: the preferences it found, ordered by id, or why not.
type Answer = Result<Vec<Preference>, Failure>;

/// One thread's reads waiting for its next query, and how many of its queries are under way.
#[derive(Default)]
pub(crate) struct Queue {
    waiting: Vec<(Read, oneshot::Sender<Answer>)>,
    running: usize,
}

/// How many reads one query answers at most.
const BATCH: usize = 128;

/// PostgreSQL: the preferences `read` finds, read in one query with the other reads of this
/// thread that wait meanwhile. A read joins the next query of its thread, never one already sent,
/// so it sees every write acknowledged before it began. Each thread has up to [`READERS`] queries
/// under way, on its shared read connections; a read that arrives while they are waits for the
/// first to finish, and goes with every other read waiting then. A read waits at most `wait` in
/// all, then gives up as [`Failure::TimedOut`].
///
/// A remembered answer ([`PgPools::remembered`]) is used when the query finds the user still at
/// the version it was read at: every transaction that writes a user's preferences moves the user
/// to a new version, so the remembered answer is what a read would find now.
pub(crate) async fn batched(pools: &Arc<PgPools>, read: Read, wait: Duration) -> Answer {
    let (answer, answered) = oneshot::channel();
    let queue = pools.queue();
    let start = {
        let mut queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.waiting.push((read, answer));
        let start = queue.running < READERS;
        queue.running += usize::from(start);
        start
    };
    if start {
        tokio::spawn(answer_all(Running { pools: pools.clone(), queue, wait, finished: false }));
    }
    // Bounded like a pool checkout: a read queued behind queries that wait for a server that
    // does not answer gives up after `wait`, not after theirs and its own.
    match tokio::time::timeout(wait, answered).await {
        Ok(answer) => {
            answer.unwrap_or_else(|_| Err(Error::Internal("a batched read was dropped".into()).into()))
        }
        Err(_) => Err(Failure::TimedOut(CheckoutTimeout(wait))),
    }
}

/// One of a thread's queries under way: see [`answer_all`].
struct Running {
    pools: Arc<PgPools>,
    queue: Arc<Mutex<Queue>>,
    wait: Duration,
    /// Whether it stopped counting itself as running, having found no read waiting.
    finished: bool,
}

/// Sends the reads waiting in `running`'s queue, up to [`BATCH`] a query, and answers them, until
/// none is waiting.
async fn answer_all(mut running: Running) {
    loop {
        let (reads, known): (Vec<_>, Vec<_>) = {
            let mut queue = running.queue.lock().unwrap_or_else(PoisonError::into_inner);
            // Reads that gave up (or whose client went away) are not asked for.
            queue.waiting.retain(|(_, answer)| !answer.is_closed());
            if queue.waiting.is_empty() {
                queue.running -= 1;
                drop(queue);
                running.finished = true;
                return;
            }
            let n = queue.waiting.len().min(BATCH);
            let reads: Vec<_> = queue.waiting.drain(..n).collect();
            drop(queue);
            let remembered = running.pools.remembered();
            let known = reads.iter().map(|(read, _)| remembered.and_then(|r| r.get(read))).collect();
            (reads, known)
        };
        let batch = Batch::of(
            reads
                .iter()
                .zip(&known)
                .map(|((read, _), known)| (read, known.as_ref().map_or(-1, |(version, _)| *version))),
        );
        let pools = &running.pools;
        let found = with_conn!(@postgres_read pools, running.wait, |conn| batch.run(conn).await);
        let found = match found {
            Ok(found) => found,
            Err(failure) => {
                let shared = Shared::new(failure);
                for (_, answer) in reads {
                    // The reader may be gone (its client went away): nobody to tell.
                    let _ = answer.send(Err(shared.error().into()));
                }
                continue;
            }
        };
        let mut fresh = Vec::new();
        for (((read, answer), known), found) in reads.into_iter().zip(known).zip(found) {
            let out = match (found, known) {
                (None, _) => Err(Error::UserNotFound.into()),
                (Some((version, _)), Some((at, remembered))) if version == at => Ok(remembered.to_vec()),
                (Some((version, rows)), _) => namespace_from(rows).map_err(Failure::from).inspect(|found| {
                    fresh.push((read, version, found.as_slice().into()));
                }),
            };
            let _ = answer.send(out);
        }
        if let Some(remembered) = running.pools.remembered() {
            for (read, version, found) in fresh {
                remembered.insert(read, version, found);
            }
        }
    }
}

/// A query loop dropped before its end (its runtime stopped): it no longer counts as running,
/// and when no other runs, the reads still waiting are told so instead of waiting for ever.
impl Drop for Running {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.running -= 1;
        if queue.running == 0 {
            queue.waiting.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use prefs_domain::{Namespace, PreferenceId, PreferenceKey, PreferenceValue, UserId};

    use super::*;

    #[test]
    fn a_namespace_weighs_about_the_memory_it_takes() {
        let preference = |key: &str, text: &str| Preference {
            id: PreferenceId(1),
            user_id: UserId(1),
            namespace: Namespace::Global,
            key: PreferenceKey::parse(key).unwrap(),
            value: PreferenceValue::from_stored_text(text.to_owned()).unwrap(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 1,
        };
        let read = Read::Namespace(1, "global".into());
        let empty = weight(&read, &[]);
        assert!(empty > 100 && empty < 400, "{empty}");
        // Short keys and values each take a minimal chunk; long ones their length.
        let one = weight(&read, &[preference("on", "true")]) - empty;
        assert!(one > 150 && one < 300, "{one}");
        assert_eq!(weight(&read, &[preference("lang", "\"fr\"")]) - empty, one);
        let long = format!("\"{}\"", "x".repeat(10_000));
        assert_eq!(weight(&read, &[preference("k", &long)]) - empty, one - 32 + allocated(10_002));
        let two = weight(&read, &[preference("k", "{\"a\":{\"b\":[1,2]}}"), preference("on", "true")]);
        // The shared slice grows by one preference, rounded up to its chunk.
        assert_eq!(two - empty, 2 * one + 16);
        // The read's strings count too.
        let key = Read::Key(1, "global".into(), "k".repeat(100));
        assert_eq!(weight(&key, &[]) - empty, allocated(100));
    }
}
