//! [`PreferenceService`]: the access rules applied, then the ports called. Every dialect goes
//! through it, so the rules hold the same way everywhere.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::access::{self, Action, Decision, Principal};
use crate::conditions::{ETag, Preconditions};
use crate::error::{Error, FieldCode, FieldError, Result};
use crate::limits::Limits;
use crate::merge_patch;
use crate::model::{
    Change, Namespace, Preference, PreferenceId, PreferenceKey, PreferenceValue, User, UserId, Username,
};
use crate::ports::{Edit, Store};

/// An authenticated caller: the token's principal and the user prefs knows them as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// What the token says.
    pub principal: Principal,
    /// The provisioned user.
    pub user: User,
}

/// Whose preferences a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    /// The actor.
    Me,
    /// A user by id.
    Id(UserId),
    /// A user by username, as it came in the request (not yet validated).
    Username(String),
    /// A user [`PreferenceService::authorize`] already found: access is decided again from the
    /// actor's roles, but the user is not looked up again.
    Known(User),
}

/// The preferences service: every operation checks access for the acting user first.
#[derive(Clone)]
pub struct PreferenceService {
    store: Arc<dyn Store>,
    limits: Limits,
}

impl PreferenceService {
    /// A service over `store` enforcing `limits`.
    pub fn new(store: Arc<dyn Store>, limits: Limits) -> Self {
        Self { store, limits }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Provisions the token's user just in time and returns the actor. With a provider id
    /// ([`Principal::provider_id`]), a new user takes it as their id and a known one must have it.
    ///
    /// # Errors
    /// [`Error::UsernameTaken`] when another subject holds the username;
    /// [`Error::IdentityMismatch`] when the provider id is not positive, is not the id of the
    /// subject's user, or is another subject's user's; storage errors.
    pub async fn sign_in(&self, principal: Principal) -> Result<Actor> {
        if principal.provider_id.is_some_and(|id| id.0 <= 0) {
            return Err(Error::IdentityMismatch);
        }
        let user =
            self.store.provision(&principal.subject, &principal.username, principal.provider_id).await?;
        Ok(Actor { principal, user })
    }

    /// Whether signing `principal` in would create a user: no user has its subject yet. Lets the
    /// caller admit new users (limit how fast they appear) before [`PreferenceService::sign_in`]
    /// creates them.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn is_new(&self, principal: &Principal) -> Result<bool> {
        Ok(self.store.user_by_subject(&principal.subject).await?.is_none())
    }

    /// Operators: creates the user with this subject and username, or renames the subject's user.
    /// With `id` (the user's id at the identity provider) a new user takes it, as at their first
    /// sign-in ([`UserStore::provision`](crate::UserStore::provision)); without it prefs assigns
    /// one. No access rules apply: only trusted callers (the `prefs users` command) may call this.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an unusable username, subject or id (not positive);
    /// [`Error::IdentityMismatch`] when the subject's user has another id or another user has
    /// `id`; as [`PreferenceService::sign_in`].
    pub async fn add_user(&self, subject: &str, username: &str, id: Option<UserId>) -> Result<User> {
        let username = Username::parse(username)
            .map_err(|e| FieldError::new("username", FieldCode::Invalid, e.to_string()))?;
        crate::model::validate_subject(subject)
            .map_err(|e| FieldError::new("subject", FieldCode::Invalid, e.to_string()))?;
        crate::model::validate_user_id(id)?;
        self.store.provision(subject, &username, id).await
    }

    /// Operators: the user and every preference they hold, in every namespace (ordered by
    /// namespace, then id). No access rules apply.
    ///
    /// # Errors
    /// [`Error::UserNotFound`] when no user has this username; storage errors.
    pub async fn export_user(&self, username: &str) -> Result<(User, Vec<Preference>)> {
        let user = self.find_username(username).await?;
        let preferences = self.store.all_preferences(user.id).await?;
        Ok((user, preferences))
    }

