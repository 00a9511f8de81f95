//! [`PreferenceService`] over a [`MemoryStore`], as tables: who may read and write whose
//! preferences in which namespace (docs/contract.md §2.5–2.6), 404 before 403, users that vanish
//! under a request, and the limits.

use std::sync::Arc;

use async_trait::async_trait;
use prefs_domain::{
    Actor, ClientId, Edit, Error, FieldCode, Limits, MemoryStore, Namespace, Preconditions, Preference,
    PreferenceId, PreferenceKey, PreferenceService, PreferenceStore, Principal, Result, User, UserId,
    UserRef, UserStore, Username,
};
use serde_json::{Value, json};

const R: &str = "user:preferences:read";
const W: &str = "user:preferences:write";

/// How a call ended, as the HTTP layer tells them apart.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// 2xx.
    Done,
    /// 404 for the user: unknown, or hidden from the actor.
    NoUser,
    /// 404 for the preference or record.
    NoPreference,
    /// 403.
    Forbidden,
    /// 400 for an invalid member: the first one's code.
    Invalid(FieldCode),
    /// 400 for a namespace over its number of keys.
    TooManyKeys,
    /// Anything else, by its message.
    Other(String),
}
use Outcome::{Done, Forbidden, Invalid, NoPreference, NoUser, TooManyKeys};

fn outcome<T>(result: Result<T>) -> Outcome {
    match result {
        Ok(_) => Done,
        Err(Error::UserNotFound) => NoUser,
        Err(Error::PreferenceNotFound) => NoPreference,
        Err(Error::Forbidden) => Forbidden,
        Err(Error::Invalid(errors)) => Invalid(errors[0].code),
        Err(Error::TooManyKeys { .. }) => TooManyKeys,
        Err(other) => Outcome::Other(other.to_string()),
    }
}

fn principal(username: &str, roles: &[&str], scopes: &[&str], client: Option<&str>) -> Principal {
    Principal {
        subject: format!("sub-{username}"),
        username: Username::parse(username).unwrap(),
        staff: roles.contains(&"staff"),
        admin: roles.contains(&"admin"),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        client_id: client.map(|c| ClientId::parse(c).unwrap()),
        provider_id: None,
    }
}

fn client(s: &str) -> Namespace {
    Namespace::Client(ClientId::parse(s).unwrap())
}

fn object(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().unwrap().clone()
}

const NONE: Preconditions = Preconditions::NONE;

/// A service over a fresh [`MemoryStore`], with `bob` signed up and holding `lang` in the global
/// namespace and in `appA`.
struct World {
    store: MemoryStore,
    service: PreferenceService,
    bob: User,
    /// Bob's `lang` in the global namespace: a record.
    record: Preference,
}

impl World {
    async fn new(limits: Limits) -> Self {
        let store = MemoryStore::new();
        let service = PreferenceService::new(Arc::new(store.clone()), limits);
        let bob = service.sign_in(principal("bob", &[], &[R, W], Some("appA"))).await.unwrap();
        let record = service.put(&bob, &UserRef::Me, &Namespace::Global, "lang", json!("en"), &NONE).await;
        service.put(&bob, &UserRef::Me, &client("appA"), "lang", json!("en"), &NONE).await.unwrap();
        Self { store, service, bob: bob.user, record: record.unwrap() }
    }

    async fn actor(&self, username: &str, roles: &[&str], scopes: &[&str], client: Option<&str>) -> Actor {
        self.service.sign_in(principal(username, roles, scopes, client)).await.unwrap()
    }

    /// The target of a table row.
    fn target(&self, actor: &Actor, target: Target) -> UserRef {
        match target {
            Target::Me => UserRef::Me,
            Target::OwnId => UserRef::Id(actor.user.id),
            Target::OwnName => UserRef::Username(actor.user.username.to_string()),
            Target::BobId => UserRef::Id(self.bob.id),
            Target::BobName => UserRef::Username("bob".into()),
            Target::MissingId => UserRef::Id(UserId(self.bob.id.0 + 1000)),
            Target::MissingName => UserRef::Username("nobody".into()),
            Target::InvalidName => UserRef::Username("a\nb".into()),
        }
    }

