//! The ports a storage adapter implements. Each method states what it MUST do; the contract suite
//! `prefs_domain::testing` (feature `testing`) holds every store to it, and a store passes when
//! its `run_all` does.
//!
//! Rules that span the methods, which the service relies on:
//!
//! - **Ordered by id.** A namespace ([`PreferenceStore::namespace`], what
//!   [`PreferenceStore::modify`] shows its edit and returns) MUST come ordered by preference id,
//!   ascending, every time: a namespace's tag ([`ETag::of_namespace`](crate::ETag::of_namespace))
//!   digests it in that order, so an unchanged namespace MUST keep its tag.
//! - **Ids are never reused.** The ids a store assigns, to preferences and to users (without an
//!   explicit id), MUST grow and MUST NOT be assigned again, not even once the row holding the
//!   highest is gone: a new preference sorts after every one before it, and a record id or a tag
//!   never names two things.
//! - **No stale reads.** Once a write ([`UserStore::provision`], [`UserStore::remove_user`],
//!   [`PreferenceStore::modify`]) is acknowledged, every read that starts afterwards, through this
//!   instance or any other over the same data, MUST reflect it: a read never returns less than an
//!   acknowledged write, whatever the store remembers. (Only [`UserStore::user_by_subject`] may
//!   still return a removed user.)

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{Change, Namespace, Preference, PreferenceId, PreferenceKey, User, UserId, Username};

/// Plans the changes of one write from the namespace's current preferences. The store runs it
/// inside its transaction, on whichever thread that runs on, and may call it more than once if it
/// retries a transaction, so it must not have side effects.
pub type Edit = dyn Fn(&[Preference]) -> Result<Vec<Change>> + Send + Sync;

/// Users: just-in-time provisioning and lookups.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Returns the user with this subject, creating it with `username` if it is new and updating
    /// its username if it changed. Two first calls for one new subject at once, with or without
    /// `id`, through one instance or several, MUST give one user, which both return.
    ///
    /// `id` is the user's id at the identity provider
    /// ([`Principal::provider_id`](crate::Principal::provider_id)), when the deployment takes ids
    /// from there:
    /// - `Some(id)`: a new subject's user MUST be created with exactly this id, and a known
    ///   subject's user MUST already have it. While the user exists the id stays bound to its
    ///   subject: it is never given to another subject, and no two users are ever merged. Once
    ///   the user is removed, the id may be given again (to the subject the provider gives it).
    /// - `None`: a new subject's user gets an id the store assigns: one no user holds (explicit
    ///   ids included, whether inserted before or after it) and that the store never assigned
    ///   before. A known subject's user is returned whatever its id.
    ///
    /// A store that remembers users MUST NOT let what it remembers hide a mismatch.
    ///
    /// # Errors
    /// MUST return, having written nothing:
    /// [`Error::IdentityMismatch`](crate::Error::IdentityMismatch) when `id` is given and the
    /// subject's user has another id, or another subject's user holds `id`;
    /// [`Error::Invalid`](crate::Error::Invalid) when `id` is not positive;
    /// [`Error::UsernameTaken`](crate::Error::UsernameTaken) when another subject holds
    /// `username`; and [`Error::Unavailable`](crate::Error::Unavailable) when the database cannot
    /// be reached.
    async fn provision(&self, subject: &str, username: &Username, id: Option<UserId>) -> Result<User>;

    /// The user with this subject, if any, without creating it: tells whether a sign-in would
    /// provision a new user (the service admits new subjects before provisioning them). It MUST
    /// return `Some` for every subject [`UserStore::provision`] has returned a user for while that
    /// user exists, and `None` for a subject that never had one. A store that remembers users MAY
    /// answer from what it remembers, so a user removed meanwhile may still be returned.
    ///
    /// # Errors
    /// As [`UserStore::user_by_id`].
    async fn user_by_subject(&self, subject: &str) -> Result<Option<User>>;

    /// The user with this id, if any.
    ///
    /// # Errors
    /// [`Error::Unavailable`](crate::Error::Unavailable) when the database cannot be reached.
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>>;

    /// The user with this username (compared exactly), if any.
    ///
    /// # Errors
    /// As [`UserStore::user_by_id`].
    async fn user_by_username(&self, username: &Username) -> Result<Option<User>>;

    /// Erases the user and every preference they hold in every namespace, so that reads and
    /// writes of the user are then [`Error::UserNotFound`](crate::Error::UserNotFound) and the
    /// subject's next provisioning makes a new user with nothing. Returns whether the user existed.
    ///
    /// # Errors
    /// As [`UserStore::user_by_id`].
    async fn remove_user(&self, id: UserId) -> Result<bool>;
}

