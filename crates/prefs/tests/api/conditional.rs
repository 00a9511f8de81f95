//! Conditional requests (docs/contract.md §3.5, RFC 9110): strong ETags, 304 and 412, in every dialect.

use prefs_storage::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Reply, TestApp, now, sign, spawn, token};

const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";

/// A request with extra headers.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, Value)>,
) -> Reply {
    let client = reqwest::Client::new();
    let mut request = client.request(method, format!("{}{path}", app.base)).bearer_auth(token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some((content_type, body)) = body {
        request = request.header("content-type", content_type).body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    Reply { status, headers, text: response.text().await.unwrap() }
}

fn etag(reply: &Reply) -> String {
    let tag = reply.header("etag").unwrap_or_else(|| panic!("no ETag: {reply:?}")).to_owned();
    assert!(tag.starts_with('"') && tag.ends_with('"') && !tag.starts_with("W/"), "strong: {tag}");
    tag
}

/// GET gives an ETag; the same ETag in If-None-Match gives 304 without a body; a weak form of it
/// too (weak comparison); another tag gives 200.
async fn assert_revalidates(app: &TestApp, path: &str, token: &str) -> String {
    let first = send(app, Method::GET, path, token, &[], None).await;
    assert_eq!(first.status, StatusCode::OK, "{path}: {first:?}");
    let tag = etag(&first);
    for candidate in [tag.clone(), format!("W/{tag}"), format!("\"other\", {tag}"), "*".to_owned()] {
        let reply = send(app, Method::GET, path, token, &[("if-none-match", &candidate)], None).await;
        assert_eq!((reply.status, reply.text.as_str()), (StatusCode::NOT_MODIFIED, ""), "{path} {candidate}");
        assert_eq!(reply.header("etag"), Some(tag.as_str()));
    }
    let reply = send(app, Method::GET, path, token, &[("if-none-match", "\"other\"")], None).await;
    assert_eq!((reply.status, reply.text.clone()), (StatusCode::OK, first.text.clone()), "{path}");
    tag
}

backend_tests!(edx_etags, record_etags, namespace_etags, access_comes_before_preconditions);

async fn edx_etags(backend: Backend) {
    let app = spawn(backend).await;
    let alice = token("alice", &[]);
    let map = "/api/user/v1/preferences/alice";
    let reply = send(&app, Method::PATCH, map, &alice, &[], Some((MERGE, json!({"a": "1", "b": "2"})))).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let written = etag(&reply);
    let tag = assert_revalidates(&app, map, &alice).await;
    assert_eq!(tag, written, "a write answers with the new tag");
    let not_modified = send(&app, Method::GET, map, &alice, &[("if-none-match", &tag)], None).await;
    assert_eq!(not_modified.header("vary"), Some("Accept"));

    // A stale or weak If-Match is 412 in the edX format and changes nothing.
    for stale in ["\"stale\"", &format!("W/{tag}")] {
        let reply =
            send(&app, Method::PATCH, map, &alice, &[("if-match", stale)], Some((MERGE, json!({"a": "x"}))))
                .await;
        assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED, "{stale}");
        assert!(reply.json()["developer_message"].is_string());
    }
    let reply =
        send(&app, Method::PATCH, map, &alice, &[("if-match", &tag)], Some((MERGE, json!({"a": "3"})))).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let new_tag = assert_revalidates(&app, map, &alice).await;
    assert_ne!(new_tag, tag, "the tag changes with the content");
    assert_eq!(app.get(map, &alice).await.json(), json!({"a": "3", "b": "2"}));

    // One key: If-None-Match: * creates only; If-Match: * only updates.
    let key = "/api/user/v1/preferences/alice/a";
    let key_tag = assert_revalidates(&app, key, &alice).await;
    let put = |headers: Vec<(&'static str, String)>, value: &'static str| {
        let app = &app;
        let alice = &alice;
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            send(app, Method::PUT, key, alice, &headers, Some((JSON, json!(value)))).await.status
        }
    };
    assert_eq!(put(vec![("if-none-match", "*".into())], "no").await, StatusCode::PRECONDITION_FAILED);
    assert_eq!(put(vec![("if-match", "\"1.1\"".into())], "no").await, StatusCode::PRECONDITION_FAILED);
    assert_eq!(put(vec![("if-match", key_tag.clone())], "yes").await, StatusCode::NO_CONTENT);
    assert_eq!(put(vec![("if-match", key_tag)], "again").await, StatusCode::PRECONDITION_FAILED, "now stale");
    assert_eq!(app.get(key, &alice).await.json(), json!("yes"));
    let missing = "/api/user/v1/preferences/alice/missing";
    let reply =
        send(&app, Method::PUT, missing, &alice, &[("if-match", "*")], Some((JSON, json!("v")))).await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED, "If-Match: * on a missing key");
    let reply =
        send(&app, Method::PUT, missing, &alice, &[("if-none-match", "*")], Some((JSON, json!("v")))).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "If-None-Match: * creates");
    let reply = send(
        &app,
        Method::DELETE,
        "/api/user/v1/preferences/alice/b",
        &alice,
        &[("if-match", "\"x\"")],
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(app.get("/api/user/v1/preferences/alice/b", &alice).await.status, StatusCode::OK);
}

