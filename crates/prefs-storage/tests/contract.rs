//! The contract suite of the storage ports (`prefs_domain::testing`) run on `DieselStore`, and
//! the tests of what only `DieselStore` does: its caches, connections and pools, its SQL, its
//! migrations, PostgreSQL's read-only servers and SQLite's file. Every test runs against a fresh
//! database, on both backends (`sqlite::…` and `postgres::…`).
//!
//! PostgreSQL needs a server: `tests/postgres.sh start`, then
//! `PREFS_TEST_POSTGRES_URL=<the URL it prints> cargo test -p prefs-storage --features testing`.
//! Without the variable the PostgreSQL tests fail; they never skip.
//!
//! The tests of one backend only run at the end (`postgres_only`, `sqlite_only`).

use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use prefs_domain::testing::{GLOBAL, StoreUnderTest, apply, edit, key, keys, name, put, user, value};
use prefs_domain::{Change, Edit, Error, Preference, PreferenceStore, Result, Store, UserId, UserStore};
use prefs_storage::testing::{Scratch, scratch};
use prefs_storage::{Backend, DieselStore, StoreConfig};
use serde_json::{Value, json};

/// A migrated store over a fresh database. The store is dropped before the database.
struct Fixture {
    store: DieselStore,
    scratch: Scratch,
}

impl Fixture {
    async fn new(backend: Backend) -> Self {
        let scratch = scratch(backend).await;
        Self { store: scratch.store().await, scratch }
    }

    /// Another store over the same database, with a short wait, the given pool size and no
    /// namespace cache (so SQLite reads through it always query).
    async fn impatient_store(&self, pool_size: usize) -> DieselStore {
        let config = StoreConfig {
            pool_size,
            pool_wait: SHORT_WAIT,
            namespace_cache_bytes: 0,
            ..self.scratch.config()
        };
        DieselStore::connect(&config).await.unwrap()
    }
}

#[async_trait::async_trait]
impl StoreUnderTest for Fixture {
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }

    /// A store of its own over the same database, as another instance of prefs has, waiting as
    /// long as a real one does.
    async fn another(&self) -> Arc<dyn Store> {
        Arc::new(self.scratch.store().await)
    }

    /// A tokio task, on one of the runtime's worker threads.
    fn spawn(&self, task: BoxFuture<'static, ()>) -> BoxFuture<'static, ()> {
        Box::pin(async {
            if let Err(failed) = tokio::spawn(task).await {
                std::panic::resume_unwind(failed.into_panic());
            }
        })
    }
}

/// The whole contract suite on `backend`.
async fn contract(backend: Backend) {
    prefs_domain::testing::run_all(|| Fixture::new(backend)).await;
}

/// The pool wait of [`Fixture::impatient_store`].
const SHORT_WAIT: Duration = Duration::from_millis(300);

/// Generates `mod sqlite` and `mod postgres`, each with the whole contract suite as one test
/// (`contract`, on four worker threads for the suite's concurrent tasks) and one test per listed
/// test body, run on the given tokio test runtime.
macro_rules! contract {
    ($($runtime:meta => $name:ident,)*) => {
        mod sqlite {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn contract() {
                super::contract(prefs_storage::Backend::Sqlite).await;
            }
            $(
                #[$runtime]
                async fn $name() {
                    super::$name(super::Fixture::new(prefs_storage::Backend::Sqlite).await).await;
                }
            )*
        }
        mod postgres {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn contract() {
                super::contract(prefs_storage::Backend::Postgres).await;
            }
            $(
                #[$runtime]
                async fn $name() {
                    super::$name(super::Fixture::new(prefs_storage::Backend::Postgres).await).await;
                }
            )*
        }
    };
}

