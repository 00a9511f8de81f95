//! Real clients of each dialect work unchanged, on both backends: Open edX's value coercion and
//! keys (docs/contract.md §3.1), DRF's form bodies and filters (§3.2), PACE's base path, keys and
//! content type (§3.3), and exact numbers everywhere (§1.3).

use prefs_storage::Backend;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::helpers::{Reply, TestApp, now, sign, spawn, token};

const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";
const JSON_API: &str = "application/vnd.api+json";
const FORM: &str = "application/x-www-form-urlencoded";

fn edx_list() -> String {
    "/api/user/v1/preferences/alice".to_owned()
}

fn edx_one(key: &str) -> String {
    format!("/api/user/v1/preferences/alice/{key}")
}

/// A token of alice's for client `appA`, with read and write scopes.
fn pace_token() -> String {
    sign(&json!({"sub": "sub-alice", "preferred_username": "alice", "client_id": "appA",
        "scope": "user:preferences:read user:preferences:write", "exp": now() + 600}))
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    content_type: &str,
    body: &str,
) -> Reply {
    app.send(method, path, Some(token), Some(content_type), Some(body.as_bytes().to_vec())).await
}

fn assert_status(reply: &Reply, status: StatusCode, what: &str) {
    assert_eq!(reply.status, status, "{what}: {reply:?}");
}

backend_tests!(
    edx_stores_non_string_values_as_python_str_gives_them,
    edx_keys_follow_open_edx,
    edx_null_members_are_not_validated,
    edx_null_characters_are_refused,
    numbers_round_trip_exactly_in_every_dialect,
    pace_base_path_serves_the_same_routes,
    pace_member_names_are_any_short_text,
    pace_takes_json_api_bodies,
    records_take_form_bodies,
    records_key_and_search_filters_both_apply,
);