    /// Reads (`Read`) or merges into (`Write`) `namespace` of `target` as `actor`.
    async fn access(&self, actor: &Actor, target: &UserRef, namespace: &Namespace, action: Act) -> Outcome {
        let service = &self.service;
        match action {
            Act::Read => outcome(service.namespace(actor, target, namespace).await),
            Act::ReadKey => outcome(service.preference(actor, target, namespace, "lang").await),
            Act::Write => {
                let patch = object(json!({"theme": "dark"}));
                outcome(service.merge_patch(actor, target, namespace, &patch, &NONE).await)
            }
            Act::Put => outcome(service.put(actor, target, namespace, "lang", json!("fr"), &NONE).await),
            Act::Delete => outcome(service.delete(actor, target, namespace, "lang", &NONE).await),
        }
    }
}

/// A token's roles, scopes and client.
type Token = (&'static [&'static str], &'static [&'static str], Option<&'static str>);

#[derive(Debug, Clone, Copy)]
enum Target {
    Me,
    OwnId,
    OwnName,
    BobId,
    BobName,
    MissingId,
    MissingName,
    InvalidName,
}

#[derive(Debug, Clone, Copy)]
enum Act {
    Read,
    ReadKey,
    Write,
    Put,
    Delete,
}

const ACTS: [Act; 5] = [Act::Read, Act::ReadKey, Act::Write, Act::Put, Act::Delete];

/// Each of [`ACTS`] done.
const OWN: [Outcome; 5] = [Done, Done, Done, Done, Done];

/// Each of [`ACTS`] answered as for a user that does not exist.
const HIDDEN: [Outcome; 5] = [NoUser, NoUser, NoUser, NoUser, NoUser];

/// Whose preferences each role reaches in the global namespace (no scope needed there): owners
/// everything, `admin` everyone, `staff` reads everyone and is forbidden to write others, others
/// are not told that other users exist; a user that does not exist is 404 for everyone.
#[tokio::test]
async fn user_access_in_the_global_namespace() {
    use Target::*;
    // (roles, target, outcome of each of ACTS)
    let table: &[(&[&str], Target, [Outcome; 5])] = &[
        (&[], Me, OWN),
        (&[], OwnId, OWN),
        (&[], OwnName, OWN),
        (&[], BobId, HIDDEN),
        (&[], BobName, HIDDEN),
        (&[], MissingId, HIDDEN),
        (&[], InvalidName, HIDDEN),
        (&["staff"], Me, OWN),
        (&["staff"], OwnName, OWN),
        (&["staff"], BobId, [Done, Done, Forbidden, Forbidden, Forbidden]),
        (&["staff"], BobName, [Done, Done, Forbidden, Forbidden, Forbidden]),
        (&["staff"], MissingId, HIDDEN),
        (&["staff"], MissingName, HIDDEN),
        (&["staff"], InvalidName, HIDDEN),
        (&["admin"], OwnId, OWN),
        (&["admin"], BobId, OWN),
        (&["admin"], BobName, OWN),
        (&["admin"], MissingId, HIDDEN),
        (&["admin"], MissingName, HIDDEN),
        (&["staff", "admin"], BobId, OWN),
    ];
    for (roles, target, expected) in table {
        // A fresh world per row: a row's writes must not decide the next row's outcome.
        let world = World::new(Limits::default()).await;
        let actor = world.actor("alice", roles, &[], None).await;
        let target_ref = world.target(&actor, *target);
        // The actor's own `lang`, so that their reads and deletes find one.
        world.service.put(&actor, &UserRef::Me, &Namespace::Global, "lang", json!("x"), &NONE).await.unwrap();
        for (act, expected) in ACTS.iter().zip(expected) {
            let got = world.access(&actor, &target_ref, &Namespace::Global, *act).await;
            assert_eq!(&got, expected, "{roles:?} {target:?} {act:?}");
        }
    }
}

