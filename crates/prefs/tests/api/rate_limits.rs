//! Rate limits (docs/contract.md §4.4): per user, per client address for requests without a valid
//! token, and for new users per client address; 429 with `Retry-After` in each dialect's format,
//! counted in `/metrics`. Limits of `N/min` keep the tests clear of timing: a burst is `2N`, and
//! the next request is refused for many seconds. New users are stored, so that test runs on both
//! backends.

use clap::Parser;
use prefs::cli::Cli;
use prefs_http::Traffic;
use prefs_http::client::Proxies;
use prefs_http::rate_limits::{Rate, RateLimits};
use prefs_storage::Backend;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::helpers::{Reply, TestApp, now, sign_with, spawn_traffic, token};

const ALICE: &str = "/api/user/v1/preferences/alice";

/// Every limit off but those given.
fn limits(user: &str, address: &str, signups: &str) -> Traffic {
    let rate_limits = RateLimits {
        user: user.parse().unwrap(),
        address: address.parse().unwrap(),
        signups: signups.parse().unwrap(),
    };
    Traffic { rate_limits, ..Traffic::default() }
}

/// The value of `prefs_rate_limited_total{limit="<limit>"}`.
async fn refused(app: &TestApp, limit: &str) -> u64 {
    let text = app.send(Method::GET, "/metrics", None, None, None).await.text;
    let line = format!("prefs_rate_limited_total{{limit=\"{limit}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {line}in {text}"))
}