    /// Operators: erases the user and all their preferences (the right to be forgotten). No
    /// access rules apply.
    ///
    /// # Errors
    /// As [`PreferenceService::export_user`].
    pub async fn remove_user(&self, username: &str) -> Result<User> {
        let user = self.find_username(username).await?;
        if self.store.remove_user(user.id).await? { Ok(user) } else { Err(Error::UserNotFound) }
    }

    async fn find_username(&self, username: &str) -> Result<User> {
        let username = Username::parse(username).map_err(|_| Error::UserNotFound)?;
        self.store.user_by_username(&username).await?.ok_or(Error::UserNotFound)
    }

    /// Checks that the store answers.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when it does not.
    pub async fn ping(&self) -> Result<()> {
        self.store.ping().await
    }

    /// Resolves `target` for `action` by `actor`, applying [`access::user_access`].
    ///
    /// # Errors
    /// [`Error::UserNotFound`] when the user does not exist or is hidden from the actor;
    /// [`Error::Forbidden`] when the actor may see but not write them.
    pub async fn user(&self, actor: &Actor, target: &UserRef, action: Action) -> Result<User> {
        let own = match target {
            UserRef::Me => true,
            UserRef::Id(id) => *id == actor.user.id,
            UserRef::Username(name) => name == actor.user.username.as_str(),
            UserRef::Known(user) => user.id == actor.user.id,
        };
        if own {
            return Ok(actor.user.clone());
        }
        let decision = access::user_access(&actor.principal, false, action);
        if decision == Decision::Hide {
            return Err(Error::UserNotFound);
        }
        let user = match target {
            UserRef::Me => None,
            UserRef::Id(id) => self.store.user_by_id(*id).await?,
            UserRef::Username(name) => match Username::parse(name) {
                Ok(name) => self.store.user_by_username(&name).await?,
                Err(_) => None,
            },
            UserRef::Known(user) => Some(user.clone()),
        };
        match (user, decision) {
            (None, _) => Err(Error::UserNotFound),
            (Some(_), Decision::Forbid) => Err(Error::Forbidden),
            (Some(user), _) => Ok(user),
        }
    }

    /// Decides whether `actor` may do `action` to the preferences of `target` in `namespace`, and
    /// finds that user: first the token's scopes for a client namespace
    /// ([`access::namespace_access`]; the global namespace needs none), then the user
    /// ([`PreferenceService::user`]). Nothing else is looked at, no preference is read.
    ///
    /// Handlers call it before they read a request body (docs/contract.md §4.3), so that a
    /// refused caller never has their body read, and name the user it returns as
    /// [`UserRef::Known`] in the call that follows, which then does not look them up again. The
    /// operations below make the same decision themselves, in the same order.
    ///
    /// # Errors
    /// [`Error::Forbidden`] without the namespace's scope; as [`PreferenceService::user`].
    pub async fn authorize(
        &self,
        actor: &Actor,
        target: &UserRef,
        namespace: &Namespace,
        action: Action,
    ) -> Result<User> {
        if let Namespace::Client(client) = namespace
            && access::namespace_access(&actor.principal, client, action) != Decision::Allow
        {
            return Err(Error::Forbidden);
        }
        self.user(actor, target, action).await
    }

    /// Every preference of the target in `namespace`, ordered by id.
    ///
    /// # Errors
    /// As [`PreferenceService::user`], and [`Error::Forbidden`] without the namespace's scope.
    pub async fn namespace(
        &self,
        actor: &Actor,
        target: &UserRef,
        namespace: &Namespace,
    ) -> Result<Vec<Preference>> {
        self.as_owner(actor, target, namespace, Action::Read, |user| self.store.namespace(user.id, namespace))
            .await
    }

    /// One preference by key.
    ///
    /// # Errors
    /// As [`PreferenceService::namespace`]; [`Error::PreferenceNotFound`] when the key is invalid
    /// or not set.
    pub async fn preference(
        &self,
        actor: &Actor,
        target: &UserRef,
        namespace: &Namespace,
        key: &str,
    ) -> Result<Preference> {
        let user = self.authorize(actor, target, namespace, Action::Read).await?;
        let key = PreferenceKey::parse_in(namespace, key).map_err(|_| Error::PreferenceNotFound)?;
        let found = self.again_if_gone(actor, user, |user| self.store.preference(user.id, namespace, &key));
        found.await?.ok_or(Error::PreferenceNotFound)
    }

