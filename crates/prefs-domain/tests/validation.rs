//! Property tests of validation against reference models of its rules (docs/contract.md §1 and
//! §3.1).

use prefs_domain::{FieldCode, Limits, PreferenceKey, PreferenceValue, Username, depth, edx};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The key rule `PreferenceKey` implements: 1 to 255 characters without control characters
/// (docs/contract.md §1.3).
fn key_is_valid(s: &str) -> bool {
    (1..=255).contains(&s.chars().count()) && !s.chars().any(char::is_control)
}

/// Open edX's key rule on top (docs/contract.md §3.1): trimmed, at least one of `[-_a-zA-Z0-9]`.
fn edx_key_is_valid(s: &str) -> bool {
    let trimmed = s.trim();
    key_is_valid(trimmed) && trimmed.chars().any(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
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
    fn keys_are_valid_exactly_as_the_reference_model_says(s in "[A-Za-z0-9_.:/ é%-]{0,260}|.{0,300}") {
        prop_assert_eq!(PreferenceKey::parse(&s).is_ok(), key_is_valid(&s), "{:?}", s);
    }

    #[test]
    fn usernames_are_short_plain_text(s in "\\PC{0,130}|.{0,300}|[a-z\\x00-\\x1f ]{0,4}") {
        let expected = (1..=255).contains(&s.len()) && !s.chars().any(char::is_control) && !s.trim().is_empty();
        prop_assert_eq!(Username::parse(&s).is_ok(), expected, "{:?}", s);
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
        let text = serde_json::to_string(&value).unwrap();
        let python = edx::Python::from_json(&text).unwrap();
        match edx::normalize_value("k", &python) {
            Ok(stored) => {
                prop_assert!(!stored.is_empty() && stored.trim() == stored && !stored.contains('\0'), "{:?}", stored);
                match &value {
                    Value::String(s) => prop_assert_eq!(&stored, s.trim()),
                    Value::Bool(b) => prop_assert_eq!(stored, if *b { "True" } else { "False" }),
                    Value::Number(n) if n.is_f64() => {
                        // Python's repr of a float reads back as the same float, and looks like one.
                        prop_assert_eq!(stored.parse::<f64>().unwrap(), n.as_f64().unwrap());
                        prop_assert!(stored.contains(['.', 'e']) , "{}", stored);
                    }
                    Value::Number(n) => prop_assert_eq!(stored, n.to_string()),
                    Value::Array(_) => prop_assert!(stored.starts_with('[') && stored.ends_with(']'), "{}", stored),
                    Value::Object(_) => prop_assert!(stored.starts_with('{') && stored.ends_with('}'), "{}", stored),
                    Value::Null => prop_assert!(false, "null was accepted"),
                }
            }
            Err(error) => {
                prop_assert_eq!(error.field.as_str(), "k");
                let blank = value.as_str().is_some_and(|s| s.trim().is_empty()) || value.is_null();
                let nul = value.as_str().is_some_and(|s| s.contains('\0'));
                prop_assert_eq!(blank, error.code == FieldCode::Empty, "{}", value);
                prop_assert!(blank || nul, "{} was refused: {:?}", value, error);
            }
        }
    }

    #[test]
    fn edx_patches_report_every_bad_member_or_none(members in prop::collection::btree_map("[a-c !]{1,3}", json_value(), 1..6)) {
        let body = Value::Object(members.clone().into_iter().collect());
        match edx::normalize_patch(&body.to_string()) {
            Ok(normalized) => {
                for (key, value) in &normalized {
                    prop_assert!(key_is_valid(key));
                    prop_assert!(value.is_null() || value.is_string());
                }
            }
            Err(prefs_domain::Error::Invalid(errors)) => {
                let bad = members.iter().filter(|(k, v)| {
                    let python = edx::Python::from_json(&v.to_string()).unwrap();
                    !v.is_null() && edx::normalize_member(k, &python).is_err()
                }).count();
                prop_assert_eq!(errors.len(), bad);
            }
            Err(other) => prop_assert!(false, "{other}"),
        }
    }

    #[test]
    fn edx_keys_follow_the_reference_model(s in "[a-z/ é!.-]{0,8}|.{0,300}") {
        prop_assert_eq!(edx::parse_key(&s).is_ok(), edx_key_is_valid(&s), "{:?}", s);
    }

    #[test]
    fn python_floats_read_back_as_the_same_float(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let json = serde_json::to_string(&f).unwrap();
        let repr = edx::Python::from_json(&json).unwrap().str();
        prop_assert_eq!(repr.parse::<f64>().unwrap().to_bits(), f.to_bits(), "{} -> {}", json, repr);
    }
}

#[test]
fn the_contract_examples_hold() {
    assert!(PreferenceKey::parse("pref-lang").is_ok());
    let str_of = |json: &Value| edx::Python::from_json(&json.to_string()).unwrap().str();
    assert_eq!(str_of(&json!(5)), "5");
    assert_eq!(str_of(&json!(true)), "True");
    assert_eq!(str_of(&json!({"a": null})), "{'a': None}");
    assert_eq!(str_of(&json!([1, "a"])), "[1, 'a']");
}