/// Client namespaces need the action's scope, and the token's own client or the client-specific
/// scope; that is decided before the user (a 403 whoever the target), then the user rules apply.
#[tokio::test]
async fn namespace_scopes_come_before_the_user() {
    use Target::*;
    const RB: &str = "user:preferences:read:appB";
    const WB: &str = "user:preferences:write:appB";
    // ((roles, scopes, token client), target, namespace, [Read, Write])
    let table: &[(Token, Target, &str, [Outcome; 2])] = &[
        ((&[], &[R, W], Some("appA")), Me, "appA", [Done, Done]),
        ((&[], &[R], Some("appA")), Me, "appA", [Done, Forbidden]),
        ((&[], &[W], Some("appA")), Me, "appA", [Forbidden, Done]),
        ((&[], &[], Some("appA")), Me, "appA", [Forbidden, Forbidden]),
        ((&[], &[R, W], None), Me, "appA", [Forbidden, Forbidden]),
        ((&[], &[R, W], Some("appA")), Me, "appB", [Forbidden, Forbidden]),
        ((&[], &[R, W, RB], Some("appA")), Me, "appB", [Done, Forbidden]),
        ((&[], &[R, W, RB, WB], Some("appA")), Me, "appB", [Done, Done]),
        // The client-specific scope alone is not enough.
        ((&[], &[RB, WB], Some("appA")), Me, "appB", [Forbidden, Forbidden]),
        // Scopes first: 403 even where the user rules would hide the target (404).
        ((&[], &[], Some("appA")), BobId, "appA", [Forbidden, Forbidden]),
        ((&[], &[], Some("appA")), MissingId, "appA", [Forbidden, Forbidden]),
        // With the scopes, the user rules.
        ((&[], &[R, W], Some("appA")), BobId, "appA", [NoUser, NoUser]),
        ((&["staff"], &[R, W], Some("appA")), BobId, "appA", [Done, Forbidden]),
        ((&["staff"], &[R, W], Some("appA")), MissingId, "appA", [NoUser, NoUser]),
        ((&["staff"], &[R], Some("appB")), BobId, "appA", [Forbidden, Forbidden]),
        ((&["admin"], &[R, W], Some("appA")), BobName, "appA", [Done, Done]),
        ((&["admin"], &[R, W, RB], Some("appA")), BobName, "appB", [Done, Forbidden]),
        ((&["admin"], &[], Some("appA")), BobName, "appA", [Forbidden, Forbidden]),
    ];
    for ((roles, scopes, token_client), target, namespace, expected) in table {
        let world = World::new(Limits::default()).await;
        let actor = world.actor("alice", roles, scopes, *token_client).await;
        let target_ref = world.target(&actor, *target);
        let namespace = client(namespace);
        let got = [
            world.access(&actor, &target_ref, &namespace, Act::Read).await,
            world.access(&actor, &target_ref, &namespace, Act::Write).await,
        ];
        assert_eq!(&got, expected, "{roles:?} {scopes:?} {token_client:?} {target:?} {namespace:?}");
    }
}

/// The global namespace needs no scope at all, whatever the token's client.
#[tokio::test]
async fn the_global_namespace_needs_no_scope() {
    let world = World::new(Limits::default()).await;
    for client in [None, Some("appA"), Some("appB")] {
        let actor = world.actor("alice", &[], &[], client).await;
        for act in ACTS {
            let got = world.access(&actor, &UserRef::Me, &Namespace::Global, act).await;
            // The first round's delete removed `lang`; put it back for the next reads.
            assert!(matches!(got, Done | NoPreference), "{client:?} {act:?}: {got:?}");
        }
        world.service.put(&actor, &UserRef::Me, &Namespace::Global, "lang", json!("x"), &NONE).await.unwrap();
    }
}

