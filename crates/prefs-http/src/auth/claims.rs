//! Which claims name the user, their roles, scopes, client and id, as each identity provider
//! writes them. Only `sub` can make a verified token unusable: a roles, scope or client claim of
//! an unexpected type is ignored (logged at debug level).

use std::collections::BTreeSet;

use prefs_domain::{ClientId, Principal, UserId, Username, validate_subject};
use serde_json::Value;

/// One claim: a top-level name, or a JSON Pointer (RFC 6901) into the claims when it starts
/// with `/` (`/realm_access/roles`, `/https:~1~1example.com~1roles`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(String);

impl ClaimPath {
    /// The claim's value in `claims`, if present.
    fn find<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        if self.0.starts_with('/') { claims.pointer(&self.0) } else { claims.get(&self.0) }
    }

    /// The claim's own name: the last step of a pointer, unescaped.
    fn name(&self) -> String {
        match self.0.strip_prefix('/') {
            Some(pointer) => {
                pointer.rsplit('/').next().unwrap_or_default().replace("~1", "/").replace("~0", "~")
            }
            None => self.0.clone(),
        }
    }
}

/// Parses a comma list of claim names and pointers, skipping empty items.
pub fn claim_list(list: &str) -> Vec<ClaimPath> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| ClaimPath(s.to_owned())).collect()
}

