//! The users a store remembers by token subject ([`Users`]), and the one way out of an operation
//! scoped to a user ([`UserScoped`]), which forgets them when it finds the user gone.

use std::sync::Arc;

use prefs_domain::{Error, Result, User};
use quick_cache::sync::Cache;

use crate::error::Failure;

/// The users remembered by token subject ([`StoreConfig::user_cache`](crate::StoreConfig)), if
/// any are.
#[derive(Clone)]
pub(crate) struct Users(Option<Arc<Cache<String, User>>>);

impl Users {
    /// Remembers up to `capacity` users; none when it is 0.
    pub(crate) fn new(capacity: usize) -> Self {
        Self((capacity > 0).then(|| Arc::new(Cache::new(capacity))))
    }

    /// The user remembered for `subject`.
    pub(crate) fn get(&self, subject: &str) -> Option<User> {
        self.0.as_ref().and_then(|users| users.get(subject))
    }

    /// Remembers `user` by its subject.
    pub(crate) fn insert(&self, user: &User) {
        if let Some(users) = &self.0 {
            users.insert(user.subject.clone(), user.clone());
        }
    }

    /// Forgets every remembered user: users are removed rarely, and the subject's next
    /// provisioning must then ask the database, whichever user is remembered for it.
    pub(crate) fn forget_all(&self) {
        if let Some(users) = &self.0 {
            users.clear();
        }
    }
}

/// The outcome of a read or write of one user's data, as a backend returns it. Its only way out
/// is [`UserScoped::noticed`], which forgets the remembered users when the user turned out gone:
/// a remembered user stays right while it exists, and a removal (by `prefs users remove` or
/// another instance) is noticed by the next read or write for it.
#[must_use]
pub(crate) struct UserScoped<T>(Result<T, Failure>);

impl<T> UserScoped<T> {
    /// What a backend found.
    pub(crate) fn new(out: Result<T, Failure>) -> Self {
        Self(out)
    }

    /// The outcome for the ports, having forgotten `users` if it is [`Error::UserNotFound`].
    pub(crate) fn noticed(self, users: &Users) -> Result<T> {
        let out = self.0.map_err(Error::from);
        if let Err(Error::UserNotFound) = out {
            users.forget_all();
        }
        out
    }
}
