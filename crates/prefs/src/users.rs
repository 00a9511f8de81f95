//! The JSON that `prefs users` prints.

use prefs_domain::{Preference, User};
use serde_json::{Map, Value, json};

/// A user as JSON: `{id, subject, username}`.
pub fn user_json(user: &User) -> Value {
    json!({ "id": user.id, "subject": user.subject, "username": user.username })
}

/// Everything prefs holds about a user: `{user, namespaces: {namespace: {key: {id, value,
/// created_at, last_updated_at}}}}`.
pub fn export_json(user: &User, preferences: &[Preference]) -> Value {
    let mut namespaces = Map::new();
    for p in preferences {
        let namespace = namespaces.entry(p.namespace.as_str()).or_insert_with(|| Value::Object(Map::new()));
        namespace[p.key.as_str()] = json!({
            "id": p.id,
            "value": p.value,
            "created_at": p.created_at.to_rfc3339(),
            "last_updated_at": p.updated_at.to_rfc3339(),
        });
    }
    json!({ "user": user_json(user), "namespaces": namespaces })
}