/// A 429 telling to come back within `most` seconds.
fn assert_too_many(reply: &Reply, most: u64) {
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{reply:?}");
    let after: u64 =
        reply.header("retry-after").and_then(|s| s.parse().ok()).expect("Retry-After in seconds");
    assert!((1..=most).contains(&after), "Retry-After: {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_has_a_limit_of_their_own() {
    let app = spawn_traffic(Backend::Sqlite, limits("1/min", "off", "off")).await;
    let alice = token("alice", &[]);
    for _ in 0..2 {
        assert_eq!(app.get(ALICE, &alice).await.status, StatusCode::OK);
    }
    // One request a minute, in bursts of up to 2: the next one is a minute away.
    let reply = app.get(ALICE, &alice).await;
    assert_too_many(&reply, 60);
    let body = reply.json();
    assert!(body["developer_message"].as_str().unwrap().contains("Too many requests"), "{body}");
    assert!(body["user_message"].is_string(), "{body}");

    let reply = app.get("/api/v2/user/me/preference/", &alice).await;
    assert_too_many(&reply, 60);
    assert_eq!(reply.json()["errors"][0]["code"], "too-many-requests", "{}", reply.text);
    assert!(reply.json()["errors"][0]["message"].is_string());

    let reply = app.get("/preferences/appA", &alice).await;
    assert_too_many(&reply, 60);
    assert_eq!(reply.header("content-type"), Some("application/vnd.api+json"));
    let error = &reply.json()["errors"][0];
    assert_eq!((&error["status"], &error["code"]), (&json!("429"), &json!("too-many-requests")), "{error}");
    assert_eq!(error["id"].as_str(), reply.header("request-id"));

    // Another user, and alice's own preferences unchanged by the refused requests.
    assert_eq!(app.get("/api/user/v1/preferences/bob", &token("bob", &[])).await.status, StatusCode::OK);
    assert_eq!(refused(&app, "user").await, 3);
    assert_eq!(refused(&app, "address").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_without_a_valid_token_are_refused_per_address() {
    let app = spawn_traffic(Backend::Sqlite, limits("off", "1/min", "off")).await;
    let forged =
        sign_with(&json!({"sub": "sub-alice", "exp": now() + 600}), b"not-the-secret-but-32-bytes-long!");
    for token in [Some("not-a-token"), Some(forged.as_str())] {
        let reply = app.send(Method::GET, ALICE, token, None, None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    }
    for token in [Some("not-a-token"), None] {
        assert_too_many(&app.send(Method::GET, ALICE, token, None, None).await, 60);
    }
    // A valid token is not counted, nor refused.
    let alice = token("alice", &[]);
    for _ in 0..5 {
        assert_eq!(app.get(ALICE, &alice).await.status, StatusCode::OK);
    }
    assert_eq!(refused(&app, "address").await, 2);
}

backend_tests!(new_users_are_limited_per_address);

async fn new_users_are_limited_per_address(backend: Backend) {
    let app = spawn_traffic(backend, limits("off", "off", "1/min")).await;
    let admin = token("root", &["admin"]);
    let (carol, erin) = (token("carol", &[]), token("erin", &[]));
    // Two new users from one address (a burst of twice the rate), then no more.
    assert_eq!(app.get("/api/user/v1/preferences/root", &admin).await.status, StatusCode::OK);
    assert_eq!(app.get("/api/user/v1/preferences/carol", &carol).await.status, StatusCode::OK);
    assert_too_many(&app.get("/api/user/v1/preferences/erin", &erin).await, 60);
    assert_too_many(&app.get("/api/v2/user/me/preference/", &erin).await, 60);
    // Known users still sign in, and erin was not created.
    assert_eq!(app.get("/api/user/v1/preferences/carol", &carol).await.status, StatusCode::OK);
    let reply = app.get("/api/user/v1/preferences/erin", &admin).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
    assert_eq!(refused(&app, "signup").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_turns_a_limit_off() {
    let app = spawn_traffic(Backend::Sqlite, limits("off", "off", "off")).await;
    // Past the default bursts: 40 requests without a valid token, 200 per user.
    for _ in 0..60 {
        let reply = app.send(Method::GET, ALICE, Some("not-a-token"), None, None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let alice = token("alice", &[]);
    for _ in 0..250 {
        assert_eq!(app.get(ALICE, &alice).await.status, StatusCode::OK);
    }
    for limit in ["user", "address", "signup"] {
        assert_eq!(refused(&app, limit).await, 0);
    }
}

#[test]
fn the_command_line_takes_limits_proxies_and_a_public_url() {
    let cli = Cli::try_parse_from(["prefs"]).unwrap();
    let traffic = cli.serve.traffic.config().unwrap();
    assert_eq!(traffic.rate_limits, RateLimits::default());
    assert_eq!((traffic.proxies, traffic.public_url), (Proxies::default(), None));
    let cli = Cli::try_parse_from([
        "prefs",
        "--rate-limit-user",
        "5/s",
        "--rate-limit-address",
        "off",
        "--rate-limit-signups",
        "10/min",
        "--trusted-proxies",
        "10.0.0.0/8, ::1",
        "--public-url",
        "https://example.com/prefs",
    ])
    .unwrap();
    let traffic = cli.serve.traffic.config().unwrap();
    assert_eq!(
        [traffic.rate_limits.user, traffic.rate_limits.address, traffic.rate_limits.signups],
        ["5/s".parse::<Rate>().unwrap(), Rate::Off, "10/min".parse().unwrap()]
    );
    assert!(traffic.proxies.trust("10.9.8.7".parse().unwrap()));
    assert_eq!(traffic.public_url.unwrap().to_string(), "https://example.com/prefs");
    for (flag, value, says) in [
        ("--rate-limit-user", "100/hour", "`N/s` or `N/min`"),
        ("--rate-limit-signups", "0/min", "`N/s` or `N/min`"),
        ("--trusted-proxies", "10.0.0.0/40", "CIDR"),
        ("--public-url", "https://example.com/?a=1", "query"),
        ("--public-url", "example.com", "absolute URL"),
    ] {
        let error = Cli::try_parse_from(["prefs", flag, value]).map(drop).unwrap_err().to_string();
        assert!(error.contains(flag) && error.contains(says), "{flag} {value}: {error}");
    }
}