async fn edx_stores_non_string_values_as_python_str_gives_them(backend: Backend) {
    let app = spawn(backend).await;
    let alice = token("alice", &[]);
    // What Open edX's frontend library tests send: all of it is written.
    let reply =
        send(&app, Method::PATCH, &edx_list(), &alice, MERGE, r#"{"pref-lang": "en", "dark_mode": true}"#)
            .await;
    assert_status(&reply, StatusCode::NO_CONTENT, "a boolean member");
    assert_eq!(app.get(&edx_list(), &alice).await.json(), json!({"pref-lang": "en", "dark_mode": "True"}));

    let table = [
        ("true", "True"),
        ("false", "False"),
        ("0", "0"),
        ("10", "10"),
        ("-0", "0"),
        ("1.5", "1.5"),
        ("1.0", "1.0"),
        ("-0.0", "-0.0"),
        ("1e16", "1e+16"),
        ("1e-05", "1e-05"),
        ("0.0001", "0.0001"),
        ("18446744073709551616", "18446744073709551616"),
        (r#"[1, "a"]"#, "[1, 'a']"),
        (r#"{"int_key": 10}"#, "{'int_key': 10}"),
        (r#"{"a": null}"#, "{'a': None}"),
        ("{}", "{}"),
        ("[]", "[]"),
        (r#"{"b": [true, null], "a": "it's"}"#, r#"{'b': [True, None], 'a': "it's"}"#),
        (
            r#"["he said \"hi\"", "both ' \"", "é😀", "\u00a0\n"]"#,
            r#"['he said "hi"', 'both \' "', 'é😀', '\xa0\n']"#,
        ),
    ];
    for (sent, stored) in table {
        // Through PUT of one key...
        let reply = send(&app, Method::PUT, &edx_one("v"), &alice, JSON, sent).await;
        assert_status(&reply, StatusCode::NO_CONTENT, sent);
        assert_eq!(app.get(&edx_one("v"), &alice).await.json(), json!(stored), "PUT {sent}");
        // ...and as a PATCH member.
        let body = format!(r#"{{"m": {sent}}}"#);
        let reply = send(&app, Method::PATCH, &edx_list(), &alice, MERGE, &body).await;
        assert_status(&reply, StatusCode::NO_CONTENT, &body);
        assert_eq!(app.get(&edx_one("m"), &alice).await.json(), json!(stored), "PATCH {body}");
    }
    // A nested object is stored whole, not merged, and its nested null is no deletion.
    let reply = send(&app, Method::PATCH, &edx_list(), &alice, MERGE, r#"{"o": {"b": null}}"#).await;
    assert_status(&reply, StatusCode::NO_CONTENT, "nested null");
    assert_eq!(app.get(&edx_one("o"), &alice).await.json(), json!("{'b': None}"));
    // The record dialect sees the same strings.
    let reply = app.get("/api/v2/user/me/preference/?key=dark_mode", &alice).await;
    assert_eq!(reply.json()["results"][0]["value"], json!("True"));
}

async fn edx_keys_follow_open_edx(backend: Backend) {
    let app = spawn(backend).await;
    let alice = token("alice", &[]);
    let body = r#"{"a b": "1", "app/theme": "dark", " trimmed ": "x", "größe": "2"}"#;
    let reply = send(&app, Method::PATCH, &edx_list(), &alice, MERGE, body).await;
    assert_status(&reply, StatusCode::NO_CONTENT, body);
    assert_eq!(
        app.get(&edx_list(), &alice).await.json(),
        json!({"a b": "1", "app/theme": "dark", "trimmed": "x", "größe": "2"})
    );
    // The per-key route takes them percent-encoded.
    assert_eq!(app.get(&edx_one("app%2Ftheme"), &alice).await.json(), json!("dark"));
    assert_eq!(app.get(&edx_one("a%20b"), &alice).await.json(), json!("1"));
    let reply = send(&app, Method::PUT, &edx_one("x%2Fy%20z"), &alice, JSON, "\"v\"").await;
    assert_status(&reply, StatusCode::NO_CONTENT, "PUT x/y z");
    assert_eq!(app.get(&edx_one("x%2Fy%20z"), &alice).await.json(), json!("v"));
    let reply = app.send(Method::DELETE, &edx_one("a%20b"), Some(&alice), None, None).await;
    assert_status(&reply, StatusCode::NO_CONTENT, "DELETE a b");
    // A key needs one character of [-_a-zA-Z0-9], and at most 255 characters.
    let longest = "k".repeat(255);
    for (key, status) in [
        ("!!", StatusCode::BAD_REQUEST),
        (&*"k".repeat(256), StatusCode::BAD_REQUEST),
        (&*longest, StatusCode::NO_CONTENT),
    ] {
        let body = json!({ key: "v" }).to_string();
        let reply = send(&app, Method::PATCH, &edx_list(), &alice, MERGE, &body).await;
        assert_status(&reply, status, key);
        if status == StatusCode::BAD_REQUEST {
            assert_eq!(
                reply.json()["field_errors"][key]["user_message"],
                json!(format!("Invalid user preference key '{key}'."))
            );
        }
    }
}

async fn edx_null_members_are_not_validated(backend: Backend) {
    let app = spawn(backend).await;
    let alice = token("alice", &[]);
    for body in [r#"{"a b": null}"#, r#"{"!!": null}"#, r#"{"": null, "x": "1"}"#] {
        let reply = send(&app, Method::PATCH, &edx_list(), &alice, MERGE, body).await;
        assert_status(&reply, StatusCode::NO_CONTENT, body);
    }
    assert_eq!(app.get(&edx_list(), &alice).await.json(), json!({"x": "1"}));
    // A null deletes a key that no Open edX write could make.
    let reply = app
        .json(Method::POST, "/api/v2/user/me/preference/", &alice, JSON, &json!({"key": "!!", "value": 1}))
        .await;
    assert_status(&reply, StatusCode::CREATED, "record !!");
    let reply = send(&app, Method::PATCH, &edx_list(), &alice, MERGE, r#"{"!!": null}"#).await;
    assert_status(&reply, StatusCode::NO_CONTENT, "delete !!");
    assert_eq!(app.get(&edx_list(), &alice).await.json(), json!({"x": "1"}));
}

async fn edx_null_characters_are_refused(backend: Backend) {
    let app = spawn(backend).await;
    let alice = token("alice", &[]);
    let reply = send(&app, Method::PUT, &edx_one("k"), &alice, JSON, r#""a\u0000b""#).await;
    assert_status(&reply, StatusCode::BAD_REQUEST, "PUT NUL");
    let message = json!("Null characters are not allowed.");
    assert_eq!(reply.json(), json!({"developer_message": message, "user_message": message}));
    let reply = send(&app, Method::PATCH, &edx_list(), &alice, MERGE, r#"{"k": "\u0000", "ok": "1"}"#).await;
    assert_status(&reply, StatusCode::BAD_REQUEST, "PATCH NUL");
    assert_eq!(
        reply.json()["field_errors"]["k"],
        json!({"developer_message": message, "user_message": message})
    );
    assert_eq!(app.get(&edx_list(), &alice).await.json(), json!({}), "nothing written");
}

async fn numbers_round_trip_exactly_in_every_dialect(backend: Backend) {
    let app = spawn(backend).await;
    let alice = token("alice", &[]);
    let pace = pace_token();
    let big = "18446744073709551616";
    let numbers = format!(
        r#"[{big}, -{big}1, 1.50, 1e16, 1E-7, 2.5e+3, 0.1000000000000000055511151231257827, -0, 123456789012345678901234567890]"#
    );
    let compact = numbers.replace(' ', "");

    // Records: POST, then GET, list and PATCH answer the number as sent.
    let body = format!(r#"{{"key": "n", "value": {numbers}}}"#);
    let reply = send(&app, Method::POST, "/api/v2/user/me/preference/", &alice, JSON, &body).await;
    assert_status(&reply, StatusCode::CREATED, &body);
    assert!(reply.text.contains(&format!(r#""value":{compact}"#)), "{}", reply.text);
    let id = reply.json()["id"].clone();
    let reply = app.get(&format!("/api/v2/user/me/preference/{id}/"), &alice).await;
    assert!(reply.text.contains(&format!(r#""value":{compact}"#)), "{}", reply.text);
    let reply = send(
        &app,
        Method::PATCH,
        &format!("/api/v2/user/me/preference/{id}/"),
        &alice,
        JSON,
        &format!(r#"{{"value": {big}}}"#),
    )
    .await;
    assert!(reply.text.contains(&format!(r#""value":{big}"#)), "{}", reply.text);

    // Namespaces: PUT, GET, PATCH (a merge keeps the numbers it does not touch).
    let body = format!(r#"{{"n": {numbers}, "o": {{"big": {big}}}}}"#);
    let reply = send(&app, Method::PUT, "/preferences/appA", &pace, JSON, &body).await;
    assert_status(&reply, StatusCode::NO_CONTENT, &body);
    let expected = format!(r#"{{"n":{compact},"o":{{"big":{big}}}}}"#);
    assert_eq!(app.get("/preferences/appA", &pace).await.text, expected);
    let reply = send(&app, Method::PATCH, "/preferences/appA", &pace, MERGE, r#"{"o": {"x": 1}}"#).await;
    assert_eq!(reply.text, format!(r#"{{"n":{compact},"o":{{"big":{big},"x":1}}}}"#));
    assert_eq!(app.get("/preferences/appA/n", &pace).await.text, compact);

    // Open edX: the string form, and a value written elsewhere reads as its JSON text.
    let reply = send(&app, Method::PUT, &edx_one("big"), &alice, JSON, big).await;
    assert_status(&reply, StatusCode::NO_CONTENT, big);
    assert_eq!(app.get(&edx_one("big"), &alice).await.json(), json!(big));
    assert_eq!(app.get(&edx_one("n"), &alice).await.json(), json!(big));

    // A float beyond f64 is still refused, in every dialect.
    let records = send(
        &app,
        Method::POST,
        "/api/v2/user/me/preference/",
        &alice,
        JSON,
        r#"{"key": "x", "value": 1e400}"#,
    );
    assert_status(&records.await, StatusCode::BAD_REQUEST, "records 1e400");
    let pace_reply = send(&app, Method::PUT, "/preferences/appA/x", &pace, JSON, "1e400").await;
    assert_status(&pace_reply, StatusCode::BAD_REQUEST, "namespace 1e400");
    let edx_reply = send(&app, Method::PATCH, &edx_list(), &alice, MERGE, r#"{"x": 1e400}"#).await;
    assert_status(&edx_reply, StatusCode::BAD_REQUEST, "edx 1e400");
}

async fn pace_base_path_serves_the_same_routes(backend: Backend) {
    let app = spawn(backend).await;
    let pace = pace_token();
    let base = "/user/2025-1/preferences/appA";
    let reply = send(&app, Method::PUT, base, &pace, JSON, r#"{"theme": "dark"}"#).await;
    assert_status(&reply, StatusCode::NO_CONTENT, "versioned PUT");
    assert_eq!(app.get("/preferences/appA", &pace).await.json(), json!({"theme": "dark"}));
    assert_eq!(app.get(base, &pace).await.json(), json!({"theme": "dark"}));
    let reply = send(&app, Method::PATCH, base, &pace, MERGE, r#"{"size": 2}"#).await;
    assert_eq!(reply.json(), json!({"theme": "dark", "size": 2}));
    let reply = send(&app, Method::PUT, &format!("{base}/lang"), &pace, JSON, r#""fr""#).await;
    assert_status(&reply, StatusCode::NO_CONTENT, "versioned member PUT");
    assert_eq!(app.get("/user/2024-12/preferences/appA/lang", &pace).await.json(), json!("fr"));
    let reply = app.send(Method::DELETE, &format!("{base}/lang"), Some(&pace), None, None).await;
    assert_status(&reply, StatusCode::NO_CONTENT, "versioned member DELETE");
    let reply = app.send(Method::OPTIONS, base, Some(&pace), None, None).await;
    assert_eq!(reply.header("allow"), Some("GET, HEAD, PUT, PATCH, DELETE, OPTIONS"));
    // The same rules: another client's namespace is 403, `global` 404.
    assert_status(&app.get("/user/2025-1/preferences/appB", &pace).await, StatusCode::FORBIDDEN, "appB");
    assert_status(&app.get("/user/2025-1/preferences/global", &pace).await, StatusCode::NOT_FOUND, "global");
    let reply = app.send(Method::DELETE, base, Some(&pace), None, None).await;
    assert_status(&reply, StatusCode::NO_CONTENT, "versioned DELETE");
    assert_eq!(app.get("/preferences/appA", &pace).await.json(), json!({}));
    // Only `YYYY-N` versions.
    for path in [
        "/user/v1/preferences/appA",
        "/user/2025/preferences/appA",
        "/user/25-1/preferences/appA/k",
        "/user/preferences/appA",
    ] {
        let reply = app.get(path, &pace).await;
        assert_status(&reply, StatusCode::NOT_FOUND, path);
        assert_eq!(reply.header("content-type"), Some(JSON_API), "{path}");
        assert_eq!(reply.json()["errors"][0]["code"], json!("not-found"), "{path}");
    }
}

async fn pace_member_names_are_any_short_text(backend: Backend) {
    let app = spawn(backend).await;
    let pace = pace_token();
    let body = r#"{"app/theme": "dark", "größe": 1, "a b": 1, "x.y:z": 2}"#;
    let reply = send(&app, Method::PUT, "/preferences/appA", &pace, JSON, body).await;
    assert_status(&reply, StatusCode::NO_CONTENT, body);
    assert_eq!(
        app.get("/preferences/appA", &pace).await.json(),
        json!({"app/theme": "dark", "größe": 1, "a b": 1, "x.y:z": 2})
    );
    let reply = send(&app, Method::PATCH, "/preferences/appA", &pace, MERGE, r#"{"日本": {"a": 1}}"#).await;
    assert_status(&reply, StatusCode::OK, "PATCH");
    assert_eq!(app.get("/preferences/appA/app%2Ftheme", &pace).await.json(), json!("dark"));
    assert_eq!(app.get("/preferences/appA/gr%C3%B6%C3%9Fe", &pace).await.json(), json!(1));
    let reply = send(&app, Method::PUT, "/preferences/appA/a%20b", &pace, JSON, "2").await;
    assert_status(&reply, StatusCode::NO_CONTENT, "member PUT");
    assert_eq!(app.get("/preferences/appA/a%20b", &pace).await.json(), json!(2));
    // 255 bytes is the longest; 256 bytes (ASCII or not) is 413.
    let at_limit = json!({ "k".repeat(255): 1 }).to_string();
    let reply = send(&app, Method::PATCH, "/preferences/appA", &pace, MERGE, &at_limit).await;
    assert_status(&reply, StatusCode::OK, "255 bytes");
    for long in ["k".repeat(256), "é".repeat(128)] {
        let body = json!({ long.clone(): 1 }).to_string();
        let reply = send(&app, Method::PATCH, "/preferences/appA", &pace, MERGE, &body).await;
        assert_status(&reply, StatusCode::PAYLOAD_TOO_LARGE, &long);
        let reply = send(&app, Method::PUT, &format!("/preferences/appA/{long}"), &pace, JSON, "1").await;
        assert_status(&reply, StatusCode::PAYLOAD_TOO_LARGE, &long);
    }
    // Control characters are still refused.
    let reply = send(&app, Method::PATCH, "/preferences/appA", &pace, MERGE, r#"{"a\u0001": 1}"#).await;
    assert_status(&reply, StatusCode::BAD_REQUEST, "control character");
}

async fn pace_takes_json_api_bodies(backend: Backend) {
    let app = spawn(backend).await;
    let pace = pace_token();
    let reply = send(&app, Method::PUT, "/preferences/appA", &pace, JSON_API, r#"{"theme": "dark"}"#).await;
    assert_status(&reply, StatusCode::NO_CONTENT, "PUT vnd.api+json");
    let reply = send(&app, Method::PATCH, "/preferences/appA", &pace, JSON_API, r#"{"size": 1}"#).await;
    assert_status(&reply, StatusCode::OK, "PATCH vnd.api+json");
    let reply = send(
        &app,
        Method::PUT,
        "/preferences/appA/lang",
        &pace,
        &format!("{JSON_API}; charset=utf-8"),
        r#""fr""#,
    )
    .await;
    assert_status(&reply, StatusCode::NO_CONTENT, "member PUT vnd.api+json");
    let reply = send(&app, Method::PUT, "/user/2025-1/preferences/appA/x", &pace, JSON_API, "1").await;
    assert_status(&reply, StatusCode::NO_CONTENT, "versioned member PUT vnd.api+json");
    assert_eq!(
        app.get("/preferences/appA", &pace).await.json(),
        json!({"theme": "dark", "size": 1, "lang": "fr", "x": 1})
    );
    // PATCH takes merge patches still, and plain JSON is still no merge patch.
    let reply = send(&app, Method::PATCH, "/preferences/appA", &pace, JSON, r#"{"size": 2}"#).await;
    assert_status(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, "PATCH application/json");
    let reply = send(&app, Method::PUT, "/preferences/appA", &pace, "text/plain", "{}").await;
    assert_status(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, "PUT text/plain");
}

/// A `multipart/form-data` body of `fields`, with its content type.
fn multipart(fields: &[(&str, &str)]) -> (String, String) {
    let boundary = "prefs-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn urlencoded(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
}

async fn records_take_form_bodies(backend: Backend) {
    let app = spawn(backend).await;
    let alice = token("alice", &[]);
    let list = "/api/v2/user/me/preference/";
    let reply = send(
        &app,
        Method::POST,
        list,
        &alice,
        FORM,
        &urlencoded(&[("key", "theme"), ("value", r#""dark""#)]),
    )
    .await;
    assert_status(&reply, StatusCode::CREATED, "url-encoded POST");
    assert_eq!(reply.json()["value"], json!("dark"));
    assert_eq!(reply.json()["key"], json!("theme"));
    let (content_type, body) =
        multipart(&[("key", "layout"), ("value", r#"{"columns": 2, "big": 18446744073709551616}"#)]);
    let reply = send(&app, Method::POST, list, &alice, &content_type, &body).await;
    assert_status(&reply, StatusCode::CREATED, "multipart POST");
    assert!(reply.text.contains(r#""value":{"big":18446744073709551616,"columns":2}"#), "{}", reply.text);
    let id = reply.json()["id"].clone();
    let one = format!("{list}{id}/");
    let reply = send(&app, Method::PATCH, &one, &alice, FORM, &urlencoded(&[("value", "[1, true]")])).await;
    assert_status(&reply, StatusCode::OK, "url-encoded PATCH");
    assert_eq!(reply.json()["value"], json!([1, true]));
    let (content_type, body) = multipart(&[("key", "layout2"), ("value", "3")]);
    let reply = send(&app, Method::PUT, &one, &alice, &content_type, &body).await;
    assert_status(&reply, StatusCode::OK, "multipart PUT");
    assert_eq!((reply.json()["key"].clone(), reply.json()["value"].clone()), (json!("layout2"), json!(3)));

    // Text that is not JSON is `invalid` on its field; null is null; a missing field required.
    for (fields, field, code) in [
        (vec![("key", "k"), ("value", "dark")], "value", "invalid"),
        (vec![("key", "k"), ("value", "")], "value", "invalid"),
        (vec![("key", "k"), ("value", "null")], "value", "null"),
        (vec![("key", "k")], "value", "required"),
    ] {
        for multipart_body in [false, true] {
            let (content_type, body) =
                if multipart_body { multipart(&fields) } else { (FORM.to_owned(), urlencoded(&fields)) };
            let reply = send(&app, Method::POST, list, &alice, &content_type, &body).await;
            assert_status(&reply, StatusCode::BAD_REQUEST, &body);
            let error = &reply.json()["errors"][0];
            assert_eq!(
                (error["field"].clone(), error["messages"][0]["code"].clone()),
                (json!(field), json!(code)),
                "{body}"
            );
        }
    }
    // The body limit holds for forms too.
    let huge = urlencoded(&[("key", "k"), ("value", &format!("\"{}\"", "x".repeat(3 * 1024 * 1024)))]);
    let reply = send(&app, Method::POST, list, &alice, FORM, &huge).await;
    assert_status(&reply, StatusCode::PAYLOAD_TOO_LARGE, "huge form");
    let (content_type, huge) = multipart(&[("key", "k"), ("value", &"1".repeat(3 * 1024 * 1024))]);
    let reply = send(&app, Method::POST, list, &alice, &content_type, &huge).await;
    assert_status(&reply, StatusCode::PAYLOAD_TOO_LARGE, "huge multipart");
    let reply = send(&app, Method::POST, list, &alice, "text/plain", "key=k").await;
    assert_status(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, "text/plain");
}

async fn records_key_and_search_filters_both_apply(backend: Backend) {
    let app = spawn(backend).await;
    let alice = token("alice", &[]);
    for key in ["k1", "k4"] {
        let reply = app
            .json(Method::POST, "/api/v2/user/me/preference/", &alice, JSON, &json!({"key": key, "value": 1}))
            .await;
        assert_status(&reply, StatusCode::CREATED, key);
    }
    let count = |query: &'static str| {
        let app = &app;
        let alice = alice.clone();
        async move {
            let reply = app.get(&format!("/api/v2/user/me/preference/?{query}"), &alice).await;
            assert_status(&reply, StatusCode::OK, query);
            reply.json()["count"].clone()
        }
    };
    assert_eq!(count("search=nomatch&key=k4").await, json!(0));
    assert_eq!(count("key=k4&search=nomatch").await, json!(0));
    assert_eq!(count("search=k4&key=k4").await, json!(1));
    assert_eq!(count("search=k4").await, json!(1));
    assert_eq!(count("key=k1").await, json!(1));
    assert_eq!(count("").await, json!(2));
}