/// Records (the global namespace by id): a staff member writing someone else's record is told
/// that a record or user that does not exist does not (404) before being forbidden (403).
#[tokio::test]
async fn records_are_404_before_403() {
    use Target::*;
    #[derive(Debug, Clone, Copy)]
    enum Record {
        Bobs,
        Missing,
    }
    // (roles, target, record, [read, update, delete])
    let table: &[(&[&str], Target, Record, [Outcome; 3])] = &[
        (&[], BobId, Record::Bobs, [NoUser, NoUser, NoUser]),
        (&[], BobId, Record::Missing, [NoUser, NoUser, NoUser]),
        (&[], MissingId, Record::Missing, [NoUser, NoUser, NoUser]),
        (&["staff"], BobId, Record::Bobs, [Done, Forbidden, Forbidden]),
        (&["staff"], BobName, Record::Bobs, [Done, Forbidden, Forbidden]),
        (&["staff"], BobId, Record::Missing, [NoPreference, NoPreference, NoPreference]),
        (&["staff"], MissingId, Record::Bobs, [NoUser, NoUser, NoUser]),
        (&["admin"], BobId, Record::Missing, [NoPreference, NoPreference, NoPreference]),
        (&["admin"], BobId, Record::Bobs, [Done, Done, Done]),
        // The actor's own records: bob's record is not theirs.
        (&["staff"], Me, Record::Bobs, [NoPreference, NoPreference, NoPreference]),
    ];
    for (roles, target, record, expected) in table {
        let world = World::new(Limits::default()).await;
        let actor = world.actor("alice", roles, &[], None).await;
        let target_ref = world.target(&actor, *target);
        let id = match record {
            Record::Bobs => world.record.id,
            Record::Missing => PreferenceId(world.record.id.0 + 1000),
        };
        let service = &world.service;
        let got = [
            outcome(service.record(&actor, &target_ref, id).await),
            outcome(service.update_record(&actor, &target_ref, id, None, Some(json!("de")), &NONE).await),
            outcome(service.delete_record(&actor, &target_ref, id, &NONE).await),
        ];
        assert_eq!(&got, expected, "{roles:?} {target:?} {record:?}");
    }
}

/// The actor's user removed since they signed in (through another instance): the next read or
/// write signs them in again, once, and acts on the new user.
#[tokio::test]
async fn an_actor_removed_since_sign_in_is_signed_in_again() {
    // (what the actor does, its outcome, what the new user then holds)
    let table = [
        (Act::Read, Done, vec![]),
        (Act::ReadKey, NoPreference, vec![]),
        (Act::Write, Done, vec![("theme", json!("dark"))]),
        (Act::Put, Done, vec![("lang", json!("fr"))]),
        (Act::Delete, NoPreference, vec![]),
    ];
    for (act, expected, holds) in table {
        let world = World::new(Limits::default()).await;
        let actor = world.actor("alice", &[], &[], None).await;
        world
            .service
            .put(&actor, &UserRef::Me, &Namespace::Global, "lang", json!("en"), &NONE)
            .await
            .unwrap();
        assert!(world.store.remove_user(actor.user.id).await.unwrap());
        assert_eq!(world.access(&actor, &UserRef::Me, &Namespace::Global, act).await, expected, "{act:?}");
        // One new user, with nothing of the old one's.
        let again = world.store.user_by_subject("sub-alice").await.unwrap().expect("signed in again");
        assert!(again.id > actor.user.id, "{act:?}: {again:?}");
        let stored = world.store.all_preferences(again.id).await.unwrap();
        let stored: Vec<_> = stored.iter().map(|p| (p.key.as_str(), p.value.as_json().clone())).collect();
        assert_eq!(stored, holds, "{act:?}");
    }
}

/// A store that removes user `victim` right after it is looked up by id: the user vanishes
/// between the service's resolution and its read or write.
struct Vanishing {
    store: MemoryStore,
    victim: UserId,
}

#[async_trait]
impl UserStore for Vanishing {
    async fn provision(&self, subject: &str, username: &Username, id: Option<UserId>) -> Result<User> {
        self.store.provision(subject, username, id).await
    }

    async fn user_by_subject(&self, subject: &str) -> Result<Option<User>> {
        self.store.user_by_subject(subject).await
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>> {
        let found = self.store.user_by_id(id).await;
        if id == self.victim {
            self.store.remove_user(id).await?;
        }
        found
    }

    async fn user_by_username(&self, username: &Username) -> Result<Option<User>> {
        self.store.user_by_username(username).await
    }

    async fn remove_user(&self, id: UserId) -> Result<bool> {
        self.store.remove_user(id).await
    }
}

#[async_trait]
impl PreferenceStore for Vanishing {
    async fn namespace(&self, user: UserId, namespace: &Namespace) -> Result<Vec<Preference>> {
        self.store.namespace(user, namespace).await
    }

