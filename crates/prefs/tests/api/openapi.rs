//! The OpenAPI document, Swagger UI and metrics (docs/contract.md §3.6).

use std::collections::BTreeSet;

use prefs_http::{ApiDoc, DOCS, Verb, routes};
use prefs_storage::Backend;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use utoipa::OpenApi;

use crate::backend_tests;
use crate::helpers::{spawn, token};

fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap()
}

#[test]
fn the_committed_document_is_what_prefs_openapi_prints() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/openapi.json");
    let committed = std::fs::read_to_string(path).expect("openapi/openapi.json");
    let printed = format!("{}\n", ApiDoc::openapi().to_pretty_json().unwrap());
    assert!(
        committed == printed,
        "openapi/openapi.json is stale: run `cargo run --bin prefs -- openapi > openapi/openapi.json`"
    );
}

/// Every (path, method) of the route table the application's routes are registered from, that
/// the OpenAPI document lists (an alias, the Open edX list with a trailing slash, is not).
fn documented_routes() -> BTreeSet<(String, String)> {
    routes()
        .filter(|resource| resource.documented)
        .flat_map(|resource| {
            resource.methods().map(|verb| (resource.path.to_owned(), verb.name().to_owned()))
        })
        .collect()
}

#[test]
fn every_route_the_app_serves_is_documented_and_nothing_else() {
    let document = document();
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().unwrap().keys().map(move |m| (path.clone(), m.to_uppercase()))
        })
        .collect();
    let served = documented_routes();
    assert_eq!(documented, served);
    // Every operation documents its errors, has a unique id, and the API ones need the bearer token.
    let mut ids = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(ids.insert(operation["operationId"].as_str().unwrap().to_owned()), "{method} {path}");
            let statuses: Vec<&String> = operation["responses"].as_object().unwrap().keys().collect();
            // The operational routes and the CSRF token API need no token.
            if !matches!(
                path.as_str(),
                "/healthz" | "/metrics" | "/openapi.json" | "/readyz" | "/csrf/api/v1/token"
            ) {
                for status in ["401", "404", "503"] {
                    assert!(statuses.iter().any(|s| *s == status), "{method} {path} lacks {status}");
                }
                assert!(operation["security"][0]["bearer"].is_array(), "{method} {path}");
            }
        }
    }
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}

backend_tests!(
    the_router_serves_the_route_table,
    served_document_and_docs_page,
    metrics_by_route_pattern,
    made_up_methods_are_not_counted
);

/// A path of `pattern`: `{version}` as PACE writes it, any other parameter `p1`.
fn concrete(pattern: &str) -> String {
    let segment = |s: &str| match s {
        "{version}" => "2025-1".to_owned(),
        s if s.starts_with('{') => "p1".to_owned(),
        s => s.to_owned(),
    };
    pattern.split('/').map(segment).collect::<Vec<_>>().join("/")
}

/// The running application answers exactly the route table (which the test above holds against
/// the document): at every resource, each of its methods reaches a handler (no 404, no 405), every
/// other method is 405, and every answer's `Allow` is the table's.
async fn the_router_serves_the_route_table(backend: Backend) {
    let app = spawn(backend).await;
    let all = [Verb::Get, Verb::Post, Verb::Put, Verb::Patch, Verb::Delete];
    for resource in routes() {
        let path = concrete(resource.path);
        let methods: Vec<Verb> = resource.methods().collect();
        assert!(!methods.is_empty(), "{path}");
        // Each method, and HEAD, which goes with GET.
        let probes =
            all.map(|verb| (Method::from_bytes(verb.name().as_bytes()).unwrap(), methods.contains(&verb)));
        for (method, answers) in probes.into_iter().chain([(Method::HEAD, methods.contains(&Verb::Get))]) {
            // No token: a handler answers 401 (an API route) or serves (an operational one).
            let reply = app.send(method.clone(), &path, None, None, None).await;
            if answers {
                let unrouted = matches!(reply.status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED);
                assert!(!unrouted, "{method} {path}: {reply:?}");
            } else {
                assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {reply:?}");
            }
            assert_eq!(reply.header("allow"), Some(resource.allow()), "{method} {path}");
        }
        let options = app.send(Method::OPTIONS, &path, None, None, None).await;
        assert_eq!(options.status, StatusCode::NO_CONTENT, "OPTIONS {path}: {options:?}");
        assert_eq!(options.header("allow"), Some(resource.allow()), "OPTIONS {path}");
    }
}

