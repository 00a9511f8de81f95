//! Operational endpoints and the JSON:API format of everything outside the dialects.

use prefs_storage::Backend;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::helpers::{spawn, token};

backend_tests!(
    health_and_readiness,
    unknown_routes_are_jsonapi_404s,
    request_ids,
    authenticated_answers_are_private,
    repeated_query_parameters_are_refused,
);

async fn health_and_readiness(backend: Backend) {
    let app = spawn(backend).await;
    for (path, body) in [("/healthz", json!({"status": "ok"})), ("/readyz", json!({"status": "ready"}))] {
        let reply = app.send(Method::GET, path, None, None, None).await;
        assert_eq!((reply.status, reply.json()), (StatusCode::OK, body), "{path}");
    }
}

async fn unknown_routes_are_jsonapi_404s(backend: Backend) {
    let app = spawn(backend).await;
    let reply = app.get("/nope/1847", &token("alice", &[])).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.header("content-type"), Some("application/vnd.api+json"));
    let body = reply.json();
    let error = &body["errors"][0];
    assert_eq!(error["status"], json!("404"));
    assert_eq!(error["code"], json!("not-found"));
    assert_eq!(error["id"].as_str(), reply.header("request-id"));
    assert!(error["title"].is_string() && error["detail"].is_string(), "{body}");
    let reply = app.send(Method::POST, "/healthz", None, None, None).await;
    assert_eq!(
        (reply.status, reply.header("allow")),
        (StatusCode::METHOD_NOT_ALLOWED, Some("GET, HEAD, OPTIONS"))
    );
}

async fn request_ids(backend: Backend) {
    let app = spawn(backend).await;
    let client = reqwest::Client::new();
    let sent = "9m4e2mr0ui3e8a215n4g";
    let reply = client.get(format!("{}/nope", app.base)).header("request-id", sent).send().await.unwrap();
    assert_eq!(reply.headers()["request-id"], sent);
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["errors"][0]["id"], json!(sent));
    // A malformed one is replaced by a fresh xid.
    for bad in ["not-an-xid", "9M4E2MR0UI3E8A215N4G", "'; drop table users; --"] {
        let reply =
            client.get(format!("{}/healthz", app.base)).header("request-id", bad).send().await.unwrap();
        let id = reply.headers()["request-id"].to_str().unwrap().to_owned();
        assert_ne!(id, bad);
        assert_eq!(id.len(), 20);
    }
}

/// Answers to requests with credentials are `Cache-Control: private, no-cache` in every dialect,
/// errors included: a shared cache never keeps them, and clients revalidate with the ETag.
async fn authenticated_answers_are_private(backend: Backend) {
    let app = spawn(backend).await;
    let alice = token("alice", &[]);
    for path in [
        "/api/user/v1/preferences/alice",
        "/api/v2/user/me/preference/",
        "/preferences/app",
        "/api/user/v1/preferences/ghost",
    ] {
        let reply = app.get(path, &alice).await;
        assert_eq!(reply.header("cache-control"), Some("private, no-cache"), "{path}: {}", reply.status);
    }
    let refused = app.get("/api/user/v1/preferences/alice", "not-a-token").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.header("cache-control"), Some("private, no-cache"));
    let health = app.send(Method::GET, "/healthz", None, None, None).await;
    assert_eq!(health.header("cache-control"), None, "answers without credentials are as before");
}

/// A query parameter prefs reads, given twice, is ambiguous: 400 in the dialect's format, and
/// nothing is read or written for it (before, the first value won silently).
async fn repeated_query_parameters_are_refused(backend: Backend) {
    let app = spawn(backend).await;
    let alice = token("alice", &[]);
    let created = app
        .json(
            Method::POST,
            "/api/v2/user/me/preference/",
            &alice,
            "application/json",
            &json!({"key": "k", "value": 1}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let alice_id = created.json()["user_id"].as_i64().unwrap();
    for (query, field) in
        [("key=k&key=x", "key"), ("limit=1&limit=2", "limit"), ("offset=0&offset=1", "offset")]
    {
        let reply = app.get(&format!("/api/v2/user/me/preference/?{query}"), &alice).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        let error = &reply.json()["errors"][0];
        assert_eq!(error["field"], field, "{query}: {}", reply.text);
        assert_eq!(error["messages"][0]["code"], "ambiguous", "{query}");
    }
    let both = app.get("/api/v2/user/me/preference/?key=k&search=k&other=1&other=2", &alice).await;
    assert_eq!(both.json()["count"], 1, "different parameters, and ones prefs does not read, are fine");
    let scoped = crate::helpers::sign(
        &json!({"sub": "sub-ada", "preferred_username": "ada", "roles": ["admin"],
        "scope": "user:preferences:read user:preferences:write", "client_id": "app", "exp": crate::helpers::now() + 600}),
    );
    let path = format!("/preferences/app?user_id={alice_id}&user_id=999");
    let reply = app.json(Method::PUT, &path, &scoped, "application/json", &json!({"theme": "dark"})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert_eq!(reply.json()["errors"][0]["code"], "invalid-value");
    let unchanged = app.get(&format!("/preferences/app?user_id={alice_id}"), &scoped).await;
    assert_eq!(unchanged.json(), json!({}), "nothing was written");
}
