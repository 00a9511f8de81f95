//! The contract suite of the storage ports (feature `testing`): the rules of
//! [`UserStore`](crate::UserStore) and [`PreferenceStore`](crate::PreferenceStore) that hold for
//! every store, as tests any store runs. A store passes when [`run_all`] returns; each test is
//! also public on its own, named after its rule.
//!
//! The suite sees the store through [`StoreUnderTest`], made fresh (empty) for each test.
//! `Arc<dyn Store>` is one, for a store that runs as a single instance:
//!
//! ```
//! use std::sync::Arc;
//! use prefs_domain::{MemoryStore, Store};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! prefs_domain::testing::run_all(|| async { Arc::new(MemoryStore::new()) as Arc<dyn Store> }).await;
//! # });
//! ```
//!
//! A store of several instances over shared data (a database) implements [`StoreUnderTest`]
//! to give the suite other instances over the same data, and threads to run on
//! ([`StoreUnderTest::spawn`]). The suite runs on any async runtime; its own concurrency is
//! that of [`futures_util`]'s joins and of `spawn`.
//!
//! Tests of one store only (its caches, connections, files, SQL) belong with that store.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, LocalBoxFuture, join_all, join5};
use serde_json::{Value, json};

use crate::access::Principal;
use crate::conditions::Preconditions;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::model::{
    Change, ClientId, Namespace, Preference, PreferenceId, PreferenceKey, PreferenceValue, User, UserId,
    Username,
};
use crate::ports::{Edit, Store};
use crate::service::{PreferenceService, UserRef};

/// A store under test, made fresh for each test by the constructor given to [`run_all`].
#[async_trait]
pub trait StoreUnderTest: Send + Sync {
    /// The store, over data of its own that no other test sees.
    fn store(&self) -> Arc<dyn Store>;

    /// Another instance over the same data, as another process of the service would have: it
    /// shares the data with [`StoreUnderTest::store`], and nothing either remembers. A store of
    /// one instance returns itself.
    async fn another(&self) -> Arc<dyn Store>;

    /// Runs `task` as a task of its own (on another thread where the runtime has several); the
    /// future returned ends when it does, and panics if it panicked. By default it is `task`
    /// itself, which runs where it is awaited, concurrently with the tasks awaited with it.
    fn spawn(&self, task: BoxFuture<'static, ()>) -> BoxFuture<'static, ()> {
        task
    }
}

#[async_trait]
impl StoreUnderTest for Arc<dyn Store> {
    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(self)
    }

    async fn another(&self) -> Arc<dyn Store> {
        Arc::clone(self)
    }
}

/// One test of the suite.
#[derive(Clone, Copy)]
pub struct ContractTest {
    /// The test's name: the name of its function in this module.
    pub name: &'static str,
    /// Runs it; it panics when the store breaks the rule.
    pub run: for<'a> fn(&'a dyn StoreUnderTest) -> LocalBoxFuture<'a, ()>,
}

/// Runs every test of [`CONTRACT`], in order, each on a store `make` makes for it.
///
/// # Panics
/// On the first test the store fails, after writing its name to stderr.
pub async fn run_all<S: StoreUnderTest, F: Future<Output = S>>(make: impl Fn() -> F) {
    run(CONTRACT, make).await;
}

/// Runs `tests` (some of [`CONTRACT`]), in order, each on a store `make` makes for it.
///
/// # Panics
/// As [`run_all`].
pub async fn run<'a, S: StoreUnderTest, F: Future<Output = S>>(
    tests: impl IntoIterator<Item = &'a ContractTest>,
    make: impl Fn() -> F,
) {
    for test in tests {
        let subject = make().await;
        if let Err(panic) = AssertUnwindSafe((test.run)(&subject)).catch_unwind().await {
            eprintln!("contract test `{}` failed", test.name);
            std::panic::resume_unwind(panic);
        }
    }
}

macro_rules! contract {
    ($($name:ident,)*) => {
        /// Every test of the suite, in the order [`run_all`] runs them.
        pub const CONTRACT: &[ContractTest] =
            &[$(ContractTest { name: stringify!($name), run: |subject| Box::pin($name(subject)) },)*];
    };
}

contract! {
    provision_creates_a_user_once,
    provision_follows_a_username_change,
    provision_refuses_a_username_held_by_another_subject,
    provision_with_an_id_creates_the_user_with_exactly_it,
    provision_refuses_an_id_that_is_not_the_accounts,
    a_remembered_user_does_not_decide_an_id,
    assigned_ids_never_collide_with_explicit_ids,
    a_removed_users_id_given_again_starts_empty,
    concurrent_first_provisions_with_an_id_give_one_user,
    concurrent_first_provisions_without_an_id_give_one_user,
    concurrent_explicit_and_assigned_ids_never_collide,
    sign_in_takes_the_provider_id,
    users_are_found_by_exact_id_and_username,
    users_are_found_by_subject_without_being_created,
    remove_user_erases_every_preference_and_reports_existence,
    ids_are_never_reused,
    namespaces_are_ordered_by_id_and_isolated,
    preference_lookups_respect_user_and_namespace,
    all_preferences_spans_namespaces_of_one_user,
    put_of_a_new_key_starts_at_version_1,
    put_of_an_existing_key_keeps_id_and_created_at,
    delete_removes_one_key_and_ignores_missing_ones,
    rename_keeps_id_and_value,
    a_failing_edit_writes_nothing_and_its_error_comes_back,
    a_failing_change_rolls_back_the_whole_modify,
    modify_returns_the_namespace_as_stored,
    modify_of_an_unknown_user_is_user_not_found,
    reads_of_an_unknown_user_are_user_not_found,
    a_user_removed_through_another_instance_is_noticed,
    writes_through_another_instance_are_read_at_once,
    json_values_round_trip_exactly,
    ping_answers,
    reads_under_way_together_each_get_their_own_answer,
    concurrent_readers_see_their_own_writes,
    concurrent_puts_of_distinct_keys_all_land,
    concurrent_writes_that_fail_halfway_roll_back_alone,
    concurrent_merges_into_one_value_lose_nothing,
}

// ----- helpers, for this suite and stores' own tests -----

