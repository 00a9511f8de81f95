//! The reads of one user's preferences that the ports answer most ([`Read`]), and the answers
//! both backends remember ([`Remembered`]), each with what tells whether it is still right.

use std::sync::Arc;

use prefs_domain::Preference;

/// A read of one user's preferences in one namespace: all of them, or the one of a key or id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Read {
    /// Every preference of user `.0` in namespace `.1`.
    Namespace(i64, String),
    /// User `.0`'s preference of key `.2` in namespace `.1`, if any.
    Key(i64, String, String),
    /// User `.0`'s preference of id `.2` in namespace `.1`, if any.
    Id(i64, String, i64),
}

/// Answers to [`Read`]s, each with the version it was read at, up to a weight in bytes: an
/// estimate of the memory they take ([`weight`]). One per store, shared by every thread, so a
/// user's answer is remembered once however many threads serve the user. Both backends remember
/// answers this way; each has its own versions (on SQLite the store's epoch, which moves when a
/// reader sees that the database changed; PostgreSQL's `users.version`).
pub(crate) struct Remembered(quick_cache::sync::Cache<Read, Weighed, ByWeight>);

impl Remembered {
    /// Remembers up to `bytes`; `None` when `bytes` is 0.
    pub(crate) fn new(bytes: u64) -> Option<Self> {
        // About 2 KiB an answer: a namespace of 10 short values (single preferences weigh less;
        // the weight, not this count, bounds the cache).
        let items = usize::try_from(bytes / 2048).unwrap_or(usize::MAX).max(1);
        (bytes > 0).then(|| Self(quick_cache::sync::Cache::with_weighter(items, bytes, ByWeight)))
    }

    /// What `read` found, and the version it found it at (shared: a caller copies the
    /// preferences out only once it knows they are still right).
    pub(crate) fn get(&self, read: &Read) -> Option<(i64, Arc<[Preference]>)> {
        self.0.get(read).map(|answer| (answer.version, answer.preferences))
    }

    /// Remembers that `read` found `preferences` at `version`.
    pub(crate) fn insert(&self, read: Read, version: i64, preferences: Arc<[Preference]>) {
        let weight = weight(&read, &preferences);
        self.0.insert(read, Weighed { weight, version, preferences });
    }
}

/// A remembered answer and its [`weight`].
#[derive(Clone)]
struct Weighed {
    preferences: Arc<[Preference]>,
    version: i64,
    weight: u64,
}

/// Weighs a remembered answer by its [`weight`], computed once, when it is cached.
#[derive(Clone)]
struct ByWeight;

impl quick_cache::Weighter<Read, Weighed> for ByWeight {
    fn weight(&self, _: &Read, value: &Weighed) -> u64 {
        value.weight
    }
}

/// What the allocator takes for an allocation of `bytes`: glibc's chunks carry an 8-byte header,
/// are 16-byte aligned, and 32 bytes at least.
const fn allocated(bytes: usize) -> u64 {
    let chunk = (bytes + 8).next_multiple_of(16);
    (if chunk < 32 { 32 } else { chunk }) as u64
}

/// What an answer weighs: an estimate of the memory it takes, allocator overhead included: the
/// cache's slot, the read's strings, the answer's shared slice, and each preference's heap blocks
/// ([`Preference::heap_blocks`]: its key, its value and its value's text; values read back as
/// text leave their tree empty, since answers serialize the text).
fn weight(read: &Read, preferences: &[Preference]) -> u64 {
    const COUNTS: usize = 2 * std::mem::size_of::<usize>();
    /// The cache's slot: the read and the answer, and about as much again for its tables.
    const SLOT: u64 = 2 * std::mem::size_of::<(Read, Weighed)>() as u64;
    let strings = match read {
        Read::Namespace(_, namespace) | Read::Id(_, namespace, _) => allocated(namespace.len()),
        Read::Key(_, namespace, key) => allocated(namespace.len()) + allocated(key.len()),
    };
    let slice = allocated(COUNTS + std::mem::size_of_val(preferences));
    let each = |p: &Preference| p.heap_blocks().into_iter().map(allocated).sum::<u64>();
    SLOT + strings + slice + preferences.iter().map(each).sum::<u64>()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use prefs_domain::{Namespace, PreferenceId, PreferenceKey, PreferenceValue, UserId};

    use super::*;

    #[test]
    fn a_namespace_weighs_about_the_memory_it_takes() {
        let preference = |key: &str, text: &str| Preference {
            id: PreferenceId(1),
            user_id: UserId(1),
            namespace: Namespace::Global,
            key: PreferenceKey::parse(key).unwrap(),
            value: PreferenceValue::from_stored_text(text.to_owned()).unwrap(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 1,
        };
        let read = Read::Namespace(1, "global".into());
        let empty = weight(&read, &[]);
        assert!(empty > 100 && empty < 400, "{empty}");
        // Short keys and values each take a minimal chunk; long ones their length.
        let one = weight(&read, &[preference("on", "true")]) - empty;
        assert!(one > 150 && one < 300, "{one}");
        assert_eq!(weight(&read, &[preference("lang", "\"fr\"")]) - empty, one);
        let long = format!("\"{}\"", "x".repeat(10_000));
        assert_eq!(weight(&read, &[preference("k", &long)]) - empty, one - 32 + allocated(10_002));
        let two = weight(&read, &[preference("k", "{\"a\":{\"b\":[1,2]}}"), preference("on", "true")]);
        // The shared slice grows by one preference, rounded up to its chunk.
        assert_eq!(two - empty, 2 * one + 16);
        // The read's strings count too.
        let key = Read::Key(1, "global".into(), "k".repeat(100));
        assert_eq!(weight(&key, &[]) - empty, allocated(100));
    }
}
