//! The request body path of every write: bytes -> JSON -> Open edX normalisation -> merge patch
//! and replacement plans -> value validation. Nothing may panic, and what is accepted must hold
//! the limits.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prefs_domain::merge_patch::{merge_patch, replace_all};
use prefs_domain::{Change, Limits, PreferenceValue, edx};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_keys: 16, max_value_bytes: 4096, ..Limits::default() };
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    let text = std::str::from_utf8(data).expect("JSON text is UTF-8");
    if let Ok(patch) = edx::normalize_patch(text) {
        assert!(patch.values().all(|v| v.is_null()
            || v.as_str().is_some_and(|s| !s.trim().is_empty() && !s.contains('\0'))));
    }
    if let Ok(python) = edx::Python::from_json(text) {
        let _ = python.str();
    }
    if let Value::Object(members) = &body {
        for plan in [merge_patch(&[], members, &limits), replace_all(&[], members, &limits)] {
            let Ok(changes) = plan else { continue };
            assert!(changes.len() <= limits.max_keys);
            for change in changes {
                if let Change::Put { key, value } = change {
                    assert!(PreferenceValue::new(value.into_json(), key.as_str(), &limits).is_ok());
                }
            }
        }
    }
    let _ = PreferenceValue::new(body, "value", &limits);
});
