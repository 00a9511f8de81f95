//! The nouns of prefs: users, namespaces, keys, values and stored preferences.
//!
//! Every type that carries a rule is a newtype with a private field and a validating constructor,
//! so a value of the type is valid by construction.

use std::fmt;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::{FieldCode, FieldError};
use crate::limits::Limits;

/// The identifier prefs assigns to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The identifier of one stored preference (a record id in the record dialect).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PreferenceId(pub i64);

impl fmt::Display for PreferenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A username: 1 to 255 bytes of text without control characters, not blank. That holds what
/// Open edX allows (e-mail-style names) and what identity providers put in their tokens
/// (Auth0's `auth0|64f...`, ZITADEL's `id@project`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Username(String);

/// Why a string is not a valid [`Username`], [`PreferenceKey`] or [`ClientId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be {rule}")]
pub struct InvalidName {
    what: &'static str,
    rule: &'static str,
}

/// The longest subject, username or client id accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Is `s` 1 to [`MAX_NAME_BYTES`] bytes without control characters?
fn is_plain_name(s: &str) -> bool {
    (1..=MAX_NAME_BYTES).contains(&s.len()) && !s.chars().any(char::is_control)
}

/// Checks a token subject (`sub`): 1 to [`MAX_NAME_BYTES`] bytes. Sign-in and `prefs users add`
/// apply the same rule.
///
/// # Errors
/// [`InvalidName`] when it is empty or longer.
pub fn validate_subject(subject: &str) -> Result<(), InvalidName> {
    if (1..=MAX_NAME_BYTES).contains(&subject.len()) {
        Ok(())
    } else {
        Err(InvalidName { what: "a subject", rule: "a non-empty string of at most 255 bytes" })
    }
}

/// Checks an explicit user id (an identity provider's, or an operator's) as
/// [`UserStore::provision`](crate::UserStore::provision) takes it: `None`, or a positive id.
///
/// # Errors
/// A [`FieldError`] on `id`, code `invalid`, for an id that is not positive.
pub fn validate_user_id(id: Option<UserId>) -> Result<(), FieldError> {
    match id {
        Some(id) if id.0 <= 0 => {
            Err(FieldError::new("id", FieldCode::Invalid, "A user id must be a positive integer."))
        }
        _ => Ok(()),
    }
}

impl Username {
    /// Validates a username.
    ///
    /// # Errors
    /// [`InvalidName`] when it is empty, blank, longer than [`MAX_NAME_BYTES`] or holds a control
    /// character.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        if is_plain_name(s) && !s.trim().is_empty() {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidName {
                what: "a username",
                rule: "1 to 255 bytes without control characters, not blank",
            })
        }
    }

    /// The username as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A preference key: 1 to 255 characters without control characters (docs/contract.md §1.3), the
/// rule every stored key follows. Dialects may add their own on top: Open edX's
/// ([`crate::edx::parse_key`]), and client namespaces' limit in bytes
/// ([`PreferenceKey::parse_in`]). Shared, not copied, when cloned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PreferenceKey(Arc<str>);

impl PreferenceKey {
    /// The longest key accepted, in characters.
    pub const MAX_CHARS: usize = 255;