    async fn preference(
        &self,
        user: UserId,
        namespace: &Namespace,
        key: &PreferenceKey,
    ) -> Result<Option<Preference>> {
        self.store.preference(user, namespace, key).await
    }

    async fn preference_by_id(
        &self,
        user: UserId,
        namespace: &Namespace,
        id: PreferenceId,
    ) -> Result<Option<Preference>> {
        self.store.preference_by_id(user, namespace, id).await
    }

    async fn all_preferences(&self, user: UserId) -> Result<Vec<Preference>> {
        self.store.all_preferences(user).await
    }

    async fn modify(&self, user: UserId, namespace: &Namespace, edit: Arc<Edit>) -> Result<Vec<Preference>> {
        self.store.modify(user, namespace, edit).await
    }

    async fn ping(&self) -> Result<()> {
        self.store.ping().await
    }
}

/// Another user vanishing between resolution and the write is 404 for the actor: the service
/// signs in again only the actor's own user, never anyone else's on their behalf.
#[tokio::test]
async fn another_user_vanishing_under_a_write_is_404() {
    let store = MemoryStore::new();
    let bob = store.provision("sub-bob", &Username::parse("bob").unwrap(), None).await.unwrap();
    let service = PreferenceService::new(
        Arc::new(Vanishing { store: store.clone(), victim: bob.id }),
        Limits::default(),
    );
    let admin = service.sign_in(principal("root", &["admin"], &[], None)).await.unwrap();
    let bob_ref = UserRef::Id(bob.id);
    let written = service.put(&admin, &bob_ref, &Namespace::Global, "lang", json!("fr"), &NONE).await;
    assert_eq!(outcome(written), NoUser);
    assert_eq!(store.user_by_subject("sub-bob").await.unwrap(), None, "bob is not signed in again");
    assert_eq!(store.all_preferences(admin.user.id).await.unwrap(), vec![], "nor is the write the admin's");
}

/// Limits: keys per namespace, value size and depth, checked before anything is written, in
/// every way of writing.
#[tokio::test]
async fn limits_hold_in_every_write() {
    let limits = Limits { max_keys: 3, max_value_bytes: 16, max_depth: 2, ..Limits::default() };
    // (merge patch into a namespace holding `a` and `b`, outcome)
    let table: &[(Value, Outcome)] = &[
        (json!({"c": 1}), Done),
        (json!({"c": 1, "d": 2}), TooManyKeys),
        (json!({"a": null, "c": 1, "d": 2}), Done),
        (json!({"a": 2, "b": 3}), Done),
        (json!({"c": "0123456789abcdef"}), Invalid(FieldCode::TooLarge)),
        (json!({"c": [[1]]}), Done),
        (json!({"c": [[[1]]]}), Invalid(FieldCode::TooDeep)),
        (json!({"c": null}), Done),
    ];
    for (patch, expected) in table {
        let world = World::new(limits).await;
        let actor = world.actor("alice", &[], &[], None).await;
        let global = Namespace::Global;
        let start = object(json!({"a": 1, "b": 2}));
        let before = world.service.merge_patch(&actor, &UserRef::Me, &global, &start, &NONE).await.unwrap();
        let got = outcome(
            world.service.merge_patch(&actor, &UserRef::Me, &global, &object(patch.clone()), &NONE).await,
        );
        assert_eq!(&got, expected, "{patch}");
        if got != Done {
            let after = world.service.namespace(&actor, &UserRef::Me, &global).await.unwrap();
            assert_eq!(after, before, "{patch}: nothing written");
        }
    }
    // One key at a time: a new key over the limit is refused, an existing one may change.
    let world = World::new(limits).await;
    let actor = world.actor("alice", &[], &[], None).await;
    for (key, expected) in [("a", Done), ("b", Done), ("c", Done), ("d", TooManyKeys), ("a", Done)] {
        let put = world.service.put(&actor, &UserRef::Me, &Namespace::Global, key, json!(1), &NONE);
        assert_eq!(outcome(put.await), expected, "{key}");
    }
    let created = world.service.create_record(&actor, &UserRef::Me, "e", json!(1)).await;
    assert_eq!(outcome(created), TooManyKeys);
}
