//! Property tests of validation against reference models written from SPEC 1 and 3.1.

use prefs_domain::{Limits, PreferenceKey, PreferenceValue, Username, depth, edx};
use proptest::prelude::*;
use serde_json::{Value, json};

/// SPEC 1: 1 to 255 characters from `[A-Za-z0-9_.:-]`.
fn key_is_valid(s: &str) -> bool {
    (1..=255).contains(&s.chars().count())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn keys_are_valid_exactly_as_spec_1_says(s in "[A-Za-z0-9_.:/ é%-]{0,260}|.{0,300}") {
        prop_assert_eq!(PreferenceKey::parse(&s).is_ok(), key_is_valid(&s), "{:?}", s);
    }

    #[test]
    fn usernames_never_hold_path_or_control_characters(s in ".{0,160}") {
        if let Ok(name) = Username::parse(&s) {
            prop_assert!(!name.as_str().contains(['/', '%', '?', '#', '\0']));
            prop_assert!((1..=150).contains(&name.as_str().chars().count()));
            prop_assert!(!name.as_str().trim().is_empty());
        }
    }

    #[test]
    fn values_are_accepted_exactly_within_the_limits(value in json_value(), max_depth in 0usize..5, max_bytes in 1usize..200) {
        let limits = Limits { max_depth, max_value_bytes: max_bytes, ..Limits::default() };
        let size = serde_json::to_vec(&value).unwrap().len();
        let expected = !value.is_null() && depth(&value) <= max_depth && size <= max_bytes;
        let got = PreferenceValue::new(value.clone(), "k", &limits);
        prop_assert_eq!(got.is_ok(), expected, "{} (depth {}, {} bytes)", value, depth(&value), size);
        if let Ok(stored) = got {
            prop_assert_eq!(stored.as_json(), &value, "accepted values are kept as sent");
        }
    }

    #[test]
    fn edx_values_are_trimmed_strings_or_errors(value in json_value()) {
        match edx::normalize_value("k", &value) {
            Ok(text) => {
                prop_assert!(!text.is_empty() && text.trim() == text);
                match &value {
                    Value::String(s) => prop_assert_eq!(&text, s.trim()),
                    Value::Number(n) => prop_assert_eq!(text, n.to_string()),
                    other => prop_assert!(false, "{} was accepted", other),
                }
            }
            Err(error) => {
                prop_assert_eq!(error.field, "k");
                let blank = value.as_str().is_some_and(|s| s.trim().is_empty()) || value.is_null();
                prop_assert_eq!(blank, error.code == "empty", "{}", value);
            }
        }
    }

    #[test]
    fn edx_patches_report_every_bad_member_or_none(members in prop::collection::btree_map("[a-c ]{1,3}", json_value(), 1..6)) {
        let body = Value::Object(members.clone().into_iter().collect());
        match edx::normalize_patch(&body) {
            Ok(normalized) => {
                prop_assert_eq!(normalized.len(), members.len());
                for (key, value) in &normalized {
                    prop_assert!(key_is_valid(key));
                    prop_assert!(value.is_null() || value.is_string());
                }
            }
            Err(prefs_domain::Error::Invalid(errors)) => {
                let bad = members.iter().filter(|(k, v)| {
                    !key_is_valid(k) || (!v.is_null() && edx::normalize_value(k, v).is_err())
                }).count();
                prop_assert_eq!(errors.len(), bad);
            }
            Err(other) => prop_assert!(false, "{other}"),
        }
    }
}

#[test]
fn the_spec_examples_hold() {
    assert!(PreferenceKey::parse("pref-lang").is_ok());
    assert_eq!(edx::normalize_value("k", &json!(5)).unwrap(), "5");
}