    /// Validates a key.
    ///
    /// # Errors
    /// [`InvalidName`] when it is empty, longer than [`PreferenceKey::MAX_CHARS`] characters or
    /// holds a control character.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        if !s.is_empty() && s.chars().count() <= Self::MAX_CHARS && !s.chars().any(char::is_control) {
            Ok(Self(s.into()))
        } else {
            Err(InvalidName {
                what: "a preference key",
                rule: "1 to 255 characters without control characters",
            })
        }
    }

    /// Validates a key sent as a member of a request, naming it in the error with the user
    /// message Open edX gives.
    ///
    /// # Errors
    /// A [`FieldError`] with code `too-large` for a key over [`PreferenceKey::MAX_CHARS`], else
    /// `invalid-key`.
    pub fn parse_member(key: &str) -> Result<Self, FieldError> {
        Self::parse(key).map_err(|e| {
            let code = if key.chars().count() > Self::MAX_CHARS {
                FieldCode::TooLarge
            } else {
                FieldCode::InvalidKey
            };
            FieldError::new(key, code, format!("Invalid user preference key '{key}'."))
                .with_developer_message(format!("Key '{key}': {e}."))
        })
    }

    /// Validates a key of `namespace`: [`PreferenceKey::parse_member`], and in a client namespace
    /// also at most [`MAX_NAME_BYTES`] bytes, as a member name there is any string of 1 to 255
    /// bytes without control characters (docs/contract.md §3.3).
    ///
    /// # Errors
    /// As [`PreferenceKey::parse_member`]; code `too-large` for a client namespace's key over the
    /// bytes.
    pub fn parse_in(namespace: &Namespace, key: &str) -> Result<Self, FieldError> {
        if matches!(namespace, Namespace::Client(_)) && key.len() > MAX_NAME_BYTES {
            return Err(FieldError::new(
                key,
                FieldCode::TooLarge,
                format!("Invalid user preference key '{key}'."),
            )
            .with_developer_message(format!(
                "Key '{key}': a member name has at most {MAX_NAME_BYTES} bytes."
            )));
        }
        Self::parse_member(key)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PreferenceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client application's id, naming its preference namespace: 1 to 255 bytes without control
/// characters (a URL, `id@project`), and never `global`. Shared, not copied, when cloned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ClientId(Arc<str>);

impl ClientId {
    /// Validates a client id.
    ///
    /// # Errors
    /// [`InvalidName`] when it is empty, longer than [`MAX_NAME_BYTES`], holds a control
    /// character, or is the reserved `global`.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        if is_plain_name(s) && s != Namespace::GLOBAL {
            Ok(Self(s.into()))
        } else {
            Err(InvalidName {
                what: "a client id",
                rule: "1 to 255 bytes without control characters, other than `global`",
            })
        }
    }

    /// The client id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a preference lives: the user-wide `global` namespace, or a client application's own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// User-wide preferences, read and written by the Open edX and record dialects.
    Global,
    /// One client application's preferences.
    Client(ClientId),
}

impl Namespace {
    /// The stored name of the global namespace.
    pub const GLOBAL: &'static str = "global";

    /// The namespace's stored name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Global => Self::GLOBAL,
            Self::Client(id) => id.as_str(),
        }
    }

    /// Reads a stored name back.
    ///
    /// # Errors
    /// [`InvalidName`] when the name is neither `global` nor a valid client id.
    pub fn from_stored(s: &str) -> Result<Self, InvalidName> {
        if s == Self::GLOBAL { Ok(Self::Global) } else { ClientId::parse(s).map(Self::Client) }
    }
}

/// A user known to prefs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Assigned by prefs.
    pub id: UserId,
    /// The token `sub` the user signs in with; unique.
    pub subject: String,
    /// Unique; refreshed from the token when it changes.
    pub username: Username,
}

/// A preference value: any JSON value but a top-level `null`, within the size and depth limits.
/// It keeps its compact JSON text with it, which is what a store writes and what serializing it
/// with `serde_json` writes out, as is.
///
/// A value read back from its text ([`PreferenceValue::from_stored_text`]) holds only the text
/// until its JSON tree is first asked for ([`PreferenceValue::as_json`]): answers serialize the
/// text, so what a store remembers of a read takes the text's memory, not the tree's.
///
/// Values are shared, not copied, when a preference is cloned (a store may hand out the same
/// preferences to many readers).
#[derive(Clone)]
pub struct PreferenceValue(Arc<Json>);

/// A value's compact JSON text, and its tree once parsed.
struct Json {
    text: Box<RawValue>,
    value: OnceLock<Value>,
}

impl Serialize for PreferenceValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.text.serialize(serializer)
    }
}

impl PartialEq for PreferenceValue {
    fn eq(&self, other: &Self) -> bool {
        self.as_json_text() == other.as_json_text() || self.as_json() == other.as_json()
    }
}

impl fmt::Debug for PreferenceValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PreferenceValue").field(&format_args!("{}", self.as_json_text())).finish()
    }
}