/// A comma list of plain values (roles, issuers, audiences, client ids), skipping empty items.
pub fn value_list(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Where prefs reads each part of the principal from a token's claims.
#[derive(Debug, Clone)]
pub struct ClaimMap {
    /// The username: the first of these claims that holds a usable username.
    pub username: Vec<ClaimPath>,
    /// Roles: those of every claim listed, joined.
    pub roles: Vec<ClaimPath>,
    /// OAuth scopes: the first of these claims present.
    pub scope: Vec<ClaimPath>,
    /// The client application: the first of these claims present.
    pub client: Vec<ClaimPath>,
    /// The user's integer id at the identity provider, when configured.
    pub user_id: Vec<ClaimPath>,
    /// Role values that grant `staff`.
    pub staff_roles: Vec<String>,
    /// Role values that grant `admin`.
    pub admin_roles: Vec<String>,
}

impl Default for ClaimMap {
    fn default() -> Self {
        Self {
            username: claim_list(Self::USERNAME),
            roles: claim_list(Self::ROLES),
            scope: claim_list(Self::SCOPE),
            client: claim_list(Self::CLIENT),
            user_id: Vec::new(),
            staff_roles: value_list(Self::STAFF_ROLES),
            admin_roles: value_list(Self::ADMIN_ROLES),
        }
    }
}

impl ClaimMap {
    /// Default username claims.
    pub const USERNAME: &'static str = "preferred_username,username,sub";
    /// Default roles claims.
    pub const ROLES: &'static str = "roles";
    /// Default scope claims.
    pub const SCOPE: &'static str = "scope,scp,scopes";
    /// Default client claims.
    pub const CLIENT: &'static str = "client_id,azp,cid,appid";
    /// Default staff role values.
    pub const STAFF_ROLES: &'static str = "staff";
    /// Default admin role values.
    pub const ADMIN_ROLES: &'static str = "admin";

    /// The principal of verified `claims`.
    ///
    /// # Errors
    /// A reason for a 401 when `sub` is not a non-empty string of at most 255 bytes, or no
    /// username claim holds a usable username.
    pub fn principal(&self, claims: &Value) -> Result<Principal, String> {
        let subject = match claims.get("sub") {
            Some(Value::String(sub)) => sub.clone(),
            _ => return Err("the token's `sub` is not a string".into()),
        };
        validate_subject(&subject).map_err(|e| format!("the token's `sub`: {e}"))?;
        let username = self
            .username
            .iter()
            .find_map(|path| match path.find(claims) {
                Some(Value::String(name)) => Username::parse(name)
                    .inspect_err(|e| tracing::debug!(claim = path.0, "unusable username: {e}"))
                    .ok(),
                _ => None,
            })
            .ok_or("the token names no usable username (at most 255 bytes, no control characters)")?;
        let roles = self.roles(claims);
        let has = |granting: &[String]| granting.iter().any(|r| roles.contains(r));
        Ok(Principal {
            staff: has(&self.staff_roles),
            admin: has(&self.admin_roles),
            subject,
            username,
            scopes: self.scopes(claims),
            client_id: self.client(claims),
            provider_id: self.user_id(claims),
        })
    }

    fn roles(&self, claims: &Value) -> BTreeSet<String> {
        let mut roles = BTreeSet::new();
        for path in &self.roles {
            match path.find(claims) {
                None | Some(Value::Bool(false)) => {}
                Some(Value::String(role)) => {
                    roles.insert(role.clone());
                }
                Some(Value::Array(items)) => {
                    roles.extend(items.iter().filter_map(Value::as_str).map(str::to_owned));
                }
                // ZITADEL: the member names are the roles.
                Some(Value::Object(members)) => roles.extend(members.keys().cloned()),
                // Open edX's `administrator: true`: the claim's own name is the role.
                Some(Value::Bool(true)) => {
                    roles.insert(path.name());
                }
                Some(other) => ignored(path, "roles", other),
            }
        }
        roles
    }

    fn scopes(&self, claims: &Value) -> BTreeSet<String> {
        let Some((path, value)) = self.first(&self.scope, claims) else { return BTreeSet::new() };
        match value {
            Value::String(scopes) => scopes.split_ascii_whitespace().map(str::to_owned).collect(),
            Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            other => {
                ignored(path, "scope", other);
                BTreeSet::new()
            }
        }
    }

    fn client(&self, claims: &Value) -> Option<ClientId> {
        let (path, value) = self.first(&self.client, claims)?;
        match value.as_str().map(ClientId::parse) {
            Some(Ok(client)) => Some(client),
            _ => {
                ignored(path, "client", value);
                None
            }
        }
    }

    fn user_id(&self, claims: &Value) -> Option<UserId> {
        let (path, value) = self.first(&self.user_id, claims)?;
        let id = match value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        match id {
            Some(id) if id > 0 => Some(UserId(id)),
            _ => {
                ignored(path, "user id", value);
                None
            }
        }
    }

    /// The first of `paths` present in `claims`, with its value.
    fn first<'p, 'c>(&self, paths: &'p [ClaimPath], claims: &'c Value) -> Option<(&'p ClaimPath, &'c Value)> {
        paths.iter().find_map(|path| path.find(claims).map(|value| (path, value)))
    }
}

fn ignored(path: &ClaimPath, what: &str, value: &Value) {
    tracing::debug!(claim = path.0, "the {what} claim has an unexpected value ({value}); ignored");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn principal(map: &ClaimMap, claims: Value) -> Result<Principal, String> {
        map.principal(&claims)
    }

    #[test]
    fn roles_from_strings_arrays_objects_and_true() {
        let map = ClaimMap {
            roles: claim_list("roles,/realm_access/roles,/urn:zitadel:iam:org:project:roles,administrator"),
            staff_roles: value_list("staff,administrator"),
            admin_roles: value_list("admin,superuser"),
            ..ClaimMap::default()
        };
        let table = [
            (json!({"roles": "admin"}), false, true),
            (json!({"roles": ["staff", 5]}), true, false),
            (json!({"realm_access": {"roles": ["superuser"]}}), false, true),
            (json!({"urn:zitadel:iam:org:project:roles": {"staff": {"1": "org"}}}), true, false),
            (json!({"administrator": true}), true, false),
            (json!({"administrator": false, "roles": 7}), false, false),
        ];
        for (mut claims, staff, admin) in table {
            claims["sub"] = json!("s1");
            let p = principal(&map, claims.clone()).unwrap();
            assert_eq!((p.staff, p.admin), (staff, admin), "{claims}");
        }
    }

    #[test]
    fn scopes_clients_and_usernames_take_the_first_claim_present() {
        let map = ClaimMap::default();
        let p = principal(
            &map,
            json!({"sub": "auth0|64f1", "scp": ["a", "b"], "azp": "https://app.example.com", "cid": "x"}),
        )
        .unwrap();
        assert_eq!(p.username.as_str(), "auth0|64f1");
        assert_eq!(p.scopes, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
        assert_eq!(p.client_id.unwrap().as_str(), "https://app.example.com");
        let p = principal(
            &map,
            json!({"sub": "s", "scope": 5, "client_id": ["x"], "preferred_username": "bad\u{1}"}),
        )
        .unwrap();
        assert!(p.scopes.is_empty() && p.client_id.is_none(), "odd types are ignored");
        assert_eq!(p.username.as_str(), "s", "an unusable username falls back to the next claim");
    }

    #[test]
    fn sub_must_be_a_short_non_empty_string() {
        let map = ClaimMap::default();
        for sub in [json!(""), json!("x".repeat(256)), json!(5)] {
            assert!(principal(&map, json!({"sub": sub, "username": "zed"})).is_err(), "{sub}");
        }
        assert!(principal(&map, json!({"sub": "x".repeat(255)})).is_ok());
    }

    #[test]
    fn user_ids_are_positive_integers() {
        let map = ClaimMap { user_id: claim_list("user_id"), ..ClaimMap::default() };
        for (id, expected) in
            [(json!(42), Some(42)), (json!("42"), Some(42)), (json!(0), None), (json!(true), None)]
        {
            let p = principal(&map, json!({"sub": "s", "user_id": id})).unwrap();
            assert_eq!(p.provider_id, expected.map(UserId));
        }
    }
}