/// Preferences: reads, and transactional read-modify-write of one namespace.
#[async_trait]
pub trait PreferenceStore: Send + Sync {
    /// Every preference of `user` in `namespace`, ordered by id.
    ///
    /// # Errors
    /// MUST return [`Error::UserNotFound`](crate::Error::UserNotFound) when the user does not
    /// exist (an adapter that caches users learns this way that a user was removed), and
    /// [`Error::Unavailable`](crate::Error::Unavailable) when the database cannot be reached.
    async fn namespace(&self, user: UserId, namespace: &Namespace) -> Result<Vec<Preference>>;

    /// One preference by key, if it exists.
    ///
    /// # Errors
    /// As [`PreferenceStore::namespace`].
    async fn preference(
        &self,
        user: UserId,
        namespace: &Namespace,
        key: &PreferenceKey,
    ) -> Result<Option<Preference>>;

    /// One preference by id, if it exists, belongs to `user` and lives in `namespace`.
    ///
    /// # Errors
    /// As [`PreferenceStore::namespace`].
    async fn preference_by_id(
        &self,
        user: UserId,
        namespace: &Namespace,
        id: PreferenceId,
    ) -> Result<Option<Preference>>;

    /// Every preference of `user` in every namespace, ordered by namespace, then id.
    ///
    /// # Errors
    /// As [`PreferenceStore::namespace`].
    async fn all_preferences(&self, user: UserId) -> Result<Vec<Preference>>;

    /// Runs `edit` on the current preferences of `user` in `namespace` (ordered by id, as
    /// [`PreferenceStore::namespace`] returns them) and applies the changes it returns, in order,
    /// all in one transaction that excludes every other write to the same user, so concurrent
    /// writes never lose each other's changes. Returns the namespace afterwards, ordered by id.
    /// A `Put` of an existing key keeps its id and `created_at`, and moves `updated_at` and
    /// `version` (by one, even for the same value); a new key gets a new id and starts at version
    /// 1, with `created_at` = `updated_at`. A `Delete` of a missing key changes nothing. A
    /// `Rename` keeps the id, value and `created_at`, and moves `updated_at` and `version`.
    ///
    /// # Errors
    /// MUST return the error of `edit` unchanged, having written nothing;
    /// [`Error::Internal`](crate::Error::Internal), having written nothing (not even the changes
    /// before it), for a `Rename` of a missing key or onto a key that is taken: the service checks
    /// both before it plans one, so either is a bug;
    /// [`Error::UserNotFound`](crate::Error::UserNotFound) when the user does not exist (removed
    /// meanwhile); otherwise as [`PreferenceStore::namespace`].
    async fn modify(&self, user: UserId, namespace: &Namespace, edit: Arc<Edit>) -> Result<Vec<Preference>>;

    /// Checks that the database answers.
    ///
    /// # Errors
    /// [`Error::Unavailable`](crate::Error::Unavailable) when it does not.
    async fn ping(&self) -> Result<()>;
}

/// Everything prefs needs from storage.
pub trait Store: UserStore + PreferenceStore {}

impl<T: UserStore + PreferenceStore + ?Sized> Store for T {}