impl PreferenceValue {
    /// Validates a value against `limits`; `field` names it in the error.
    ///
    /// # Errors
    /// A [`FieldError`] with code `null` for a top-level `null`, `invalid-value` for a number out
    /// of range ([`out_of_range_number`]), `too-deep` when containers nest
    /// deeper than [`Limits::max_depth`], and `too-large` when it serializes to more than
    /// [`Limits::max_value_bytes`].
    pub fn new(value: Value, field: &str, limits: &Limits) -> Result<Self, FieldError> {
        if value.is_null() {
            return Err(FieldError::new(field, FieldCode::Null, "This field may not be null."));
        }
        if out_of_range_number(&value) {
            return Err(FieldError::new(field, FieldCode::InvalidValue, "A number is out of range."));
        }
        if depth(&value) > limits.max_depth {
            return Err(FieldError::new(
                field,
                FieldCode::TooDeep,
                format!("Value nests deeper than {} levels.", limits.max_depth),
            ));
        }
        let stored = Self::from_stored(value);
        let size = stored.as_json_text().len();
        if size > limits.max_value_bytes {
            return Err(FieldError::new(
                field,
                FieldCode::TooLarge,
                format!("Value is {size} bytes; the limit is {} bytes.", limits.max_value_bytes),
            ));
        }
        Ok(stored)
    }

    /// Wraps a value read back from storage, where it was validated on the way in.
    pub fn from_stored(value: Value) -> Self {
        // A `Value` always serializes: its map keys are strings.
        let text = serde_json::value::to_raw_value(&value).expect("a JSON value serializes");
        Self(Arc::new(Json { text, value: OnceLock::from(value) }))
    }

    /// Wraps the JSON text of a value read back from storage, where it was validated on the way
    /// in, keeping the text as it is (a store writes [`PreferenceValue::as_json_text`]). Its tree
    /// is parsed again only when asked for.
    ///
    /// # Errors
    /// When `text` is not a JSON value that [`Value`] can hold (one with a number beyond `f64`'s
    /// range, or a string with a lone surrogate escape, is refused).
    pub fn from_stored_text(text: String) -> Result<Self, serde_json::Error> {
        // Parsed once to check it, so that parsing it again later cannot fail.
        let value = serde_json::from_str::<Value>(&text)?;
        if out_of_range_number(&value) {
            return Err(serde::de::Error::custom("number out of range"));
        }
        let text = RawValue::from_string(text)?;
        Ok(Self(Arc::new(Json { text, value: OnceLock::new() })))
    }

    /// The JSON value (parsed from the text on first use when the value was read back as text).
    pub fn as_json(&self) -> &Value {
        self.0.value.get_or_init(|| parse(&self.0.text))
    }

    /// The value's compact JSON text.
    pub fn as_json_text(&self) -> &str {
        self.0.text.get()
    }

    /// Takes the JSON value out (a copy when the value is shared).
    pub fn into_json(self) -> Value {
        match Arc::try_unwrap(self.0) {
            Ok(json) => json.value.into_inner().unwrap_or_else(|| parse(&json.text)),
            Err(shared) => Self(shared).as_json().clone(),
        }
    }
}

/// Parses the text of a [`PreferenceValue`], which was parsed once already when the value was
/// made ([`PreferenceValue::from_stored_text`]), so it parses again.
/// Numbers keep their text ([`crate::parse_exact`]), so a merge leaves the numbers it does not
/// touch as they were written.
fn parse(text: &RawValue) -> Value {
    crate::parse_exact(text.get()).expect("the text parsed when the value was made")
}

/// Does `value` hold a number with a fraction or an exponent beyond `f64`'s range (`1e400`)?
/// Numbers keep their text (serde_json's `arbitrary_precision`), so such a number parses; prefs
/// refuses it, in bodies and in stored rows, as it has no floating-point value. Integers of any
/// size are fine: they keep their text.
pub fn out_of_range_number(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            let text = n.to_string();
            text.contains(['.', 'e', 'E']) && !text.parse::<f64>().is_ok_and(f64::is_finite)
        }
        Value::Array(items) => items.iter().any(out_of_range_number),
        Value::Object(members) => members.values().any(out_of_range_number),
        _ => false,
    }
}

