//! SQLite's writer: one thread runs every write transaction of this process, and commits the
//! ones that queued up while it worked together (group commit): one `BEGIN IMMEDIATE … COMMIT`,
//! and so one `fsync`, for all of them. Each runs in a savepoint of its own, so one that fails
//! rolls back alone; none is answered before the commit that holds it is durable.
//!
//! Writers of this process thus never wait for each other in SQLite's busy handler, and no write
//! holds the database lock while it waits for an async worker. Other processes on the same file
//! still get the lock in turn: the busy timeout covers them.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use diesel_async::{AnsiTransactionManager, AsyncConnection, SimpleAsyncConnection, TransactionManager};
use prefs_domain::Error;
use tokio::sync::oneshot;

use super::conn::{SqliteConn, inline};
use super::readers::Readers;
use crate::error::{CheckoutTimeout, Failure, Shared};
use crate::modify::finish;

/// The most transactions committed together.
const BATCH: usize = 64;

/// A handle on the writer thread, which ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    /// Jobs sent and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
}

/// One write transaction waiting for the writer.
struct Job {
    /// When its caller stops waiting (the pool wait).
    deadline: Instant,
    /// Given the connection, runs the transaction in its savepoint and returns how to answer
    /// once the batch commits (`None`) or failed to (`Some`); given a failure, answers with it.
    task: Task,
}

type Task = Box<dyn FnOnce(Result<&mut SqliteConn, Failure>) -> Option<Ran> + Send>;
type Answer = Box<dyn FnOnce(Option<Failure>) + Send>;

/// A transaction that ran: how to answer it, and whether the database refused its write as
/// read-only. SQLite opens a file it may not write read-only, and the connection stays so when
/// the file becomes writable: the writer then closes every connection ([`Readers::close_all`])
/// and opens a new one for the next batch.
struct Ran {
    answer: Answer,
    read_only: bool,
}

impl Writer {
    /// Starts the writer thread, which opens its connection as `readers` open theirs (again after
    /// one broke).
    pub(crate) fn start(readers: Arc<Readers>, wait: Duration) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let taken = queued.clone();
        std::thread::Builder::new()
            .name("prefs-sqlite-writer".into())
            .spawn(move || work(&queue, &taken, &readers, wait))?;
        Ok(Self { jobs, queued })
    }

    /// How many write transactions wait for the writer to take them.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Runs `body` as one write transaction, committed if it returns `Ok` and rolled back
    /// otherwise; fails with a timeout, and never runs it, if the writer cannot start it within
    /// `wait`. Dropping the returned future before the transaction started means it never starts;
    /// once started, it finishes.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        wait: Duration,
        body: impl FnOnce(&mut SqliteConn) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, Failure> {
        let (answer, mut answered) = oneshot::channel::<Result<T, Failure>>();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let started = state.clone();
        let job = Job {
            deadline: Instant::now() + wait,
            task: Box::new(move |conn| match conn {
                // A caller that went away before its transaction started is not served.
                Ok(_) if answer.is_closed() || !transition(&started, RUNNING) => None,
                Ok(conn) => {
                    let out = savepoint(conn, body);
                    let read_only = matches!(&out, Err(failure) if failure.read_only());
                    let answer =
                        Box::new(move |failed: Option<Failure>| drop(answer.send(failed.map_or(out, Err))));
                    Some(Ran { answer, read_only })
                }
                Err(failure) => {
                    drop(answer.send(Err(failure)));
                    None
                }
            }),
        };
        let gone = || Failure::Domain(Error::Internal("the SQLite writer has stopped".into()));
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.jobs.send(job).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            gone()
        })?;
        match tokio::time::timeout(wait, &mut answered).await {
            Ok(out) => out.map_err(|_| gone())?,
            // Not started yet: it never will be.
            Err(_) if transition(&state, ABANDONED) => Err(Failure::TimedOut(CheckoutTimeout(wait))),
            // Running: its answer comes soon (its waits are bounded by the busy timeout).
            Err(_) => answered.await.map_err(|_| gone())?,
        }
    }
}

/// A job's state: it leaves [`QUEUED`] once, either to run or because its caller stopped waiting.
const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const ABANDONED: u8 = 2;

