//! [`MemoryStore`]: a complete [`Store`](crate::Store) in memory (feature `memory`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::Utc;

use crate::error::{Error, Result};
use crate::model::{Change, Namespace, Preference, PreferenceId, PreferenceKey, User, UserId, Username};
use crate::ports::{Edit, PreferenceStore, UserStore};

/// A [`Store`](crate::Store) that keeps everything in the process's memory, behind one lock: for
/// tests, for tools, and for services that embed prefs without a database. It holds to every
/// rule of the ports, as the contract suite (`prefs_domain::testing`, feature `testing`)
/// checks; its data lives as long as the store.
///
/// Clones share the data, as instances of one service over one database would.
///
/// ```
/// # use prefs_domain::{MemoryStore, UserStore, Username};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let alice = store.provision("sub-alice", &Username::parse("alice").unwrap(), None).await.unwrap();
/// assert_eq!(store.clone().user_by_subject("sub-alice").await.unwrap(), Some(alice));
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    data: Arc<Mutex<Data>>,
}

/// Everything a [`MemoryStore`] holds.
#[derive(Debug, Default)]
struct Data {
    /// Users by id.
    users: BTreeMap<UserId, Account>,
    /// Subjects' users.
    subjects: HashMap<String, UserId>,
    /// Usernames' users.
    usernames: HashMap<Username, UserId>,
    /// The highest user id ever held: the store assigns the ones above it, so it never assigns
    /// an id twice, nor one given explicitly before or after.
    last_user: i64,
    /// The last preference id assigned (never assigned again).
    last_preference: i64,
}