/// How deeply containers nest in `value`: 0 for a scalar, 1 for `[]` or `{}`, and so on.
pub fn depth(value: &Value) -> usize {
    let inner = match value {
        Value::Array(items) => items.iter().map(depth).max(),
        Value::Object(members) => members.values().map(depth).max(),
        _ => return 0,
    };
    1 + inner.unwrap_or(0)
}

/// A stored preference.
#[derive(Debug, Clone, PartialEq)]
pub struct Preference {
    /// Assigned by the store; stable across updates and renames.
    pub id: PreferenceId,
    /// The owner.
    pub user_id: UserId,
    /// The namespace it lives in.
    pub namespace: Namespace,
    /// The key, unique per user and namespace.
    pub key: PreferenceKey,
    /// The value.
    pub value: PreferenceValue,
    /// When it was first written.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Starts at 1 and grows by one on every change; the basis of ETags.
    pub version: i64,
}

impl Preference {
    /// What a preference with this key and value counts against [`Limits::max_namespace_bytes`]:
    /// the key's bytes (UTF-8) plus the value's compact JSON text's bytes (what a store writes,
    /// [`PreferenceValue::as_json_text`]).
    pub fn stored_size(key: &PreferenceKey, value: &PreferenceValue) -> usize {
        key.as_str().len() + value.as_json_text().len()
    }

    /// The sizes in bytes of the heap blocks this preference holds, each shared with its clones:
    /// its key's (two reference counts and the text), its value's shared block (two reference
    /// counts, a pointer to its text and the slot of its parsed tree) and its value's text. The
    /// tree, filled only once the value is read as JSON, is not counted. For a cache that bounds
    /// the memory it takes; what the allocator adds to each block is the caller's estimate.
    pub fn heap_blocks(&self) -> [usize; 3] {
        const COUNTS: usize = 2 * std::mem::size_of::<usize>();
        [COUNTS + self.key.0.len(), COUNTS + std::mem::size_of::<Json>(), self.value.as_json_text().len()]
    }
}