    /// Applies an RFC 7396 merge patch to the namespace, all or nothing, and returns the namespace
    /// afterwards. `conditions` are checked against the namespace's tag
    /// ([`ETag::of_namespace`]) in the same transaction.
    ///
    /// # Errors
    /// As [`PreferenceService::namespace`] for writing; [`Error::Invalid`] and
    /// [`Error::TooManyKeys`] as [`merge_patch::merge_patch`] (the namespace's limits:
    /// [`merge_patch::check_limits`]); [`Error::PreconditionFailed`].
    pub async fn merge_patch(
        &self,
        actor: &Actor,
        target: &UserRef,
        namespace: &Namespace,
        patch: &Map<String, Value>,
        conditions: &Preconditions,
    ) -> Result<Vec<Preference>> {
        merge_patch::check_member_names(namespace, patch)?;
        let (conditions, patch, limits) = (conditions.clone(), patch.clone(), self.limits);
        self.write(actor, target, namespace, move |current| {
            conditions.check_write(Some(&ETag::of_namespace(current)))?;
            merge_patch::merge_patch(current, &patch, &limits)
        })
        .await
    }

    /// Replaces the whole namespace with `members` (`null` members are absent).
    ///
    /// # Errors
    /// As [`PreferenceService::merge_patch`].
    pub async fn replace(
        &self,
        actor: &Actor,
        target: &UserRef,
        namespace: &Namespace,
        members: &Map<String, Value>,
        conditions: &Preconditions,
    ) -> Result<Vec<Preference>> {
        merge_patch::check_member_names(namespace, members)?;
        let (conditions, members, limits) = (conditions.clone(), members.clone(), self.limits);
        self.write(actor, target, namespace, move |current| {
            conditions.check_write(Some(&ETag::of_namespace(current)))?;
            merge_patch::replace_all(current, &members, &limits)
        })
        .await
    }

    /// Sets one key to `value` and returns the stored preference. `conditions` are checked against
    /// the preference's tag ([`ETag::of_preference`]; none when the key is not set).
    ///
    /// # Errors
    /// As [`PreferenceService::merge_patch`]; the field of an [`Error::Invalid`] is the key.
    pub async fn put(
        &self,
        actor: &Actor,
        target: &UserRef,
        namespace: &Namespace,
        key: &str,
        value: Value,
        conditions: &Preconditions,
    ) -> Result<Preference> {
        let key = PreferenceKey::parse_in(namespace, key)?;
        let value = PreferenceValue::new(value, key.as_str(), &self.limits)?;
        let (name, conditions, limits) = (key.clone(), conditions.clone(), self.limits);
        let after = self
            .write(actor, target, namespace, move |current| {
                conditions.check_write(tag_of(current, |p| p.key == name).as_ref())?;
                let changes = vec![Change::Put { key: name.clone(), value: value.clone() }];
                merge_patch::check_limits(current, &changes, &limits)?;
                Ok(changes)
            })
            .await?;
        find(after, |p| p.key == key)
    }

    /// Deletes one key.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an invalid key; as [`PreferenceService::namespace`] for writing;
    /// [`Error::PreconditionFailed`] as [`PreferenceService::put`], checked before
    /// [`Error::PreferenceNotFound`] when the key is not set (nothing is written then).
    pub async fn delete(
        &self,
        actor: &Actor,
        target: &UserRef,
        namespace: &Namespace,
        key: &str,
        conditions: &Preconditions,
    ) -> Result<()> {
        let (key, conditions) = (PreferenceKey::parse_in(namespace, key)?, conditions.clone());
        self.write(actor, target, namespace, move |current| {
            let found = current.iter().find(|p| p.key == key);
            conditions.check_write(found.map(ETag::of_preference).as_ref())?;
            let found = found.ok_or(Error::PreferenceNotFound)?;
            Ok(vec![Change::Delete { key: found.key.clone() }])
        })
        .await
        .map(drop)
    }