contract! {
    tokio::test => provision_of_a_known_user_does_not_write,
    tokio::test => an_assigned_id_taken_behind_the_stores_back_is_skipped,
    tokio::test => a_remembered_user_serves_until_a_read_finds_it_gone,
    tokio::test => failed_writes_leave_their_connection_clean,
    tokio::test(flavor = "multi_thread", worker_threads = 2) => every_thread_reads_a_write_at_once,
    tokio::test => rows_written_by_others_read_back_as_stored,
    tokio::test => migrations_run_twice_are_a_no_op,
    tokio::test => the_store_names_its_backend,
    tokio::test => reads_go_on_after_the_server_closed_the_connections,
    tokio::test => concurrent_reads_share_two_connections,
    tokio::test => waiting_for_a_busy_store_is_bounded,
    tokio::test => waiting_for_another_writer_is_bounded_and_reads_go_on,
    tokio::test => a_cancelled_modify_leaves_the_store_usable,
}

// ----- helpers -----

/// Holds the write lock of `user` from another thread (with its own runtime): a `modify` whose
/// edit blocks until [`HeldLock::release`].
struct HeldLock {
    release: mpsc::Sender<()>,
    holder: JoinHandle<Result<Vec<Preference>>>,
}

impl HeldLock {
    async fn take(store: &DieselStore, user: UserId) -> Self {
        let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let store = store.clone();
        let holder = std::thread::spawn(move || {
            let locked = Mutex::new(Some(locked_tx));
            let release = Mutex::new(release_rx);
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(store.modify(
                user,
                &GLOBAL,
                Arc::new(move |_| {
                    if let Some(locked) = locked.lock().unwrap().take() {
                        locked.send(()).unwrap();
                    }
                    // Returns when released, or when the sender is gone.
                    let _ = release.lock().unwrap().recv();
                    Ok(vec![])
                }),
            ))
        });
        locked_rx.await.expect("the holder took the lock");
        Self { release, holder }
    }

    async fn release(self) {
        self.release.send(()).unwrap();
        // Join off the runtime: the holder may need this runtime's connection tasks to commit.
        let held = tokio::task::spawn_blocking(move || self.holder.join()).await.unwrap();
        held.expect("the holder did not panic").expect("the holder's modify succeeded");
    }
}

// ----- users -----

async fn provision_of_a_known_user_does_not_write(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let impatient = fx.impatient_store(4).await;
    let lock = HeldLock::take(&fx.store, alice.id).await;
    // A write would wait for the held lock and give up after the short wait; a read does not.
    assert_eq!(impatient.provision(&alice.subject, &alice.username, None).await.unwrap(), alice);
    // The same call with a new username does write, so it has to wait (this proves the test can
    // tell the two apart).
    let renamed = impatient.provision(&alice.subject, &name("alicia"), None).await;
    assert!(matches!(renamed, Err(Error::Unavailable(_))), "{renamed:?}");
    lock.release().await;
}

/// An id the store would assign next, taken by a row written behind its back (PostgreSQL's
/// sequence does not see it): provisioning skips it rather than fail.
async fn an_assigned_id_taken_behind_the_stores_back_is_skipped(fx: Fixture) {
    let first = user(&fx.store, "first").await;
    let overriding = match fx.scratch.backend() {
        Backend::Sqlite => "",
        Backend::Postgres => "OVERRIDING SYSTEM VALUE",
    };
    for id in [first.id.0 + 1, first.id.0 + 2] {
        fx.scratch
            .execute(&format!(
                "INSERT INTO users (id, subject, username, created_at) {overriding} \
                 VALUES ({id}, 'sub-x{id}', 'x{id}', 0)"
            ))
            .await;
    }
    let next = user(&fx.store, "next").await;
    assert!(next.id.0 > first.id.0 + 2, "{next:?}");
    assert!(user(&fx.store, "later").await.id > next.id);
}

