//! The value rules of the Open edX user preferences API (SPEC 3.1): values are strings.

use std::str::FromStr;

use serde_json::{Map, Value};

use crate::error::{Error, FieldError, Result};
use crate::merge_patch::parse_key;

/// The message Open edX gives for an empty or non-object PATCH body.
pub const NO_DATA: &str = "No data provided for user preference update";

/// The only key whose values are checked beyond being strings: IANA time zone names.
pub const TIME_ZONE_KEY: &str = "time_zone";

/// Validates and normalises one value as Open edX does: a string is trimmed, a number becomes its
/// string form (`5` -> `"5"`), `null` counts as empty, and anything else, or a blank string, is
/// invalid. `time_zone`
/// accepts IANA time zone names only.
///
/// # Errors
/// A [`FieldError`] naming `key`, with Open edX's messages.
pub fn normalize_value(key: &str, value: &Value) -> Result<String, FieldError> {
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => {
            let message = format!("Value '{other}' not valid for preference '{key}': Not a valid string.");
            return Err(FieldError::new(key, "invalid-value", message));
        }
    };
    if text.is_empty() {
        return Err(FieldError::new(
            key,
            "empty",
            format!("Preference '{key}' cannot be set to an empty value."),
        ));
    }
    if key == TIME_ZONE_KEY && chrono_tz::Tz::from_str(&text).is_err() {
        return Err(FieldError::new(
            key,
            "invalid-value",
            format!("Value '{text}' is not a valid time zone selection."),
        )
        .with_developer_message(format!(
            "Value '{text}' not valid for preference '{key}': Not in timezone set."
        )));
    }
    Ok(text)
}

/// Validates an Open edX PATCH body and normalises its values; `null` members (deletions) pass
/// through. Every member is checked, and all problems are reported together.
///
/// # Errors
/// [`Error::Invalid`] with one entry per bad member, or with a single `NO_DATA` entry (field
/// empty) when the body is not an object or is an empty one.
pub fn normalize_patch(body: &Value) -> Result<Map<String, Value>> {
    let members = match body {
        Value::Object(members) if !members.is_empty() => members,
        _ => return Err(Error::invalid(FieldError::new("", "no-data", NO_DATA))),
    };
    let mut normalized = Map::with_capacity(members.len());
    let mut errors = Vec::new();
    for (key, value) in members {
        let checked = parse_key(key).and_then(|_| match value {
            Value::Null => Ok(Value::Null),
            value => normalize_value(key, value).map(Value::String),
        });
        match checked {
            Ok(value) => {
                normalized.insert(key.clone(), value);
            }
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() { Ok(normalized) } else { Err(Error::Invalid(errors)) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn strings_are_trimmed_and_numbers_stringified() {
        assert_eq!(normalize_value("k", &json!("  fr  ")).unwrap(), "fr");
        assert_eq!(normalize_value("k", &json!(5)).unwrap(), "5");
        assert_eq!(normalize_value("k", &json!(1.5)).unwrap(), "1.5");
    }

    #[test]
    fn non_strings_and_blanks_are_invalid_with_edx_messages() {
        for value in [json!(true), json!([1]), json!({"a": 1})] {
            let err = normalize_value("k", &value).unwrap_err();
            assert_eq!(err.code, "invalid-value");
            assert!(
                err.user_message.ends_with("not valid for preference 'k': Not a valid string."),
                "{err:?}"
            );
        }
        for blank in ["", "   ", "\t\n"] {
            let err = normalize_value("k", &json!(blank)).unwrap_err();
            assert_eq!(err.user_message, "Preference 'k' cannot be set to an empty value.");
        }
    }

    #[test]
    fn time_zone_takes_iana_names_only() {
        assert_eq!(normalize_value("time_zone", &json!("Europe/Paris")).unwrap(), "Europe/Paris");
        let err = normalize_value("time_zone", &json!("Mars/Olympus")).unwrap_err();
        assert_eq!(err.user_message, "Value 'Mars/Olympus' is not a valid time zone selection.");
        assert_eq!(
            err.developer_message,
            "Value 'Mars/Olympus' not valid for preference 'time_zone': Not in timezone set."
        );
        // Other keys take any string.
        assert!(normalize_value("tz", &json!("Mars/Olympus")).is_ok());
    }

    #[test]
    fn patch_reports_every_bad_member() {
        let Err(Error::Invalid(errors)) =
            normalize_patch(&json!({"a b": "x", "ok": "y", "blank": " ", "gone": null, "flag": false}))
        else {
            panic!("expected invalid");
        };
        let mut fields: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        fields.sort_unstable();
        assert_eq!(fields, [("a b", "invalid-key"), ("blank", "empty"), ("flag", "invalid-value")]);
        let bad_key = errors.iter().find(|e| e.field == "a b").unwrap();
        assert_eq!(bad_key.user_message, "Invalid user preference key 'a b'.");
    }

    #[test]
    fn patch_keeps_nulls_and_rejects_empty_bodies() {
        let ok = normalize_patch(&json!({"a": " v ", "b": null, "n": 3})).unwrap();
        assert_eq!(Value::Object(ok), json!({"a": "v", "b": null, "n": "3"}));
        for body in [json!({}), json!([]), json!("x"), json!(null), json!(1)] {
            let Err(Error::Invalid(errors)) = normalize_patch(&body) else { panic!("{body}") };
            assert_eq!(errors[0].user_message, NO_DATA);
        }
    }
}