/// A valid username.
///
/// # Panics
/// When `s` is not one.
pub fn name(s: &str) -> Username {
    Username::parse(s).unwrap()
}

/// A valid key.
///
/// # Panics
/// When `s` is not one.
pub fn key(s: &str) -> PreferenceKey {
    PreferenceKey::parse(s).unwrap()
}

/// A valid value within the default limits.
///
/// # Panics
/// When `v` is not one.
pub fn value(v: Value) -> PreferenceValue {
    PreferenceValue::new(v, "value", &Limits::default()).unwrap()
}

/// The namespace of client `s`.
///
/// # Panics
/// When `s` is not a valid client id.
pub fn client(s: &str) -> Namespace {
    Namespace::Client(ClientId::parse(s).unwrap())
}

/// The global namespace.
pub const GLOBAL: Namespace = Namespace::Global;

/// Provisions a user whose subject is `sub-<username>`.
///
/// # Panics
/// When provisioning fails.
pub async fn user(store: &dyn Store, username: &str) -> User {
    store.provision(&format!("sub-{username}"), &name(username), None).await.unwrap()
}

/// Puts one key and returns the stored preference.
///
/// # Panics
/// When the write fails.
pub async fn put(store: &dyn Store, user: &User, namespace: &Namespace, k: &str, v: Value) -> Preference {
    let k = key(k);
    let after = apply(store, user, namespace, vec![Change::Put { key: k.clone(), value: value(v) }]);
    after.await.unwrap().into_iter().find(|p| p.key == k).unwrap()
}

/// Applies `changes` to a namespace of `user` in one `modify`.
///
/// # Errors
/// As [`PreferenceStore::modify`](crate::PreferenceStore::modify).
pub async fn apply(
    store: &dyn Store,
    user: &User,
    namespace: &Namespace,
    changes: Vec<Change>,
) -> Result<Vec<Preference>> {
    store.modify(user.id, namespace, edit(changes)).await
}

/// An edit that always plans `changes`.
pub fn edit(changes: Vec<Change>) -> Arc<Edit> {
    Arc::new(move |_| Ok(changes.clone()))
}

/// The keys of `preferences`, in order.
pub fn keys(preferences: &[Preference]) -> Vec<&str> {
    preferences.iter().map(|p| p.key.as_str()).collect()
}

/// Runs `tasks` at once, each with [`StoreUnderTest::spawn`], and returns what each returned, in
/// order.
async fn together<T, F>(subject: &dyn StoreUnderTest, tasks: impl IntoIterator<Item = F>) -> Vec<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let (slots, running): (Vec<_>, Vec<_>) = tasks
        .into_iter()
        .map(|task| {
            let slot = Arc::new(Mutex::new(None));
            let fill = Arc::clone(&slot);
            let run = async move {
                let out = task.await;
                *fill.lock().unwrap() = Some(out);
            };
            (slot, subject.spawn(Box::pin(run)))
        })
        .unzip();
    join_all(running).await;
    slots.into_iter().map(|slot| slot.lock().unwrap().take().expect("every task ran to its end")).collect()
}

/// Lets the clock move on, so that timestamps taken before and after differ.
fn let_time_pass() {
    std::thread::sleep(Duration::from_millis(5));
}

/// A principal without roles, scopes or client, and with `provider_id`.
fn principal(username: &str, provider_id: Option<UserId>) -> Principal {
    Principal {
        subject: format!("sub-{username}"),
        username: name(username),
        staff: false,
        admin: false,
        scopes: Default::default(),
        client_id: None,
        provider_id,
    }
}

// ----- users -----

/// A first provisioning creates the user; the next ones return it as it is.
pub async fn provision_creates_a_user_once(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = store.provision("sub-1", &name("alice"), None).await.unwrap();
    assert_eq!((alice.subject.as_str(), alice.username.as_str()), ("sub-1", "alice"));
    let again = store.provision("sub-1", &name("alice"), None).await.unwrap();
    assert_eq!(again, alice);
    let bob = user(&*store, "bob").await;
    assert_ne!(bob.id, alice.id);
}

/// A new username replaces the old one, which is free again.
pub async fn provision_follows_a_username_change(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let renamed = store.provision(&alice.subject, &name("alice.b@example.com"), None).await.unwrap();
    assert_eq!(renamed.id, alice.id);
    assert_eq!(renamed.username.as_str(), "alice.b@example.com");
    assert_eq!(store.user_by_username(&name("alice")).await.unwrap(), None);
    assert_eq!(store.user_by_id(alice.id).await.unwrap(), Some(renamed.clone()));
    // And back: the old name was freed.
    assert_eq!(store.provision(&alice.subject, &name("alice"), None).await.unwrap(), alice);
}

/// A username is one subject's: another subject, new or known, cannot take it.
pub async fn provision_refuses_a_username_held_by_another_subject(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let bob = user(&*store, "bob").await;
    for sub in ["sub-new", bob.subject.as_str()] {
        let taken = store.provision(sub, &alice.username, None).await;
        assert!(matches!(&taken, Err(Error::UsernameTaken(u)) if u == "alice"), "{sub}: {taken:?}");
    }
    assert_eq!(store.user_by_id(bob.id).await.unwrap(), Some(bob));
    assert_eq!(store.user_by_username(&alice.username).await.unwrap(), Some(alice));
}

// ----- users with the identity provider's ids -----

/// A new subject with an id gets exactly it, in every instance, whatever username follows.
pub async fn provision_with_an_id_creates_the_user_with_exactly_it(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = store.provision("sub-a", &name("alice"), Some(UserId(42))).await.unwrap();
    assert_eq!((alice.id, alice.subject.as_str(), alice.username.as_str()), (UserId(42), "sub-a", "alice"));
    assert_eq!(store.provision("sub-a", &name("alice"), Some(UserId(42))).await.unwrap(), alice);
    // Another instance (nothing remembered) finds the same user, with or without the id.
    let other = subject.another().await;
    assert_eq!(other.provision("sub-a", &name("alice"), Some(UserId(42))).await.unwrap(), alice);
    assert_eq!(other.provision("sub-a", &name("alice"), None).await.unwrap(), alice);
    assert_eq!(store.user_by_id(UserId(42)).await.unwrap(), Some(alice.clone()));
    // A new username follows, the id stays.
    let renamed = store.provision("sub-a", &name("alicia"), Some(UserId(42))).await.unwrap();
    assert_eq!((renamed.id, renamed.username.as_str()), (UserId(42), "alicia"));
    assert_eq!(other.provision("sub-a", &name("alicia"), Some(UserId(42))).await.unwrap(), renamed);
    // Ids below and far above the ones the store assigns.
    let bob = store.provision("sub-b", &name("bob"), Some(UserId(1))).await.unwrap();
    assert_eq!(bob.id, UserId(1));
    let big = UserId(i64::from(i32::MAX) * 4);
    assert_eq!(store.provision("sub-c", &name("carol"), Some(big)).await.unwrap().id, big);
    assert_eq!(store.user_by_id(big).await.unwrap().unwrap().username.as_str(), "carol");
}