/// This store remembers a user by subject, also when another instance removed it, until one of
/// its reads finds the user gone; then it asks the database again. (The service signs a stale
/// actor in again then: the contract's `a_user_removed_through_another_instance_is_noticed`.)
async fn a_remembered_user_serves_until_a_read_finds_it_gone(fx: Fixture) {
    let other = fx.impatient_store(2).await;
    let alice = user(&fx.store, "alice").await;
    assert!(other.remove_user(alice.id).await.unwrap());
    let again = user(&other, "alice").await;
    assert_ne!(again.id, alice.id);
    assert_eq!(user(&fx.store, "alice").await.id, alice.id);
    let gone = fx.store.namespace(alice.id, &GLOBAL).await;
    assert!(matches!(gone, Err(Error::UserNotFound)), "{gone:?}");
    assert_eq!(user(&fx.store, "alice").await.id, again.id);
}

// ----- modify -----

/// However a write fails, its connection is left as it was found: the next write on the same
/// (only) connection commits, as another store sees at once. (A transaction left open would
/// swallow it, or fail it.)
async fn failed_writes_leave_their_connection_clean(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let single = fx.impatient_store(1).await;
    put(&single, &alice, &GLOBAL, "taken", json!(0)).await;
    let ghost = UserId(alice.id.0 + 1000);
    let put_of = |k: &str| Change::Put { key: key(k), value: value(json!(k)) };
    let failing: [(UserId, Arc<Edit>); 4] = [
        // The edit refuses, after the lock and the read.
        (alice.id, Arc::new(|_| Err(Error::PreferenceNotFound))),
        // No such user.
        (ghost, edit(vec![put_of("a")])),
        // A statement fails in the database: the rename target is taken.
        (alice.id, edit(vec![put_of("a"), Change::Rename { from: key("a"), to: key("taken") }])),
        // A rename writes nothing.
        (alice.id, edit(vec![put_of("b"), Change::Rename { from: key("missing"), to: key("c") }])),
    ];
    let mut expected = vec!["taken".to_owned()];
    for (i, (target, edit)) in failing.into_iter().enumerate() {
        let failed = single.modify(target, &GLOBAL, edit).await;
        assert!(failed.is_err(), "{i}: {failed:?}");
        expected.push(format!("after{i}"));
        apply(&single, &alice, &GLOBAL, vec![put_of(&expected[i + 1])]).await.unwrap();
        assert_eq!(keys(&fx.store.namespace(alice.id, &GLOBAL).await.unwrap()), expected, "{i}");
    }
}

// ----- reads -----

/// Every thread reads an acknowledged write at once, though each remembered the answer before it
/// (a store's threads share what they remember), whether the write went through this instance
/// or another.
async fn every_thread_reads_a_write_at_once(fx: Fixture) {
    const THREADS: usize = 4;
    const ROUNDS: i64 = 10;
    let other = fx.impatient_store(2).await;
    let alice = user(&fx.store, "alice").await;
    put(&fx.store, &alice, &GLOBAL, "n", json!(0)).await;
    let barrier = Arc::new(std::sync::Barrier::new(THREADS + 1));
    // Each reader keeps to the rounds whatever it reads, and reports what it read: a reader that
    // stopped halfway would leave the others waiting at the barrier.
    let readers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (store, barrier, user) = (fx.store.clone(), barrier.clone(), alice.id);
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                let read = || {
                    let found = runtime.block_on(store.namespace(user, &GLOBAL));
                    let values =
                        |found: Vec<Preference>| found.into_iter().map(|p| p.value.into_json()).collect();
                    found.map(values).map_err(|e| e.to_string())
                };
                let mut wrong: Vec<(i64, Result<Vec<Value>, String>)> = Vec::new();
                for round in 0..ROUNDS {
                    for expected in [round, round] {
                        wrong
                            .extend(Some((expected, read())).filter(|(n, read)| *read != Ok(vec![json!(n)])));
                    }
                    barrier.wait();
                    // The next value is written and acknowledged meanwhile.
                    barrier.wait();
                    wrong.extend(Some((round + 1, read())).filter(|(n, read)| *read != Ok(vec![json!(n)])));
                }
                wrong
            })
        })
        .collect();
    let wait = |barrier: Arc<std::sync::Barrier>| tokio::task::spawn_blocking(move || barrier.wait());
    for round in 1..=ROUNDS {
        wait(barrier.clone()).await.unwrap();
        let writer = if round % 2 == 0 { &fx.store } else { &other };
        put(writer, &alice, &GLOBAL, "n", json!(round)).await;
        wait(barrier.clone()).await.unwrap();
    }
    for reader in readers {
        let wrong = reader.join().unwrap();
        assert!(wrong.is_empty(), "expected value, then what was read instead: {wrong:?}");
    }
}