/// Moves a queued job to `to`; false if it already left the queue.
fn transition(state: &AtomicU8, to: u8) -> bool {
    state.compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire).is_ok()
}

/// Runs `body` in a savepoint: released if it returns `Ok`, rolled back to otherwise, and rolled
/// back to if it panics.
fn savepoint<T>(
    conn: &mut SqliteConn,
    body: impl FnOnce(&mut SqliteConn) -> Result<T, Failure>,
) -> Result<T, Failure> {
    inline(<SqliteConn as AsyncConnection>::TransactionManager::begin_transaction(conn))??;
    let out = catch_unwind(AssertUnwindSafe(|| body(conn)))
        .unwrap_or_else(|_| Err(Failure::Domain(Error::Internal("a write transaction panicked".into()))));
    inline(finish(conn, out))?
}

/// The writer thread: takes the queued jobs, up to [`BATCH`] at a time, runs them in one
/// transaction and answers them after its commit.
fn work(queue: &mpsc::Receiver<Job>, queued: &AtomicUsize, readers: &Readers, wait: Duration) {
    let open = || SqliteConn::open(&readers.url, &readers.setup_sql).map_err(Failure::from);
    let mut conn: Option<SqliteConn> = None;
    while let Ok(first) = queue.recv() {
        let now = Instant::now();
        let (live, late): (Vec<Job>, Vec<Job>) = std::iter::once(first)
            .chain(queue.try_iter().take(BATCH - 1))
            .partition(|job| job.deadline > now);
        queued.fetch_sub(live.len() + late.len(), Ordering::Relaxed);
        for job in late {
            drop((job.task)(Err(Failure::TimedOut(CheckoutTimeout(wait)))));
        }
        let Some(deadline) = live.iter().map(|job| job.deadline).min() else { continue };
        let begun = match conn.take() {
            Some(open) => Ok(open),
            None => open(),
        }
        .and_then(|mut open| begin(&mut open, deadline, wait).map(|()| open));
        let mut open = match begun {
            Ok(open) => open,
            Err(failure) => {
                if failure.read_only() {
                    readers.close_all();
                }
                let shared = Shared::new(failure);
                live.into_iter().for_each(|job| drop((job.task)(Err(shared.error().into()))));
                continue;
            }
        };
        let ran: Vec<Ran> = live.into_iter().filter_map(|job| (job.task)(Ok(&mut open))).collect();
        let read_only = ran.iter().any(|ran| ran.read_only);
        let answers = ran.into_iter().map(|ran| ran.answer);
        let commit = <SqliteConn as AsyncConnection>::TransactionManager::commit_transaction(&mut open);
        match inline(commit).and_then(|done| done.map_err(Failure::from)) {
            Ok(()) if !read_only => {
                conn = Some(open);
                answers.for_each(|answer| answer(None));
            }
            Ok(()) => {
                // Its own connection first, so that none is left open.
                drop(open);
                readers.close_all();
                answers.for_each(|answer| answer(None));
            }
            // The connection is dropped: closing it rolls back whatever is left.
            Err(failure) => {
                drop(open);
                if failure.read_only() {
                    readers.close_all();
                }
                let shared = Shared::new(failure);
                answers.for_each(|answer| answer(Some(shared.error().into())));
            }
        }
    }
}

/// Begins the batch's transaction, waiting for other processes' locks no longer than the
/// earliest caller waits.
fn begin(conn: &mut SqliteConn, deadline: Instant, wait: Duration) -> Result<(), Failure> {
    /// How much of the wait may be gone before the busy timeout is cut to the rest.
    const SLACK: Duration = Duration::from_millis(100);
    let busy = |conn: &mut SqliteConn, timeout: Duration| {
        inline(conn.batch_execute(&format!("PRAGMA busy_timeout = {}", timeout.as_millis())))?
            .map_err(Failure::from)
    };
    let begin = |conn: &mut SqliteConn| {
        inline(AnsiTransactionManager::begin_transaction_sql(conn, "BEGIN IMMEDIATE"))?.map_err(Failure::from)
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left + SLACK >= wait {
        return begin(conn);
    }
    busy(conn, left)?;
    let begun = begin(conn);
    busy(conn, wait)?;
    begun
}
