//! Another Rust service embedding prefs: its users' preferences in a `MemoryStore`, behind the
//! access rules of prefs, written with RFC 7396 merge patches.
//!
//! ```text
//! cargo run -p prefs-domain --example embed --features memory
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use prefs_domain::{
    ClientId, Error, Limits, MemoryStore, Namespace, Preconditions, PreferenceService, Principal, UserRef,
    Username,
};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Any `Store` will do: a `MemoryStore`, prefs-storage's `DieselStore`, or one of your own that
    // passes the contract suite (`prefs_domain::testing`, feature `testing`).
    let service = PreferenceService::new(Arc::new(MemoryStore::new()), Limits::default());

    // Whoever the embedding service authenticated, as prefs sees them: here a user of the client
    // application `reader`, which may read and write its own namespace.
    let app = ClientId::parse("reader")?;
    let principal = |subject: &str, username: &str| -> Result<Principal, Box<dyn std::error::Error>> {
        Ok(Principal {
            subject: subject.to_owned(),
            username: Username::parse(username)?,
            staff: false,
            admin: false,
            scopes: BTreeSet::from(["user:preferences:read".to_owned(), "user:preferences:write".to_owned()]),
            client_id: Some(app.clone()),
            provider_id: None,
        })
    };
    let alice = service.sign_in(principal("sub-alice", "alice")?).await?;

    // Two merge patches of the application's namespace: objects merge, `null` removes a key.
    let namespace = Namespace::Client(app.clone());
    let none = Preconditions::default();
    for patch in [
        json!({"theme": "dark", "font": {"size": 14}}),
        json!({"theme": null, "font": {"family": "serif"}, "lang": "fr"}),
    ] {
        let patch = patch.as_object().expect("an object");
        service.merge_patch(&alice, &UserRef::Me, &namespace, patch, &none).await?;
    }

    // Reading back.
    let stored = service.namespace(&alice, &UserRef::Me, &namespace).await?;
    for preference in &stored {
        println!("{} = {} (version {})", preference.key, preference.value.as_json_text(), preference.version);
    }
    let members: Vec<_> = stored.iter().map(|p| (p.key.as_str(), p.value.as_json().clone())).collect();
    assert_eq!(members, [("font", json!({"size": 14, "family": "serif"})), ("lang", json!("fr"))]);

    // Another ordinary user is not told that alice exists.
    let bob = service.sign_in(principal("sub-bob", "bob")?).await?;
    let hidden = service.namespace(&bob, &UserRef::Username("alice".to_owned()), &namespace).await;
    assert!(matches!(hidden, Err(Error::UserNotFound)), "{hidden:?}");
    println!("bob reading alice's preferences: {}", hidden.unwrap_err());
    Ok(())
}