/// One change a write makes to a namespace, applied by the store in order, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Creates the key, or replaces its value (bumping its version).
    Put {
        /// The key to write.
        key: PreferenceKey,
        /// Its new value.
        value: PreferenceValue,
    },
    /// Removes the key; removing a missing key is not an error.
    Delete {
        /// The key to remove.
        key: PreferenceKey,
    },
    /// Renames a key, keeping its id and value (bumping its version). The new key must be free.
    Rename {
        /// The key now.
        from: PreferenceKey,
        /// The key after.
        to: PreferenceKey,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_charset_and_length() {
        for ok in
            ["pref-lang", "a", "x.y:z_1-2", "a/b", "thème", "a b", " ", &"k".repeat(255), &"é".repeat(255)]
        {
            assert!(PreferenceKey::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a\0b", "a\nb", "\u{7f}", "a\u{85}b", &"k".repeat(256), &"é".repeat(256)] {
            assert!(PreferenceKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usernames_are_plain_text_of_at_most_255_bytes() {
        let longest = "u".repeat(255);
        for ok in
            ["alice", "jean.dupont@example.com", "Zoë Ünal", "a+b-c_d", "名前", "auth0|64f1", "a/b", &longest]
        {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", " ", "a\0b", "a\nb", "a\u{7f}b", &"u".repeat(256)] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn client_ids_are_plain_text_and_reserve_global() {
        for ok in ["appA", "a:b", "https://app.example.com/x", "312@zitadel-project", &"c".repeat(255)] {
            assert!(ClientId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["global", "", "a\tb", &"c".repeat(256)] {
            assert!(ClientId::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Namespace::from_stored("global"), Ok(Namespace::Global));
    }

    #[test]
    fn subjects_are_non_empty_and_at_most_255_bytes() {
        assert!(validate_subject("s").is_ok() && validate_subject(&"s".repeat(255)).is_ok());
        assert!(validate_subject("").is_err() && validate_subject(&"s".repeat(256)).is_err());
    }

    #[test]
    fn values_reject_null_depth_and_size() {
        let limits = Limits { max_value_bytes: 10, max_depth: 2, ..Limits::default() };
        let err = |v: Value| PreferenceValue::new(v, "k", &limits).unwrap_err().code;
        assert_eq!(err(Value::Null), FieldCode::Null);
        assert_eq!(err(serde_json::json!([[[]]])), FieldCode::TooDeep);
        assert_eq!(err(serde_json::from_str("[1e400]").unwrap()), FieldCode::InvalidValue);
        let big: Value = serde_json::from_str("[18446744073709551616, 1.50]").unwrap();
        let kept = PreferenceValue::new(big, "k", &Limits::default()).unwrap();
        assert_eq!(kept.as_json_text(), "[18446744073709551616,1.50]", "numbers keep their text");
        assert_eq!(err(serde_json::json!("0123456789")), FieldCode::TooLarge);
        assert!(PreferenceValue::new(serde_json::json!({"a": null}), "k", &limits).is_ok());
        assert!(PreferenceValue::new(serde_json::json!([[1]]), "k", &limits).is_ok());
    }

    #[test]
    fn values_serialize_as_their_compact_text() {
        let json = serde_json::json!({"b": [1, 2.5, "x\"y\u{0}"], "a": {"é": null}, "c": 1e300});
        let value = PreferenceValue::new(json.clone(), "k", &Limits::default()).unwrap();
        assert_eq!(value.as_json_text(), serde_json::to_string(&json).unwrap());
        assert_eq!(serde_json::to_string(&value).unwrap(), value.as_json_text());
        assert_eq!(serde_json::to_value(&value).unwrap(), json);
        assert_eq!(value, PreferenceValue::from_stored(json.clone()));
        let read_back = PreferenceValue::from_stored_text(value.as_json_text().to_owned()).unwrap();
        assert_eq!((read_back.as_json(), read_back.as_json_text()), (&json, value.as_json_text()));
        assert!(PreferenceValue::from_stored_text("{\"a\":".to_owned()).is_err());
        assert_eq!(value.into_json(), json);
    }

    #[test]
    fn values_read_back_as_text_parse_when_asked() {
        let json = serde_json::json!({"a": [1, {"b": "c"}], "d": "é"});
        let stored = |text: &str| PreferenceValue::from_stored_text(text.to_owned()).unwrap();
        // Equal by their text, or by their trees when the texts differ.
        assert_eq!(
            stored("{\"a\":[1,{\"b\":\"c\"}],\"d\":\"é\"}"),
            PreferenceValue::from_stored(json.clone())
        );
        let spaced = stored("{ \"d\": \"\\u00e9\", \"a\": [1, {\"b\": \"c\"}] }");
        assert_eq!(spaced.as_json_text(), "{ \"d\": \"\\u00e9\", \"a\": [1, {\"b\": \"c\"}] }");
        assert_eq!(spaced, PreferenceValue::from_stored(json.clone()));
        assert_ne!(stored("[1,2]"), stored("[2,1]"));
        assert_eq!(stored("[1,2]").into_json(), serde_json::json!([1, 2]));
        let shared = stored("{\"x\":true}");
        assert_eq!(shared.clone().into_json(), serde_json::json!({"x": true}));
        assert_eq!(format!("{shared:?}"), "PreferenceValue({\"x\":true})");
        // Texts that JSON's grammar allows but a `Value` cannot hold are refused up front, so
        // that parsing later cannot fail.
        for text in ["1e400", "\"\\ud800\""] {
            assert!(PreferenceValue::from_stored_text(text.to_owned()).is_err(), "{text}");
        }
    }

    #[test]
    fn depth_counts_containers() {
        assert_eq!(depth(&serde_json::json!(1)), 0);
        assert_eq!(depth(&serde_json::json!({})), 1);
        assert_eq!(depth(&serde_json::json!({"a": [1, {"b": []}]})), 4);
    }
}