    /// One record (a preference of the global namespace) by id.
    ///
    /// # Errors
    /// As [`PreferenceService::namespace`]; [`Error::PreferenceNotFound`] when the id is not one
    /// of the target's records.
    pub async fn record(&self, actor: &Actor, target: &UserRef, id: PreferenceId) -> Result<Preference> {
        let user = self.user(actor, target, Action::Read).await?;
        self.store.preference_by_id(user.id, &Namespace::Global, id).await?.ok_or(Error::PreferenceNotFound)
    }

    /// Creates a record; the key must not exist yet.
    ///
    /// # Errors
    /// As [`PreferenceService::put`], and [`Error::Invalid`] (field `key`, code `exists`) when the
    /// key is taken.
    pub async fn create_record(
        &self,
        actor: &Actor,
        target: &UserRef,
        key: &str,
        value: Value,
    ) -> Result<Preference> {
        let key = PreferenceKey::parse_member(key).map_err(|e| field("key", e))?;
        let value = PreferenceValue::new(value, "value", &self.limits)?;
        let (name, limits) = (key.clone(), self.limits);
        let after = self
            .write(actor, target, &Namespace::Global, move |current| {
                if current.iter().any(|p| p.key == name) {
                    return Err(key_exists());
                }
                let changes = vec![Change::Put { key: name.clone(), value: value.clone() }];
                merge_patch::check_limits(current, &changes, &limits).map_err(|e| in_field("value", e))?;
                Ok(changes)
            })
            .await?;
        find(after, |p| p.key == key)
    }

    /// Updates a record: a new key renames it (the new key must be free), a new value replaces its
    /// value; either may be absent. When the namespace would grow over its bytes, the error names
    /// `value` if a value was given, else `key`.
    ///
    /// # Errors
    /// As [`PreferenceService::create_record`]; [`Error::PreferenceNotFound`] when the id is not
    /// one of the target's records, then [`Error::PreconditionFailed`] when `conditions` do not
    /// hold for the record's tag.
    pub async fn update_record(
        &self,
        actor: &Actor,
        target: &UserRef,
        id: PreferenceId,
        key: Option<&str>,
        value: Option<Value>,
        conditions: &Preconditions,
    ) -> Result<Preference> {
        let key = key.map(|k| PreferenceKey::parse_member(k).map_err(|e| field("key", e))).transpose()?;
        let value = value.map(|v| PreferenceValue::new(v, "value", &self.limits)).transpose()?;
        let user = self.authorize_record(actor, target, id).await?;
        let (conditions, limits) = (conditions.clone(), self.limits);
        let member = if value.is_some() { "value" } else { "key" };
        let after = self
            .store
            .modify(
                user.id,
                &Namespace::Global,
                Arc::new(move |current| {
                    let record = writable_record(current, id, &conditions)?;
                    let mut changes = Vec::new();
                    let mut name = record.key.clone();
                    if let Some(to) = key.as_ref().filter(|to| **to != record.key) {
                        if current.iter().any(|p| p.key == *to) {
                            return Err(key_exists());
                        }
                        changes.push(Change::Rename { from: record.key.clone(), to: to.clone() });
                        name = to.clone();
                    }
                    let value = value.clone().unwrap_or_else(|| record.value.clone());
                    changes.push(Change::Put { key: name, value });
                    merge_patch::check_limits(current, &changes, &limits).map_err(|e| in_field(member, e))?;
                    Ok(changes)
                }),
            )
            .await?;
        find(after, |p| p.id == id)
    }

    /// Deletes a record.
    ///
    /// # Errors
    /// As [`PreferenceService::update_record`].
    pub async fn delete_record(
        &self,
        actor: &Actor,
        target: &UserRef,
        id: PreferenceId,
        conditions: &Preconditions,
    ) -> Result<()> {
        let user = self.authorize_record(actor, target, id).await?;
        let conditions = conditions.clone();
        self.store
            .modify(
                user.id,
                &Namespace::Global,
                Arc::new(move |current| {
                    let record = writable_record(current, id, &conditions)?;
                    Ok(vec![Change::Delete { key: record.key.clone() }])
                }),
            )
            .await
            .map(drop)
    }