async fn rows_written_by_others_read_back_as_stored(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let row = |key: &str, text: &str| {
        format!(
            "INSERT INTO preferences (user_id, namespace, key, value, created_at, updated_at, version) \
             VALUES ({}, 'global', '{key}', '{text}', 0, 0, 1);",
            alice.id
        )
    };
    fx.scratch.execute(&row("spaced", "{ \"b\": [1, 2],\n  \"a\": \"\\u00e9\" }")).await;
    let spaced = fx.store.preference(alice.id, &GLOBAL, &key("spaced")).await.unwrap().unwrap();
    // Served with its text as it is, and read as the value that text means.
    assert_eq!(spaced.value.as_json_text(), "{ \"b\": [1, 2],\n  \"a\": \"\\u00e9\" }");
    assert_eq!(spaced.value.as_json(), &json!({"a": "é", "b": [1, 2]}));
    // Text no JSON value of prefs can hold: refused as a storage error, not served.
    fx.scratch.execute(&row("huge", "1e400")).await;
    let refused = fx.store.namespace(alice.id, &GLOBAL).await.unwrap_err();
    assert!(matches!(&refused, Error::Internal(e) if e.to_string().contains("is invalid")), "{refused:?}");
}

// ----- operations -----

async fn migrations_run_twice_are_a_no_op(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let a = put(&fx.store, &alice, &GLOBAL, "a", json!(1)).await;
    fx.store.migrate().await.unwrap();
    let other = DieselStore::connect(&fx.scratch.config()).await.unwrap();
    assert_eq!(other.backend(), fx.scratch.backend());
    other.migrate().await.unwrap();
    assert_eq!(other.namespace(alice.id, &GLOBAL).await.unwrap(), vec![a]);
}

async fn the_store_names_its_backend(fx: Fixture) {
    assert_eq!(fx.store.backend(), fx.scratch.backend());
}

/// A read on a connection the server closed (a restart, an idle timeout) is tried again on a
/// new one: the first read after it succeeds.
async fn reads_go_on_after_the_server_closed_the_connections(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let a = put(&fx.store, &alice, &GLOBAL, "a", json!(1)).await;
    for _ in 0..3 {
        assert_eq!(fx.store.namespace(alice.id, &GLOBAL).await.unwrap(), vec![a.clone()]);
        fx.scratch.disconnect_everyone().await;
        assert_eq!(fx.store.preference(alice.id, &GLOBAL, &key("a")).await.unwrap(), Some(a.clone()));
        fx.store.ping().await.unwrap();
    }
}

/// Reads under way at once on one thread share its read connections (PostgreSQL pipelines them
/// on at most two; SQLite reads on the thread's one), and each gets its own answer.
async fn concurrent_reads_share_two_connections(fx: Fixture) {
    let reader = fx.impatient_store(8).await;
    let mut users = Vec::new();
    for i in 0..16 {
        let user = user(&fx.store, &format!("user{i}")).await;
        let written = put(&fx.store, &user, &GLOBAL, "k", json!(i)).await;
        users.push((user, written));
    }
    let reads = users.iter().cycle().take(64).map(|(user, _)| reader.namespace(user.id, &GLOBAL));
    let found = futures_util::future::join_all(reads).await;
    for ((_, written), found) in users.iter().cycle().zip(found) {
        assert_eq!(found.unwrap(), vec![written.clone()]);
    }
    let status = reader.pool_status();
    if fx.scratch.config().pg_prepared_statements {
        assert!(status.size <= 2 && status.max_size <= 2, "{status:?}");
    } else {
        // Behind a transaction-mode pooler each query of reads is a transaction on a pooled
        // connection; still one query for many reads.
        assert!(status.size <= 2 + 8, "{status:?}");
    }
}

