//! The record dialect (docs/contract.md §3.2) on both backends.

use prefs_storage::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Reply, TestApp, spawn, spawn_with, token};

const JSON: &str = "application/json";

fn list(user: &str) -> String {
    format!("/api/v2/user/{user}/preference/")
}

fn one(user: &str, id: &Value) -> String {
    format!("/api/v2/user/{user}/preference/{id}/")
}

async fn post(app: &TestApp, actor: &str, user: &str, body: &Value) -> Reply {
    app.json(Method::POST, &list(user), &token(actor, &[]), JSON, body).await
}

/// All of alice's records, as she lists them (up to 100).
async fn records(app: &TestApp) -> Value {
    let reply = app.get(&format!("{}?limit=100", list("me")), &token("alice", &[])).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.json()["results"].clone()
}

fn assert_field_error(reply: &Reply, field: &str, code: &str) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    let body = reply.json();
    let error = &body["errors"][0];
    assert_eq!(error["field"], json!(field), "{body}");
    assert_eq!(error["messages"][0]["code"], json!(code), "{body}");
    assert!(error["messages"][0]["message"].is_string(), "{body}");
}

fn assert_error(reply: &Reply, status: StatusCode) {
    assert_eq!(reply.status, status, "{reply:?}");
    let body = reply.json();
    assert!(body["errors"][0]["code"].is_string() && body["errors"][0]["message"].is_string(), "{body}");
}

