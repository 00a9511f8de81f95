//! PostgreSQL's reads of namespaces and single preferences ([`Read`]): the reads of one thread
//! under way together go in one query ([`Batch`]), which checks the users' versions against the
//! answers remembered ([`Remembered`]) and loads only what changed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt;
use prefs_domain::{Error, Preference};
use thread_local::ThreadLocal;
use tokio::sync::oneshot;

use super::pools::{PgPools, READERS};
use crate::cache::{Read, Remembered};
use crate::error::{CheckoutTimeout, Failure, Shared};
use crate::rows::{PreferenceRow, namespace_from};
use crate::schema::preferences;

/// Each thread's reads waiting to be sent together, over `pools`' read connections, and the
/// answers they found, each at its user's version.
pub(crate) struct Batches {
    pools: Arc<PgPools>,
    /// Each thread's queue of reads.
    queues: ThreadLocal<Arc<Mutex<Queue>>>,
    /// The answers reads found, each at its user's version.
    remembered: Option<Remembered>,
}

impl Batches {
    /// Reads over `pools`, remembering answers up to `remember` bytes in all.
    pub(crate) fn new(pools: Arc<PgPools>, remember: u64) -> Self {
        Self { pools, queues: ThreadLocal::new(), remembered: Remembered::new(remember) }
    }
}

/// Many [`Read`]s in one query, each with the user's version the thread remembers an answer at
/// (-1 for none). For each read it returns the user's version now and, only when that is not the
/// remembered one, the rows; no row at all when the user does not exist. Its text never changes,
/// so the connection prepares it once. Hand-written: diesel's DSL has no `unnest(…) WITH
/// ORDINALITY` nor `LEFT JOIN LATERAL`, and a query per read would cost a round trip each. Its
/// row type is positional; its columns follow [`PreferenceRow`].
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
        out.push_sql("SELECT q.n, q.version, ");
        // The schema's columns, in its order, as the row type says: the lateral subquery's, which
        // is named after the table.
        preferences::all_columns.walk_ast(out.reborrow())?;
        out.push_sql(
            " FROM (SELECT r.*, \
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
             AND p.key = coalesce(q.key, p.key) AND p.id = coalesce(q.id, p.id) OFFSET 0) preferences ON true",
        );
        Ok(())
    }
}

impl Query for Batch {
    type SqlType = (BigInt, Nullable<BigInt>, Nullable<preferences::SqlType>);
}

/// What one read gets: the preferences it found, ordered by id, or why not.
type Answer = Result<Vec<Preference>, Failure>;

/// One thread's reads waiting for its next query, and how many of its queries are under way.
#[derive(Default)]
struct Queue {
    waiting: Vec<(Read, oneshot::Sender<Answer>)>,
    running: usize,
}

/// How many reads one query answers at most.
const BATCH: usize = 128;

/// The preferences `read` finds, read in one query with the other reads of this thread that wait
/// meanwhile. A read joins the next query of its thread, never one already sent,
/// so it sees every write acknowledged before it began. Each thread has up to [`READERS`] queries
/// under way, on its shared read connections; a read that arrives while they are waits for the
/// first to finish, and goes with every other read waiting then. A read waits at most `wait` in
/// all, then gives up as [`Failure::TimedOut`].
///
/// A remembered answer ([`Batches::remembered`]) is used when the query finds the user still at
/// the version it was read at: every transaction that writes a user's preferences moves the user
/// to a new version, so the remembered answer is what a read would find now.
pub(crate) async fn batched(batches: &Arc<Batches>, read: Read, wait: Duration) -> Answer {
    let (answer, answered) = oneshot::channel();
    let queue = batches.queues.get_or_default().clone();
    let start = {
        let mut queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.waiting.push((read, answer));
        let start = queue.running < READERS;
        queue.running += usize::from(start);
        start
    };
    if start {
        tokio::spawn(answer_all(Running { batches: batches.clone(), queue, wait, finished: false }));
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
    batches: Arc<Batches>,
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
            let remembered = running.batches.remembered.as_ref();
            let known = reads.iter().map(|(read, _)| remembered.and_then(|r| r.get(read))).collect();
            (reads, known)
        };
        let batch = Batch::of(
            reads
                .iter()
                .zip(&known)
                .map(|((read, _), known)| (read, known.as_ref().map_or(-1, |(version, _)| *version))),
        );
        let batch = Arc::new(batch);
        let found = (running.batches.pools)
            .read(running.wait, |conn| {
                let batch = batch.clone();
                async move { batch.run(conn).await }.boxed()
            })
            .await;
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
        if let Some(remembered) = &running.batches.remembered {
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
