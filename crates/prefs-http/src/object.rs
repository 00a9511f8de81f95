//! A namespace's preferences as one JSON object, the body of the dialects' namespace reads.

use prefs_domain::{Preference, PreferenceValue};
use serde::{Serialize, Serializer};

/// Preferences as one JSON object, `{"key": value}`, members in key order, each value given by
/// a function of the preference's value. Serialized straight from the preferences, without
/// copying them into a map first.
pub struct Object<'a, V> {
    members: Vec<&'a Preference>,
    value: fn(&'a PreferenceValue) -> V,
}

impl<'a, V: Serialize> Object<'a, V> {
    /// The object of `preferences` (one namespace's: their keys differ).
    pub fn new(preferences: &'a [Preference], value: fn(&'a PreferenceValue) -> V) -> Self {
        let mut members: Vec<&Preference> = preferences.iter().collect();
        members.sort_unstable_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
        Self { members, value }
    }
}

impl<V: Serialize> Serialize for Object<'_, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.members.iter().map(|p| (p.key.as_str(), (self.value)(&p.value))))
    }
}
