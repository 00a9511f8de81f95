//! The client namespace dialect (docs/contract.md §3.3) and its JSON:API errors (§3.4), on both
//! backends.

use prefs_storage::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Reply, TestApp, now, sign, spawn, spawn_with};

const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";
const R: &str = "user:preferences:read";
const W: &str = "user:preferences:write";

/// A token for `user` issued to `client` with `scopes` and `roles`.
fn client_token(user: &str, client: Option<&str>, scopes: &[&str], roles: &[&str]) -> String {
    let mut claims = json!({"sub": format!("sub-{user}"), "preferred_username": user, "roles": roles, "scope": scopes.join(" "), "exp": now() + 600});
    if let Some(client) = client {
        claims["client_id"] = json!(client);
    }
    sign(&claims)
}

fn rw(user: &str) -> String {
    client_token(user, Some("appA"), &[R, W], &[])
}

async fn read(app: &TestApp, path: &str, token: &str) -> Value {
    let reply = app.get(path, token).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {reply:?}");
    reply.json()
}

fn assert_jsonapi(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/vnd.api+json"), "{reply:?}");
    let body = reply.json();
    let error = &body["errors"][0];
    assert_eq!(error["status"], json!(status.as_str()), "{body}");
    assert_eq!(error["code"], json!(code), "{body}");
    assert_eq!(error["id"].as_str(), reply.header("request-id"), "{body}");
    assert!(error["title"].is_string() && error["detail"].is_string(), "{body}");
}

backend_tests!(
    namespace_lifecycle,
    rfc7396_vectors_through_patch,
    scope_matrix,
    users_are_isolated_and_admins_act_for_others,
    errors_are_jsonapi_and_change_nothing,
    namespaces_are_separate_from_global,
    stored_bytes_are_limited,
);