async fn served_document_and_docs_page(backend: Backend) {
    let app = spawn(backend).await;
    let client = reqwest::Client::new();
    let served: Value =
        client.get(format!("{}/openapi.json", app.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(served, document());

    let page = client.get(format!("{}{DOCS}/", app.base)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // Every asset the page loads comes from this server.
    let assets: Vec<&str> =
        html.split(['"', '\'']).filter(|s| s.ends_with(".js") || s.ends_with(".css")).collect();
    assert!(assets.len() >= 3, "{assets:?}");
    for asset in assets {
        assert!(!asset.contains("//"), "external asset {asset}");
        let reply = client
            .get(format!("{}{DOCS}/{}", app.base, asset.trim_start_matches("./")))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::OK, "{asset}");
    }
    let initializer = client.get(format!("{}{DOCS}/swagger-initializer.js", app.base)).send().await.unwrap();
    let initializer = initializer.text().await.unwrap();
    assert!(
        initializer.contains("/openapi.json") && initializer.contains("\"validatorUrl\": \"none\""),
        "{initializer}"
    );
}

/// The distinct `endpoint` label values in the metrics text.
fn endpoints(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("prefs_http_requests_total{"))
        .filter_map(|l| l.split("endpoint=\"").nth(1)?.split('"').next().map(str::to_owned))
        .collect()
}

async fn metrics_by_route_pattern(backend: Backend) {
    let app = spawn(backend).await;
    let alice = token("alice", &[]);
    app.get("/api/user/v1/preferences/alice", &alice).await;
    app.get("/api/user/v1/preferences/bob/k", &alice).await;
    let metrics = |app: &crate::helpers::TestApp| {
        let url = format!("{}/metrics", app.base);
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let before = metrics(&app).await;
    assert!(before.contains("prefs_http_requests_duration_seconds_bucket"), "{before}");
    // SQLite: a read connection per worker thread that read, and the writer. PostgreSQL: two
    // read connections per worker thread that read, and a pool (of 8) per worker thread that wrote.
    let max_size = before.lines().find_map(|l| l.strip_prefix("prefs_db_pool_max_size "));
    let max_size: usize = max_size.and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(max_size >= 2, "{before}");
    for gauge in ["prefs_db_pool_connections", "prefs_db_pool_idle", "prefs_db_pool_waiting"] {
        assert!(before.contains(gauge), "{gauge}: {before}");
    }
    let known = endpoints(&before);
    assert!(known.contains("/api/user/v1/preferences/{username}"), "{known:?}");
    assert!(known.contains("/api/user/v1/preferences/{username}/{key}"), "{known:?}");

    for i in 0..1000 {
        let path = format!("/nope/{i}/{}", i * 7919 % 1013);
        let reply = app.send(Method::GET, &path, None, None, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
    }
    let after = endpoints(&metrics(&app).await);
    let new: Vec<&String> = after.difference(&known).collect();
    assert!(new.len() <= 2, "unmatched paths made new label values: {new:?}");
    assert!(after.iter().all(|e| !e.starts_with("/nope")), "{after:?}");
}

/// Made-up methods (`M0 /healthz`, `M1 ...`) are answered 501 before they are counted: thousands
/// of them leave `/metrics` as it was, with no new `method` label value.
async fn made_up_methods_are_not_counted(backend: Backend) {
    let app = spawn(backend).await;
    let scrape = || {
        let url = format!("{}/metrics", app.base);
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    reqwest::get(format!("{}/healthz", app.base)).await.unwrap();
    let before = scrape().await;
    for i in 0..3000 {
        let method = Method::from_bytes(format!("M{i}").as_bytes()).unwrap();
        let reply = app.send(method, "/healthz", None, None, None).await;
        assert_eq!(reply.status, StatusCode::NOT_IMPLEMENTED);
        if i == 0 {
            assert_eq!(reply.json()["errors"][0]["code"], "not-implemented", "{}", reply.text);
            assert!(reply.header("request-id").is_some());
        }
    }
    let after = scrape().await;
    assert!(!after.contains("method=\"M"), "a made-up method became a label value");
    // The scrape of `before` itself is counted once more; nothing else changed in size.
    let growth = after.len().abs_diff(before.len());
    assert!(growth < 2000, "/metrics grew from {} to {} bytes", before.len(), after.len());
}
