//! RFC 7396 semantics of the domain's merge patch, against the RFC's Appendix A examples and its
//! two worked examples (`tests/data/rfc7396-merge-patch.jsonl` at the repository root) and a
//! reference model.

use chrono::Utc;
use prefs_domain::merge_patch::{check_limits, merge_patch, replace_all};
use prefs_domain::{
    Change, Error, FieldCode, Limits, Namespace, Preference, PreferenceId, PreferenceKey, PreferenceValue,
    UserId,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// A namespace holding `doc`'s members, as the store would hand it to a write.
fn namespace(doc: &Map<String, Value>) -> Vec<Preference> {
    doc.iter()
        .enumerate()
        .map(|(i, (k, v))| Preference {
            id: PreferenceId(i as i64 + 1),
            user_id: UserId(1),
            namespace: Namespace::Global,
            key: PreferenceKey::parse(k).unwrap(),
            value: PreferenceValue::from_stored(v.clone()),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 1,
        })
        .collect()
}

/// The namespace as a client reads it after `changes`.
fn apply(doc: &Map<String, Value>, changes: &[Change]) -> Map<String, Value> {
    let mut doc = doc.clone();
    for change in changes {
        match change {
            Change::Put { key, value } => {
                doc.insert(key.as_str().to_owned(), value.as_json().clone());
            }
            Change::Delete { key } => {
                doc.remove(key.as_str());
            }
            Change::Rename { from, to } => {
                let value = doc.remove(from.as_str()).unwrap();
                doc.insert(to.as_str().to_owned(), value);
            }
        }
    }
    doc
}

fn vectors() -> Vec<(Value, Value, Value)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/rfc7396-merge-patch.jsonl");
    let text = std::fs::read_to_string(path).expect("the RFC 7396 vectors in tests/data");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            (v["doc"].clone(), v["patch"].clone(), v["expected"].clone())
        })
        .collect()
}

#[test]
fn every_appendix_a_vector_applied_to_a_member() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 17, "RFC 7396: 15 Appendix A examples and 2 worked examples");
    for (doc, patch, expected) in vectors {
        let before = Map::from_iter([("k".to_owned(), doc.clone())]);
        let patch_map = Map::from_iter([("k".to_owned(), patch.clone())]);
        let changes = merge_patch(&namespace(&before), &patch_map, &Limits::default()).unwrap();
        let after = apply(&before, &changes);
        assert_eq!(after.get("k").cloned().unwrap_or(Value::Null), expected, "doc {doc} patch {patch}");
    }
}

#[test]
fn appendix_a_vectors_on_object_documents_apply_to_the_namespace() {
    let mut checked = 0;
    for (doc, patch, expected) in vectors() {
        let (Value::Object(doc), Value::Object(patch)) = (&doc, &patch) else { continue };
        if doc.values().any(Value::is_null) {
            continue; // a namespace cannot hold a top-level null
        }
        let changes = merge_patch(&namespace(doc), patch, &Limits::default()).unwrap();
        assert_eq!(Value::Object(apply(doc, &changes)), expected, "doc {doc:?} patch {patch:?}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} vectors applied");
}

#[test]
fn one_bad_member_rejects_the_whole_patch() {
    let doc = Map::from_iter([("a".to_owned(), json!(1))]);
    let patch = json!({"b": 2, "bad\tkey": 3, "c": {"x": 1}}).as_object().unwrap().clone();
    let Err(Error::Invalid(errors)) = merge_patch(&namespace(&doc), &patch, &Limits::default()) else {
        panic!("expected invalid")
    };
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "bad\tkey");
    assert_eq!(errors[0].code, FieldCode::InvalidKey);
}

#[test]
fn deleting_a_missing_key_is_no_change() {
    let patch = json!({"gone": null}).as_object().unwrap().clone();
    assert_eq!(merge_patch(&[], &patch, &Limits::default()).unwrap(), Vec::new());
}

#[test]
fn key_count_and_value_size_are_limited() {
    let limits = Limits { max_keys: 2, max_value_bytes: 8, ..Limits::default() };
    let doc = Map::from_iter([("a".to_owned(), json!(1)), ("b".to_owned(), json!(2))]);
    let add = json!({"c": 3}).as_object().unwrap().clone();
    assert!(matches!(merge_patch(&namespace(&doc), &add, &limits), Err(Error::TooManyKeys { limit: 2 })));
    // Deleting one key in the same patch makes room.
    let swap = json!({"a": null, "c": 3}).as_object().unwrap().clone();
    assert!(merge_patch(&namespace(&doc), &swap, &limits).is_ok());
    let big = json!({"a": "123456789"}).as_object().unwrap().clone();
    let Err(Error::Invalid(errors)) = merge_patch(&namespace(&doc), &big, &limits) else { panic!() };
    assert_eq!(errors[0].code, FieldCode::TooLarge);
}