async fn namespace_lifecycle(backend: Backend) {
    let app = spawn(backend).await;
    let alice = rw("alice");
    assert_eq!(read(&app, "/preferences/appA", &alice).await, json!({}), "never set");

    let doc = json!({"theme": "dark", "layout": {"cols": 2, "rows": null}, "recent": [1, 2]});
    let reply = app.json(Method::PUT, "/preferences/appA", &alice, JSON, &doc).await;
    assert_eq!((reply.status, reply.text.as_str()), (StatusCode::NO_CONTENT, ""));
    assert_eq!(read(&app, "/preferences/appA", &alice).await, doc, "a null inside a value is data");

    let reply = app
        .json(
            Method::PATCH,
            "/preferences/appA",
            &alice,
            MERGE,
            &json!({"layout": {"cols": 3, "rows": null}, "theme": null, "new": true}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let merged = json!({"layout": {"cols": 3}, "recent": [1, 2], "new": true});
    assert_eq!(reply.json(), merged);
    assert_eq!(read(&app, "/preferences/appA", &alice).await, merged);

    // PUT replaces the whole namespace; a null member is absent.
    let reply =
        app.json(Method::PUT, "/preferences/appA", &alice, JSON, &json!({"only": 1, "gone": null})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(read(&app, "/preferences/appA", &alice).await, json!({"only": 1}));

    // One member at a time.
    let reply = app.json(Method::PUT, "/preferences/appA/color", &alice, JSON, &json!({"r": 1})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(read(&app, "/preferences/appA/color", &alice).await, json!({"r": 1}));
    assert_eq!(read(&app, "/preferences/appA", &alice).await, json!({"only": 1, "color": {"r": 1}}));
    let reply = app.send(Method::DELETE, "/preferences/appA/color", Some(&alice), None, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_jsonapi(&app.get("/preferences/appA/color", &alice).await, StatusCode::NOT_FOUND, "not-found");
    let reply = app.send(Method::DELETE, "/preferences/appA/color", Some(&alice), None, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "deleting a missing member is fine");

    // DELETE empties the namespace.
    let reply = app.send(Method::DELETE, "/preferences/appA", Some(&alice), None, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(read(&app, "/preferences/appA", &alice).await, json!({}));
}

/// The RFC 7396 vectors of `tests/data/rfc7396-merge-patch.jsonl` (repository root), each through
/// `PATCH /preferences/{clientId}`: the answer and a fresh read are the expected document.
async fn rfc7396_vectors_through_patch(backend: Backend) {
    let app = spawn(backend).await;
    let alice = rw("alice");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/rfc7396-merge-patch.jsonl");
    let vectors = std::fs::read_to_string(path).unwrap();
    let mut count = 0;
    for line in vectors.lines().filter(|l| !l.trim().is_empty()) {
        let vector: Value = serde_json::from_str(line).unwrap();
        let reply =
            app.json(Method::PUT, "/preferences/appA", &alice, JSON, &json!({"k": vector["doc"]})).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
        let reply =
            app.json(Method::PATCH, "/preferences/appA", &alice, MERGE, &json!({"k": vector["patch"]})).await;
        assert_eq!(reply.status, StatusCode::OK, "{line}: {reply:?}");
        let expected = match &vector["expected"] {
            Value::Null => json!({}),
            value => json!({"k": value}),
        };
        assert_eq!(reply.json(), expected, "{line}");
        assert_eq!(read(&app, "/preferences/appA", &alice).await, expected, "{line}");
        count += 1;
    }
    assert_eq!(count, 17);
}

async fn scope_matrix(backend: Backend) {
    use StatusCode as S;
    let app = spawn(backend).await;
    const RB: &str = "user:preferences:read:appB";
    const WB: &str = "user:preferences:write:appB";
    // (scopes, client, [GET appA, PUT appA, PATCH appA, DELETE appA, GET appB, PUT appB])
    let ok = S::OK;
    let table: &[(&[&str], Option<&str>, [S; 6])] = &[
        (&[R, W], Some("appA"), [ok, S::NO_CONTENT, ok, S::NO_CONTENT, S::FORBIDDEN, S::FORBIDDEN]),
        (&[R], Some("appA"), [ok, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN]),
        (&[R, W, RB], Some("appA"), [ok, S::NO_CONTENT, ok, S::NO_CONTENT, ok, S::FORBIDDEN]),
        (&[R, W, RB, WB], Some("appA"), [ok, S::NO_CONTENT, ok, S::NO_CONTENT, ok, S::NO_CONTENT]),
        (&[RB, WB], Some("appA"), [S::FORBIDDEN; 6]),
        (&[R, W], None, [S::FORBIDDEN; 6]),
    ];
    for (scopes, client, expected) in table {
        let t = client_token("alice", *client, scopes, &[]);
        let requests = [
            (Method::GET, "/preferences/appA", None),
            (Method::PUT, "/preferences/appA", Some((JSON, json!({"a": 1})))),
            (Method::PATCH, "/preferences/appA", Some((MERGE, json!({"b": 2})))),
            (Method::DELETE, "/preferences/appA", None),
            (Method::GET, "/preferences/appB", None),
            (Method::PUT, "/preferences/appB", Some((JSON, json!({"a": 1})))),
        ];
        for ((method, path, body), status) in requests.into_iter().zip(expected) {
            let reply = match body {
                Some((content_type, body)) => app.json(method.clone(), path, &t, content_type, &body).await,
                None => app.send(method.clone(), path, Some(&t), None, None).await,
            };
            assert_eq!(reply.status, *status, "{scopes:?} {client:?} {method} {path}: {reply:?}");
            if *status == S::FORBIDDEN {
                assert_jsonapi(&reply, S::FORBIDDEN, "forbidden");
            }
        }
    }
    // A client-specific scope alone reaches nothing; and the token's azp stands in for client_id.
    let azp = sign(
        &json!({"sub": "sub-alice", "preferred_username": "alice", "scope": format!("{R} {W}"), "azp": "appA", "exp": now() + 600}),
    );
    assert_eq!(app.get("/preferences/appA", &azp).await.status, S::OK);
    assert_eq!(app.get("/preferences/appB", &azp).await.status, S::FORBIDDEN);
    // `global` is no client namespace, for any token.
    let everything = client_token("alice", Some("appA"), &[R, W, "user:preferences:read:global"], &["admin"]);
    for path in ["/preferences/global", "/preferences/global/k"] {
        assert_jsonapi(&app.get(path, &everything).await, S::NOT_FOUND, "not-found");
    }
}

async fn users_are_isolated_and_admins_act_for_others(backend: Backend) {
    use StatusCode as S;
    let app = spawn(backend).await;
    let alice = rw("alice");
    app.json(Method::PUT, "/preferences/appA", &alice, JSON, &json!({"mine": "alice"})).await;
    let bob = rw("bob");
    assert_eq!(read(&app, "/preferences/appA", &bob).await, json!({}), "bob sees only his own");
    app.json(Method::PUT, "/preferences/appA", &bob, JSON, &json!({"mine": "bob"})).await;
    assert_eq!(read(&app, "/preferences/appA", &alice).await, json!({"mine": "alice"}));

    // alice's user id, through the record dialect.
    let record = app
        .json(Method::POST, "/api/v2/user/me/preference/", &alice, JSON, &json!({"key": "x", "value": 1}))
        .await
        .json();
    let alice_id = record["user_id"].to_string();
    let as_alice = format!("/preferences/appA?user_id={alice_id}");
    let stella = client_token("stella", Some("appA"), &[R, W], &["staff"]);
    let ada = client_token("ada", Some("appA"), &[R, W], &["admin"]);
    for (t, get, write) in
        [(&bob, S::NOT_FOUND, S::NOT_FOUND), (&stella, S::OK, S::FORBIDDEN), (&ada, S::OK, S::OK)]
    {
        let reply = app.get(&as_alice, t).await;
        assert_eq!(reply.status, get, "{reply:?}");
        if get == S::OK {
            assert_eq!(reply.json(), json!({"mine": "alice"}));
        }
        let reply = app.json(Method::PATCH, &as_alice, t, MERGE, &json!({"by": "other"})).await;
        assert_eq!(reply.status, write, "{reply:?}");
        if write == S::OK {
            assert_eq!(reply.json(), json!({"mine": "alice", "by": "other"}));
        } else {
            assert_eq!(read(&app, "/preferences/appA", &alice).await, json!({"mine": "alice"}));
        }
    }
    for path in ["/preferences/appA?user_id=abc", "/preferences/appA?user_id=999999"] {
        assert_jsonapi(&app.get(path, &ada).await, S::NOT_FOUND, "not-found");
    }
}

/// Method, path, content type, body; the status, code and `source.pointer` expected.
type Row = (Method, &'static str, Option<&'static str>, Vec<u8>, StatusCode, &'static str, Option<String>);

async fn errors_are_jsonapi_and_change_nothing(backend: Backend) {
    use StatusCode as S;
    let limits = prefs_domain::Limits {
        max_keys: 3,
        max_value_bytes: 64,
        max_body_bytes: 4096,
        ..prefs_domain::Limits::default()
    };
    let app = spawn_with(backend, limits).await;
    let alice = rw("alice");
    app.json(Method::PUT, "/preferences/appA", &alice, JSON, &json!({"a": 1, "b": 2})).await;
    let before = read(&app, "/preferences/appA", &alice).await;
    let bytes = |v: Value| v.to_string().into_bytes();
    let long_key = "k".repeat(256);
    let rows: Vec<Row> = vec![
        (
            Method::PUT,
            "/preferences/appA",
            Some(JSON),
            bytes(json!([1])),
            S::BAD_REQUEST,
            "invalid-value",
            None,
        ),
        (
            Method::PATCH,
            "/preferences/appA",
            Some(MERGE),
            bytes(json!("x")),
            S::BAD_REQUEST,
            "invalid-value",
            None,
        ),
        (
            Method::PUT,
            "/preferences/appA",
            Some(JSON),
            b"{\"a\":".to_vec(),
            S::BAD_REQUEST,
            "invalid-json",
            None,
        ),
        (Method::PUT, "/preferences/appA", Some(JSON), Vec::new(), S::BAD_REQUEST, "invalid-value", None),
        (
            Method::PUT,
            "/preferences/appA",
            Some(MERGE),
            bytes(json!({})),
            S::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            None,
        ),
        (
            Method::PATCH,
            "/preferences/appA",
            Some(JSON),
            bytes(json!({})),
            S::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            None,
        ),
        (
            Method::PATCH,
            "/preferences/appA",
            None,
            bytes(json!({})),
            S::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            None,
        ),
        (
            Method::PATCH,
            "/preferences/appA",
            Some(MERGE),
            bytes(json!({"c": 3, "d": 4})),
            S::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            None,
        ),
        (
            Method::PUT,
            "/preferences/appA",
            Some(JSON),
            bytes(json!({"a": 1, "b": 2, "c": 3, "d": 4})),
            S::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            None,
        ),
        (
            Method::PATCH,
            "/preferences/appA",
            Some(MERGE),
            bytes(json!({"a": "x".repeat(100)})),
            S::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            Some("/a".into()),
        ),
        (
            Method::PATCH,
            "/preferences/appA",
            Some(MERGE),
            bytes(serde_json::Value::Object(serde_json::Map::from_iter([(long_key.clone(), json!(1))]))),
            S::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            Some(format!("/{long_key}")),
        ),
        (
            Method::PATCH,
            "/preferences/appA",
            Some(MERGE),
            bytes(json!({"bad\tkey": 1, "ok": 2})),
            S::BAD_REQUEST,
            "invalid-value",
            Some("/bad\tkey".into()),
        ),
        (
            Method::PATCH,
            "/preferences/appA",
            Some(MERGE),
            bytes(json!({"a/\u{7f}": 1})),
            S::BAD_REQUEST,
            "invalid-value",
            Some("/a~1\u{7f}".into()),
        ),
        (
            Method::PUT,
            "/preferences/appA/k",
            Some(JSON),
            bytes(json!(null)),
            S::BAD_REQUEST,
            "invalid-value",
            Some("/k".into()),
        ),
        (
            Method::PUT,
            "/preferences/appA/k",
            Some(JSON),
            bytes(json!("x".repeat(100))),
            S::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            Some("/k".into()),
        ),
        (
            Method::PATCH,
            "/preferences/appA",
            Some(MERGE),
            bytes(json!({"a": "y".repeat(5000)})),
            S::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            None,
        ),
        (
            Method::DELETE,
            "/preferences/appA/bad%0Akey",
            None,
            Vec::new(),
            S::BAD_REQUEST,
            "invalid-value",
            Some("/bad\nkey".into()),
        ),
    ];
    for (method, path, content_type, body, status, code, pointer) in rows {
        let shown = String::from_utf8_lossy(&body).chars().take(60).collect::<String>();
        let reply = app.send(method.clone(), path, Some(&alice), content_type, Some(body)).await;
        assert_jsonapi(&reply, status, code);
        if let Some(pointer) = pointer {
            assert_eq!(reply.json()["errors"][0]["source"]["pointer"], json!(pointer), "{method} {shown}");
        }
        assert_eq!(
            read(&app, "/preferences/appA", &alice).await,
            before,
            "{method} {path} {shown} changed something"
        );
    }
    let reply = app.json(Method::PATCH, "/preferences/appA", &alice, MERGE, &json!({"c": 3, "d": 4})).await;
    assert_eq!(reply.json()["errors"][0]["detail"], json!("Max number of keys exceeded"));

    // 401 with the challenge, for every method.
    for method in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
        let reply = app.send(method, "/preferences/appA", None, Some(JSON), Some(b"{}".to_vec())).await;
        assert_jsonapi(&reply, S::UNAUTHORIZED, "unauthorized");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    }
    // A wrong method is 405 with Allow.
    let reply = app.send(Method::POST, "/preferences/appA", Some(&alice), None, None).await;
    assert_jsonapi(&reply, S::METHOD_NOT_ALLOWED, "method-not-allowed");
    assert_eq!(reply.header("allow"), Some("GET, HEAD, PUT, PATCH, DELETE, OPTIONS"));
    assert_eq!(read(&app, "/preferences/appA", &alice).await, before);
}

async fn namespaces_are_separate_from_global(backend: Backend) {
    let app = spawn(backend).await;
    let alice = rw("alice");
    app.json(Method::PUT, "/preferences/appA", &alice, JSON, &json!({"pref-lang": "de", "ns-only": 1})).await;
    let edx = app.get("/api/user/v1/preferences/alice", &alice).await.json();
    assert_eq!(edx, json!({}), "the edX dialect shows only the global namespace");
    let records = app.get("/api/v2/user/me/preference/", &alice).await.json();
    assert_eq!(records["count"], json!(0));

    app.json(Method::PUT, "/api/user/v1/preferences/alice/pref-lang", &alice, JSON, &json!("fr")).await;
    assert_eq!(read(&app, "/preferences/appA", &alice).await, json!({"pref-lang": "de", "ns-only": 1}));
    assert_eq!(
        read(&app, "/preferences/appB", &client_token("alice", Some("appB"), &[R], &[])).await,
        json!({})
    );
}

/// A namespace's stored bytes (keys plus values as compact JSON) are limited (docs/contract.md
/// §1.4, §4.1): a write over the limit is 413, points at the member that takes the namespace over
/// and writes nothing; exactly at the limit is fine; once the limit is lowered below what is
/// stored, the namespace may shrink but not grow.
async fn stored_bytes_are_limited(backend: Backend) {
    use StatusCode as S;
    let limits =
        |max_namespace_bytes| prefs_domain::Limits { max_namespace_bytes, ..prefs_domain::Limits::default() };
    let app = spawn_with(backend, limits(100)).await;
    let alice = rw("alice");
    let path = "/preferences/appA";
    // `a` and its value take 1 + 42 bytes; `b` and a value of 54 letters 1 + 56: 100 in all.
    let a = "x".repeat(40);
    let reply = app.json(Method::PUT, path, &alice, JSON, &json!({"a": a})).await;
    assert_eq!(reply.status, S::NO_CONTENT, "{reply:?}");
    let before = read(&app, path, &alice).await;
    let over = "y".repeat(55);
    for (method, at, content_type, body) in [
        (Method::PATCH, path.to_owned(), MERGE, json!({"b": over})),
        (Method::PUT, path.to_owned(), JSON, json!({"a": a, "b": over})),
        (Method::PUT, format!("{path}/b"), JSON, json!(over)),
    ] {
        let reply = app.json(method.clone(), &at, &alice, content_type, &body).await;
        assert_jsonapi(&reply, S::PAYLOAD_TOO_LARGE, "payload-too-large");
        let error = &reply.json()["errors"][0];
        assert_eq!(error["source"]["pointer"], json!("/b"), "{method} {at}");
        let detail = error["detail"].as_str().unwrap();
        assert!(detail.contains("101 bytes") && detail.contains("limit is 100 bytes"), "{detail}");
        assert_eq!(read(&app, path, &alice).await, before, "{method} {at} wrote something");
    }
    let at_limit = app.json(Method::PATCH, path, &alice, MERGE, &json!({"b": "y".repeat(54)})).await;
    assert_eq!(at_limit.status, S::OK, "{at_limit:?}");

    let app = app.with_limits(limits(50)).await;
    let grow = app.json(Method::PUT, &format!("{path}/c"), &alice, JSON, &json!(1)).await;
    assert_jsonapi(&grow, S::PAYLOAD_TOO_LARGE, "payload-too-large");
    let shrink = app.json(Method::PATCH, path, &alice, MERGE, &json!({"a": null})).await;
    assert_eq!(shrink.status, S::OK, "57 bytes, still over 50 but less than before: {shrink:?}");
    assert_eq!(read(&app, path, &alice).await, json!({"b": "y".repeat(54)}));
    let shrink = app.json(Method::PUT, &format!("{path}/b"), &alice, JSON, &json!("y".repeat(50))).await;
    assert_eq!(shrink.status, S::NO_CONTENT, "{shrink:?}");
}