fn is_rfc3339_utc(value: &Value) -> bool {
    value.as_str().is_some_and(|s| s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

backend_tests!(
    record_lifecycle,
    paging_like_django_rest_framework,
    validation_errors_change_nothing,
    authorization_matrix,
    visible_across_dialects,
    errors_use_the_record_envelope,
    stored_bytes_are_limited,
);

async fn record_lifecycle(backend: Backend) {
    let app = spawn(backend).await;
    let alice = token("alice", &[]);
    let value = json!({"theme": {"dark": true, "accent": null}, "sizes": [1, 2.5, "x"], "note": "a\u{0}b"});
    let reply = post(&app, "alice", "me", &json!({"key": "ui", "value": value, "id": 999, "user_id": 12345, "created_at": "2000-01-01T00:00:00Z"})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let created = reply.json();
    assert_eq!(created["key"], json!("ui"));
    assert_eq!(created["value"], value, "values round-trip exactly");
    assert_ne!(created["id"], json!(999), "id is read-only");
    assert_ne!(created["user_id"], json!(12345), "user_id is read-only");
    assert!(
        is_rfc3339_utc(&created["created_at"]) && is_rfc3339_utc(&created["last_updated_at"]),
        "{created}"
    );
    assert_eq!(created["created_at"], created["last_updated_at"]);
    assert_ne!(created["created_at"], json!("2000-01-01T00:00:00Z"));
    let (id, user_id) = (created["id"].clone(), created["user_id"].to_string());
    let location = reply.header("location").unwrap();
    assert!(
        location.starts_with("http://127.0.0.1:") && location.ends_with(&format!("/preference/{id}/")),
        "{location}"
    );

    // GET through `me` and through the numeric id.
    for user in ["me", &user_id] {
        let reply = app.get(&one(user, &id), &alice).await;
        assert_eq!((reply.status, reply.json()), (StatusCode::OK, created.clone()), "{user}");
    }

    // Every scalar kind is a value.
    for (i, v) in [json!(1), json!(-0.5), json!(true), json!("s"), json!([]), json!({})].iter().enumerate() {
        let reply = post(&app, "alice", "me", &json!({"key": format!("k{i}"), "value": v})).await;
        assert_eq!((reply.status, reply.json()["value"].clone()), (StatusCode::CREATED, v.clone()));
    }

    // PUT replaces key and value; created_at stays, last_updated_at moves, id stays.
    let reply =
        app.json(Method::PUT, &one("me", &id), &alice, JSON, &json!({"key": "ui2", "value": 7})).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let put = reply.json();
    assert_eq!(
        (put["id"].clone(), put["key"].clone(), put["value"].clone()),
        (id.clone(), json!("ui2"), json!(7))
    );
    assert_eq!(put["created_at"], created["created_at"]);
    assert!(put["last_updated_at"].as_str() > created["last_updated_at"].as_str(), "{put}");

    // PATCH the value only, then the key only (a rename keeps id and value).
    let reply = app.json(Method::PATCH, &one("me", &id), &alice, JSON, &json!({"value": [1]})).await;
    assert_eq!(
        (reply.status, reply.json()["key"].clone(), reply.json()["value"].clone()),
        (StatusCode::OK, json!("ui2"), json!([1]))
    );
    let reply = app.json(Method::PATCH, &one("me", &id), &alice, JSON, &json!({"key": "ui3"})).await;
    let patched = reply.json();
    assert_eq!(
        (patched["id"].clone(), patched["key"].clone(), patched["value"].clone()),
        (id.clone(), json!("ui3"), json!([1]))
    );
    assert!(patched["last_updated_at"].as_str() > put["last_updated_at"].as_str());

    // DELETE: 204, then 404.
    let reply = app.send(Method::DELETE, &one("me", &id), Some(&alice), None, None).await;
    assert_eq!((reply.status, reply.text.as_str()), (StatusCode::NO_CONTENT, ""));
    assert_error(&app.get(&one("me", &id), &alice).await, StatusCode::NOT_FOUND);
    assert_error(
        &app.send(Method::DELETE, &one("me", &id), Some(&alice), None, None).await,
        StatusCode::NOT_FOUND,
    );
}

async fn paging_like_django_rest_framework(backend: Backend) {
    let app = spawn(backend).await;
    let alice = token("alice", &[]);
    for i in 0..25 {
        assert_eq!(
            post(&app, "alice", "me", &json!({"key": format!("k{i:02}"), "value": i})).await.status,
            StatusCode::CREATED
        );
    }
    let page = |query: &'static str| {
        let app = &app;
        let alice = &alice;
        async move {
            let reply = app.get(&format!("{}{query}", list("me")), alice).await;
            assert_eq!(reply.status, StatusCode::OK, "{query}: {reply:?}");
            reply.json()
        }
    };
    let url = |query: &str| format!("{}{}{query}", app.base, list("me"));
    let keys = |page: &Value| {
        page["results"].as_array().unwrap().iter().map(|r| r["value"].as_i64().unwrap()).collect::<Vec<_>>()
    };

    let first = page("").await;
    assert_eq!(first["count"], json!(25));
    assert_eq!(keys(&first), (0..20).collect::<Vec<_>>(), "ordered by id, 20 by default");
    assert_eq!(first["next"], json!(url("?limit=20&offset=20")));
    assert_eq!(first["previous"], Value::Null);

    let last = page("?offset=20").await;
    assert_eq!(keys(&last), (20..25).collect::<Vec<_>>());
    assert_eq!(last["next"], Value::Null);
    assert_eq!(last["previous"], json!(url("?limit=20")));

    let middle = page("?limit=5&offset=10").await;
    assert_eq!(keys(&middle), (10..15).collect::<Vec<_>>());
    assert_eq!(middle["next"], json!(url("?limit=5&offset=15")));
    assert_eq!(middle["previous"], json!(url("?limit=5&offset=5")));

    let past = page("?offset=100").await;
    assert_eq!((past["count"].clone(), keys(&past).len(), past["next"].clone()), (json!(25), 0, Value::Null));
    assert_eq!(past["previous"], json!(url("?limit=20&offset=80")));

    for query in ["?limit=0", "?limit=-1", "?limit=abc", "?limit="] {
        assert_eq!(keys(&page(query).await).len(), 20, "{query} gives the default");
    }
    assert_eq!(keys(&page("?limit=1000000").await).len(), 25, "capped at 100");
    for query in ["?offset=-5", "?offset=abc"] {
        assert_eq!(keys(&page(query).await)[0], 0, "{query} gives 0");
    }
    // Other query parameters are kept in the links.
    let filtered = page("?limit=2&search=").await;
    assert_eq!(filtered["next"], json!(url("?search=&limit=2&offset=2")));

    for query in ["?key=k07", "?search=k07"] {
        let found = page(query).await;
        assert_eq!((found["count"].clone(), keys(&found)), (json!(1), vec![7]), "{query}");
    }
    assert_eq!(page("?key=k7").await["count"], json!(0), "exact match only");
}

async fn validation_errors_change_nothing(backend: Backend) {
    let limits = prefs_domain::Limits { max_keys: 3, max_value_bytes: 64, ..prefs_domain::Limits::default() };
    let app = spawn_with(backend, limits).await;
    let alice = token("alice", &[]);
    let a = post(&app, "alice", "me", &json!({"key": "a", "value": 1})).await.json();
    post(&app, "alice", "me", &json!({"key": "b", "value": 2})).await;
    let (id, before) = (a["id"].clone(), records(&app).await);

    let field_cases = [
        (Method::POST, list("me"), json!({"key": "c", "value": null}), "value", "null"),
        (Method::POST, list("me"), json!({"value": 1}), "key", "required"),
        (Method::POST, list("me"), json!({"key": "c"}), "value", "required"),
        (Method::POST, list("me"), json!({"key": "bad\u{1}key", "value": 1}), "key", "invalid-key"),
        (Method::POST, list("me"), json!({"key": 5, "value": 1}), "key", "invalid"),
        (Method::POST, list("me"), json!({"key": "a", "value": 1}), "key", "exists"),
        (Method::POST, list("me"), json!({"key": "c", "value": "x".repeat(100)}), "value", "too-large"),
        (Method::PUT, one("me", &id), json!({"value": 1}), "key", "required"),
        (Method::PUT, one("me", &id), json!({"key": "a"}), "value", "required"),
        (Method::PATCH, one("me", &id), json!({"key": "b"}), "key", "exists"),
        (Method::PATCH, one("me", &id), json!({"value": null}), "value", "null"),
    ];
    for (method, path, body, field, code) in field_cases {
        let reply = app.json(method.clone(), &path, &alice, JSON, &body).await;
        assert_field_error(&reply, field, code);
        assert_eq!(records(&app).await, before, "{method} {body} changed something");
    }
    let message =
        app.json(Method::POST, &list("me"), &alice, JSON, &json!({"key": "c", "value": null})).await.json();
    assert_eq!(message["errors"][0]["messages"][0]["message"], json!("This field may not be null."));

    // The per-user key limit names the key.
    post(&app, "alice", "me", &json!({"key": "c", "value": 3})).await;
    let before = records(&app).await;
    assert_field_error(
        &post(&app, "alice", "me", &json!({"key": "d", "value": 4})).await,
        "key",
        "too-many-keys",
    );
    assert_eq!(records(&app).await, before);

    // Non-field errors.
    for (content_type, body, status) in [
        (JSON, b"[1]".to_vec(), StatusCode::BAD_REQUEST),
        (JSON, b"{\"key\":".to_vec(), StatusCode::BAD_REQUEST),
        (JSON, Vec::new(), StatusCode::BAD_REQUEST),
        ("text/plain", b"{}".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ] {
        let reply = app.send(Method::POST, &list("me"), Some(&alice), Some(content_type), Some(body)).await;
        assert_error(&reply, status);
        assert_eq!(records(&app).await, before);
    }
    for path in [one("me", &json!("abc")), one("me", &json!(999_999)), one("abc", &id), one("999999", &id)] {
        assert_error(&app.get(&path, &alice).await, StatusCode::NOT_FOUND);
        let reply = app.json(Method::PATCH, &path, &alice, JSON, &json!({"value": 1})).await;
        assert_error(&reply, StatusCode::NOT_FOUND);
    }
    assert_eq!(records(&app).await, before);
}

async fn authorization_matrix(backend: Backend) {
    use StatusCode as S;
    let app = spawn(backend).await;
    let rid = post(&app, "alice", "me", &json!({"key": "k", "value": 1})).await.json();
    let (rid, alice_id) = (rid["id"].clone(), rid["user_id"].to_string());
    let bob = post(&app, "bob", "me", &json!({"key": "b", "value": 1})).await.json();
    let bob_id = bob["user_id"].to_string();
    let roles = |actor: &str| -> Vec<&'static str> {
        match actor {
            "stella" => vec!["staff"],
            "ada" => vec!["admin"],
            _ => vec![],
        }
    };
    let actors = ["alice", "bob", "stella", "ada"];
    for actor in actors {
        assert_eq!(app.get(&list("me"), &token(actor, &roles(actor))).await.status, S::OK);
    }
    let reads: &[(String, [S; 4])] = &[
        (list(&alice_id), [S::OK, S::NOT_FOUND, S::OK, S::OK]),
        (one(&alice_id, &rid), [S::OK, S::NOT_FOUND, S::OK, S::OK]),
        (one("me", &rid), [S::OK, S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND]),
        (one(&bob_id, &rid), [S::NOT_FOUND; 4]),
        (list("999999"), [S::NOT_FOUND; 4]),
    ];
    for (path, expected) in reads {
        for (actor, status) in actors.iter().zip(expected) {
            let reply = app.get(path, &token(actor, &roles(actor))).await;
            assert_eq!(reply.status, *status, "{actor} GET {path}: {reply:?}");
        }
    }
    let before = records(&app).await;
    let alice = token("alice", &[]);
    let writes: &[(Method, String, Value, [S; 4])] = &[
        (
            Method::POST,
            list(&alice_id),
            json!({"key": "new", "value": 1}),
            [S::CREATED, S::NOT_FOUND, S::FORBIDDEN, S::CREATED],
        ),
        (
            Method::PUT,
            one(&alice_id, &rid),
            json!({"key": "k", "value": 2}),
            [S::OK, S::NOT_FOUND, S::FORBIDDEN, S::OK],
        ),
        (
            Method::PATCH,
            one(&alice_id, &rid),
            json!({"value": 3}),
            [S::OK, S::NOT_FOUND, S::FORBIDDEN, S::OK],
        ),
        (Method::PATCH, one(&bob_id, &rid), json!({"value": 3}), [S::NOT_FOUND; 4]),
        (Method::DELETE, one(&bob_id, &rid), json!(null), [S::NOT_FOUND; 4]),
    ];
    for (method, path, body, expected) in writes {
        for (actor, status) in actors.iter().zip(expected) {
            let reply = app.json(method.clone(), path, &token(actor, &roles(actor)), JSON, body).await;
            assert_eq!(reply.status, *status, "{actor} {method} {path}: {reply:?}");
            if status.is_success() {
                // Undo, so that every cell starts from the same state.
                if let Some(id) = (*method == Method::POST).then(|| reply.json()["id"].clone()) {
                    app.send(Method::DELETE, &one("me", &id), Some(&alice), None, None).await;
                }
                app.json(Method::PUT, &one("me", &rid), &alice, JSON, &json!({"key": "k", "value": 1})).await;
            }
            let after = records(&app).await;
            assert_eq!(
                after.as_array().map(Vec::len),
                before.as_array().map(Vec::len),
                "{actor} {method} {path}"
            );
            assert_eq!(after[0]["value"], json!(1), "{actor} {method} {path} changed alice's record");
        }
    }
    // DELETE: bob is told nothing, stella is forbidden, ada deletes.
    let path = one(&alice_id, &rid);
    for (actor, status) in [("bob", S::NOT_FOUND), ("stella", S::FORBIDDEN), ("ada", S::NO_CONTENT)] {
        let reply = app.send(Method::DELETE, &path, Some(&token(actor, &roles(actor))), None, None).await;
        assert_eq!(reply.status, status, "{actor} DELETE {path}");
    }
    let own = post(&app, "alice", "me", &json!({"key": "k", "value": 1})).await.json();
    let reply = app.send(Method::DELETE, &one(&alice_id, &own["id"]), Some(&alice), None, None).await;
    assert_eq!(reply.status, S::NO_CONTENT);

    // A body naming another user's id creates the sender's own record.
    let reply = post(
        &app,
        "bob",
        "me",
        &json!({"key": "mine", "value": 1, "user_id": alice_id.parse::<i64>().unwrap()}),
    )
    .await;
    assert_eq!(reply.status, S::CREATED);
    assert_eq!(reply.json()["user_id"].to_string(), bob_id);
    assert!(records(&app).await.as_array().unwrap().iter().all(|r| r["key"] != json!("mine")));
}

async fn visible_across_dialects(backend: Backend) {
    let app = spawn(backend).await;
    let alice = token("alice", &[]);
    let edx = "/api/user/v1/preferences/alice";
    let reply = app.json(Method::PUT, &format!("{edx}/pref-lang"), &alice, JSON, &json!("fr")).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let found = app.get(&format!("{}?key=pref-lang", list("me")), &alice).await.json();
    assert_eq!(found["results"][0]["value"], json!("fr"));

    post(&app, "alice", "me", &json!({"key": "greeting", "value": "hello"})).await;
    post(&app, "alice", "me", &json!({"key": "layout", "value": {"cols": 2}})).await;
    post(&app, "alice", "me", &json!({"key": "quoted", "value": "say \"é\"\n"})).await;
    post(&app, "alice", "me", &json!({"key": "ratio", "value": 1.5})).await;
    let map = app.get(edx, &alice).await.json();
    let expected = json!({
        "pref-lang": "fr", "greeting": "hello", "layout": "{\"cols\":2}", "quoted": "say \"é\"\n", "ratio": "1.5"
    });
    assert_eq!(map, expected);
    assert_eq!(app.get(&format!("{edx}/layout"), &alice).await.json(), json!("{\"cols\":2}"));
    assert_eq!(app.get(&format!("{edx}/quoted"), &alice).await.json(), json!("say \"é\"\n"));
}

async fn errors_use_the_record_envelope(backend: Backend) {
    let app = spawn(backend).await;
    let reply = app.send(Method::GET, &list("me"), None, None, None).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    let alice = token("alice", &[]);
    for path in ["/api/v2/nope", "/api/v2/user/me/preference"] {
        assert_error(&app.get(path, &alice).await, StatusCode::NOT_FOUND);
    }
    let reply = app.send(Method::DELETE, &list("me"), Some(&alice), None, None).await;
    assert_error(&reply, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), Some("GET, HEAD, POST, OPTIONS"));
}

/// A user's records' stored bytes (keys plus values as compact JSON) are limited
/// (docs/contract.md §1.4, §4.1): a write over the limit is 400 `too-large` on the field that
/// takes it over (`value`, or `key` for a rename alone), and writes nothing; exactly at the limit
/// is fine; once the limit is lowered, the records may shrink but not grow.
async fn stored_bytes_are_limited(backend: Backend) {
    let limits =
        |max_namespace_bytes| prefs_domain::Limits { max_namespace_bytes, ..prefs_domain::Limits::default() };
    let app = spawn_with(backend, limits(100)).await;
    let alice = token("alice", &[]);
    // `a` and its value take 1 + 42 bytes, `b` and its value 1 + 14: 58 in all.
    let a = post(&app, "alice", "me", &json!({"key": "a", "value": "x".repeat(40)})).await.json();
    let b = post(&app, "alice", "me", &json!({"key": "b", "value": "y".repeat(12)})).await.json();
    let before = records(&app).await;
    let b_at = one("me", &b["id"]);
    for (method, path, body, field) in [
        (Method::POST, list("me"), json!({"key": "c", "value": "z".repeat(40)}), "value"),
        (Method::PATCH, b_at.clone(), json!({"value": "y".repeat(55)}), "value"),
        (Method::PUT, b_at.clone(), json!({"key": "b", "value": "y".repeat(55)}), "value"),
        (Method::PATCH, b_at.clone(), json!({"key": "b".repeat(44)}), "key"),
    ] {
        let reply = app.json(method.clone(), &path, &alice, JSON, &body).await;
        assert_field_error(&reply, field, "too-large");
        let message = reply.json()["errors"][0]["messages"][0]["message"].as_str().unwrap().to_owned();
        assert!(message.contains("101 bytes") && message.contains("limit is 100 bytes"), "{message}");
        assert_eq!(records(&app).await, before, "{method} {body} changed something");
    }
    let reply = app.json(Method::PATCH, &b_at, &alice, JSON, &json!({"key": "b".repeat(43)})).await;
    assert_eq!(reply.status, StatusCode::OK, "exactly at the limit: {reply:?}");

    let app = app.with_limits(limits(50)).await;
    let reply = post(&app, "alice", "me", &json!({"key": "c", "value": 1})).await;
    assert_field_error(&reply, "value", "too-large");
    let reply = app.json(Method::PATCH, &one("me", &a["id"]), &alice, JSON, &json!({"value": "x"})).await;
    assert_eq!(reply.status, StatusCode::OK, "61 bytes, over 50 but less than before: {reply:?}");
}
