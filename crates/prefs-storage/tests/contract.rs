//! The contract suite of the storage ports (`prefs_domain::ports`): every test is written once,
//! against a fresh database, and runs on both backends (`sqlite::…` and `postgres::…`).
//!
//! PostgreSQL needs a server: `tests/postgres.sh start`, then
//! `PREFS_TEST_POSTGRES_URL=<the URL it prints> cargo test -p prefs-storage --features testing`.
//! Without the variable the PostgreSQL tests fail; they never skip.
//!
//! The tests of SQLite's file itself (a damaged page) run on SQLite only, at the end (`sqlite_only`).

use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use prefs_domain::{
    Change, ClientId, Edit, Error, Namespace, Preconditions, Preference, PreferenceId, PreferenceKey,
    PreferenceService, PreferenceStore, PreferenceValue, Principal, Result, User, UserId, UserRef, UserStore,
    Username,
};
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

/// The pool wait of [`Fixture::impatient_store`].
const SHORT_WAIT: Duration = Duration::from_millis(300);

/// Generates `mod sqlite` and `mod postgres`, each with one test per listed test body, run on
/// the given tokio test runtime.
macro_rules! contract {
    ($($runtime:meta => $name:ident,)*) => {
        mod sqlite {
            $(
                #[$runtime]
                async fn $name() {
                    super::$name(super::Fixture::new(prefs_storage::Backend::Sqlite).await).await;
                }
            )*
        }
        mod postgres {
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
    tokio::test => provision_creates_a_user_once,
    tokio::test => provision_of_a_known_user_does_not_write,
    tokio::test => provision_follows_a_username_change,
    tokio::test => provision_refuses_a_username_held_by_another_subject,
    tokio::test => provision_with_an_id_creates_the_user_with_exactly_it,
    tokio::test => provision_refuses_an_id_that_is_not_the_accounts,
    tokio::test => a_remembered_user_does_not_decide_an_id,
    tokio::test => assigned_ids_never_collide_with_explicit_ids,
    tokio::test => an_assigned_id_taken_behind_the_stores_back_is_skipped,
    tokio::test => a_removed_users_id_given_again_starts_empty,
    tokio::test(flavor = "multi_thread", worker_threads = 4) => concurrent_first_provisions_with_an_id_give_one_user,
    tokio::test(flavor = "multi_thread", worker_threads = 4) => concurrent_explicit_and_assigned_ids_never_collide,
    tokio::test => sign_in_takes_the_provider_id,
    tokio::test => users_are_found_by_exact_id_and_username,
    tokio::test => remove_user_erases_every_preference_and_reports_existence,
    tokio::test => namespaces_are_ordered_by_id_and_isolated,
    tokio::test => preference_lookups_respect_user_and_namespace,
    tokio::test => all_preferences_spans_namespaces_of_one_user,
    tokio::test => put_of_a_new_key_starts_at_version_1,
    tokio::test => put_of_an_existing_key_keeps_id_and_created_at,
    tokio::test => delete_removes_one_key_and_ignores_missing_ones,
    tokio::test => rename_keeps_id_and_value,
    tokio::test => a_failing_edit_writes_nothing_and_its_error_comes_back,
    tokio::test => a_failing_change_rolls_back_the_whole_modify,
    tokio::test => failed_writes_leave_their_connection_clean,
    tokio::test => modify_returns_the_namespace_as_stored,
    tokio::test => modify_of_an_unknown_user_is_user_not_found,
    tokio::test => reads_of_an_unknown_user_are_user_not_found,
    tokio::test => a_user_removed_through_another_instance_is_noticed,
    tokio::test => writes_through_another_instance_are_read_at_once,
    tokio::test(flavor = "multi_thread", worker_threads = 2) => every_thread_reads_a_write_at_once,
    tokio::test => json_values_round_trip_exactly,
    tokio::test => rows_written_by_others_read_back_as_stored,
    tokio::test => migrations_run_twice_are_a_no_op,
    tokio::test => ping_answers,
    tokio::test => reads_go_on_after_the_server_closed_the_connections,
    tokio::test => concurrent_reads_share_two_connections,
    tokio::test => reads_under_way_together_each_get_their_own_answer,
    tokio::test(flavor = "multi_thread", worker_threads = 4) => concurrent_readers_see_their_own_writes,
    tokio::test => waiting_for_a_busy_store_is_bounded,
    tokio::test => waiting_for_another_writer_is_bounded_and_reads_go_on,
    tokio::test => a_cancelled_modify_leaves_the_store_usable,
    tokio::test(flavor = "multi_thread", worker_threads = 4) => concurrent_puts_of_distinct_keys_all_land,
    tokio::test(flavor = "multi_thread", worker_threads = 4) => concurrent_writes_that_fail_halfway_roll_back_alone,
    tokio::test(flavor = "multi_thread", worker_threads = 4) => concurrent_merges_into_one_value_lose_nothing,
}

// ----- helpers -----

fn name(s: &str) -> Username {
    Username::parse(s).unwrap()
}

fn key(s: &str) -> PreferenceKey {
    PreferenceKey::parse(s).unwrap()
}

fn value(v: Value) -> PreferenceValue {
    PreferenceValue::new(v, "value", &prefs_domain::Limits::default()).unwrap()
}

fn client(s: &str) -> Namespace {
    Namespace::Client(ClientId::parse(s).unwrap())
}

const GLOBAL: Namespace = Namespace::Global;

/// Provisions a user whose subject is `sub-<username>`.
async fn user(store: &DieselStore, username: &str) -> User {
    store.provision(&format!("sub-{username}"), &name(username), None).await.unwrap()
}

/// Puts one key and returns the stored preference.
async fn put(store: &DieselStore, user: &User, namespace: &Namespace, k: &str, v: Value) -> Preference {
    let k = key(k);
    let after = store
        .modify(user.id, namespace, edit(vec![Change::Put { key: k.clone(), value: value(v) }]))
        .await
        .unwrap();
    after.into_iter().find(|p| p.key == k).unwrap()
}

async fn apply(
    store: &DieselStore,
    user: &User,
    namespace: &Namespace,
    changes: Vec<Change>,
) -> Result<Vec<Preference>> {
    store.modify(user.id, namespace, edit(changes)).await
}

/// An edit that always plans `changes`.
fn edit(changes: Vec<Change>) -> Arc<Edit> {
    Arc::new(move |_| Ok(changes.clone()))
}

fn keys(preferences: &[Preference]) -> Vec<&str> {
    preferences.iter().map(|p| p.key.as_str()).collect()
}

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

async fn provision_creates_a_user_once(fx: Fixture) {
    let alice = fx.store.provision("sub-1", &name("alice"), None).await.unwrap();
    assert_eq!((alice.subject.as_str(), alice.username.as_str()), ("sub-1", "alice"));
    let again = fx.store.provision("sub-1", &name("alice"), None).await.unwrap();
    assert_eq!(again, alice);
    let bob = user(&fx.store, "bob").await;
    assert_ne!(bob.id, alice.id);
}

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

async fn provision_follows_a_username_change(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let renamed = fx.store.provision(&alice.subject, &name("alice.b@example.com"), None).await.unwrap();
    assert_eq!(renamed.id, alice.id);
    assert_eq!(renamed.username.as_str(), "alice.b@example.com");
    assert_eq!(fx.store.user_by_username(&name("alice")).await.unwrap(), None);
    assert_eq!(fx.store.user_by_id(alice.id).await.unwrap(), Some(renamed.clone()));
    // And back: the old name was freed.
    assert_eq!(fx.store.provision(&alice.subject, &name("alice"), None).await.unwrap(), alice);
}

async fn provision_refuses_a_username_held_by_another_subject(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let bob = user(&fx.store, "bob").await;
    for subject in ["sub-new", bob.subject.as_str()] {
        let taken = fx.store.provision(subject, &alice.username, None).await;
        assert!(matches!(&taken, Err(Error::UsernameTaken(u)) if u == "alice"), "{subject}: {taken:?}");
    }
    assert_eq!(fx.store.user_by_id(bob.id).await.unwrap(), Some(bob));
    assert_eq!(fx.store.user_by_username(&alice.username).await.unwrap(), Some(alice));
}

// ----- users with the identity provider's ids -----

async fn provision_with_an_id_creates_the_user_with_exactly_it(fx: Fixture) {
    let alice = fx.store.provision("sub-a", &name("alice"), Some(UserId(42))).await.unwrap();
    assert_eq!((alice.id, alice.subject.as_str(), alice.username.as_str()), (UserId(42), "sub-a", "alice"));
    assert_eq!(fx.store.provision("sub-a", &name("alice"), Some(UserId(42))).await.unwrap(), alice);
    // Another instance (nothing remembered) finds the same user, with or without the id.
    let other = fx.scratch.store().await;
    assert_eq!(other.provision("sub-a", &name("alice"), Some(UserId(42))).await.unwrap(), alice);
    assert_eq!(other.provision("sub-a", &name("alice"), None).await.unwrap(), alice);
    assert_eq!(fx.store.user_by_id(UserId(42)).await.unwrap(), Some(alice.clone()));
    // A new username follows, the id stays.
    let renamed = fx.store.provision("sub-a", &name("alicia"), Some(UserId(42))).await.unwrap();
    assert_eq!((renamed.id, renamed.username.as_str()), (UserId(42), "alicia"));
    assert_eq!(other.provision("sub-a", &name("alicia"), Some(UserId(42))).await.unwrap(), renamed);
    // Ids below and far above the ones the store assigns.
    let bob = fx.store.provision("sub-b", &name("bob"), Some(UserId(1))).await.unwrap();
    assert_eq!(bob.id, UserId(1));
    let big = UserId(i64::from(i32::MAX) * 4);
    assert_eq!(fx.store.provision("sub-c", &name("carol"), Some(big)).await.unwrap().id, big);
    assert_eq!(fx.store.user_by_id(big).await.unwrap().unwrap().username.as_str(), "carol");
}

async fn provision_refuses_an_id_that_is_not_the_accounts(fx: Fixture) {
    let alice = fx.store.provision("sub-a", &name("alice"), Some(UserId(7))).await.unwrap();
    let bob = user(&fx.store, "bob").await;
    let other = fx.scratch.store().await;
    let mismatch = |out: Result<User>| matches!(out, Err(Error::IdentityMismatch));
    for store in [&fx.store, &other] {
        // The subject's user has another id (remembered by `fx.store`, not by `other`); the
        // username does not follow.
        assert!(mismatch(store.provision("sub-a", &name("alice"), Some(UserId(70))).await));
        assert!(mismatch(store.provision("sub-a", &name("alicia"), Some(UserId(70))).await));
        assert!(mismatch(store.provision(&bob.subject, &bob.username, Some(UserId(bob.id.0 + 100))).await));
        // The id is another subject's: never merged, nothing written.
        assert!(mismatch(store.provision("sub-c", &name("carol"), Some(UserId(7))).await));
        assert!(mismatch(store.provision("sub-c", &name("carol"), Some(bob.id)).await));
        assert!(mismatch(store.provision(&bob.subject, &bob.username, Some(alice.id)).await));
    }
    assert_eq!(fx.store.user_by_id(UserId(7)).await.unwrap(), Some(alice.clone()));
    assert_eq!(fx.store.user_by_id(bob.id).await.unwrap(), Some(bob.clone()));
    assert_eq!(fx.store.user_by_username(&name("carol")).await.unwrap(), None);
    assert_eq!(fx.store.user_by_username(&name("alicia")).await.unwrap(), None);
    assert_eq!(fx.store.user_by_id(UserId(70)).await.unwrap(), None);
    // Not a usable id.
    for id in [0, -1, i64::MIN] {
        let refused = fx.store.provision("sub-d", &name("dave"), Some(UserId(id))).await;
        assert!(matches!(&refused, Err(Error::Invalid(errors)) if errors[0].field == "id"), "{refused:?}");
    }
    assert_eq!(fx.store.user_by_username(&name("dave")).await.unwrap(), None);
    // A new subject with a free id but a taken username.
    let taken = fx.store.provision("sub-e", &alice.username, Some(UserId(71))).await;
    assert!(matches!(&taken, Err(Error::UsernameTaken(u)) if u == "alice"), "{taken:?}");
    assert_eq!(fx.store.user_by_id(UserId(71)).await.unwrap(), None);
    // The accounts still work as they are.
    assert_eq!(fx.store.provision("sub-a", &name("alice"), Some(UserId(7))).await.unwrap(), alice);
    assert_eq!(other.provision(&bob.subject, &bob.username, Some(bob.id)).await.unwrap(), bob);
}

/// What a store remembers of a subject never answers for an id it does not have: the database
/// decides, here after another instance removed the user and the subject came back with another
/// id.
async fn a_remembered_user_does_not_decide_an_id(fx: Fixture) {
    let first = fx.store.provision("sub-a", &name("alice"), Some(UserId(7))).await.unwrap();
    let other = fx.scratch.store().await;
    assert!(other.remove_user(first.id).await.unwrap());
    let again = other.provision("sub-a", &name("alice"), Some(UserId(9))).await.unwrap();
    assert_eq!(again.id, UserId(9));
    assert_eq!(fx.store.provision("sub-a", &name("alice"), Some(UserId(9))).await.unwrap(), again);
    assert!(matches!(
        fx.store.provision("sub-a", &name("alice"), Some(UserId(7))).await,
        Err(Error::IdentityMismatch)
    ));
}

/// Ids the store assigns never collide with ids given explicitly, before or after them: all
/// provisions succeed, and every id is distinct.
async fn assigned_ids_never_collide_with_explicit_ids(fx: Fixture) {
    let mut ids = std::collections::BTreeSet::new();
    let mut provision = async |subject: String, id: Option<i64>| {
        let user = fx.store.provision(&subject, &name(&subject), id.map(UserId)).await.unwrap();
        if let Some(id) = id {
            assert_eq!(user.id, UserId(id));
        }
        assert!(ids.insert(user.id), "{user:?} has an id given before");
        user.id
    };
    // On an empty database, an id the store would assign next.
    provision("explicit-5".into(), Some(5)).await;
    for i in 0..10 {
        provision(format!("assigned-{i}"), None).await;
    }
    // Far above.
    provision("explicit-1000".into(), Some(1000)).await;
    for i in 10..20 {
        assert!(provision(format!("assigned-{i}"), None).await > UserId(0));
    }
    // Exactly the next one, then a gap below.
    let last = provision("assigned-20".into(), None).await;
    provision("explicit-next".into(), Some(last.0 + 1)).await;
    provision("explicit-low".into(), Some(3)).await;
    for i in 21..31 {
        provision(format!("assigned-{i}"), None).await;
    }
    assert_eq!(ids.len(), 35);
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

/// An explicit id may come back once its user is removed (the provider gives it to the same
/// person again): the new user starts with nothing, in every reader, whatever they remember of
/// the old one.
async fn a_removed_users_id_given_again_starts_empty(fx: Fixture) {
    let other = fx.scratch.store().await;
    let old = fx.store.provision("sub-a", &name("alice"), Some(UserId(42))).await.unwrap();
    put(&fx.store, &old, &GLOBAL, "old", json!(1)).await;
    put(&fx.store, &old, &client("app"), "old", json!(1)).await;
    for _ in 0..2 {
        assert_eq!(keys(&fx.store.namespace(old.id, &GLOBAL).await.unwrap()), ["old"]);
        assert!(fx.store.preference(old.id, &GLOBAL, &key("old")).await.unwrap().is_some());
    }
    assert!(other.remove_user(old.id).await.unwrap());
    let new = other.provision("sub-a", &name("alice"), Some(UserId(42))).await.unwrap();
    assert_eq!(new.id, old.id);
    // As many writes as the old user had, unseen here: what this store remembers of the old user
    // must not pass for the new one's.
    put(&other, &new, &GLOBAL, "new", json!(2)).await;
    put(&other, &new, &client("app"), "new", json!(2)).await;
    assert_eq!(keys(&fx.store.namespace(new.id, &GLOBAL).await.unwrap()), ["new"]);
    assert_eq!(fx.store.preference(new.id, &GLOBAL, &key("old")).await.unwrap(), None);
    assert_eq!(keys(&fx.store.namespace(new.id, &client("app")).await.unwrap()), ["new"]);
}

/// Many first requests of one new subject with its id at once, through several instances: one
/// user, which every one of them gets.
async fn concurrent_first_provisions_with_an_id_give_one_user(fx: Fixture) {
    // Instances that wait as long as a real one does: the test is about races, not timeouts.
    let stores = [fx.store.clone(), fx.scratch.store().await, fx.scratch.store().await];
    for round in 0..10_i64 {
        let subject = format!("sub-{round}");
        let id = UserId(100 + round);
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let (store, subject) = (stores[i % stores.len()].clone(), subject.clone());
                tokio::spawn(async move { store.provision(&subject, &name(&subject), Some(id)).await })
            })
            .collect();
        for task in tasks {
            let user = task.await.unwrap().unwrap();
            assert_eq!((user.id, user.subject.as_str()), (id, subject.as_str()));
        }
    }
}

/// Sign-ups with explicit ids and with assigned ones at once: every assigned one succeeds with a
/// fresh id; an explicit one gets its id unless an assigned one got there first (then it is
/// refused: the id is another person's).
async fn concurrent_explicit_and_assigned_ids_never_collide(fx: Fixture) {
    // Instances that wait as long as a real one does: the test is about races, not timeouts.
    let stores = [fx.store.clone(), fx.scratch.store().await, fx.scratch.store().await];
    // On an empty database these are the ids the store would assign.
    let tasks: Vec<_> = (1..=30_i64)
        .flat_map(|i| [(format!("explicit-{i}"), Some(UserId(i))), (format!("assigned-{i}"), None)])
        .enumerate()
        .map(|(n, (subject, id))| {
            let store = stores[n % stores.len()].clone();
            tokio::spawn(async move { (id, store.provision(&subject, &name(&subject), id).await) })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for task in tasks {
        match task.await.unwrap() {
            (None, out) => assert!(ids.insert(out.unwrap().id)),
            (Some(id), Ok(user)) => {
                assert_eq!(user.id, id);
                assert!(ids.insert(id));
            }
            (Some(id), Err(Error::IdentityMismatch)) => {
                let holder = fx.store.user_by_id(id).await.unwrap().unwrap();
                assert!(holder.subject.starts_with("assigned-"), "{holder:?}");
            }
            (Some(id), Err(other)) => panic!("{id}: {other:?}"),
        }
    }
}

/// The service signs a token's user in with the provider's id, refuses another, and signs the
/// user in again with it once they were removed.
async fn sign_in_takes_the_provider_id(fx: Fixture) {
    let service = PreferenceService::new(Arc::new(fx.store.clone()), prefs_domain::Limits::default());
    let principal = |id: i64| Principal {
        subject: "sub-alice".into(),
        username: name("alice"),
        staff: false,
        admin: false,
        scopes: Default::default(),
        client_id: None,
        provider_id: Some(UserId(id)),
    };
    let actor = service.sign_in(principal(31)).await.unwrap();
    assert_eq!(actor.user.id, UserId(31));
    for wrong in [32, 0, -31] {
        let refused = service.sign_in(principal(wrong)).await;
        assert!(matches!(refused, Err(Error::IdentityMismatch)), "{wrong}: {refused:?}");
    }
    // Removed meanwhile by another instance: the stale actor's write signs alice in again, with
    // the same id.
    let other = fx.scratch.store().await;
    assert!(other.remove_user(actor.user.id).await.unwrap());
    service.put(&actor, &UserRef::Me, &GLOBAL, "lang", json!("fr"), &Preconditions::default()).await.unwrap();
    assert_eq!(keys(&other.namespace(UserId(31), &GLOBAL).await.unwrap()), ["lang"]);
    // Operators too.
    let bob = service.add_user("sub-bob", "bob", Some(UserId(77))).await.unwrap();
    assert_eq!(bob.id, UserId(77));
    let refused = service.add_user("sub-carol", "carol", Some(UserId(0))).await;
    assert!(matches!(&refused, Err(Error::Invalid(errors)) if errors[0].field == "id"), "{refused:?}");
    assert!(matches!(
        service.add_user("sub-carol", "carol", Some(UserId(77))).await,
        Err(Error::IdentityMismatch)
    ));
    assert_ne!(service.add_user("sub-carol", "carol", None).await.unwrap().id, UserId(77));
}

async fn users_are_found_by_exact_id_and_username(fx: Fixture) {
    let alice = fx.store.provision("sub-a", &name("Zoë Ünal"), None).await.unwrap();
    assert_eq!(fx.store.user_by_id(alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(fx.store.user_by_username(&name("Zoë Ünal")).await.unwrap(), Some(alice.clone()));
    assert_eq!(fx.store.user_by_username(&name("zoë ünal")).await.unwrap(), None);
    assert_eq!(fx.store.user_by_username(&name("nobody")).await.unwrap(), None);
    assert_eq!(fx.store.user_by_id(UserId(alice.id.0 + 1000)).await.unwrap(), None);
}

async fn remove_user_erases_every_preference_and_reports_existence(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let bob = user(&fx.store, "bob").await;
    let global = put(&fx.store, &alice, &GLOBAL, "a", json!(1)).await;
    put(&fx.store, &alice, &client("appA"), "b", json!(2)).await;
    let kept = put(&fx.store, &bob, &GLOBAL, "a", json!(3)).await;

    assert!(fx.store.remove_user(alice.id).await.unwrap());
    assert_eq!(fx.store.user_by_id(alice.id).await.unwrap(), None);
    assert_eq!(fx.store.user_by_username(&alice.username).await.unwrap(), None);
    let gone = |out: Result<_>| matches!(out, Err(Error::UserNotFound));
    assert!(gone(fx.store.namespace(alice.id, &GLOBAL).await.map(drop)));
    assert!(gone(fx.store.namespace(alice.id, &client("appA")).await.map(drop)));
    assert!(gone(fx.store.preference_by_id(alice.id, &GLOBAL, global.id).await.map(drop)));
    assert_eq!(fx.store.namespace(bob.id, &GLOBAL).await.unwrap(), vec![kept.clone()]);
    assert!(!fx.store.remove_user(alice.id).await.unwrap());

    // Ids are never reused: the same subject comes back as a new user with nothing.
    let back = user(&fx.store, "alice").await;
    assert!(back.id > bob.id, "{back:?}");
    assert!(fx.store.namespace(back.id, &GLOBAL).await.unwrap().is_empty());
    let again = put(&fx.store, &back, &GLOBAL, "a", json!(1)).await;
    assert!(again.id > kept.id);
}

// ----- reads -----

async fn namespaces_are_ordered_by_id_and_isolated(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let bob = user(&fx.store, "bob").await;
    for k in ["c", "a", "b"] {
        put(&fx.store, &alice, &GLOBAL, k, json!(k)).await;
    }
    put(&fx.store, &alice, &client("appA"), "a", json!("app")).await;
    put(&fx.store, &bob, &GLOBAL, "a", json!("bob")).await;

    let global = fx.store.namespace(alice.id, &GLOBAL).await.unwrap();
    assert_eq!(keys(&global), ["c", "a", "b"]);
    assert!(global.windows(2).all(|w| w[0].id < w[1].id));
    assert!(global.iter().all(|p| p.user_id == alice.id && p.namespace == GLOBAL));
    let app = fx.store.namespace(alice.id, &client("appA")).await.unwrap();
    assert_eq!(app.iter().map(|p| p.value.as_json()).collect::<Vec<_>>(), [&json!("app")]);
    assert_eq!(fx.store.namespace(bob.id, &GLOBAL).await.unwrap()[0].value.as_json(), &json!("bob"));
    assert!(fx.store.namespace(bob.id, &client("appA")).await.unwrap().is_empty());
    assert!(fx.store.namespace(alice.id, &client("appB")).await.unwrap().is_empty());

    // `edit` is shown the same namespace, in the same order.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let saw = seen.clone();
    fx.store
        .modify(
            alice.id,
            &GLOBAL,
            Arc::new(move |current| {
                *saw.lock().unwrap() = current.to_vec();
                Ok(vec![])
            }),
        )
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), global);
}

async fn all_preferences_spans_namespaces_of_one_user(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let bob = user(&fx.store, "bob").await;
    put(&fx.store, &alice, &client("zeta"), "z", json!(1)).await;
    put(&fx.store, &alice, &GLOBAL, "g2", json!(2)).await;
    put(&fx.store, &alice, &client("appA"), "a", json!(3)).await;
    put(&fx.store, &alice, &GLOBAL, "g1", json!(4)).await;
    put(&fx.store, &bob, &GLOBAL, "b", json!(5)).await;
    let all = fx.store.all_preferences(alice.id).await.unwrap();
    let seen: Vec<(&str, &str)> = all.iter().map(|p| (p.namespace.as_str(), p.key.as_str())).collect();
    assert_eq!(seen, [("appA", "a"), ("global", "g2"), ("global", "g1"), ("zeta", "z")]);
    let ghost = fx.store.all_preferences(UserId(alice.id.0 + 1000)).await;
    assert!(matches!(ghost, Err(Error::UserNotFound)), "{ghost:?}");
}

async fn preference_lookups_respect_user_and_namespace(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let bob = user(&fx.store, "bob").await;
    let a = put(&fx.store, &alice, &GLOBAL, "a", json!(1)).await;
    put(&fx.store, &alice, &client("appA"), "other", json!(2)).await;

    assert_eq!(fx.store.preference(alice.id, &GLOBAL, &key("a")).await.unwrap(), Some(a.clone()));
    assert_eq!(fx.store.preference(alice.id, &client("appA"), &key("a")).await.unwrap(), None);
    assert_eq!(fx.store.preference(bob.id, &GLOBAL, &key("a")).await.unwrap(), None);
    assert_eq!(fx.store.preference(alice.id, &GLOBAL, &key("missing")).await.unwrap(), None);

    assert_eq!(fx.store.preference_by_id(alice.id, &GLOBAL, a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(fx.store.preference_by_id(bob.id, &GLOBAL, a.id).await.unwrap(), None);
    assert_eq!(fx.store.preference_by_id(alice.id, &client("appA"), a.id).await.unwrap(), None);
    assert_eq!(
        fx.store.preference_by_id(alice.id, &GLOBAL, PreferenceId(a.id.0 + 1000)).await.unwrap(),
        None
    );
}

// ----- modify -----

async fn put_of_a_new_key_starts_at_version_1(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let before = Utc::now();
    let after = apply(
        &fx.store,
        &alice,
        &client("appA"),
        vec![Change::Put { key: key("theme"), value: value(json!("dark")) }],
    )
    .await
    .unwrap();
    assert_eq!(after.len(), 1);
    let p = &after[0];
    assert_eq!((p.user_id, &p.namespace, p.key.as_str()), (alice.id, &client("appA"), "theme"));
    assert_eq!(p.value.as_json(), &json!("dark"));
    assert_eq!(p.version, 1);
    assert_eq!(p.created_at, p.updated_at);
    let skew = chrono::Duration::seconds(60);
    assert!(p.created_at > before - skew && p.created_at < Utc::now() + skew, "{p:?}");
    assert_eq!(
        fx.store.preference(alice.id, &client("appA"), &key("theme")).await.unwrap().as_ref(),
        Some(p)
    );
}

async fn put_of_an_existing_key_keeps_id_and_created_at(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let first = put(&fx.store, &alice, &GLOBAL, "theme", json!("dark")).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = put(&fx.store, &alice, &GLOBAL, "theme", json!({"mode": "light"})).await;
    assert_eq!(second.id, first.id);
    assert_eq!(second.created_at, first.created_at);
    assert!(second.updated_at > first.updated_at, "{first:?} {second:?}");
    assert_eq!(second.version, 2);
    assert_eq!(second.value.as_json(), &json!({"mode": "light"}));
    let third = put(&fx.store, &alice, &GLOBAL, "theme", json!({"mode": "light"})).await;
    assert_eq!(third.version, 3);
}

async fn delete_removes_one_key_and_ignores_missing_ones(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    put(&fx.store, &alice, &GLOBAL, "a", json!(1)).await;
    let b = put(&fx.store, &alice, &GLOBAL, "b", json!(2)).await;
    put(&fx.store, &alice, &client("appA"), "a", json!(3)).await;
    let after = apply(&fx.store, &alice, &GLOBAL, vec![Change::Delete { key: key("a") }]).await.unwrap();
    assert_eq!(after, vec![b.clone()]);
    let after =
        apply(&fx.store, &alice, &GLOBAL, vec![Change::Delete { key: key("missing") }]).await.unwrap();
    assert_eq!(after, vec![b]);
    assert_eq!(keys(&fx.store.namespace(alice.id, &client("appA")).await.unwrap()), ["a"]);
}

async fn rename_keeps_id_and_value(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let a = put(&fx.store, &alice, &GLOBAL, "a", json!({"x": [1, 2]})).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let after = apply(&fx.store, &alice, &GLOBAL, vec![Change::Rename { from: key("a"), to: key("z") }])
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    let z = &after[0];
    assert_eq!((z.id, z.key.as_str(), &z.value, z.created_at), (a.id, "z", &a.value, a.created_at));
    assert_eq!(z.version, 2);
    assert!(z.updated_at > a.updated_at);
    assert_eq!(fx.store.preference(alice.id, &GLOBAL, &key("a")).await.unwrap(), None);

    // Rename then Put, as a record update does: one id throughout.
    let changes = vec![
        Change::Rename { from: key("z"), to: key("y") },
        Change::Put { key: key("y"), value: value(json!(7)) },
    ];
    let after = apply(&fx.store, &alice, &GLOBAL, changes).await.unwrap();
    assert_eq!(
        (after[0].id, after[0].key.as_str(), after[0].value.as_json(), after[0].version),
        (a.id, "y", &json!(7), 4)
    );
}

async fn a_failing_edit_writes_nothing_and_its_error_comes_back(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let a = put(&fx.store, &alice, &GLOBAL, "a", json!(1)).await;
    let failed = fx.store.modify(alice.id, &GLOBAL, Arc::new(|_| Err(Error::TooManyKeys { limit: 7 }))).await;
    assert!(matches!(failed, Err(Error::TooManyKeys { limit: 7 })), "{failed:?}");
    let failed = fx.store.modify(alice.id, &GLOBAL, Arc::new(|_| Err(Error::PreferenceNotFound))).await;
    assert!(matches!(failed, Err(Error::PreferenceNotFound)), "{failed:?}");
    assert_eq!(fx.store.namespace(alice.id, &GLOBAL).await.unwrap(), vec![a]);
}

async fn a_failing_change_rolls_back_the_whole_modify(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let a = put(&fx.store, &alice, &GLOBAL, "a", json!(1)).await;
    let b = put(&fx.store, &alice, &GLOBAL, "b", json!(2)).await;
    // The rename target is taken: the whole write fails, the earlier changes included.
    let changes = vec![
        Change::Put { key: key("c"), value: value(json!(3)) },
        Change::Put { key: key("a"), value: value(json!(10)) },
        Change::Rename { from: key("a"), to: key("b") },
    ];
    let failed = apply(&fx.store, &alice, &GLOBAL, changes).await;
    assert!(matches!(failed, Err(Error::Internal(_))), "{failed:?}");
    let failed =
        apply(&fx.store, &alice, &GLOBAL, vec![Change::Rename { from: key("nope"), to: key("d") }]).await;
    assert!(matches!(failed, Err(Error::Internal(_))), "{failed:?}");
    assert_eq!(fx.store.namespace(alice.id, &GLOBAL).await.unwrap(), vec![a, b]);
}

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

async fn modify_returns_the_namespace_as_stored(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    for k in ["a", "b", "c", "d"] {
        put(&fx.store, &alice, &GLOBAL, k, json!(k)).await;
    }
    let returned = apply(
        &fx.store,
        &alice,
        &GLOBAL,
        vec![
            Change::Put { key: key("new"), value: value(json!({"n": 1})) },
            Change::Delete { key: key("b") },
            Change::Put { key: key("c"), value: value(json!([3])) },
            Change::Rename { from: key("a"), to: key("z") },
        ],
    )
    .await
    .unwrap();
    assert_eq!(keys(&returned), ["z", "c", "d", "new"]);
    assert_eq!(returned, fx.store.namespace(alice.id, &GLOBAL).await.unwrap());
}

async fn modify_of_an_unknown_user_is_user_not_found(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let ghost = UserId(alice.id.0 + 1000);
    let put_a = edit(vec![Change::Put { key: key("a"), value: value(json!(1)) }]);
    assert!(matches!(fx.store.modify(ghost, &GLOBAL, put_a.clone()).await, Err(Error::UserNotFound)));
    assert!(fx.store.remove_user(alice.id).await.unwrap());
    assert!(matches!(fx.store.modify(alice.id, &GLOBAL, put_a).await, Err(Error::UserNotFound)));
}

async fn reads_of_an_unknown_user_are_user_not_found(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let ghost = UserId(alice.id.0 + 1000);
    let found = put(&fx.store, &alice, &GLOBAL, "a", json!(1)).await;
    let gone = |out: Result<_>| matches!(out, Err(Error::UserNotFound));
    assert!(gone(fx.store.namespace(ghost, &GLOBAL).await.map(drop)));
    assert!(gone(fx.store.preference(ghost, &GLOBAL, &key("a")).await.map(drop)));
    assert!(gone(fx.store.preference_by_id(ghost, &GLOBAL, found.id).await.map(drop)));
    assert!(gone(fx.store.all_preferences(ghost).await.map(drop)));
    // An existing user without preferences reads as empty.
    assert_eq!(fx.store.namespace(alice.id, &client("app")).await.unwrap(), vec![]);
    assert_eq!(fx.store.preference(alice.id, &GLOBAL, &key("b")).await.unwrap(), None);
    assert_eq!(fx.store.preference_by_id(alice.id, &client("app"), found.id).await.unwrap(), None);
}

/// A read never answers with less than an acknowledged write, whichever instance made it and
/// whatever the reader read before (SQLite readers remember namespaces until the next commit).
async fn writes_through_another_instance_are_read_at_once(fx: Fixture) {
    let other = fx.impatient_store(2).await;
    let alice = user(&fx.store, "alice").await;
    let lang = |preferences: Vec<Preference>| -> Vec<(String, Value)> {
        preferences.into_iter().map(|p| (p.key.as_str().to_owned(), p.value.as_json().clone())).collect()
    };
    let id = put(&fx.store, &alice, &GLOBAL, "lang", json!("en")).await.id;
    let one = |found: Option<Preference>| found.map(|p| p.value.as_json().clone());
    for round in 0..3 {
        // Each kind of read, twice (the second may come from a cache), then a write elsewhere.
        let before = fx.store.namespace(alice.id, &GLOBAL).await.unwrap();
        assert_eq!(before, fx.store.namespace(alice.id, &GLOBAL).await.unwrap());
        let by_key = fx.store.preference(alice.id, &GLOBAL, &key("lang")).await.unwrap();
        assert_eq!(by_key, fx.store.preference(alice.id, &GLOBAL, &key("lang")).await.unwrap());
        let by_id = fx.store.preference_by_id(alice.id, &GLOBAL, id).await.unwrap();
        assert_eq!(by_id, fx.store.preference_by_id(alice.id, &GLOBAL, id).await.unwrap());
        assert_eq!(fx.store.preference(alice.id, &GLOBAL, &key("new")).await.unwrap(), None);
        put(&other, &alice, &GLOBAL, "lang", json!(round)).await;
        put(&other, &alice, &GLOBAL, "new", json!(round)).await;
        let after = lang(fx.store.namespace(alice.id, &GLOBAL).await.unwrap());
        assert_eq!(after, [("lang".to_owned(), json!(round)), ("new".to_owned(), json!(round))]);
        let by_key = fx.store.preference(alice.id, &GLOBAL, &key("lang")).await.unwrap();
        assert_eq!(one(by_key), Some(json!(round)));
        let by_id = fx.store.preference_by_id(alice.id, &GLOBAL, id).await.unwrap();
        assert_eq!(one(by_id), Some(json!(round)));
        assert_eq!(
            one(fx.store.preference(alice.id, &GLOBAL, &key("new")).await.unwrap()),
            Some(json!(round))
        );
        apply(&other, &alice, &GLOBAL, vec![Change::Delete { key: key("new") }]).await.unwrap();
    }
    // Its own writes too, and every namespace apart.
    put(&fx.store, &alice, &GLOBAL, "lang", json!("mine")).await;
    put(&other, &alice, &client("app"), "theme", json!("dark")).await;
    assert_eq!(
        lang(fx.store.namespace(alice.id, &GLOBAL).await.unwrap()),
        [("lang".to_owned(), json!("mine"))]
    );
    assert_eq!(
        lang(fx.store.namespace(alice.id, &client("app")).await.unwrap()),
        [("theme".to_owned(), json!("dark"))]
    );
    assert!(other.remove_user(alice.id).await.unwrap());
    assert!(matches!(fx.store.namespace(alice.id, &GLOBAL).await, Err(Error::UserNotFound)));
}

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

async fn a_user_removed_through_another_instance_is_noticed(fx: Fixture) {
    let other = fx.impatient_store(2).await;
    let service = PreferenceService::new(Arc::new(fx.store.clone()), prefs_domain::Limits::default());
    let principal = Principal {
        subject: "sub-alice".into(),
        username: name("alice"),
        staff: false,
        admin: false,
        scopes: Default::default(),
        client_id: None,
        provider_id: None,
    };
    let actor = service.sign_in(principal.clone()).await.unwrap();
    // Another instance removes alice; she signs in there again (a new user) and writes.
    assert!(other.remove_user(actor.user.id).await.unwrap());
    let again = user(&other, "alice").await;
    assert_ne!(again.id, actor.user.id);
    put(&other, &again, &GLOBAL, "lang", json!("fr")).await;
    // This store remembers the removed user until a read finds it gone; the service then signs
    // alice in again, so her read sees the other instance's write at once.
    assert_eq!(user(&fx.store, "alice").await.id, actor.user.id);
    let stale = service.sign_in(principal.clone()).await.unwrap();
    let read = service.namespace(&stale, &UserRef::Me, &GLOBAL).await.unwrap();
    assert_eq!(
        read.iter().map(|p| (p.key.as_str(), p.value.as_json().clone())).collect::<Vec<_>>(),
        [("lang", json!("fr"))]
    );
    assert_eq!(user(&fx.store, "alice").await.id, again.id);
    // A write through a stale actor lands on the new user too.
    other.remove_user(again.id).await.unwrap();
    let third = user(&other, "alice").await;
    service
        .put(&stale, &UserRef::Me, &GLOBAL, "theme", json!("dark"), &Preconditions::default())
        .await
        .unwrap();
    let written = other.namespace(third.id, &GLOBAL).await.unwrap();
    assert_eq!(written.iter().map(|p| p.key.as_str()).collect::<Vec<_>>(), ["theme"]);
}

async fn json_values_round_trip_exactly(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let values = [
        json!({"nested": {"list": [1, "two", {"three": [null, true, false]}], "empty": {}}}),
        json!({"a": null}),
        json!("Zoë, 名前, 🎉, \u{2028}, \u{ffff}"),
        json!("a\u{0000}b"),
        json!("\"quoted\" \\ back\nslash\t/ <script>"),
        json!(""),
        json!(9_007_199_254_740_993_u64),
        json!(-9_007_199_254_740_993_i64),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(0),
        json!(1.5),
        json!(0.1),
        json!(-0.0),
        json!(0.300_000_000_000_000_04),
        json!(1e300),
        json!(f64::MAX),
        json!(f64::MIN_POSITIVE),
        json!(5e-324),
        // Printed and parsed to a neighbouring float by serde_json without `float_roundtrip`.
        json!(1.071_566_039_146_582_6e-75),
        json!(-1.819_967_304_027_17e-179),
        json!(true),
        json!([]),
        json!([[[[]]]]),
    ];
    let changes = values
        .iter()
        .enumerate()
        .map(|(i, v)| Change::Put { key: key(&format!("v{i}")), value: value(v.clone()) })
        .collect();
    let written = apply(&fx.store, &alice, &GLOBAL, changes).await.unwrap();
    let read = fx.store.namespace(alice.id, &GLOBAL).await.unwrap();
    assert_eq!(read, written);
    for (i, v) in values.iter().enumerate() {
        let stored = fx.store.preference(alice.id, &GLOBAL, &key(&format!("v{i}"))).await.unwrap().unwrap();
        assert_eq!(stored.value.as_json(), v, "v{i}");
        assert_eq!(stored.value.as_json().to_string(), v.to_string(), "v{i}");
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

async fn ping_answers(fx: Fixture) {
    fx.store.ping().await.unwrap();
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

/// Reads under way at once (PostgreSQL answers them in one query) each get their own answer,
/// whatever each asks for: a namespace, a key, an id, nothing, or a user that does not exist.
async fn reads_under_way_together_each_get_their_own_answer(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let bob = user(&fx.store, "bob").await;
    let ghost = UserId(bob.id.0 + 1000);
    let a = put(&fx.store, &alice, &GLOBAL, "a", json!(1)).await;
    let b = put(&fx.store, &alice, &GLOBAL, "b", json!([2])).await;
    let theme = put(&fx.store, &alice, &client("app"), "theme", json!({"dark": true})).await;
    let (store, app, key_a, key_b, key_theme) = (&fx.store, client("app"), key("a"), key("b"), key("theme"));
    // Twice: the second time SQLite answers from its cache.
    for _ in 0..2 {
        let (
            global,
            in_app,
            by_key,
            by_id,
            no_key,
            id_elsewhere,
            empty,
            ghost_namespace,
            ghost_key,
            ghost_id,
        ) = tokio::join!(
            store.namespace(alice.id, &GLOBAL),
            store.namespace(alice.id, &app),
            store.preference(alice.id, &GLOBAL, &key_b),
            store.preference_by_id(alice.id, &GLOBAL, a.id),
            store.preference(alice.id, &GLOBAL, &key_theme),
            store.preference_by_id(alice.id, &GLOBAL, theme.id),
            store.namespace(bob.id, &app),
            store.namespace(ghost, &GLOBAL),
            store.preference(ghost, &GLOBAL, &key_a),
            store.preference_by_id(ghost, &GLOBAL, a.id),
        );
        assert_eq!(global.unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(in_app.unwrap(), vec![theme.clone()]);
        assert_eq!(by_key.unwrap(), Some(b.clone()));
        assert_eq!(by_id.unwrap(), Some(a.clone()));
        assert_eq!(no_key.unwrap(), None);
        assert_eq!(id_elsewhere.unwrap(), None);
        assert_eq!(empty.unwrap(), vec![]);
        assert!(matches!(ghost_namespace, Err(Error::UserNotFound)), "{ghost_namespace:?}");
        assert!(matches!(ghost_key, Err(Error::UserNotFound)), "{ghost_key:?}");
        assert!(matches!(ghost_id, Err(Error::UserNotFound)), "{ghost_id:?}");
    }
}

/// Writers that read back what they wrote, many at once on several threads, read their own
/// write every time, with every other reader's reads under way meanwhile.
async fn concurrent_readers_see_their_own_writes(fx: Fixture) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = fx.store.clone();
        let user = user(&store, &format!("user{i}")).await;
        tasks.push(tokio::spawn(async move {
            for round in 0..30 {
                let written = put(&store, &user, &GLOBAL, "n", json!(round)).await;
                let namespace = store.namespace(user.id, &GLOBAL).await.unwrap();
                assert_eq!(namespace, vec![written.clone()]);
                assert_eq!(
                    store.preference(user.id, &GLOBAL, &key("n")).await.unwrap(),
                    Some(written.clone())
                );
                assert_eq!(
                    store.preference_by_id(user.id, &GLOBAL, written.id).await.unwrap(),
                    Some(written)
                );
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
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

/// Concurrent writes, half of which fail halfway (a put, then a rename of a missing key): each
/// failing one rolls back alone (SQLite commits concurrent writes together, each in a savepoint),
/// and every other one lands.
async fn concurrent_writes_that_fail_halfway_roll_back_alone(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store = fx.store.clone();
        tasks.spawn(async move {
            let mut changes = vec![Change::Put { key: key(&format!("k{i:02}")), value: value(json!(i)) }];
            if i % 2 == 1 {
                changes.push(Change::Rename { from: key("missing"), to: key(&format!("r{i:02}")) });
            }
            (i, store.modify(alice.id, &GLOBAL, edit(changes)).await)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (i, out) = done.unwrap();
        assert_eq!(out.is_ok(), i % 2 == 0, "{i}: {out:?}");
    }
    let stored = fx.store.namespace(alice.id, &GLOBAL).await.unwrap();
    let mut stored = keys(&stored);
    stored.sort_unstable();
    let expected: Vec<String> = (0..40).step_by(2).map(|i| format!("k{i:02}")).collect();
    assert_eq!(stored, expected);
}

async fn concurrent_puts_of_distinct_keys_all_land(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = fx.store.clone();
        tasks.spawn(async move {
            let put = Change::Put { key: key(&format!("k{i:02}")), value: value(json!(i)) };
            store.modify(alice.id, &GLOBAL, edit(vec![put])).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    let mut stored: Vec<_> = fx.store.namespace(alice.id, &GLOBAL).await.unwrap();
    stored.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(stored.len(), 20);
    for (i, p) in stored.iter().enumerate() {
        assert_eq!(
            (p.key.as_str(), p.value.as_json(), p.version),
            (format!("k{i:02}").as_str(), &json!(i), 1)
        );
    }
}

async fn concurrent_merges_into_one_value_lose_nothing(fx: Fixture) {
    let alice = user(&fx.store, "alice").await;
    let store = Arc::new(fx.store.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            // A read-modify-write of one object value, as a merge patch of `{"s": {"m<i>": i}}`.
            let merge = Arc::new(move |current: &[Preference]| {
                let mut members = current
                    .iter()
                    .find(|p| p.key.as_str() == "s")
                    .map_or_else(serde_json::Map::new, |p| p.value.as_json().as_object().unwrap().clone());
                members.insert(format!("m{i}"), json!(i));
                Ok(vec![Change::Put { key: key("s"), value: value(Value::Object(members)) }])
            });
            store.modify(alice.id, &GLOBAL, merge).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    let s = fx.store.preference(alice.id, &GLOBAL, &key("s")).await.unwrap().unwrap();
    let members = s.value.as_json().as_object().unwrap();
    assert_eq!(members.len(), 20, "{members:?}");
    assert!((0..20).all(|i| members[&format!("m{i}")] == json!(i)));
    assert_eq!(s.version, 20);
}

// ----- SQLite only: its file -----

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
