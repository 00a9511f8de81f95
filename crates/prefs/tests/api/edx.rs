//! The Open edX dialect (docs/contract.md §3.1), every row, on both backends.

use prefs_storage::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Reply, TestApp, spawn, spawn_with, token};

const MERGE: &str = "application/merge-patch+json";
const JSON: &str = "application/json";

fn list(username: &str) -> String {
    format!("/api/user/v1/preferences/{username}")
}

fn one(username: &str, key: &str) -> String {
    format!("/api/user/v1/preferences/{username}/{key}")
}

/// alice's global preferences as alice reads them.
async fn snapshot(app: &TestApp) -> Value {
    let reply = app.get(&list("alice"), &token("alice", &[])).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.json()
}

/// Provisions the four users of the matrix and gives alice two preferences.
async fn seeded(backend: Backend) -> TestApp {
    let app = spawn(backend).await;
    for (user, roles) in [("bob", vec![]), ("stella", vec!["staff"]), ("ada", vec!["admin"])] {
        assert_eq!(app.get(&list(user), &token(user, &roles)).await.status, StatusCode::OK);
    }
    let reply = app
        .json(
            Method::PATCH,
            &list("alice"),
            &token("alice", &[]),
            MERGE,
            &json!({"pref-lang": "fr", "theme": "dark"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    app
}

fn assert_edx_error(reply: &Reply) {
    assert_eq!(reply.header("content-type"), Some("application/json"), "{reply:?}");
    let body = reply.json();
    assert!(body["developer_message"].is_string() && body["user_message"].is_string(), "{body}");
}

backend_tests!(
    owner_reads_and_writes,
    both_path_forms_and_percent_decoded_usernames,
    authorization_matrix,
    hidden_user_is_indistinguishable_from_unknown,
    bad_input_is_rejected_and_changes_nothing,
    bodies_over_the_limit_are_413,
    routes_methods_and_headers,
    stored_bytes_are_limited,
);

async fn owner_reads_and_writes(backend: Backend) {
    let app = seeded(backend).await;
    let alice = token("alice", &[]);
    assert_eq!(snapshot(&app).await, json!({"pref-lang": "fr", "theme": "dark"}));

    let reply = app.get(&one("alice", "pref-lang"), &alice).await;
    assert_eq!((reply.status, reply.json()), (StatusCode::OK, json!("fr")));

    // PUT creates and updates; numbers become strings; whitespace is trimmed; 204 has no body.
    for (body, stored) in [(json!("en"), "en"), (json!(5), "5"), (json!("  es  "), "es")] {
        let reply = app.json(Method::PUT, &one("alice", "pref-lang"), &alice, JSON, &body).await;
        assert_eq!((reply.status, reply.text.as_str()), (StatusCode::NO_CONTENT, ""));
        assert_eq!(app.get(&one("alice", "pref-lang"), &alice).await.json(), json!(stored));
    }
    let reply = app.json(Method::PUT, &one("alice", "new.key:1"), &alice, JSON, &json!("v")).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);

    // PATCH: sets, trims, stringifies numbers, null deletes, deleting a missing key is fine.
    let patch = json!({"theme": null, "count": 3, "time_zone": " Europe/Paris ", "never-set": null});
    let reply = app.json(Method::PATCH, &list("alice"), &alice, MERGE, &patch).await;
    assert_eq!((reply.status, reply.text.as_str()), (StatusCode::NO_CONTENT, ""));
    assert_eq!(
        snapshot(&app).await,
        json!({"pref-lang": "es", "new.key:1": "v", "count": "3", "time_zone": "Europe/Paris"})
    );

    // DELETE: 204, then the key is gone and a second DELETE is 404.
    let reply = app.send(Method::DELETE, &one("alice", "count"), Some(&alice), None, None).await;
    assert_eq!((reply.status, reply.text.as_str()), (StatusCode::NO_CONTENT, ""));
    let reply = app.get(&one("alice", "count"), &alice).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_edx_error(&reply);
    let reply = app.send(Method::DELETE, &one("alice", "count"), Some(&alice), None, None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_edx_error(&reply);

    // The content type may carry parameters.
    let reply = app
        .json(
            Method::PATCH,
            &list("alice"),
            &alice,
            "application/merge-patch+json; charset=utf-8",
            &json!({"x": "1"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
}

async fn both_path_forms_and_percent_decoded_usernames(backend: Backend) {
    let app = seeded(backend).await;
    let alice = token("alice", &[]);
    let with_slash = app.get(&format!("{}/", list("alice")), &alice).await;
    assert_eq!((with_slash.status, with_slash.json()), (StatusCode::OK, snapshot(&app).await));
    let reply =
        app.json(Method::PATCH, &format!("{}/", list("alice")), &alice, MERGE, &json!({"k": "v"})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(snapshot(&app).await["k"], json!("v"));

    // E-mail-style and Unicode usernames, percent-encoded in the path.
    for (name, encoded) in
        [("jean.dupont+x@example.com", "jean.dupont%2Bx%40example.com"), ("Zoë Ünal", "Zo%C3%AB%20%C3%9Cnal")]
    {
        let t = token(name, &[]);
        let reply = app.json(Method::PUT, &one(encoded, "pref-lang"), &t, JSON, &json!("de")).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{name}: {reply:?}");
        let reply = app.get(&list(encoded), &t).await;
        assert_eq!((reply.status, reply.json()), (StatusCode::OK, json!({"pref-lang": "de"})), "{name}");
    }
}

async fn authorization_matrix(backend: Backend) {
    use StatusCode as S;
    let app = seeded(backend).await;
    // (route, [alice, bob, stella, ada])
    let reads: &[(&str, [S; 4])] = &[
        ("/api/user/v1/preferences/alice", [S::OK, S::NOT_FOUND, S::OK, S::OK]),
        ("/api/user/v1/preferences/alice/pref-lang", [S::OK, S::NOT_FOUND, S::OK, S::OK]),
        ("/api/user/v1/preferences/alice/absent", [S::NOT_FOUND; 4]),
        ("/api/user/v1/preferences/ghost", [S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND]),
        ("/api/user/v1/preferences/ghost/pref-lang", [S::NOT_FOUND; 4]),
    ];
    let actors = [("alice", vec![]), ("bob", vec![]), ("stella", vec!["staff"]), ("ada", vec!["admin"])];
    for (path, expected) in reads {
        for ((actor, roles), status) in actors.iter().zip(expected) {
            let reply = app.get(path, &token(actor, roles)).await;
            assert_eq!(reply.status, *status, "{actor} GET {path}: {reply:?}");
        }
    }
    assert_eq!(app.get(&list("alice"), &token("stella", &["staff"])).await.json(), snapshot(&app).await);

    // Writes: (method, path, content type, body) with [alice, bob, stella, ada]; a rejected write
    // changes nothing, an accepted one is undone before the next cell.
    let writes: &[(Method, &str, &str, Value, [S; 4])] = &[
        (
            Method::PATCH,
            "/api/user/v1/preferences/alice",
            MERGE,
            json!({"w": "1"}),
            [S::NO_CONTENT, S::NOT_FOUND, S::FORBIDDEN, S::NO_CONTENT],
        ),
        (
            Method::PUT,
            "/api/user/v1/preferences/alice/w",
            JSON,
            json!("1"),
            [S::NO_CONTENT, S::NOT_FOUND, S::FORBIDDEN, S::NO_CONTENT],
        ),
        (
            Method::DELETE,
            "/api/user/v1/preferences/alice/theme",
            JSON,
            json!(null),
            [S::NO_CONTENT, S::NOT_FOUND, S::FORBIDDEN, S::NO_CONTENT],
        ),
        (Method::PATCH, "/api/user/v1/preferences/ghost", MERGE, json!({"w": "1"}), [S::NOT_FOUND; 4]),
        (Method::PUT, "/api/user/v1/preferences/ghost/w", JSON, json!("1"), [S::NOT_FOUND; 4]),
        (Method::DELETE, "/api/user/v1/preferences/ghost/theme", JSON, json!(null), [S::NOT_FOUND; 4]),
    ];
    let restore = json!({"pref-lang": "fr", "theme": "dark", "w": null});
    for (method, path, content_type, body, expected) in writes {
        for ((actor, roles), status) in actors.iter().zip(expected) {
            let before = snapshot(&app).await;
            let reply = app.json(method.clone(), path, &token(actor, roles), content_type, body).await;
            assert_eq!(reply.status, *status, "{actor} {method} {path}: {reply:?}");
            if status.is_success() {
                assert_ne!(snapshot(&app).await, before, "{actor} {method} {path} changed nothing");
                let reply =
                    app.json(Method::PATCH, &list("alice"), &token("alice", &[]), MERGE, &restore).await;
                assert_eq!(reply.status, S::NO_CONTENT);
            } else {
                assert_edx_error(&reply);
                assert_eq!(
                    snapshot(&app).await,
                    before,
                    "{actor} {method} {path} changed alice's preferences"
                );
            }
        }
    }
}

async fn hidden_user_is_indistinguishable_from_unknown(backend: Backend) {
    let app = seeded(backend).await;
    let bob = token("bob", &[]);
    for (hidden, unknown) in
        [(list("alice"), list("ghost")), (one("alice", "pref-lang"), one("ghost", "pref-lang"))]
    {
        let hidden = app.get(&hidden, &bob).await;
        let unknown = app.get(&unknown, &bob).await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND);
        assert_eq!((hidden.status, hidden.text.clone()), (unknown.status, unknown.text.clone()));
        assert_eq!(hidden.header("content-type"), unknown.header("content-type"));
    }
    // Staff and admin naming an unknown user also get 404.
    for t in [token("stella", &["staff"]), token("ada", &["admin"])] {
        assert_eq!(
            app.json(Method::PATCH, &list("ghost"), &t, MERGE, &json!({"a": "b"})).await.status,
            StatusCode::NOT_FOUND
        );
    }
}

/// Method, path, content type and body of a request.
type Request = (Method, String, Option<&'static str>, Vec<u8>);

async fn bad_input_is_rejected_and_changes_nothing(backend: Backend) {
    let app = seeded(backend).await;
    let alice = token("alice", &[]);
    let before = snapshot(&app).await;
    let bytes = |v: Value| v.to_string().into_bytes();
    let patch = |body: Vec<u8>| (Method::PATCH, list("alice"), Some(MERGE), body);
    let put = |key: &str, body: Vec<u8>| (Method::PUT, one("alice", key), Some(JSON), body);
    // (request, status, the field_errors keys expected, or none for a flat error)
    let rows: Vec<(Request, StatusCode, Option<Vec<&str>>)> = vec![
        (
            (Method::PATCH, list("alice"), Some(JSON), bytes(json!({"a": "b"}))),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
        ),
        (
            (Method::PATCH, list("alice"), Some("text/plain"), bytes(json!({"a": "b"}))),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
        ),
        (
            (Method::PATCH, list("alice"), None, bytes(json!({"a": "b"}))),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
        ),
        (
            (Method::PUT, one("alice", "a"), Some("text/plain"), bytes(json!("b"))),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
        ),
        (patch(b"{\"a\":".to_vec()), StatusCode::BAD_REQUEST, None),
        (patch(b"{} x".to_vec()), StatusCode::BAD_REQUEST, None),
        (patch(b"\xef\xbb\xbf{\"a\":\"b\"}".to_vec()), StatusCode::BAD_REQUEST, None),
        (patch(b"{\"a\":\"\xff\"}".to_vec()), StatusCode::BAD_REQUEST, None),
        (patch(Vec::new()), StatusCode::BAD_REQUEST, None),
        (patch(bytes(json!({}))), StatusCode::BAD_REQUEST, None),
        (patch(bytes(json!(["a"]))), StatusCode::BAD_REQUEST, None),
        (patch(bytes(json!("a"))), StatusCode::BAD_REQUEST, None),
        (patch(bytes(json!({"ok": "fine", "nul": "a\u{0}b"}))), StatusCode::BAD_REQUEST, Some(vec!["nul"])),
        (
            patch(bytes(json!({"obj": {"a": 1}, "!!": [1], "arr": ["\u{0}"]}))),
            StatusCode::BAD_REQUEST,
            Some(vec!["!!"]),
        ),
        (
            patch(bytes(json!({"blank": "  ", "empty": ""}))),
            StatusCode::BAD_REQUEST,
            Some(vec!["blank", "empty"]),
        ),
        (
            patch(bytes(json!({"time_zone": "Mars/Olympus"}))),
            StatusCode::BAD_REQUEST,
            Some(vec!["time_zone"]),
        ),
        (
            patch(bytes(json!({"bad\tkey": "v", "/.": "v", "ok": "v"}))),
            StatusCode::BAD_REQUEST,
            Some(vec!["/.", "bad\tkey"]),
        ),
        (
            patch(bytes(Value::Object(serde_json::Map::from_iter([("k".repeat(256), json!("v"))])))),
            StatusCode::BAD_REQUEST,
            Some(vec![]),
        ),
        (put("nul", bytes(json!("a\u{0}"))), StatusCode::BAD_REQUEST, None),
        (put("%21%21", bytes(json!({"a": "b"}))), StatusCode::BAD_REQUEST, None),
        (put("blank", bytes(json!("   "))), StatusCode::BAD_REQUEST, None),
        (put("time_zone", bytes(json!("Not/AZone"))), StatusCode::BAD_REQUEST, None),
        (put("%2F.", bytes(json!("v"))), StatusCode::BAD_REQUEST, None),
        (put("x", b"{\"a\":".to_vec()), StatusCode::BAD_REQUEST, None),
        ((Method::DELETE, one("alice", "a%01b"), None, Vec::new()), StatusCode::BAD_REQUEST, None),
    ];
    for ((method, path, content_type, body), status, fields) in rows {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let reply = app.send(method.clone(), &path, Some(&alice), content_type, Some(body)).await;
        assert_eq!(reply.status, status, "{method} {path} {shown}: {reply:?}");
        let json = reply.json();
        match fields {
            Some(expected) if !expected.is_empty() => {
                let mut got: Vec<&str> = json["field_errors"]
                    .as_object()
                    .expect("field_errors")
                    .keys()
                    .map(String::as_str)
                    .collect();
                got.sort_unstable();
                assert_eq!(got, expected, "{shown}: {json}");
                for error in json["field_errors"].as_object().unwrap().values() {
                    assert!(
                        error["developer_message"].is_string() && error["user_message"].is_string(),
                        "{json}"
                    );
                }
            }
            Some(_) => assert_eq!(json["field_errors"].as_object().map(|m| m.len()), Some(1), "{json}"),
            None => assert_edx_error(&reply),
        }
        assert_eq!(snapshot(&app).await, before, "{method} {path} {shown} changed something");
        assert_eq!(app.get("/healthz", &alice).await.status, StatusCode::OK);
    }

    // The messages are Open edX's.
    let reply = app.json(Method::PATCH, &list("alice"), &alice, MERGE, &json!({})).await;
    assert_eq!(reply.json()["developer_message"], json!("No data provided for user preference update"));
    let reply = app
        .json(Method::PATCH, &list("alice"), &alice, MERGE, &json!({"time_zone": "Mars/Olympus", "b": " "}))
        .await;
    let errors = &reply.json()["field_errors"];
    assert_eq!(
        errors["time_zone"]["user_message"],
        json!("Value 'Mars/Olympus' is not a valid time zone selection.")
    );
    assert_eq!(
        errors["time_zone"]["developer_message"],
        json!("Value 'Mars/Olympus' not valid for preference 'time_zone': Not in timezone set.")
    );
    assert_eq!(errors["b"]["user_message"], json!("Preference 'b' cannot be set to an empty value."));
    let reply = app.json(Method::PATCH, &list("alice"), &alice, MERGE, &json!({"!!": "v"})).await;
    assert_eq!(
        reply.json()["field_errors"]["!!"]["user_message"],
        json!("Invalid user preference key '!!'.")
    );
    let reply = app.json(Method::PUT, &one("alice", "blank"), &alice, JSON, &json!("")).await;
    assert_eq!(reply.json()["user_message"], json!("Preference 'blank' cannot be set to an empty value."));
    assert_eq!(snapshot(&app).await, before);
}

async fn bodies_over_the_limit_are_413(backend: Backend) {
    let limits = prefs_domain::Limits { max_body_bytes: 1024, ..prefs_domain::Limits::default() };
    let app = spawn_with(backend, limits).await;
    let alice = token("alice", &[]);
    let exact = json!({"k": "v".repeat(1024 - 8)}).to_string();
    assert_eq!(exact.len(), 1024);
    let reply =
        app.send(Method::PATCH, &list("alice"), Some(&alice), Some(MERGE), Some(exact.into_bytes())).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "a body of exactly the limit is fine");
    let before = snapshot(&app).await;
    let over = json!({"k": "w".repeat(1024 - 7)}).to_string();
    for (method, path, content_type) in
        [(Method::PATCH, list("alice"), MERGE), (Method::PUT, one("alice", "k"), JSON)]
    {
        let body = if method == Method::PUT { json!("w".repeat(1023)).to_string() } else { over.clone() };
        assert_eq!(body.len(), 1025);
        let reply = app.send(method, &path, Some(&alice), Some(content_type), Some(body.into_bytes())).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{reply:?}");
        assert_edx_error(&reply);
        assert_eq!(snapshot(&app).await, before);
    }
    // Chunked, without Content-Length.
    let status = crate::helpers::chunked(&app, &list("alice"), &alice, MERGE, over.as_bytes()).await;
    assert_eq!(status, 413);
    assert_eq!(snapshot(&app).await, before);
}

async fn routes_methods_and_headers(backend: Backend) {
    let app = seeded(backend).await;
    let alice = token("alice", &[]);
    let reply = app.get(&list("alice"), &alice).await;
    assert_eq!(reply.header("vary"), Some("Accept"));
    assert_eq!(reply.header("allow"), Some("GET, HEAD, PATCH, OPTIONS"));
    assert_eq!(reply.header("request-id").map(str::len), Some(20));
    let reply = app.get(&one("alice", "pref-lang"), &alice).await;
    assert_eq!(reply.header("allow"), Some("GET, HEAD, PUT, DELETE, OPTIONS"));

    // HEAD answers like GET, without a body.
    let reply = app.send(Method::HEAD, &list("alice"), Some(&alice), None, None).await;
    assert_eq!((reply.status, reply.text.as_str()), (StatusCode::OK, ""));

    // OPTIONS lists the methods; a wrong method is 405 with Allow, in the dialect's format.
    let reply = app.send(Method::OPTIONS, &list("alice"), None, None, None).await;
    assert_eq!(reply.header("allow"), Some("GET, HEAD, PATCH, OPTIONS"));
    for method in [Method::POST, Method::DELETE, Method::from_bytes(b"TRACE").unwrap()] {
        let reply = app.send(method.clone(), &list("alice"), Some(&alice), None, None).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD, PATCH, OPTIONS"));
        assert_edx_error(&reply);
    }

    // Unknown routes under the dialect answer in its format.
    for path in ["/api/user/v1/nope", "/api/user/v1/preferences/alice/a/b"] {
        let reply = app.get(path, &alice).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_edx_error(&reply);
    }
}

/// A user's stored bytes (keys plus values as compact JSON) are limited (docs/contract.md §1.4,
/// §4.1): a write over the limit is 400 naming the member that takes it over, and writes nothing;
/// exactly at the limit is fine; once the limit is lowered, the preferences may shrink.
async fn stored_bytes_are_limited(backend: Backend) {
    let limits =
        |max_namespace_bytes| prefs_domain::Limits { max_namespace_bytes, ..prefs_domain::Limits::default() };
    let app = spawn_with(backend, limits(100)).await;
    let alice = token("alice", &[]);
    // `a` and its value take 1 + 42 bytes; `b` and a value of 55 letters 1 + 57: 101 in all.
    let reply = app.json(Method::PATCH, &list("alice"), &alice, MERGE, &json!({"a": "x".repeat(40)})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    let before = snapshot(&app).await;
    let over = "y".repeat(55);

    let reply = app.json(Method::PATCH, &list("alice"), &alice, MERGE, &json!({"b": over})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    let errors = reply.json()["field_errors"].clone();
    assert_eq!(
        errors.as_object().map(|e| e.keys().map(String::as_str).collect()),
        Some(vec!["b"]),
        "{errors}"
    );
    let message = errors["b"]["developer_message"].as_str().unwrap();
    assert!(message.contains("101 bytes") && message.contains("limit is 100 bytes"), "{message}");
    assert_eq!(snapshot(&app).await, before);

    let reply = app.json(Method::PUT, &one("alice", "b"), &alice, JSON, &json!(over)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert_edx_error(&reply);
    let message = reply.json()["developer_message"].as_str().unwrap().to_owned();
    assert!(message.contains("'b'") && message.contains("101 bytes"), "{message}");
    assert_eq!(snapshot(&app).await, before);

    let reply = app.json(Method::PUT, &one("alice", "b"), &alice, JSON, &json!("y".repeat(54))).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "exactly at the limit: {reply:?}");
    let app = app.with_limits(limits(50)).await;
    let reply = app.json(Method::PATCH, &list("alice"), &alice, MERGE, &json!({"a": null})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "57 bytes, over 50 but less than before: {reply:?}");
}