/// An id that is not the subject's user's, or is another subject's, is refused, and nothing is
/// written; an id that is not positive is invalid.
pub async fn provision_refuses_an_id_that_is_not_the_accounts(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = store.provision("sub-a", &name("alice"), Some(UserId(7))).await.unwrap();
    let bob = user(&*store, "bob").await;
    let other = subject.another().await;
    let mismatch = |out: Result<User>| matches!(out, Err(Error::IdentityMismatch));
    for store in [&store, &other] {
        // The subject's user has another id (remembered by `store`, not by `other`); the
        // username does not follow.
        assert!(mismatch(store.provision("sub-a", &name("alice"), Some(UserId(70))).await));
        assert!(mismatch(store.provision("sub-a", &name("alicia"), Some(UserId(70))).await));
        assert!(mismatch(store.provision(&bob.subject, &bob.username, Some(UserId(bob.id.0 + 100))).await));
        // The id is another subject's: never merged, nothing written.
        assert!(mismatch(store.provision("sub-c", &name("carol"), Some(UserId(7))).await));
        assert!(mismatch(store.provision("sub-c", &name("carol"), Some(bob.id)).await));
        assert!(mismatch(store.provision(&bob.subject, &bob.username, Some(alice.id)).await));
    }
    assert_eq!(store.user_by_id(UserId(7)).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.user_by_id(bob.id).await.unwrap(), Some(bob.clone()));
    assert_eq!(store.user_by_username(&name("carol")).await.unwrap(), None);
    assert_eq!(store.user_by_username(&name("alicia")).await.unwrap(), None);
    assert_eq!(store.user_by_id(UserId(70)).await.unwrap(), None);
    // Not a usable id.
    for id in [0, -1, i64::MIN] {
        let refused = store.provision("sub-d", &name("dave"), Some(UserId(id))).await;
        assert!(matches!(&refused, Err(Error::Invalid(errors)) if errors[0].field == "id"), "{refused:?}");
    }
    assert_eq!(store.user_by_username(&name("dave")).await.unwrap(), None);
    // A new subject with a free id but a taken username.
    let taken = store.provision("sub-e", &alice.username, Some(UserId(71))).await;
    assert!(matches!(&taken, Err(Error::UsernameTaken(u)) if u == "alice"), "{taken:?}");
    assert_eq!(store.user_by_id(UserId(71)).await.unwrap(), None);
    // The accounts still work as they are.
    assert_eq!(store.provision("sub-a", &name("alice"), Some(UserId(7))).await.unwrap(), alice);
    assert_eq!(other.provision(&bob.subject, &bob.username, Some(bob.id)).await.unwrap(), bob);
}

/// What a store remembers of a subject never answers for an id it does not have: the data
/// decides, here after another instance removed the user and the subject came back with another
/// id.
pub async fn a_remembered_user_does_not_decide_an_id(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let first = store.provision("sub-a", &name("alice"), Some(UserId(7))).await.unwrap();
    let other = subject.another().await;
    assert!(other.remove_user(first.id).await.unwrap());
    let again = other.provision("sub-a", &name("alice"), Some(UserId(9))).await.unwrap();
    assert_eq!(again.id, UserId(9));
    assert_eq!(store.provision("sub-a", &name("alice"), Some(UserId(9))).await.unwrap(), again);
    assert!(matches!(
        store.provision("sub-a", &name("alice"), Some(UserId(7))).await,
        Err(Error::IdentityMismatch)
    ));
}