async fn record_etags(backend: Backend) {
    let app = spawn(backend).await;
    let alice = token("alice", &[]);
    let created = send(
        &app,
        Method::POST,
        "/api/v2/user/me/preference/",
        &alice,
        &[],
        Some((JSON, json!({"key": "k", "value": 1}))),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let path = format!("/api/v2/user/me/preference/{}/", created.json()["id"]);
    let tag = assert_revalidates(&app, &path, &alice).await;
    assert_eq!(tag, etag(&created));
    assert_revalidates(&app, "/api/v2/user/me/preference/", &alice).await;

    let reply = send(
        &app,
        Method::PUT,
        &path,
        &alice,
        &[("if-match", "\"stale\"")],
        Some((JSON, json!({"key": "k", "value": 2}))),
    )
    .await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(reply.json()["errors"][0]["code"], json!("precondition-failed"));
    let reply =
        send(&app, Method::PATCH, &path, &alice, &[("if-match", &tag)], Some((JSON, json!({"value": 3}))))
            .await;
    assert_eq!((reply.status, reply.json()["value"].clone()), (StatusCode::OK, json!(3)));
    let new_tag = etag(&reply);
    assert_ne!(new_tag, tag);
    let reply = send(&app, Method::DELETE, &path, &alice, &[("if-match", &tag)], None).await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED, "stale tag");
    let reply = send(&app, Method::DELETE, &path, &alice, &[("if-match", &new_tag)], None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = send(&app, Method::DELETE, &path, &alice, &[("if-match", "*")], None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "a missing record is 404 before its preconditions");
}

async fn namespace_etags(backend: Backend) {
    let app = spawn(backend).await;
    let claims = json!({"sub": "sub-alice", "preferred_username": "alice", "scope": "user:preferences:read user:preferences:write", "client_id": "appA", "exp": now() + 600});
    let alice = sign(&claims);
    let path = "/preferences/appA";
    let empty = assert_revalidates(&app, path, &alice).await;
    let reply =
        send(&app, Method::PUT, path, &alice, &[("if-match", &empty)], Some((JSON, json!({"n": 1})))).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let tag = assert_revalidates(&app, path, &alice).await;
    assert_eq!(tag, etag(&reply));

    // The read-modify-write loop a client runs: a stale tag is 412 (JSON:API), the fresh one wins.
    let reply =
        send(&app, Method::PATCH, path, &alice, &[("if-match", &empty)], Some((MERGE, json!({"n": 2}))))
            .await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(reply.header("content-type"), Some("application/vnd.api+json"));
    assert_eq!(reply.json()["errors"][0]["code"], json!("precondition-failed"));
    let reply =
        send(&app, Method::PATCH, path, &alice, &[("if-match", &tag)], Some((MERGE, json!({"n": 2})))).await;
    assert_eq!((reply.status, reply.json()), (StatusCode::OK, json!({"n": 2})));
    // If-Match is evaluated before If-None-Match.
    let fresh = etag(&reply);
    let reply = send(
        &app,
        Method::PATCH,
        path,
        &alice,
        &[("if-match", "\"stale\""), ("if-none-match", "\"other\"")],
        Some((MERGE, json!({"n": 3}))),
    )
    .await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
    let reply = send(&app, Method::DELETE, path, &alice, &[("if-match", &fresh)], None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);

    // One member.
    send(&app, Method::PUT, "/preferences/appA/m", &alice, &[], Some((JSON, json!([1])))).await;
    let member = assert_revalidates(&app, "/preferences/appA/m", &alice).await;
    let reply = send(
        &app,
        Method::PUT,
        "/preferences/appA/m",
        &alice,
        &[("if-match", &member)],
        Some((JSON, json!([2]))),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply =
        send(&app, Method::DELETE, "/preferences/appA/m", &alice, &[("if-match", &member)], None).await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
    let reply = send(&app, Method::GET, path, &alice, &[("if-match", "\"nope\"")], None).await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED, "If-Match on a read");
}

async fn access_comes_before_preconditions(backend: Backend) {
    let app = spawn(backend).await;
    let alice = token("alice", &[]);
    let bob = token("bob", &[]);
    let stella = token("stella", &["staff"]);
    send(&app, Method::PUT, "/api/user/v1/preferences/alice/a", &alice, &[], Some((JSON, json!("1")))).await;
    app.get("/api/user/v1/preferences/bob", &bob).await;
    app.get("/api/user/v1/preferences/stella", &stella).await;
    let tag = etag(&app.get("/api/user/v1/preferences/alice", &alice).await);
    for (path, headers) in [
        ("/api/user/v1/preferences/alice", vec![("if-none-match", tag.as_str())]),
        ("/api/user/v1/preferences/alice", vec![("if-none-match", "*")]),
        ("/api/user/v1/preferences/alice", vec![("if-match", "\"stale\"")]),
        ("/api/user/v1/preferences/alice/a", vec![("if-none-match", "*")]),
    ] {
        let reply = send(&app, Method::GET, path, &bob, &headers, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "bob {path} {headers:?}");
    }
    let reply = send(
        &app,
        Method::PATCH,
        "/api/user/v1/preferences/alice",
        &bob,
        &[("if-match", "\"stale\"")],
        Some((MERGE, json!({"a": "2"}))),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = send(
        &app,
        Method::PATCH,
        "/api/user/v1/preferences/alice",
        &stella,
        &[("if-match", "\"stale\"")],
        Some((MERGE, json!({"a": "2"}))),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}