/// A write behind a stuck one (holding PostgreSQL's only pooled connection, or SQLite's writer)
/// gives up within the wait, and is not applied later.
async fn waiting_for_a_busy_store_is_bounded(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let single = fx.impatient_store(1).await;
    let lock = HeldLock::take(&single, alice.id).await;
    let started = Instant::now();
    let waited =
        apply(&single, &alice, &GLOBAL, vec![Change::Put { key: key("late"), value: value(json!(1)) }]).await;
    assert!(matches!(waited, Err(Error::Unavailable(_))), "{waited:?}");
    assert!(started.elapsed() < SHORT_WAIT + Duration::from_secs(2), "{:?}", started.elapsed());
    lock.release().await;
    single.ping().await.unwrap();
    assert_eq!(keys(&single.namespace(alice.id, &GLOBAL).await.unwrap()), Vec::<&str>::new());
}

async fn waiting_for_another_writer_is_bounded_and_reads_go_on(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let a = put(&fx.store, &alice, &GLOBAL, "a", json!(1)).await;
    let impatient = fx.impatient_store(4).await;
    let lock = HeldLock::take(&fx.store, alice.id).await;
    let started = Instant::now();
    let blocked =
        apply(&impatient, &alice, &GLOBAL, vec![Change::Put { key: key("b"), value: value(json!(2)) }]).await;
    assert!(matches!(blocked, Err(Error::Unavailable(_))), "{blocked:?}");
    // It queued for the lock (no instant failure), and not for longer than the wait.
    let waited = started.elapsed();
    assert!(waited >= SHORT_WAIT / 2 && waited < SHORT_WAIT + Duration::from_secs(2), "{waited:?}");
    assert_eq!(impatient.namespace(alice.id, &GLOBAL).await.unwrap(), vec![a.clone()]);
    lock.release().await;
    apply(&impatient, &alice, &GLOBAL, vec![Change::Put { key: key("b"), value: value(json!(2)) }])
        .await
        .unwrap();
}

/// A request future dropped halfway (a client went away) must neither panic nor leave a
/// connection with an open transaction in the pool. Runs on a current-thread runtime, like an
/// actix worker.
async fn a_cancelled_modify_leaves_the_store_usable(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let lock = HeldLock::take(&fx.store, alice.id).await;
    for _ in 0..3 {
        let cancelled = tokio::time::timeout(
            Duration::from_millis(100),
            apply(
                &fx.store,
                &alice,
                &GLOBAL,
                vec![Change::Put { key: key("cancelled"), value: value(json!(1)) }],
            ),
        )
        .await;
        assert!(cancelled.is_err(), "{cancelled:?}");
    }
    lock.release().await;
    let after =
        apply(&fx.store, &alice, &GLOBAL, vec![Change::Put { key: key("kept"), value: value(json!(2)) }])
            .await
            .unwrap();
    assert_eq!(keys(&after), ["kept"]);
    for _ in 0..StoreConfig::DEFAULT_POOL_SIZE * 2 {
        fx.store.ping().await.unwrap();
        assert_eq!(keys(&fx.store.namespace(alice.id, &GLOBAL).await.unwrap()), ["kept"]);
    }
}

// ----- one backend only -----

mod postgres_only {
    #[tokio::test]
    async fn a_read_only_server_refuses_writes_as_unavailable_and_is_not_ready() {
        super::a_read_only_server_refuses_writes_as_unavailable_and_is_not_ready(
            super::Fixture::new(prefs_storage::Backend::Postgres).await,
        )
        .await;
    }
}