/// A namespace's bytes: its keys' bytes plus its values' compact JSON bytes.
#[test]
fn stored_size_is_key_bytes_plus_compact_json_bytes() {
    let key = PreferenceKey::parse("clé").unwrap();
    let value = PreferenceValue::from_stored(json!({"a": [1, "é"]}));
    assert_eq!(value.as_json_text(), r#"{"a":[1,"é"]}"#);
    assert_eq!(Preference::stored_size(&key, &value), 4 + 14);
}

#[test]
fn namespace_bytes_are_limited_exactly_at_the_limit() {
    // "a" + "\"xxxx\"" = 7 bytes; "b" + "\"yy\"" = 5 bytes: 12 in all after the patch.
    let doc = Map::from_iter([("a".to_owned(), json!("xxxx"))]);
    let add = json!({"b": "yy"}).as_object().unwrap().clone();
    let limits = |max_namespace_bytes| Limits { max_namespace_bytes, ..Limits::default() };
    assert!(merge_patch(&namespace(&doc), &add, &limits(12)).is_ok());
    let Err(Error::Invalid(errors)) = merge_patch(&namespace(&doc), &add, &limits(11)) else { panic!() };
    assert_eq!((errors[0].field.as_str(), errors[0].code), ("b", FieldCode::TooLarge));
    assert!(
        errors[0].developer_message.contains("12 bytes") && errors[0].developer_message.contains("11 bytes")
    );
    let replace =
        |members: Value, limit| replace_all(&namespace(&doc), members.as_object().unwrap(), &limits(limit));
    assert!(replace(json!({"a": "xxxx", "b": "yy"}), 12).is_ok());
    let replaced = replace(json!({"a": "xxxx", "b": "yyy"}), 12);
    assert!(matches!(replaced, Err(Error::Invalid(_))), "{replaced:?}");
    // Replacing the big key by a small one fits: what is deleted no longer counts.
    assert!(replace(json!({"b": "yy"}), 5).is_ok());
}

#[test]
fn the_member_named_is_the_one_that_tips_the_namespace_over() {
    // 0 + "a":1 (2) + "b":1 (2) fit in 4; "c":1 takes it to 6.
    let patch = json!({"a": 1, "b": 1, "c": 1}).as_object().unwrap().clone();
    let limits = Limits { max_namespace_bytes: 4, ..Limits::default() };
    let Err(Error::Invalid(errors)) = merge_patch(&[], &patch, &limits) else { panic!() };
    assert_eq!((errors.len(), errors[0].field.as_str()), (1, "c"));
    // A rename counts the new key's bytes.
    let current = namespace(&Map::from_iter([("k".to_owned(), json!(1))]));
    let rename =
        |to: &str| Change::Rename { from: current[0].key.clone(), to: PreferenceKey::parse(to).unwrap() };
    assert!(check_limits(&current, &[rename("kk")], &limits).is_ok());
    let Err(Error::Invalid(errors)) = check_limits(&current, &[rename("kkkk")], &limits) else { panic!() };
    assert_eq!(errors[0].field, "kkkk");
}

#[test]
fn a_namespace_over_its_bytes_may_shrink_but_not_grow() {
    // 7 + 7 = 14 bytes, over a limit lowered to 5.
    let doc = Map::from_iter([("a".to_owned(), json!("xxxx")), ("b".to_owned(), json!("xxxx"))]);
    let limits = Limits { max_namespace_bytes: 5, ..Limits::default() };
    let patch = |p: Value| merge_patch(&namespace(&doc), p.as_object().unwrap(), &limits);
    assert!(patch(json!({"a": null})).is_ok());
    assert!(patch(json!({"a": "x"})).is_ok());
    assert!(patch(json!({"a": "yyyy"})).is_ok(), "as large as before");
    assert!(matches!(patch(json!({"a": "xxxxx"})), Err(Error::Invalid(_))));
    assert!(matches!(patch(json!({"a": null, "c": "xxxxxxxxxx"})), Err(Error::Invalid(_))));
}

#[test]
fn replace_all_writes_members_and_deletes_the_rest() {
    let doc = Map::from_iter([("a".to_owned(), json!(1)), ("b".to_owned(), json!({"x": 1}))]);
    let members = json!({"b": {"y": null}, "c": 3, "d": null}).as_object().unwrap().clone();
    let changes = replace_all(&namespace(&doc), &members, &Limits::default()).unwrap();
    // A PUT keeps nulls inside values (they are data), and a null member is absent.
    assert_eq!(Value::Object(apply(&doc, &changes)), json!({"b": {"y": null}, "c": 3}));
}

/// RFC 7396 section 2, written directly from the RFC's pseudocode as the reference.
fn reference(target: &Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else { return patch.clone() };
    let mut target = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (name, value) in patch {
        if value.is_null() {
            target.remove(name);
        } else {
            let current = target.get(name).cloned().unwrap_or(Value::Null);
            target.insert(name.clone(), reference(&current, value));
        }
    }
    Value::Object(target)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0i64..5).prop_map(Value::from),
        "[ab]".prop_map(Value::from)
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[abc]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn merge_patch_matches_the_reference_model(
        doc in prop::collection::btree_map("[abc]", json_value(), 0..4),
        patch in prop::collection::btree_map("[abcd]", json_value(), 0..4),
    ) {
        let doc: Map<String, Value> = doc.into_iter().filter(|(_, v)| !v.is_null()).collect();
        let patch: Map<String, Value> = patch.into_iter().collect();
        let changes = merge_patch(&namespace(&doc), &patch, &Limits::default()).unwrap();
        let expected = reference(&Value::Object(doc.clone()), &Value::Object(patch));
        prop_assert_eq!(Value::Object(apply(&doc, &changes)), expected);
    }
}