/// Ids the store assigns never collide with ids given explicitly, before or after them: all
/// provisions succeed, and every id is distinct.
pub async fn assigned_ids_never_collide_with_explicit_ids(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let mut ids = std::collections::BTreeSet::new();
    let mut provision = async |sub: String, id: Option<i64>| {
        let user = store.provision(&sub, &name(&sub), id.map(UserId)).await.unwrap();
        if let Some(id) = id {
            assert_eq!(user.id, UserId(id));
        }
        assert!(ids.insert(user.id), "{user:?} has an id given before");
        user.id
    };
    // On an empty store, an id the store would assign next.
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

/// An explicit id may come back once its user is removed (the provider gives it to the same
/// person again): the new user starts with nothing, in every instance, whatever they remember of
/// the old one.
pub async fn a_removed_users_id_given_again_starts_empty(subject: &dyn StoreUnderTest) {
    let (store, other) = (subject.store(), subject.another().await);
    let old = store.provision("sub-a", &name("alice"), Some(UserId(42))).await.unwrap();
    put(&*store, &old, &GLOBAL, "old", json!(1)).await;
    put(&*store, &old, &client("app"), "old", json!(1)).await;
    for _ in 0..2 {
        assert_eq!(keys(&store.namespace(old.id, &GLOBAL).await.unwrap()), ["old"]);
        assert!(store.preference(old.id, &GLOBAL, &key("old")).await.unwrap().is_some());
    }
    assert!(other.remove_user(old.id).await.unwrap());
    let new = other.provision("sub-a", &name("alice"), Some(UserId(42))).await.unwrap();
    assert_eq!(new.id, old.id);
    // As many writes as the old user had, unseen here: what this store remembers of the old user
    // must not pass for the new one's.
    put(&*other, &new, &GLOBAL, "new", json!(2)).await;
    put(&*other, &new, &client("app"), "new", json!(2)).await;
    assert_eq!(keys(&store.namespace(new.id, &GLOBAL).await.unwrap()), ["new"]);
    assert_eq!(store.preference(new.id, &GLOBAL, &key("old")).await.unwrap(), None);
    assert_eq!(keys(&store.namespace(new.id, &client("app")).await.unwrap()), ["new"]);
}

/// Three instances: the one under test and two others.
async fn instances(subject: &dyn StoreUnderTest) -> [Arc<dyn Store>; 3] {
    [subject.store(), subject.another().await, subject.another().await]
}

/// Many first requests of one new subject with its id at once, through several instances: one
/// user, which every one of them gets.
pub async fn concurrent_first_provisions_with_an_id_give_one_user(subject: &dyn StoreUnderTest) {
    let stores = instances(subject).await;
    for round in 0..10_i64 {
        let sub = format!("sub-{round}");
        let id = UserId(100 + round);
        let tasks = (0..12).map(|i| {
            let (store, sub) = (Arc::clone(&stores[i % stores.len()]), sub.clone());
            async move { store.provision(&sub, &name(&sub), Some(id)).await }
        });
        for user in together(subject, tasks).await {
            let user = user.unwrap();
            assert_eq!((user.id, user.subject.as_str()), (id, sub.as_str()));
        }
    }
}

/// The same without ids: the store assigns one, the same to every request.
pub async fn concurrent_first_provisions_without_an_id_give_one_user(subject: &dyn StoreUnderTest) {
    let stores = instances(subject).await;
    for round in 0..10 {
        let sub = format!("sub-{round}");
        let tasks = (0..12).map(|i| {
            let (store, sub) = (Arc::clone(&stores[i % stores.len()]), sub.clone());
            async move { store.provision(&sub, &name(&sub), None).await }
        });
        let users: Vec<User> = together(subject, tasks).await.into_iter().map(Result::unwrap).collect();
        assert!(users.iter().all(|user| *user == users[0]), "{users:?}");
        assert_eq!(stores[0].user_by_subject(&sub).await.unwrap().as_ref(), Some(&users[0]));
    }
}

/// Sign-ups with explicit ids and with assigned ones at once: every assigned one succeeds with a
/// fresh id; an explicit one gets its id unless an assigned one got there first (then it is
/// refused: the id is another person's).
pub async fn concurrent_explicit_and_assigned_ids_never_collide(subject: &dyn StoreUnderTest) {
    let stores = instances(subject).await;
    // On an empty store these are the ids the store would assign.
    let tasks = (1..=30_i64)
        .flat_map(|i| [(format!("explicit-{i}"), Some(UserId(i))), (format!("assigned-{i}"), None)])
        .enumerate()
        .map(|(n, (sub, id))| {
            let store = Arc::clone(&stores[n % stores.len()]);
            async move { (id, store.provision(&sub, &name(&sub), id).await) }
        });
    let mut ids = std::collections::BTreeSet::new();
    for done in together(subject, tasks).await {
        match done {
            (None, out) => assert!(ids.insert(out.unwrap().id)),
            (Some(id), Ok(user)) => {
                assert_eq!(user.id, id);
                assert!(ids.insert(id));
            }
            (Some(id), Err(Error::IdentityMismatch)) => {
                let holder = stores[0].user_by_id(id).await.unwrap().unwrap();
                assert!(holder.subject.starts_with("assigned-"), "{holder:?}");
            }
            (Some(id), Err(other)) => panic!("{id}: {other:?}"),
        }
    }
}

/// The service signs a token's user in with the provider's id, refuses another, and signs the
/// user in again with it once they were removed.
pub async fn sign_in_takes_the_provider_id(subject: &dyn StoreUnderTest) {
    let service = PreferenceService::new(subject.store(), Limits::default());
    let principal = |id: i64| principal("alice", Some(UserId(id)));
    let actor = service.sign_in(principal(31)).await.unwrap();
    assert_eq!(actor.user.id, UserId(31));
    for wrong in [32, 0, -31] {
        let refused = service.sign_in(principal(wrong)).await;
        assert!(matches!(refused, Err(Error::IdentityMismatch)), "{wrong}: {refused:?}");
    }
    // Removed meanwhile by another instance: the stale actor's write signs alice in again, with
    // the same id.
    let other = subject.another().await;
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

/// Lookups by id and username are exact.
pub async fn users_are_found_by_exact_id_and_username(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = store.provision("sub-a", &name("Zoë Ünal"), None).await.unwrap();
    assert_eq!(store.user_by_id(alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.user_by_username(&name("Zoë Ünal")).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.user_by_username(&name("zoë ünal")).await.unwrap(), None);
    assert_eq!(store.user_by_username(&name("nobody")).await.unwrap(), None);
    assert_eq!(store.user_by_id(UserId(alice.id.0 + 1000)).await.unwrap(), None);
}

/// `user_by_subject` finds a provisioned subject's user, in every instance, and creates none.
pub async fn users_are_found_by_subject_without_being_created(subject: &dyn StoreUnderTest) {
    let (store, other) = (subject.store(), subject.another().await);
    for store in [&store, &other] {
        assert_eq!(store.user_by_subject("sub-alice").await.unwrap(), None);
    }
    assert_eq!(store.user_by_username(&name("alice")).await.unwrap(), None);
    let alice = user(&*store, "alice").await;
    let bob = user(&*other, "bob").await;
    for store in [&store, &other] {
        assert_eq!(store.user_by_subject("sub-alice").await.unwrap().as_ref(), Some(&alice));
        assert_eq!(store.user_by_subject("sub-bob").await.unwrap().as_ref(), Some(&bob));
        assert_eq!(store.user_by_subject("sub-Alice").await.unwrap(), None);
        assert_eq!(store.user_by_subject("sub-carol").await.unwrap(), None);
    }
}

/// Removing a user erases everything they hold, and nobody else's.
pub async fn remove_user_erases_every_preference_and_reports_existence(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let bob = user(&*store, "bob").await;
    let global = put(&*store, &alice, &GLOBAL, "a", json!(1)).await;
    put(&*store, &alice, &client("appA"), "b", json!(2)).await;
    let kept = put(&*store, &bob, &GLOBAL, "a", json!(3)).await;

    assert!(store.remove_user(alice.id).await.unwrap());
    assert_eq!(store.user_by_id(alice.id).await.unwrap(), None);
    assert_eq!(store.user_by_username(&alice.username).await.unwrap(), None);
    let gone = |out: Result<_>| matches!(out, Err(Error::UserNotFound));
    assert!(gone(store.namespace(alice.id, &GLOBAL).await.map(drop)));
    assert!(gone(store.namespace(alice.id, &client("appA")).await.map(drop)));
    assert!(gone(store.preference_by_id(alice.id, &GLOBAL, global.id).await.map(drop)));
    assert_eq!(store.namespace(bob.id, &GLOBAL).await.unwrap(), vec![kept.clone()]);
    assert!(!store.remove_user(alice.id).await.unwrap());

    // Ids are never reused: the same subject comes back as a new user with nothing.
    let back = user(&*store, "alice").await;
    assert!(back.id > bob.id, "{back:?}");
    assert!(store.namespace(back.id, &GLOBAL).await.unwrap().is_empty());
    let again = put(&*store, &back, &GLOBAL, "a", json!(1)).await;
    assert!(again.id > kept.id);
}

/// The ids a store assigns grow and are never assigned again, not even the highest one's once
/// it is gone: a new preference always sorts after the ones before it.
pub async fn ids_are_never_reused(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let a = put(&*store, &alice, &GLOBAL, "a", json!(1)).await;
    let b = put(&*store, &alice, &GLOBAL, "b", json!(2)).await;
    assert!(b.id > a.id);
    apply(&*store, &alice, &GLOBAL, vec![Change::Delete { key: key("b") }]).await.unwrap();
    let b_again = put(&*store, &alice, &GLOBAL, "b", json!(2)).await;
    assert!(b_again.id > b.id, "{b:?} {b_again:?}");
    assert_eq!(keys(&store.namespace(alice.id, &GLOBAL).await.unwrap()), ["a", "b"]);
    let bob = user(&*store, "bob").await;
    assert!(store.remove_user(bob.id).await.unwrap());
    let carol = user(&*store, "carol").await;
    assert!(carol.id > bob.id, "{bob:?} {carol:?}");
}

// ----- reads -----

/// A namespace comes ordered by id (not by key), holds only its user's preferences, and `edit`
/// sees it the same.
pub async fn namespaces_are_ordered_by_id_and_isolated(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let bob = user(&*store, "bob").await;
    for k in ["c", "a", "b"] {
        put(&*store, &alice, &GLOBAL, k, json!(k)).await;
    }
    put(&*store, &alice, &client("appA"), "a", json!("app")).await;
    put(&*store, &bob, &GLOBAL, "a", json!("bob")).await;

    let global = store.namespace(alice.id, &GLOBAL).await.unwrap();
    assert_eq!(keys(&global), ["c", "a", "b"]);
    assert!(global.windows(2).all(|w| w[0].id < w[1].id));
    assert!(global.iter().all(|p| p.user_id == alice.id && p.namespace == GLOBAL));
    let app = store.namespace(alice.id, &client("appA")).await.unwrap();
    assert_eq!(app.iter().map(|p| p.value.as_json()).collect::<Vec<_>>(), [&json!("app")]);
    assert_eq!(store.namespace(bob.id, &GLOBAL).await.unwrap()[0].value.as_json(), &json!("bob"));
    assert!(store.namespace(bob.id, &client("appA")).await.unwrap().is_empty());
    assert!(store.namespace(alice.id, &client("appB")).await.unwrap().is_empty());

    // `edit` is shown the same namespace, in the same order.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let saw = Arc::clone(&seen);
    store
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

/// Every preference of one user, ordered by namespace, then id.
pub async fn all_preferences_spans_namespaces_of_one_user(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let bob = user(&*store, "bob").await;
    put(&*store, &alice, &client("zeta"), "z", json!(1)).await;
    put(&*store, &alice, &GLOBAL, "g2", json!(2)).await;
    put(&*store, &alice, &client("appA"), "a", json!(3)).await;
    put(&*store, &alice, &GLOBAL, "g1", json!(4)).await;
    put(&*store, &bob, &GLOBAL, "b", json!(5)).await;
    let all = store.all_preferences(alice.id).await.unwrap();
    let seen: Vec<(&str, &str)> = all.iter().map(|p| (p.namespace.as_str(), p.key.as_str())).collect();
    assert_eq!(seen, [("appA", "a"), ("global", "g2"), ("global", "g1"), ("zeta", "z")]);
    let ghost = store.all_preferences(UserId(alice.id.0 + 1000)).await;
    assert!(matches!(ghost, Err(Error::UserNotFound)), "{ghost:?}");
}

/// Lookups by key and by id find only the user's preference in that namespace.
pub async fn preference_lookups_respect_user_and_namespace(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let bob = user(&*store, "bob").await;
    let a = put(&*store, &alice, &GLOBAL, "a", json!(1)).await;
    put(&*store, &alice, &client("appA"), "other", json!(2)).await;

    assert_eq!(store.preference(alice.id, &GLOBAL, &key("a")).await.unwrap(), Some(a.clone()));
    assert_eq!(store.preference(alice.id, &client("appA"), &key("a")).await.unwrap(), None);
    assert_eq!(store.preference(bob.id, &GLOBAL, &key("a")).await.unwrap(), None);
    assert_eq!(store.preference(alice.id, &GLOBAL, &key("missing")).await.unwrap(), None);

    assert_eq!(store.preference_by_id(alice.id, &GLOBAL, a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.preference_by_id(bob.id, &GLOBAL, a.id).await.unwrap(), None);
    assert_eq!(store.preference_by_id(alice.id, &client("appA"), a.id).await.unwrap(), None);
    assert_eq!(store.preference_by_id(alice.id, &GLOBAL, PreferenceId(a.id.0 + 1000)).await.unwrap(), None);
}

// ----- modify -----

/// A new key starts at version 1, created and updated now.
pub async fn put_of_a_new_key_starts_at_version_1(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let before = Utc::now();
    let after = apply(
        &*store,
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
    assert_eq!(store.preference(alice.id, &client("appA"), &key("theme")).await.unwrap().as_ref(), Some(p));
}

/// A put of an existing key keeps its id and `created_at`, and moves `updated_at` and
/// `version`, even when the value is the same.
pub async fn put_of_an_existing_key_keeps_id_and_created_at(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let first = put(&*store, &alice, &GLOBAL, "theme", json!("dark")).await;
    let_time_pass();
    let second = put(&*store, &alice, &GLOBAL, "theme", json!({"mode": "light"})).await;
    assert_eq!(second.id, first.id);
    assert_eq!(second.created_at, first.created_at);
    assert!(second.updated_at > first.updated_at, "{first:?} {second:?}");
    assert_eq!(second.version, 2);
    assert_eq!(second.value.as_json(), &json!({"mode": "light"}));
    let third = put(&*store, &alice, &GLOBAL, "theme", json!({"mode": "light"})).await;
    assert_eq!(third.version, 3);
}

/// A delete removes its key in its namespace only; a missing key is no error.
pub async fn delete_removes_one_key_and_ignores_missing_ones(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    put(&*store, &alice, &GLOBAL, "a", json!(1)).await;
    let b = put(&*store, &alice, &GLOBAL, "b", json!(2)).await;
    put(&*store, &alice, &client("appA"), "a", json!(3)).await;
    let after = apply(&*store, &alice, &GLOBAL, vec![Change::Delete { key: key("a") }]).await.unwrap();
    assert_eq!(after, vec![b.clone()]);
    let after = apply(&*store, &alice, &GLOBAL, vec![Change::Delete { key: key("missing") }]).await.unwrap();
    assert_eq!(after, vec![b]);
    assert_eq!(keys(&store.namespace(alice.id, &client("appA")).await.unwrap()), ["a"]);
}

/// A rename keeps the id, value and `created_at`, and moves `updated_at` and `version`.
pub async fn rename_keeps_id_and_value(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let a = put(&*store, &alice, &GLOBAL, "a", json!({"x": [1, 2]})).await;
    let_time_pass();
    let after =
        apply(&*store, &alice, &GLOBAL, vec![Change::Rename { from: key("a"), to: key("z") }]).await.unwrap();
    assert_eq!(after.len(), 1);
    let z = &after[0];
    assert_eq!((z.id, z.key.as_str(), &z.value, z.created_at), (a.id, "z", &a.value, a.created_at));
    assert_eq!(z.version, 2);
    assert!(z.updated_at > a.updated_at);
    assert_eq!(store.preference(alice.id, &GLOBAL, &key("a")).await.unwrap(), None);

    // Rename then Put, as a record update does: one id throughout.
    let changes = vec![
        Change::Rename { from: key("z"), to: key("y") },
        Change::Put { key: key("y"), value: value(json!(7)) },
    ];
    let after = apply(&*store, &alice, &GLOBAL, changes).await.unwrap();
    assert_eq!(
        (after[0].id, after[0].key.as_str(), after[0].value.as_json(), after[0].version),
        (a.id, "y", &json!(7), 4)
    );
}

/// The error of `edit` comes back unchanged, and nothing is written.
pub async fn a_failing_edit_writes_nothing_and_its_error_comes_back(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let a = put(&*store, &alice, &GLOBAL, "a", json!(1)).await;
    let failed = store.modify(alice.id, &GLOBAL, Arc::new(|_| Err(Error::TooManyKeys { limit: 7 }))).await;
    assert!(matches!(failed, Err(Error::TooManyKeys { limit: 7 })), "{failed:?}");
    let failed = store.modify(alice.id, &GLOBAL, Arc::new(|_| Err(Error::PreferenceNotFound))).await;
    assert!(matches!(failed, Err(Error::PreferenceNotFound)), "{failed:?}");
    assert_eq!(store.namespace(alice.id, &GLOBAL).await.unwrap(), vec![a]);
}

/// A rename onto a taken key, or of a missing one, fails the whole `modify`, the changes before
/// it included.
pub async fn a_failing_change_rolls_back_the_whole_modify(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let a = put(&*store, &alice, &GLOBAL, "a", json!(1)).await;
    let b = put(&*store, &alice, &GLOBAL, "b", json!(2)).await;
    // The rename target is taken: the whole write fails, the earlier changes included.
    let changes = vec![
        Change::Put { key: key("c"), value: value(json!(3)) },
        Change::Put { key: key("a"), value: value(json!(10)) },
        Change::Rename { from: key("a"), to: key("b") },
    ];
    let failed = apply(&*store, &alice, &GLOBAL, changes).await;
    assert!(matches!(failed, Err(Error::Internal(_))), "{failed:?}");
    let failed =
        apply(&*store, &alice, &GLOBAL, vec![Change::Rename { from: key("nope"), to: key("d") }]).await;
    assert!(matches!(failed, Err(Error::Internal(_))), "{failed:?}");
    assert_eq!(store.namespace(alice.id, &GLOBAL).await.unwrap(), vec![a, b]);
}

/// `modify` returns the namespace as a read then finds it, ordered by id.
pub async fn modify_returns_the_namespace_as_stored(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    for k in ["a", "b", "c", "d"] {
        put(&*store, &alice, &GLOBAL, k, json!(k)).await;
    }
    let returned = apply(
        &*store,
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
    assert_eq!(returned, store.namespace(alice.id, &GLOBAL).await.unwrap());
}

/// A write for a user that does not exist, or no longer does, is `UserNotFound`.
pub async fn modify_of_an_unknown_user_is_user_not_found(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let ghost = UserId(alice.id.0 + 1000);
    let put_a = edit(vec![Change::Put { key: key("a"), value: value(json!(1)) }]);
    assert!(matches!(store.modify(ghost, &GLOBAL, Arc::clone(&put_a)).await, Err(Error::UserNotFound)));
    assert!(store.remove_user(alice.id).await.unwrap());
    assert!(matches!(store.modify(alice.id, &GLOBAL, put_a).await, Err(Error::UserNotFound)));
}

/// Every read of a user that does not exist is `UserNotFound`; an existing user's missing
/// preferences read as empty.
pub async fn reads_of_an_unknown_user_are_user_not_found(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let ghost = UserId(alice.id.0 + 1000);
    let found = put(&*store, &alice, &GLOBAL, "a", json!(1)).await;
    let gone = |out: Result<_>| matches!(out, Err(Error::UserNotFound));
    assert!(gone(store.namespace(ghost, &GLOBAL).await.map(drop)));
    assert!(gone(store.preference(ghost, &GLOBAL, &key("a")).await.map(drop)));
    assert!(gone(store.preference_by_id(ghost, &GLOBAL, found.id).await.map(drop)));
    assert!(gone(store.all_preferences(ghost).await.map(drop)));
    // An existing user without preferences reads as empty.
    assert_eq!(store.namespace(alice.id, &client("app")).await.unwrap(), vec![]);
    assert_eq!(store.preference(alice.id, &GLOBAL, &key("b")).await.unwrap(), None);
    assert_eq!(store.preference_by_id(alice.id, &client("app"), found.id).await.unwrap(), None);
}

/// A user removed through another instance is noticed by the first read or write of a stale
/// actor: the service signs them in again, so that they see, and write to, the new user.
pub async fn a_user_removed_through_another_instance_is_noticed(subject: &dyn StoreUnderTest) {
    let (store, other) = (subject.store(), subject.another().await);
    let service = PreferenceService::new(Arc::clone(&store), Limits::default());
    let actor = service.sign_in(principal("alice", None)).await.unwrap();
    // Another instance removes alice; she signs in there again (a new user) and writes.
    assert!(other.remove_user(actor.user.id).await.unwrap());
    let again = user(&*other, "alice").await;
    assert_ne!(again.id, actor.user.id);
    put(&*other, &again, &GLOBAL, "lang", json!("fr")).await;
    // The actor still names the removed user: the service finds it gone and signs alice in
    // again, so her read sees the other instance's write at once.
    let read = service.namespace(&actor, &UserRef::Me, &GLOBAL).await.unwrap();
    assert_eq!(
        read.iter().map(|p| (p.key.as_str(), p.value.as_json().clone())).collect::<Vec<_>>(),
        [("lang", json!("fr"))]
    );
    assert_eq!(user(&*store, "alice").await.id, again.id);
    // A write through a stale actor lands on the new user too.
    other.remove_user(again.id).await.unwrap();
    let third = user(&*other, "alice").await;
    service
        .put(&actor, &UserRef::Me, &GLOBAL, "theme", json!("dark"), &Preconditions::default())
        .await
        .unwrap();
    let written = other.namespace(third.id, &GLOBAL).await.unwrap();
    assert_eq!(written.iter().map(|p| p.key.as_str()).collect::<Vec<_>>(), ["theme"]);
}

/// A read never answers with less than an acknowledged write, whichever instance made it and
/// whatever the reader read before (a store may remember what it read).
pub async fn writes_through_another_instance_are_read_at_once(subject: &dyn StoreUnderTest) {
    let (store, other) = (subject.store(), subject.another().await);
    let alice = user(&*store, "alice").await;
    let lang = |preferences: Vec<Preference>| -> Vec<(String, Value)> {
        preferences.into_iter().map(|p| (p.key.as_str().to_owned(), p.value.as_json().clone())).collect()
    };
    let id = put(&*store, &alice, &GLOBAL, "lang", json!("en")).await.id;
    let one = |found: Option<Preference>| found.map(|p| p.value.as_json().clone());
    for round in 0..3 {
        // Each kind of read, twice (the second may come from a cache), then a write elsewhere.
        let before = store.namespace(alice.id, &GLOBAL).await.unwrap();
        assert_eq!(before, store.namespace(alice.id, &GLOBAL).await.unwrap());
        let by_key = store.preference(alice.id, &GLOBAL, &key("lang")).await.unwrap();
        assert_eq!(by_key, store.preference(alice.id, &GLOBAL, &key("lang")).await.unwrap());
        let by_id = store.preference_by_id(alice.id, &GLOBAL, id).await.unwrap();
        assert_eq!(by_id, store.preference_by_id(alice.id, &GLOBAL, id).await.unwrap());
        assert_eq!(store.preference(alice.id, &GLOBAL, &key("new")).await.unwrap(), None);
        put(&*other, &alice, &GLOBAL, "lang", json!(round)).await;
        put(&*other, &alice, &GLOBAL, "new", json!(round)).await;
        let after = lang(store.namespace(alice.id, &GLOBAL).await.unwrap());
        assert_eq!(after, [("lang".to_owned(), json!(round)), ("new".to_owned(), json!(round))]);
        let by_key = store.preference(alice.id, &GLOBAL, &key("lang")).await.unwrap();
        assert_eq!(one(by_key), Some(json!(round)));
        let by_id = store.preference_by_id(alice.id, &GLOBAL, id).await.unwrap();
        assert_eq!(one(by_id), Some(json!(round)));
        assert_eq!(one(store.preference(alice.id, &GLOBAL, &key("new")).await.unwrap()), Some(json!(round)));
        apply(&*other, &alice, &GLOBAL, vec![Change::Delete { key: key("new") }]).await.unwrap();
    }
    // Its own writes too, and every namespace apart.
    put(&*store, &alice, &GLOBAL, "lang", json!("mine")).await;
    put(&*other, &alice, &client("app"), "theme", json!("dark")).await;
    assert_eq!(lang(store.namespace(alice.id, &GLOBAL).await.unwrap()), [("lang".to_owned(), json!("mine"))]);
    assert_eq!(
        lang(store.namespace(alice.id, &client("app")).await.unwrap()),
        [("theme".to_owned(), json!("dark"))]
    );
    assert!(other.remove_user(alice.id).await.unwrap());
    assert!(matches!(store.namespace(alice.id, &GLOBAL).await, Err(Error::UserNotFound)));
}

/// Values read back exactly as written: every JSON type, text and number.
pub async fn json_values_round_trip_exactly(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
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
    let written = apply(&*store, &alice, &GLOBAL, changes).await.unwrap();
    let read = store.namespace(alice.id, &GLOBAL).await.unwrap();
    assert_eq!(read, written);
    for (i, v) in values.iter().enumerate() {
        let stored = store.preference(alice.id, &GLOBAL, &key(&format!("v{i}"))).await.unwrap().unwrap();
        assert_eq!(stored.value.as_json(), v, "v{i}");
        assert_eq!(stored.value.as_json().to_string(), v.to_string(), "v{i}");
    }
}

/// A store that works answers its ping.
pub async fn ping_answers(subject: &dyn StoreUnderTest) {
    subject.store().ping().await.unwrap();
}

// ----- concurrency -----

/// Reads under way at once each get their own answer, whatever each asks for: a namespace, a
/// key, an id, nothing, or a user that does not exist.
pub async fn reads_under_way_together_each_get_their_own_answer(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let bob = user(&*store, "bob").await;
    let ghost = UserId(bob.id.0 + 1000);
    let a = put(&*store, &alice, &GLOBAL, "a", json!(1)).await;
    let b = put(&*store, &alice, &GLOBAL, "b", json!([2])).await;
    let theme = put(&*store, &alice, &client("app"), "theme", json!({"dark": true})).await;
    let (app, key_a, key_b, key_theme) = (client("app"), key("a"), key("b"), key("theme"));
    // Twice: the second time a store may answer from what it remembers.
    for _ in 0..2 {
        let (
            (global, in_app, empty, ghost_namespace, ghost_key),
            (by_key, by_id, no_key, id_elsewhere, ghost_id),
        ) = futures_util::future::join(
            join5(
                store.namespace(alice.id, &GLOBAL),
                store.namespace(alice.id, &app),
                store.namespace(bob.id, &app),
                store.namespace(ghost, &GLOBAL),
                store.preference(ghost, &GLOBAL, &key_a),
            ),
            join5(
                store.preference(alice.id, &GLOBAL, &key_b),
                store.preference_by_id(alice.id, &GLOBAL, a.id),
                store.preference(alice.id, &GLOBAL, &key_theme),
                store.preference_by_id(alice.id, &GLOBAL, theme.id),
                store.preference_by_id(ghost, &GLOBAL, a.id),
            ),
        )
        .await;
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

/// Writers that read back what they wrote, many at once, read their own write every time, with
/// every other reader's reads under way meanwhile.
pub async fn concurrent_readers_see_their_own_writes(subject: &dyn StoreUnderTest) {
    let mut users = Vec::new();
    for i in 0..8 {
        let store = subject.store();
        users.push((user(&*store, &format!("user{i}")).await, store));
    }
    let tasks = users.into_iter().map(|(user, store)| async move {
        for round in 0..30 {
            let written = put(&*store, &user, &GLOBAL, "n", json!(round)).await;
            let namespace = store.namespace(user.id, &GLOBAL).await.unwrap();
            assert_eq!(namespace, vec![written.clone()]);
            assert_eq!(store.preference(user.id, &GLOBAL, &key("n")).await.unwrap(), Some(written.clone()));
            assert_eq!(store.preference_by_id(user.id, &GLOBAL, written.id).await.unwrap(), Some(written));
        }
    });
    together(subject, tasks).await;
}

/// Writes of distinct keys at once all land, each at version 1.
pub async fn concurrent_puts_of_distinct_keys_all_land(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let tasks = (0..20).map(|i| {
        let store = Arc::clone(&store);
        async move {
            let put = Change::Put { key: key(&format!("k{i:02}")), value: value(json!(i)) };
            store.modify(alice.id, &GLOBAL, edit(vec![put])).await
        }
    });
    for done in together(subject, tasks).await {
        done.unwrap();
    }
    let mut stored: Vec<_> = store.namespace(alice.id, &GLOBAL).await.unwrap();
    stored.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(stored.len(), 20);
    for (i, p) in stored.iter().enumerate() {
        assert_eq!(
            (p.key.as_str(), p.value.as_json(), p.version),
            (format!("k{i:02}").as_str(), &json!(i), 1)
        );
    }
}

/// Concurrent writes, half of which fail halfway (a put, then a rename of a missing key): each
/// failing one rolls back alone (a store that commits concurrent writes together must keep them
/// apart), and every other one lands.
pub async fn concurrent_writes_that_fail_halfway_roll_back_alone(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let tasks = (0..40).map(|i| {
        let store = Arc::clone(&store);
        async move {
            let mut changes = vec![Change::Put { key: key(&format!("k{i:02}")), value: value(json!(i)) }];
            if i % 2 == 1 {
                changes.push(Change::Rename { from: key("missing"), to: key(&format!("r{i:02}")) });
            }
            (i, store.modify(alice.id, &GLOBAL, edit(changes)).await)
        }
    });
    for (i, out) in together(subject, tasks).await {
        assert_eq!(out.is_ok(), i % 2 == 0, "{i}: {out:?}");
    }
    let stored = store.namespace(alice.id, &GLOBAL).await.unwrap();
    let mut stored = keys(&stored);
    stored.sort_unstable();
    let expected: Vec<String> = (0..40).step_by(2).map(|i| format!("k{i:02}")).collect();
    assert_eq!(stored, expected);
}

/// Read-modify-writes of one value at once lose nothing: each sees the one before.
pub async fn concurrent_merges_into_one_value_lose_nothing(subject: &dyn StoreUnderTest) {
    let store = subject.store();
    let alice = user(&*store, "alice").await;
    let tasks = (0..20).map(|i| {
        let store = Arc::clone(&store);
        // A read-modify-write of one object value, as a merge patch of `{"s": {"m<i>": i}}`.
        let merge = Arc::new(move |current: &[Preference]| {
            let mut members = current
                .iter()
                .find(|p| p.key.as_str() == "s")
                .map_or_else(serde_json::Map::new, |p| p.value.as_json().as_object().unwrap().clone());
            members.insert(format!("m{i}"), json!(i));
            Ok(vec![Change::Put { key: key("s"), value: value(Value::Object(members)) }])
        });
        async move { store.modify(alice.id, &GLOBAL, merge).await }
    });
    for done in together(subject, tasks).await {
        done.unwrap();
    }
    let s = store.preference(alice.id, &GLOBAL, &key("s")).await.unwrap().unwrap();
    let members = s.value.as_json().as_object().unwrap();
    assert_eq!(members.len(), 20, "{members:?}");
    assert!((0..20).all(|i| members[&format!("m{i}")] == json!(i)));
    assert_eq!(s.version, 20);
}