/// A server that takes no writes (a standby, `default_transaction_read_only`; SQLSTATE 25006):
/// each write is [`Error::Unavailable`] (503) and changes nothing, reads go on, the ping fails
/// (`/readyz` 503); once the server takes writes again, both recover by themselves.
async fn a_read_only_server_refuses_writes_as_unavailable_and_is_not_ready(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let a = put(&fx.store, &alice, &GLOBAL, "a", json!(1)).await;
    let read_only = |on: &str| {
        format!(
            "BEGIN READ WRITE; DO $$ BEGIN EXECUTE format(\
             'ALTER DATABASE %I SET default_transaction_read_only = {on}', current_database()); END $$; COMMIT"
        )
    };
    fx.scratch.execute(&read_only("on")).await;
    fx.scratch.disconnect_everyone().await;
    let change = || vec![Change::Put { key: key("a"), value: value(json!(2)) }];
    for _ in 0..3 {
        let refused = apply(&fx.store, &alice, &GLOBAL, change()).await;
        assert!(matches!(refused, Err(Error::Unavailable(_))), "{refused:?}");
        assert!(matches!(fx.store.ping().await, Err(Error::Unavailable(_))));
        assert_eq!(fx.store.namespace(alice.id, &GLOBAL).await.unwrap(), vec![a.clone()]);
    }
    fx.scratch.execute(&read_only("off")).await;
    if std::env::var_os(prefs_storage::testing::POSTGRES_POOLED_URL_VAR).is_some() {
        // A pooler keeps its server connections, made read-only by this database's setting,
        // which only their end resets (a promoted standby takes writes on every connection).
        fx.scratch.disconnect_everyone().await;
    }
    // The connections made meanwhile keep their session's setting (a promoted standby's would
    // not): each write or ping that meets one closes it, so recovery takes a few tries at most.
    let mut written = None;
    for _ in 0..StoreConfig::DEFAULT_POOL_SIZE + 2 {
        if let Ok(after) = apply(&fx.store, &alice, &GLOBAL, change()).await {
            written = Some(after);
            break;
        }
    }
    assert_eq!(written.expect("writes recover by themselves")[0].value, value(json!(2)));
    let mut ready = false;
    for _ in 0..4 {
        ready = fx.store.ping().await.is_ok();
        if ready {
            break;
        }
    }
    assert!(ready, "the ping recovers by itself");
}

mod sqlite_only {
    #[tokio::test]
    async fn a_damaged_page_is_an_error_not_a_runaway() {
        super::a_damaged_page_is_an_error_not_a_runaway(
            super::Fixture::new(prefs_storage::Backend::Sqlite).await,
        )
        .await;
    }

    #[tokio::test]
    async fn a_file_it_may_not_write_is_not_ready_until_it_may() {
        super::a_file_it_may_not_write_is_not_ready_until_it_may(
            super::Fixture::new(prefs_storage::Backend::Sqlite).await,
        )
        .await;
    }

    #[tokio::test]
    async fn a_database_another_process_locks_is_not_ready_until_it_lets_go() {
        super::a_database_another_process_locks_is_not_ready_until_it_lets_go(
            super::Fixture::new(prefs_storage::Backend::Sqlite).await,
        )
        .await;
    }
}

