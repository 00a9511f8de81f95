//! Operational endpoints and the JSON:API format of everything outside the dialects.

use prefs_storage::Backend;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::helpers::{spawn, token};

backend_tests!(health_and_readiness, unknown_routes_are_jsonapi_404s, request_ids);

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