/// A user and what they hold.
#[derive(Debug)]
struct Account {
    user: User,
    /// By stored name (so [`PreferenceStore::all_preferences`] comes in its order), each ordered
    /// by id; none is empty.
    namespaces: BTreeMap<String, Vec<Preference>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The data, whatever a panic elsewhere left: every change is made whole or not at all.
    fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Data {
    fn account(&self, user: UserId) -> Result<&Account> {
        self.users.get(&user).ok_or(Error::UserNotFound)
    }

    fn namespace(&self, user: UserId, namespace: &Namespace) -> Result<&[Preference]> {
        let account = self.account(user)?;
        Ok(account.namespaces.get(namespace.as_str()).map_or(&[], Vec::as_slice))
    }

    /// The subject's user as `provision` leaves it, or why it cannot (then nothing changed).
    fn provision(&mut self, subject: &str, username: &Username, id: Option<UserId>) -> Result<User> {
        let taken = self.usernames.contains_key(username);
        let user_id = match self.subjects.get(subject).copied() {
            Some(known) if id.is_some_and(|id| id != known) => return Err(Error::IdentityMismatch),
            Some(known) => {
                let account = self.users.get_mut(&known).expect("a subject's user exists");
                if account.user.username == *username {
                    return Ok(account.user.clone());
                }
                if taken {
                    return Err(Error::UsernameTaken(username.to_string()));
                }
                self.usernames.remove(&account.user.username);
                account.user.username = username.clone();
                known
            }
            None => {
                if id.is_some_and(|id| self.users.contains_key(&id)) {
                    return Err(Error::IdentityMismatch);
                }
                if taken {
                    return Err(Error::UsernameTaken(username.to_string()));
                }
                let next = || self.last_user.checked_add(1).map(UserId).ok_or("no user id left");
                let id = id.map_or_else(next, Ok).map_err(|e| Error::Internal(e.into()))?;
                self.last_user = self.last_user.max(id.0);
                let user = User { id, subject: subject.to_owned(), username: username.clone() };
                self.users.insert(id, Account { user, namespaces: BTreeMap::new() });
                self.subjects.insert(subject.to_owned(), id);
                id
            }
        };
        self.usernames.insert(username.clone(), user_id);
        Ok(self.users[&user_id].user.clone())
    }

    /// Applies `changes` to `current` (a namespace of `user`, ordered by id), all or none.
    fn apply(
        &mut self,
        user: UserId,
        namespace: &Namespace,
        mut current: Vec<Preference>,
        changes: Vec<Change>,
    ) -> Result<Vec<Preference>> {
        let now = Utc::now();
        let position =
            |current: &[Preference], key: &PreferenceKey| current.iter().position(|p| p.key == *key);
        let mut last_preference = self.last_preference;
        for change in changes {
            match change {
                Change::Put { key, value } => match position(&current, &key) {
                    Some(i) => {
                        let p = &mut current[i];
                        (p.value, p.updated_at, p.version) = (value, now, p.version + 1);
                    }
                    None => {
                        last_preference += 1;
                        current.push(Preference {
                            id: PreferenceId(last_preference),
                            user_id: user,
                            namespace: namespace.clone(),
                            key,
                            value,
                            created_at: now,
                            updated_at: now,
                            version: 1,
                        });
                    }
                },
                Change::Delete { key } => current.retain(|p| p.key != key),
                Change::Rename { from, to } => {
                    let Some(i) = position(&current, &from) else {
                        return Err(Error::Internal(format!("rename of a missing key {from}").into()));
                    };
                    if from != to && position(&current, &to).is_some() {
                        return Err(Error::Internal(format!("rename onto the taken key {to}").into()));
                    }
                    let p = &mut current[i];
                    (p.key, p.updated_at, p.version) = (to, now, p.version + 1);
                }
            }
        }
        self.last_preference = last_preference;
        let namespaces = &mut self.users.get_mut(&user).expect("checked by the caller").namespaces;
        if current.is_empty() {
            namespaces.remove(namespace.as_str());
        } else {
            namespaces.insert(namespace.as_str().to_owned(), current.clone());
        }
        Ok(current)
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn provision(&self, subject: &str, username: &Username, id: Option<UserId>) -> Result<User> {
        crate::model::validate_user_id(id)?;
        self.data().provision(subject, username, id)
    }

    async fn user_by_subject(&self, subject: &str) -> Result<Option<User>> {
        let data = self.data();
        Ok(data.subjects.get(subject).map(|id| data.users[id].user.clone()))
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>> {
        Ok(self.data().users.get(&id).map(|account| account.user.clone()))
    }

    async fn user_by_username(&self, username: &Username) -> Result<Option<User>> {
        let data = self.data();
        Ok(data.usernames.get(username).map(|id| data.users[id].user.clone()))
    }

    async fn remove_user(&self, id: UserId) -> Result<bool> {
        let mut data = self.data();
        let Some(account) = data.users.remove(&id) else { return Ok(false) };
        data.subjects.remove(&account.user.subject);
        data.usernames.remove(&account.user.username);
        Ok(true)
    }
}

#[async_trait]
impl PreferenceStore for MemoryStore {
    async fn namespace(&self, user: UserId, namespace: &Namespace) -> Result<Vec<Preference>> {
        self.data().namespace(user, namespace).map(<[_]>::to_vec)
    }

    async fn preference(
        &self,
        user: UserId,
        namespace: &Namespace,
        key: &PreferenceKey,
    ) -> Result<Option<Preference>> {
        Ok(self.data().namespace(user, namespace)?.iter().find(|p| p.key == *key).cloned())
    }

    async fn preference_by_id(
        &self,
        user: UserId,
        namespace: &Namespace,
        id: PreferenceId,
    ) -> Result<Option<Preference>> {
        Ok(self.data().namespace(user, namespace)?.iter().find(|p| p.id == id).cloned())
    }

    async fn all_preferences(&self, user: UserId) -> Result<Vec<Preference>> {
        Ok(self.data().account(user)?.namespaces.values().flatten().cloned().collect())
    }

    async fn modify(&self, user: UserId, namespace: &Namespace, edit: Arc<Edit>) -> Result<Vec<Preference>> {
        // One lock over the read, the edit and the write: every write is atomic and isolated.
        let mut data = self.data();
        let current = data.namespace(user, namespace)?.to_vec();
        let changes = edit(&current)?;
        data.apply(user, namespace, current, changes)
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
