//! [`PreferenceService::authorize`], which the HTTP handlers call before they read a body
//! (docs/contract.md §4.3), decides exactly as the operations do, and the user it returns, named
//! as [`UserRef::Known`], gets no caller further than the original target would.

use std::sync::Arc;

use prefs_domain::{
    Action, Actor, ClientId, Error, Limits, MemoryStore, Namespace, Preconditions, PreferenceId,
    PreferenceService, Principal, Result, UserId, UserRef, Username,
};
use serde_json::json;

const R: &str = "user:preferences:read";
const W: &str = "user:preferences:write";
const NONE: Preconditions = Preconditions::NONE;

fn principal(username: &str, roles: &[&str], scopes: &[&str]) -> Principal {
    Principal {
        subject: format!("sub-{username}"),
        username: Username::parse(username).unwrap(),
        staff: roles.contains(&"staff"),
        admin: roles.contains(&"admin"),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        client_id: Some(ClientId::parse("appA").unwrap()),
        provider_id: None,
    }
}

/// The error of a result, `None` for a success.
fn error<T>(result: Result<T>) -> Option<String> {
    result.err().map(|e| format!("{e:?}"))
}

/// For every caller, target, namespace and action, `authorize` fails as the operation does, or
/// succeeds when the operation gets past access; and the operation on the user it returns ends
/// as on the original target.
#[tokio::test]
async fn authorize_decides_as_the_operations_do() {
    let service = PreferenceService::new(Arc::new(MemoryStore::new()), Limits::default());
    let bob = service.sign_in(principal("bob", &[], &[R, W])).await.unwrap();
    let callers = [
        service.sign_in(principal("alice", &[], &[R, W])).await.unwrap(),
        service.sign_in(principal("nobody-scoped", &[], &[])).await.unwrap(),
        service.sign_in(principal("reader", &[], &[R])).await.unwrap(),
        service.sign_in(principal("staff", &["staff"], &[R, W])).await.unwrap(),
        service.sign_in(principal("admin", &["admin"], &[R, W])).await.unwrap(),
    ];
    let targets = [
        UserRef::Me,
        UserRef::Id(bob.user.id),
        UserRef::Username("bob".into()),
        UserRef::Id(UserId(bob.user.id.0 + 1000)),
        UserRef::Username("nobody".into()),
    ];
    let namespaces = [Namespace::Global, Namespace::Client(ClientId::parse("appA").unwrap())];
    let operation = |actor: Actor, target: UserRef, namespace: Namespace, action: Action| {
        let service = service.clone();
        async move {
            match action {
                Action::Read => error(service.namespace(&actor, &target, &namespace).await),
                Action::Write => {
                    let patch = json!({"theme": "dark"}).as_object().unwrap().clone();
                    error(service.merge_patch(&actor, &target, &namespace, &patch, &NONE).await)
                }
            }
        }
    };
    for actor in &callers {
        for target in &targets {
            for namespace in &namespaces {
                for action in [Action::Read, Action::Write] {
                    let case =
                        format!("{} {target:?} {namespace:?} {action:?}", actor.user.username.as_str());
                    let expected = operation(actor.clone(), target.clone(), namespace.clone(), action).await;
                    match service.authorize(actor, target, namespace, action).await {
                        Ok(user) => {
                            assert_eq!(expected, None, "{case}");
                            let known = UserRef::Known(user);
                            let again = operation(actor.clone(), known, namespace.clone(), action).await;
                            assert_eq!(again, None, "{case}");
                        }
                        Err(e) => assert_eq!(Some(format!("{e:?}")), expected, "{case}"),
                    }
                }
            }
        }
    }
}

/// A [`UserRef::Known`] is not a way around the rules: access is decided again from the roles.
#[tokio::test]
async fn a_known_user_is_still_checked() {
    let service = PreferenceService::new(Arc::new(MemoryStore::new()), Limits::default());
    let bob = service.sign_in(principal("bob", &[], &[R, W])).await.unwrap();
    let alice = service.sign_in(principal("alice", &[], &[R, W])).await.unwrap();
    let staff = service.sign_in(principal("staff", &["staff"], &[R, W])).await.unwrap();
    let known = UserRef::Known(bob.user.clone());
    let read = service.namespace(&alice, &known, &Namespace::Global).await;
    assert!(matches!(read, Err(Error::UserNotFound)), "{read:?}");
    let write = service.put(&staff, &known, &Namespace::Global, "k", json!(1), &NONE).await;
    assert!(matches!(write, Err(Error::Forbidden)), "{write:?}");
    assert!(service.namespace(&staff, &known, &Namespace::Global).await.is_ok());
}

/// For records, a staff member writing another user's record learns first whether it exists; the
/// owner is let through to the body whether it exists or not.
#[tokio::test]
async fn authorize_record_is_404_before_403() {
    let service = PreferenceService::new(Arc::new(MemoryStore::new()), Limits::default());
    let bob = service.sign_in(principal("bob", &[], &[])).await.unwrap();
    let alice = service.sign_in(principal("alice", &[], &[])).await.unwrap();
    let staff = service.sign_in(principal("staff", &["staff"], &[])).await.unwrap();
    let record = service.put(&bob, &UserRef::Me, &Namespace::Global, "k", json!(1), &NONE).await.unwrap();
    let (bobs, missing) = (UserRef::Id(bob.user.id), PreferenceId(record.id.0 + 1000));
    let cases: [(&Actor, &UserRef, PreferenceId, Option<Error>); 6] = [
        (&bob, &UserRef::Me, record.id, None),
        (&bob, &UserRef::Me, missing, None),
        (&staff, &bobs, record.id, Some(Error::Forbidden)),
        (&staff, &bobs, missing, Some(Error::PreferenceNotFound)),
        (&alice, &bobs, record.id, Some(Error::UserNotFound)),
        (&alice, &bobs, missing, Some(Error::UserNotFound)),
    ];
    for (actor, target, id, expected) in cases {
        let got = service.authorize_record(actor, target, id).await;
        let case = format!("{} {target:?} {id:?}", actor.user.username.as_str());
        assert_eq!(got.err().map(|e| format!("{e:?}")), expected.map(|e| format!("{e:?}")), "{case}");
    }
}