    /// [`PreferenceService::authorize`] for writing record `id` (a preference of the global
    /// namespace): a staff member writing someone else's record learns that it does not exist
    /// (404) before being forbidden (403), as for users. For anyone allowed to write, whether the
    /// record exists is left to the write.
    ///
    /// # Errors
    /// As [`PreferenceService::user`] for writing; [`Error::PreferenceNotFound`] for a staff
    /// member naming a record the user does not have.
    pub async fn authorize_record(&self, actor: &Actor, target: &UserRef, id: PreferenceId) -> Result<User> {
        match self.user(actor, target, Action::Write).await {
            Err(Error::Forbidden) => {
                let owner = self.user(actor, target, Action::Read).await?;
                self.store
                    .preference_by_id(owner.id, &Namespace::Global, id)
                    .await?
                    .ok_or(Error::PreferenceNotFound)?;
                Err(Error::Forbidden)
            }
            other => other,
        }
    }

    async fn write(
        &self,
        actor: &Actor,
        target: &UserRef,
        namespace: &Namespace,
        edit: impl Fn(&[Preference]) -> Result<Vec<Change>> + Send + Sync + 'static,
    ) -> Result<Vec<Preference>> {
        let edit: Arc<Edit> = Arc::new(edit);
        self.as_owner(actor, target, namespace, Action::Write, |user| {
            self.store.modify(user.id, namespace, edit.clone())
        })
        .await
    }

    /// Runs `op` on the user [`PreferenceService::authorize`] resolves, with
    /// [`PreferenceService::again_if_gone`].
    async fn as_owner<T, F: Future<Output = Result<T>>>(
        &self,
        actor: &Actor,
        target: &UserRef,
        namespace: &Namespace,
        action: Action,
        op: impl Fn(User) -> F,
    ) -> Result<T> {
        let user = self.authorize(actor, target, namespace, action).await?;
        self.again_if_gone(actor, user, op).await
    }

    /// Runs `op` on `user`. When `user` is the actor and the store no longer knows them (removed
    /// since they signed in, through this instance or another), signs them in again and runs
    /// `op` once more for the new user, as their next request would.
    async fn again_if_gone<T, F: Future<Output = Result<T>>>(
        &self,
        actor: &Actor,
        user: User,
        op: impl Fn(User) -> F,
    ) -> Result<T> {
        let own = user.id == actor.user.id;
        match op(user).await {
            Err(Error::UserNotFound) if own => {
                let principal = &actor.principal;
                let provisioned =
                    self.store.provision(&principal.subject, &principal.username, principal.provider_id);
                op(provisioned.await?).await
            }
            other => other,
        }
    }
}

/// Record `id` among `current`, once `conditions` hold for its tag.
fn writable_record<'a>(
    current: &'a [Preference],
    id: PreferenceId,
    conditions: &Preconditions,
) -> Result<&'a Preference> {
    let record = current.iter().find(|p| p.id == id).ok_or(Error::PreferenceNotFound)?;
    conditions.check_write(Some(&ETag::of_preference(record)))?;
    Ok(record)
}

/// The tag of the preference `which` picks, if it exists.
fn tag_of(current: &[Preference], which: impl Fn(&Preference) -> bool) -> Option<ETag> {
    current.iter().find(|p| which(p)).map(ETag::of_preference)
}

fn find(after: Vec<Preference>, which: impl Fn(&Preference) -> bool) -> Result<Preference> {
    after.into_iter().find(which).ok_or_else(|| Error::Internal("the written preference is missing".into()))
}

fn field(name: &str, error: FieldError) -> FieldError {
    FieldError { field: name.to_owned(), ..error }
}

/// `error` with the member of each field error renamed `name`: a record's fields are `key` and
/// `value`, not its key.
fn in_field(name: &str, error: Error) -> Error {
    match error {
        Error::Invalid(errors) => Error::Invalid(errors.into_iter().map(|e| field(name, e)).collect()),
        other => other,
    }
}

fn key_exists() -> Error {
    Error::invalid(FieldError::new("key", FieldCode::Exists, "A preference with this key already exists."))
}
