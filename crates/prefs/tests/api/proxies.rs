//! Trusted proxies and the public URL (docs/contract.md §4.5): forwarding headers are believed
//! from the listed proxies only, and `PREFS_PUBLIC_URL` is the base of every link whatever they
//! say. The backend plays no part here, so these run on SQLite only.

use prefs_domain::Limits;
use prefs_http::{BrowserConfig, JwtConfig, Traffic};
use prefs_storage::Backend;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{SECRET, TestApp, spawn_all, spawn_traffic, token};

const RECORDS: &str = "/api/v2/user/me/preference/";
/// What a client behind no proxy at all may claim.
const SPOOFED: [(&str, &str); 3] = [
    ("x-forwarded-host", "attacker.example"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-for", "203.0.113.9"),
];

fn traffic(proxies: &str, public_url: Option<&str>) -> Traffic {
    Traffic {
        proxies: proxies.parse().unwrap(),
        public_url: public_url.map(|url| url.parse().unwrap()),
        ..Traffic::default()
    }
}

/// Creates a record for alice with `headers`; returns its `Location`.
async fn create(app: &TestApp, key: &str, headers: &[(&str, &str)]) -> String {
    let mut request = reqwest::Client::new()
        .post(format!("{}{RECORDS}", app.base))
        .bearer_auth(token("alice", &[]))
        .json(&json!({"key": key, "value": 1}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let id = response.json::<Value>().await.unwrap()["id"].clone();
    assert!(location.ends_with(&format!("{RECORDS}{id}/")), "{location}");
    location
}

/// The `next` link of alice's first page of one record, asked with `headers`.
async fn next(app: &TestApp, headers: &[(&str, &str)]) -> String {
    let mut request =
        reqwest::Client::new().get(format!("{}{RECORDS}?limit=1", app.base)).bearer_auth(token("alice", &[]));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body: Value = request.send().await.unwrap().json().await.unwrap();
    body["next"].as_str().unwrap_or_else(|| panic!("no next link: {body}")).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_anyone_else_are_ignored() {
    // The test client connects from 127.0.0.1: not listed here.
    let app = spawn_traffic(Backend::Sqlite, traffic("10.0.0.0/8, ::1", None)).await;
    let own = format!("{}{RECORDS}", app.base);
    assert!(create(&app, "a", &SPOOFED).await.starts_with(&own));
    let forwarded = [("forwarded", "for=203.0.113.9;proto=https;host=attacker.example")];
    assert!(create(&app, "b", &forwarded).await.starts_with(&own));
    assert_eq!(next(&app, &SPOOFED).await, format!("{own}?limit=1&offset=1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_says_what_the_client_called() {
    let app = spawn_traffic(Backend::Sqlite, traffic("127.0.0.1/32", None)).await;
    assert!(create(&app, "a", &SPOOFED).await.starts_with("https://attacker.example/api/v2/"));
    let forwarded = [
        ("forwarded", "for=\"[2001:db8::7]:4711\";proto=https;host=prefs.example.com"),
        ("x-forwarded-host", "ignored.example"),
    ];
    assert!(create(&app, "b", &forwarded).await.starts_with("https://prefs.example.com/api/v2/"));
    assert_eq!(next(&app, &SPOOFED).await, format!("https://attacker.example{RECORDS}?limit=1&offset=1"));
    // Without forwarding headers, the request's own host.
    assert!(create(&app, "c", &[]).await.starts_with(&app.base));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_url_wins_over_every_header() {
    let app = spawn_traffic(Backend::Sqlite, traffic("127.0.0.1", Some("https://example.com/prefs/"))).await;
    let public = format!("https://example.com/prefs{RECORDS}");
    assert!(create(&app, "a", &SPOOFED).await.starts_with(&public));
    assert!(create(&app, "b", &[]).await.starts_with(&public));
    assert_eq!(next(&app, &[("host", "elsewhere.example")]).await, format!("{public}?limit=1&offset=1"));
}

/// The CSRF `Origin` check compares with prefs' own origin: forwarding headers from anyone but a
/// trusted proxy cannot make an attacker's page prefs' own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_trusted_proxies_say_what_prefs_own_origin_is() {
    const CSRF: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz012345";
    let browser = BrowserConfig { jwt_cookies: true, ..BrowserConfig::default() };
    let (header_payload, signature) =
        token("alice", &[]).rsplit_once('.').map(|(a, b)| (a.to_owned(), b.to_owned())).unwrap();
    let cookie = format!(
        "edx-jwt-cookie-header-payload={header_payload}; edx-jwt-cookie-signature={signature}; csrftoken={CSRF}"
    );
    for (proxies, expected) in [("", StatusCode::FORBIDDEN), ("127.0.0.1", StatusCode::NO_CONTENT)] {
        let traffic = traffic(proxies, None);
        let app = spawn_all(
            Backend::Sqlite,
            Limits::default(),
            JwtConfig::with_secret(SECRET),
            browser.clone(),
            traffic,
        )
        .await;
        let mut request = reqwest::Client::new()
            .patch(format!("{}/api/user/v1/preferences/alice", app.base))
            .header("cookie", &cookie)
            .header("x-csrftoken", CSRF)
            .header("origin", "https://attacker.example")
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"pref-lang": "fr"}"#);
        for (name, value) in SPOOFED {
            request = request.header(name, value);
        }
        let status = request.send().await.unwrap().status();
        assert_eq!(status, expected, "trusted proxies: {proxies:?}");
    }
}
