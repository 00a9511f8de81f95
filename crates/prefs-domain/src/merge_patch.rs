//! Turning a write request into the [`Change`]s a store applies: RFC 7396 merge patches and whole
//! namespace replacement. Every member is validated before any change is planned, so a request is
//! all or nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::error::{Error, FieldCode, FieldError, Result};
use crate::limits::Limits;
use crate::model::{Change, Namespace, Preference, PreferenceKey, PreferenceValue};

/// Checks the member names of a write to `namespace` with [`PreferenceKey::parse_in`]'s rule in bytes (the
/// rest of the key rule is checked as the write is planned).
///
/// # Errors
/// [`Error::Invalid`] listing every member name over the bytes.
pub fn check_member_names(namespace: &Namespace, members: &Map<String, Value>) -> Result<()> {
    let errors: Vec<FieldError> = members
        .keys()
        .filter(|key| key.chars().count() <= PreferenceKey::MAX_CHARS)
        .filter_map(|key| PreferenceKey::parse_in(namespace, key).err())
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(Error::Invalid(errors)) }
}

/// Plans an RFC 7396 merge patch of a namespace: each member sets its key, `null` deletes it
/// (deleting a missing key is no error), and an object member is merged recursively into an
/// existing object value.
///
/// # Errors
/// [`Error::Invalid`] listing every bad key or resulting value; as [`check_limits`] when the
/// namespace would exceed its limits.
pub fn merge_patch(
    current: &[Preference],
    patch: &Map<String, Value>,
    limits: &Limits,
) -> Result<Vec<Change>> {
    let existing: BTreeMap<&str, &Value> =
        current.iter().map(|p| (p.key.as_str(), p.value.as_json())).collect();
    plan(patch, limits, |key, value| {
        if value.is_null() {
            return Ok(existing.contains_key(key.as_str()).then_some(Change::Delete { key }));
        }
        let mut merged = existing.get(key.as_str()).map_or(Value::Null, |v| (*v).clone());
        json_patch::merge(&mut merged, value);
        let value = PreferenceValue::new(merged, key.as_str(), limits)?;
        Ok(Some(Change::Put { key, value }))
    })
    .and_then(|changes| check_limits(current, &changes, limits).map(|()| changes))
}

/// Plans replacing a whole namespace with `members`: every member is written, a `null` member
/// counts as absent, and every existing key not named is deleted.
///
/// # Errors
/// As [`merge_patch`].
pub fn replace_all(
    current: &[Preference],
    members: &Map<String, Value>,
    limits: &Limits,
) -> Result<Vec<Change>> {
    let mut changes = plan(members, limits, |key, value| {
        Ok((!value.is_null())
            .then(|| PreferenceValue::new(value.clone(), key.as_str(), limits))
            .transpose()?
            .map(|value| Change::Put { key, value }))
    })?;
    let kept: BTreeSet<&str> =
        members.iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k.as_str()).collect();
    changes.extend(
        current
            .iter()
            .filter(|p| !kept.contains(p.key.as_str()))
            .map(|p| Change::Delete { key: p.key.clone() }),
    );
    check_limits(current, &changes, limits)?;
    Ok(changes)
}

/// Validates every member with `member`, collecting all errors before deciding.
fn plan(
    members: &Map<String, Value>,
    limits: &Limits,
    mut member: impl FnMut(PreferenceKey, &Value) -> Result<Option<Change>, FieldError>,
) -> Result<Vec<Change>> {
    let mut changes = Vec::with_capacity(members.len());
    let mut errors = Vec::new();
    if members.len() > limits.max_keys {
        return Err(Error::TooManyKeys { limit: limits.max_keys });
    }
    for (key, value) in members {
        match PreferenceKey::parse_member(key).and_then(|key| member(key, value)) {
            Ok(change) => changes.extend(change),
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() { Ok(changes) } else { Err(Error::Invalid(errors)) }
}

/// Checks that applying `changes` to `current` leaves the namespace within `limits`: at most
/// [`Limits::max_keys`] keys, and at most [`Limits::max_namespace_bytes`] bytes, counted by
/// [`Preference::stored_size`]. A write that leaves a namespace over its bytes is still allowed
/// when it does not grow it (the limit may have been lowered since it was filled).
///
/// # Errors
/// [`Error::TooManyKeys`]; [`Error::Invalid`] with code `too-large` naming the written key that
/// takes the namespace over its bytes: the first, in the order of `changes`, with which the keys
/// the write leaves alone and those written before it exceed the limit.
pub fn check_limits(current: &[Preference], changes: &[Change], limits: &Limits) -> Result<()> {
    let mut after: BTreeMap<&PreferenceKey, &PreferenceValue> =
        current.iter().map(|p| (&p.key, &p.value)).collect();
    let size = |after: &BTreeMap<&PreferenceKey, &PreferenceValue>| -> usize {
        after.iter().map(|(key, value)| Preference::stored_size(key, value)).sum()
    };
    let before = size(&after);
    let mut written = Vec::new();
    for change in changes {
        match change {
            Change::Put { key, value } => {
                after.insert(key, value);
                written.push(key);
            }
            Change::Delete { key } => {
                after.remove(key);
            }
            Change::Rename { from, to } => {
                if let Some(value) = after.remove(from) {
                    after.insert(to, value);
                    written.push(to);
                }
            }
        }
    }
    if after.len() > limits.max_keys {
        return Err(Error::TooManyKeys { limit: limits.max_keys });
    }
    let (total, limit) = (size(&after), limits.max_namespace_bytes);
    if total <= limit || total <= before {
        return Ok(());
    }
    let mut seen = BTreeSet::new();
    written.retain(|key| after.contains_key(key) && seen.insert(*key));
    let stored = |key: &PreferenceKey| Preference::stored_size(key, after[key]);
    let mut sum = total - written.iter().map(|key| stored(key)).sum::<usize>();
    let member = written.into_iter().find(|key| {
        sum += stored(key);
        sum > limit
    });
    let member = member.map_or("", PreferenceKey::as_str);
    Err(Error::invalid(FieldError::new(
        member,
        FieldCode::TooLarge,
        format!(
            "Writing '{member}' would take the namespace to {total} bytes (keys plus values as compact \
             JSON); the limit is {limit} bytes."
        ),
    )))
}
