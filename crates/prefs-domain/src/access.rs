//! Who may read and write whose preferences (docs/contract.md §2). Pure functions, tested as a table.

use std::collections::BTreeSet;

use crate::model::{ClientId, UserId, Username};

/// What an actor wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read preferences.
    Read,
    /// Create, change or delete preferences.
    Write,
}

/// The outcome of an access check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Answer exactly as if the target did not exist (404).
    Hide,
    /// The actor may know the target exists but may not do this (403).
    Forbid,
}

/// The identity a verified token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`.
    pub subject: String,
    /// The username the token gives (`preferred_username`, else `username`, else `sub`).
    pub username: Username,
    /// The `staff` role: reads anyone's preferences.
    pub staff: bool,
    /// The `admin` role: reads and writes anyone's preferences.
    pub admin: bool,
    /// The OAuth scopes granted.
    pub scopes: BTreeSet<String>,
    /// The client application the token was issued to (`client_id`, else `azp`).
    pub client_id: Option<ClientId>,
    /// The user's integer id at the identity provider (SelfCommunity's and Open edX's `user_id`),
    /// read from the claim `PREFS_JWT_USER_ID_CLAIM` names; `None` when that is not configured.
    /// A user first seen takes it as their prefs id ([`UserStore::provision`]), so that prefs
    /// and the provider name the same person with the same id; a token whose id is not that of
    /// the user bound to its subject is refused ([`Error::IdentityMismatch`]).
    ///
    /// [`UserStore::provision`]: crate::UserStore::provision
    /// [`Error::IdentityMismatch`]: crate::Error::IdentityMismatch
    pub provider_id: Option<UserId>,
}

/// May `actor` do `action` to the preferences of a user (`own` when that user is the actor)?
///
/// Owners do anything; `admin` does anything to anyone; `staff` reads anyone and is forbidden to
/// write others; everyone else is not told that other users exist.
pub fn user_access(actor: &Principal, own: bool, action: Action) -> Decision {
    match (own || actor.admin, actor.staff, action) {
        (true, _, _) | (false, true, Action::Read) => Decision::Allow,
        (false, true, Action::Write) => Decision::Forbid,
        (false, false, _) => Decision::Hide,
    }
}

/// The scope that grants `action` on the namespaces a token may reach.
pub fn scope(action: Action) -> &'static str {
    match action {
        Action::Read => "user:preferences:read",
        Action::Write => "user:preferences:write",
    }
}

/// May `actor` do `action` in client `namespace`? It needs the general scope for the action, and
/// the namespace must be the token's own client unless the token holds the client-specific scope
/// (`user:preferences:read:{client}` / `user:preferences:write:{client}`).
pub fn namespace_access(actor: &Principal, namespace: &ClientId, action: Action) -> Decision {
    let general = scope(action);
    let own_client = actor.client_id.as_ref() == Some(namespace);
    let specific = || actor.scopes.contains(&format!("{general}:{namespace}"));
    if actor.scopes.contains(general) && (own_client || specific()) {
        Decision::Allow
    } else {
        Decision::Forbid
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::{Read, Write};
    use Decision::{Allow, Forbid, Hide};

    fn principal(roles: &[&str], scopes: &[&str], client: Option<&str>) -> Principal {
        Principal {
            subject: "s".into(),
            username: Username::parse("u").unwrap(),
            staff: roles.contains(&"staff"),
            admin: roles.contains(&"admin"),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            client_id: client.map(|c| ClientId::parse(c).unwrap()),
            provider_id: None,
        }
    }

    #[test]
    fn user_access_table() {
        // (roles, own, action, expected)
        let table: &[(&[&str], bool, Action, Decision)] = &[
            (&[], true, Read, Allow),
            (&[], true, Write, Allow),
            (&[], false, Read, Hide),
            (&[], false, Write, Hide),
            (&["staff"], true, Write, Allow),
            (&["staff"], false, Read, Allow),
            (&["staff"], false, Write, Forbid),
            (&["admin"], false, Read, Allow),
            (&["admin"], false, Write, Allow),
            (&["staff", "admin"], false, Write, Allow),
            (&["other"], false, Read, Hide),
        ];
        for &(roles, own, action, expected) in table {
            let actor = principal(roles, &[], None);
            assert_eq!(user_access(&actor, own, action), expected, "{roles:?} own={own} {action:?}");
        }
    }

    #[test]
    fn namespace_access_table() {
        const R: &str = "user:preferences:read";
        const W: &str = "user:preferences:write";
        const RB: &str = "user:preferences:read:appB";
        const WB: &str = "user:preferences:write:appB";
        // (scopes, token client, [GET appA, write appA, GET appB, write appB])
        let table: &[(&[&str], Option<&str>, [Decision; 4])] = &[
            (&[R, W], Some("appA"), [Allow, Allow, Forbid, Forbid]),
            (&[R], Some("appA"), [Allow, Forbid, Forbid, Forbid]),
            (&[R, W, RB], Some("appA"), [Allow, Allow, Allow, Forbid]),
            (&[R, W, RB, WB], Some("appA"), [Allow, Allow, Allow, Allow]),
            (&[RB, WB], Some("appA"), [Forbid, Forbid, Forbid, Forbid]),
            (&[R, W], None, [Forbid, Forbid, Forbid, Forbid]),
            (&[], Some("appA"), [Forbid, Forbid, Forbid, Forbid]),
        ];
        let app_a = ClientId::parse("appA").unwrap();
        let app_b = ClientId::parse("appB").unwrap();
        for (scopes, client, expected) in table {
            let actor = principal(&[], scopes, *client);
            let got = [
                namespace_access(&actor, &app_a, Read),
                namespace_access(&actor, &app_a, Write),
                namespace_access(&actor, &app_b, Read),
                namespace_access(&actor, &app_b, Write),
            ];
            assert_eq!(&got, expected, "{scopes:?} {client:?}");
        }
    }
}