/// prefs started on SQLite files it may not write (SQLite opens them read-only): each write is
/// [`Error::Unavailable`] (503) and changes nothing, reads go on, the ping fails (`/readyz` 503);
/// once the files may be written again, both recover by themselves, without a new store. The
/// `-shm` file is read-only too (SQLite creates it with the database file's mode), and all the
/// connections of a process share it as the first opened it: the store must close them all.
async fn a_file_it_may_not_write_is_not_ready_until_it_may(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let a = put(&fx.store, &alice, &GLOBAL, "a", json!(1)).await;
    let Fixture { store, scratch } = fx;
    drop(store);
    // The last connection to close removes the `-shm` file; one is then made, as read-only as the
    // database file.
    let shm = format!("{}-shm", scratch.url);
    let gone = Instant::now();
    while std::path::Path::new(&shm).exists() {
        assert!(gone.elapsed() < Duration::from_secs(10), "the store's connections stay open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(&shm, []).unwrap();
    let read_only = ReadOnly::new(&[&scratch.url, &shm]);
    // A store started now, as prefs would be: its connections are opened read-only.
    let config = StoreConfig { pool_wait: SHORT_WAIT, ..scratch.config() };
    let store = DieselStore::connect(&config).await.unwrap();
    let change = || vec![Change::Put { key: key("a"), value: value(json!(2)) }];
    for _ in 0..3 {
        assert_eq!(store.namespace(alice.id, &GLOBAL).await.unwrap(), vec![a.clone()]);
        let refused = apply(&store, &alice, &GLOBAL, change()).await;
        assert!(
            matches!(&refused, Err(Error::Unavailable(e)) if e.to_string().contains("readonly")),
            "{refused:?}"
        );
        let ping = store.ping().await;
        assert!(matches!(ping, Err(Error::Unavailable(_))), "{ping:?}");
        assert_eq!(store.namespace(alice.id, &GLOBAL).await.unwrap(), vec![a.clone()]);
    }
    drop(read_only);
    // A read connection keeps the shared `-shm` read-only: the write that meets it closes them
    // all, so recovery takes two tries at most.
    let mut ready = false;
    for _ in 0..2 {
        ready = store.ping().await.is_ok();
        if ready {
            break;
        }
    }
    assert!(ready, "the ping recovers by itself");
    assert_eq!(apply(&store, &alice, &GLOBAL, change()).await.unwrap()[0].value, value(json!(2)));
}

/// Another process holds SQLite's write lock (`BEGIN EXCLUSIVE`): the ping fails within the pool
/// wait (`/readyz` 503, as every write is), reads go on, and the ping succeeds again once the lock
/// is released.
async fn a_database_another_process_locks_is_not_ready_until_it_lets_go(fx: Fixture) {
    use diesel::connection::SimpleConnection;

    let alice = user(&fx.store, "alice").await;
    let store = fx.impatient_store(2).await;
    store.ping().await.unwrap();
    let mut other = <diesel::SqliteConnection as diesel::Connection>::establish(&fx.scratch.url).unwrap();
    other.batch_execute("BEGIN EXCLUSIVE").unwrap();
    let started = Instant::now();
    let ping = store.ping().await;
    assert!(matches!(ping, Err(Error::Unavailable(_))), "{ping:?}");
    assert!(started.elapsed() < SHORT_WAIT + Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(store.namespace(alice.id, &GLOBAL).await.unwrap(), vec![]);
    other.batch_execute("COMMIT").unwrap();
    store.ping().await.unwrap();
}

/// Makes files read-only to this process while it lives: by their mode, and when that does not
/// stop this process (root), by the immutable attribute (`chattr +i`, which needs
/// `CAP_LINUX_IMMUTABLE`).
struct ReadOnly {
    paths: Vec<String>,
    immutable: bool,
}

impl ReadOnly {
    fn new(paths: &[&str]) -> Self {
        use std::os::unix::fs::PermissionsExt;

        let writable = |path| std::fs::OpenOptions::new().write(true).open(path).is_ok();
        for path in paths {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
        }
        let immutable = writable(paths[0]);
        let read_only = Self { paths: paths.iter().map(|path| (*path).to_owned()).collect(), immutable };
        if immutable {
            read_only.chattr("+i");
        }
        for path in paths {
            assert!(!writable(path), "{path} is still writable");
        }
        read_only
    }

    fn chattr(&self, flag: &str) {
        let done = std::process::Command::new("chattr").arg(flag).args(&self.paths).status();
        assert!(
            done.as_ref().is_ok_and(std::process::ExitStatus::success),
            "chattr {flag} {:?}: {done:?} (as root this test needs chattr and CAP_LINUX_IMMUTABLE)",
            self.paths
        );
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;

        if self.immutable {
            self.chattr("-i");
        }
        for path in &self.paths {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// A page of `preferences` overwritten in its middle (as a bad disk or a stray write would) makes
/// the reads and writes of the rows on it fail with SQLite's `database disk image is malformed`,
/// at once. SQLite starts a statement over when it is stepped again after an error, so a store
/// that kept reading past the error would read the rows before it again and again, taking
/// hundreds of MB a second without end: a [`watchdog`] ends this process before it takes the
/// machine's memory.
async fn a_damaged_page_is_an_error_not_a_runaway(fx: Fixture) {
    use diesel::sql_types::BigInt;
    use std::io::{Seek, SeekFrom, Write};

    #[derive(diesel::QueryableByName)]
    struct Page {
        #[diesel(sql_type = BigInt)]
        pageno: i64,
        #[diesel(sql_type = BigInt)]
        pgsize: i64,
    }

    // 40 rows of ~300 bytes over several leaf pages, their keys in the order of their ids.
    let alice = user(&fx.store, "alice").await;
    let changes = (0..40)
        .map(|i| Change::Put { key: key(&format!("k{i:02}")), value: value(json!("x".repeat(300))) })
        .collect();
    apply(&fx.store, &alice, &GLOBAL, changes).await.unwrap();
    fx.scratch.execute("PRAGMA wal_checkpoint(TRUNCATE);").await;

    // The table's second leaf page in key order (`dbstat` walks the b-tree in order): the scan
    // reads the rows of the first one, then fails.
    let mut conn = <diesel::SqliteConnection as diesel::Connection>::establish(&fx.scratch.url).unwrap();
    let leaves: Vec<Page> = diesel::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT pageno, pgsize FROM dbstat WHERE name = 'preferences' AND pagetype = 'leaf' ORDER BY path",
        ),
        &mut conn,
    )
    .unwrap();
    drop(conn);
    assert!(leaves.len() >= 3, "{} leaf pages", leaves.len());
    let Page { pageno, pgsize } = leaves[1];
    let mut file = std::fs::OpenOptions::new().write(true).open(&fx.scratch.url).unwrap();
    file.seek(SeekFrom::Start(u64::try_from((pageno - 1) * pgsize + pgsize / 2 - 1000).unwrap())).unwrap();
    file.write_all(&[0xA5; 2000]).unwrap();
    file.sync_all().unwrap();

    // A store that has not read the page yet (the first one's connections may hold it in memory).
    let damaged = fx.impatient_store(2).await;
    let malformed = |out: &Result<Vec<Preference>>| match out {
        Err(Error::Internal(cause)) => cause.to_string().contains("database disk image is malformed"),
        _ => false,
    };
    let _watchdog = watchdog("reads and writes of a damaged page", Duration::from_secs(20));
    let started = Instant::now();
    let read = damaged.namespace(alice.id, &GLOBAL).await;
    assert!(malformed(&read), "{read:?}");
    let write =
        apply(&damaged, &alice, &GLOBAL, vec![Change::Put { key: key("k99"), value: value(json!(1)) }]).await;
    assert!(malformed(&write), "{write:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // The store goes on: a read that does not touch the page is answered.
    let bob = user(&damaged, "bob").await;
    assert_eq!(damaged.namespace(bob.id, &GLOBAL).await.unwrap(), vec![]);
}

/// Ends this test process, with a message naming `what`, when it holds more than 1 GiB of memory
/// (`VmRSS`, Linux) or `time` has passed, unless the returned sender was dropped first: for a test
/// whose failure would be to take memory without end, which it could not stop from within.
fn watchdog(what: &'static str, time: Duration) -> mpsc::Sender<()> {
    use std::io::Write;
    const MAX_RSS_KB: u64 = 1 << 20;
    let rss_kb = || {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"));
        line.and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).unwrap_or(0)
    };
    let (done, stop) = mpsc::channel::<()>();
    let started = Instant::now();
    std::thread::spawn(move || {
        while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(Duration::from_millis(10)) {
            let rss = rss_kb();
            if rss > MAX_RSS_KB || started.elapsed() > time {
                // Not `eprintln!`, which the test harness captures and would never show.
                let _ = writeln!(
                    std::io::stderr(),
                    "{what}: {rss} kB of memory after {:?} (at most 1 GiB, {time:?}): ending the test process",
                    started.elapsed()
                );
                std::process::exit(1);
            }
        }
    });
    done
}
