//! Tokens (docs/contract.md §2, RFC 8725): every forged, expired or malformed token is a 401 with
//! `WWW-Authenticate: Bearer` and the dialect's error body, on every route, and changes nothing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use prefs_domain::Limits;
use prefs_http::{JwtConfig, KeySources};
use prefs_storage::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{
    TestApp, no_address_limit, now, sign, sign_with, spawn, spawn_custom, spawn_traffic, token,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

fn claims() -> Value {
    json!({"sub": "sub-alice", "preferred_username": "alice", "exp": now() + 600})
}

fn with(mut claims: Value, member: &str, value: Value) -> Value {
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(member);
    } else {
        claims[member] = value;
    }
    claims
}

/// A token from raw header and payload JSON text, with a given signature.
fn raw(header: &str, payload: &str, signature: &str) -> String {
    format!("{}.{}.{signature}", B64.encode(header), B64.encode(payload))
}

fn signature(token: &str) -> &str {
    token.rsplit('.').next().unwrap()
}

/// An RS256 or ES256 token signed with a fixture private key.
fn sign_pem(claims: &Value, algorithm: jsonwebtoken::Algorithm, private: &str) -> String {
    let key = match algorithm {
        jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(&fixture(private)).unwrap(),
        _ => jsonwebtoken::EncodingKey::from_ec_pem(&fixture(private)).unwrap(),
    };
    jsonwebtoken::encode(&jsonwebtoken::Header::new(algorithm), claims, &key).unwrap()
}

/// The edX routes and methods, each with a well-formed body.
fn routes() -> Vec<(Method, &'static str, Option<&'static str>, Option<Value>)> {
    vec![
        (Method::GET, "/api/user/v1/preferences/alice", None, None),
        (
            Method::PATCH,
            "/api/user/v1/preferences/alice",
            Some("application/merge-patch+json"),
            Some(json!({"k": "v"})),
        ),
        (Method::GET, "/api/user/v1/preferences/alice/k", None, None),
        (Method::PUT, "/api/user/v1/preferences/alice/k", Some("application/json"), Some(json!("v"))),
        (Method::DELETE, "/api/user/v1/preferences/alice/k", None, None),
        (
            Method::PATCH,
            "/api/user/v1/preferences/ghost",
            Some("application/merge-patch+json"),
            Some(json!({"k": "v"})),
        ),
        (Method::PATCH, "/api/user/v1/preferences/alice", Some("application/merge-patch+json"), None),
    ]
}

/// Sends `authorization` (a raw header value, or none) to every route; each must be a 401 in the
/// edX format, and alice's preferences must not change.
/// `reader` is a token the server accepts, to read the preferences before and after.
async fn assert_rejected_everywhere(app: &TestApp, reader: &str, authorization: Option<&str>, case: &str) {
    let before = app.get("/api/user/v1/preferences/alice", reader).await;
    assert_eq!(before.status, StatusCode::OK, "{case}: the reader token is refused");
    let before = before.json();
    let client = reqwest::Client::new();
    for (method, path, content_type, body) in routes() {
        let mut request = client.request(method.clone(), format!("{}{path}", app.base));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
            request = request.body(body.map_or_else(|| b"{\"a\":".to_vec(), |b| b.to_string().into_bytes()));
        }
        let reply = request.send().await.unwrap();
        let status = reply.status();
        let challenge = reply.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
        let body: Value = reply.json().await.unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {method} {path}: {body}");
        assert_eq!(challenge.as_deref(), Some("Bearer"), "{case}");
        assert!(body["developer_message"].is_string() && body["user_message"].is_string(), "{case}: {body}");
    }
    assert_eq!(app.get("/api/user/v1/preferences/alice", reader).await.json(), before, "{case} changed data");
}

async fn assert_accepted(app: &TestApp, token: &str, case: &str) {
    let reply = app.get("/api/user/v1/preferences/alice", token).await;
    assert_eq!(reply.status, StatusCode::OK, "{case}: {reply:?}");
}

backend_tests!(
    forged_and_malformed_hs256_tokens,
    public_key_servers,
    issuer_and_audience,
    subjects_are_bounded
);

async fn forged_and_malformed_hs256_tokens(backend: Backend) {
    // Hundreds of bad tokens from one address.
    let app = spawn_traffic(backend, no_address_limit()).await;
    assert_accepted(&app, &token("alice", &[]), "control").await;
    assert_accepted(&app, &sign(&with(claims(), "exp", json!(now() - 30))), "exp 30 s ago, within leeway")
        .await;
    assert_accepted(&app, &sign(&with(claims(), "nbf", json!(now() + 30))), "nbf 30 s ahead, within leeway")
        .await;

    let good = sign(&claims());
    let (header, payload) = {
        let mut parts = good.split('.');
        (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned())
    };
    let payload_json = String::from_utf8(B64.decode(&payload).unwrap()).unwrap();
    let tampered = B64.encode(payload_json.replace("sub-alice", "sub-ada"));
    let cases: Vec<(String, Option<String>)> = vec![
        ("no Authorization header".into(), None),
        ("empty bearer".into(), Some("Bearer ".into())),
        ("basic".into(), Some("Basic YWxpY2U6cGFzc3dvcmQ=".into())),
        ("bare token".into(), Some(good.clone())),
        (
            "expired 120 s ago".into(),
            Some(format!("Bearer {}", sign(&with(claims(), "exp", json!(now() - 120))))),
        ),
        (
            "nbf 120 s ahead".into(),
            Some(format!("Bearer {}", sign(&with(claims(), "nbf", json!(now() + 120))))),
        ),
        (
            "wrong secret".into(),
            Some(format!("Bearer {}", sign_with(&claims(), b"another-secret-of-at-least-32-bytes!!"))),
        ),
        ("no exp".into(), Some(format!("Bearer {}", sign(&with(claims(), "exp", Value::Null))))),
        ("no sub".into(), Some(format!("Bearer {}", sign(&with(claims(), "sub", Value::Null))))),
        (
            "exp as a string".into(),
            Some(format!("Bearer {}", sign(&with(claims(), "exp", json!((now() + 600).to_string()))))),
        ),
        ("tampered payload".into(), Some(format!("Bearer {header}.{tampered}.{}", signature(&good)))),
        (
            "HS384 header, HS256 signature".into(),
            Some(format!(
                "Bearer {}",
                raw(r#"{"alg":"HS384","typ":"JWT"}"#, &payload_json, signature(&good))
            )),
        ),
        (
            "kid path traversal, empty key".into(),
            Some(format!("Bearer {}", {
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                h.kid = Some("../../../../dev/null".into()); // self-contained: not a path
                jsonwebtoken::encode(&h, &claims(), &jsonwebtoken::EncodingKey::from_secret(b"")).unwrap()
            })),
        ),
        (
            "kid injection".into(),
            Some(format!("Bearer {}", {
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                h.kid = Some("' OR '1'='1".into());
                jsonwebtoken::encode(&h, &claims(), &jsonwebtoken::EncodingKey::from_secret(b"attacker"))
                    .unwrap()
            })),
        ),
        (
            "embedded jwk".into(),
            Some(format!(
                "Bearer {}",
                raw(
                    r#"{"alg":"HS256","typ":"JWT","jwk":{"kty":"oct","k":"YXR0YWNrZXI"}}"#,
                    &payload_json,
                    signature(&sign_with(&claims(), b"attacker"))
                )
            )),
        ),
        (
            "jku to loopback".into(),
            Some(format!(
                "Bearer {}",
                raw(
                    r#"{"alg":"HS256","typ":"JWT","jku":"http://127.0.0.1:9/keys"}"#,
                    &payload_json,
                    signature(&sign_with(&claims(), b"attacker"))
                )
            )),
        ),
        (
            "duplicate sub".into(),
            Some(format!("Bearer {}", {
                let text = format!(
                    r#"{{"sub":"sub-alice","sub":"sub-ada","preferred_username":"alice","exp":{}}}"#,
                    now() + 600
                );
                let unsigned =
                    format!("{}.{}", B64.encode(r#"{"alg":"HS256","typ":"JWT"}"#), B64.encode(&text));
                let mac = hmac_sha256(crate::helpers::SECRET, unsigned.as_bytes());
                format!("{unsigned}.{}", B64.encode(mac))
            })),
        ),
        ("garbage".into(), Some("Bearer not.a.jwt".into())),
    ];
    let none_cases = ["none", "None", "NONE"].map(|alg| {
        (
            format!("alg {alg}"),
            Some(format!("Bearer {}", raw(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#), &payload_json, ""))),
        )
    });
    for (case, authorization) in cases.into_iter().chain(none_cases) {
        assert_rejected_everywhere(&app, &good, authorization.as_deref(), &case).await;
    }

    // A 100 KB token: 401, or 431 from the HTTP layer before any handler runs.
    let huge = sign(&with(claims(), "pad", json!("x".repeat(100_000))));
    let reply = app.get("/api/user/v1/preferences/alice", &huge).await;
    assert!([401, 431].contains(&reply.status.as_u16()), "{reply:?}");
    assert_eq!(app.get("/healthz", &good).await.status, StatusCode::OK);

    // The token in the query string is never read.
    let reply = app
        .send(Method::GET, &format!("/api/user/v1/preferences/alice?access_token={good}"), None, None, None)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

/// HMAC-SHA256, to sign a payload that a JWT library would refuse to produce.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

async fn public_key_servers(backend: Backend) {
    for (public, private, algorithm) in [
        ("rs256-public.pem", "rs256-private.pem", jsonwebtoken::Algorithm::RS256),
        ("es256-public.pem", "es256-private.pem", jsonwebtoken::Algorithm::ES256),
    ] {
        let keys = KeySources {
            public_key_file: Some(format!("{FIXTURES}/{public}").into()),
            ..KeySources::default()
        };
        let jwt = JwtConfig { keys, ..JwtConfig::default() };
        let app = spawn_custom(backend, Limits::default(), jwt).await;
        let good = sign_pem(&claims(), algorithm, private);
        assert_accepted(&app, &good, public).await;
        // HS256 signed with the public key as the HMAC secret: the key confusion attack.
        let confused = sign_with(&claims(), &fixture(public));
        assert_rejected_everywhere(
            &app,
            &good,
            Some(&format!("Bearer {confused}")),
            "HS256 with the public key",
        )
        .await;
        let payload_json = String::from_utf8(B64.decode(good.split('.').nth(1).unwrap()).unwrap()).unwrap();
        let none = raw(r#"{"alg":"none","typ":"JWT"}"#, &payload_json, "");
        assert_rejected_everywhere(&app, &good, Some(&format!("Bearer {none}")), "alg none").await;
        let expired = sign_pem(&with(claims(), "exp", json!(now() - 120)), algorithm, private);
        assert_rejected_everywhere(&app, &good, Some(&format!("Bearer {expired}")), "expired").await;
    }
}

async fn issuer_and_audience(backend: Backend) {
    let jwt = JwtConfig {
        issuers: vec!["https://idp.example".into()],
        audiences: vec!["prefs".into()],
        ..JwtConfig::with_secret(crate::helpers::SECRET)
    };
    let app = spawn_custom(backend, Limits::default(), jwt).await;
    let full = with(with(claims(), "iss", json!("https://idp.example")), "aud", json!("prefs"));
    assert_accepted(&app, &sign(&full), "right iss and aud").await;
    // The helper's alice token has neither, so seed through an accepted one for the checks.
    for (case, claims) in [
        ("wrong iss", with(full.clone(), "iss", json!("https://evil.example"))),
        ("wrong aud", with(full.clone(), "aud", json!("other"))),
        ("no aud", with(full.clone(), "aud", Value::Null)),
        ("no iss", with(full.clone(), "iss", Value::Null)),
    ] {
        let reply = app.get("/api/user/v1/preferences/alice", &sign(&claims)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{case}");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"), "{case}");
    }
}

/// `sub` is a non-empty string of at most 255 bytes: tokens with an empty subject never share
/// one account (zed's preferences are not yan's), and a huge one is never stored.
async fn subjects_are_bounded(backend: Backend) {
    let app = spawn(backend).await;
    for (case, sub) in [
        ("empty", json!("")),
        ("256 bytes", json!("s".repeat(256))),
        ("6,000 bytes", json!("s".repeat(6000))),
    ] {
        let zed = sign(&json!({"sub": sub, "preferred_username": "zed", "exp": now() + 600}));
        let reply = app
            .json(
                Method::PATCH,
                "/api/user/v1/preferences/zed",
                &zed,
                "application/merge-patch+json",
                &json!({"k": "v"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{case}: {}", reply.text);
        assert!(reply.text.contains("`sub`"), "{case}: {}", reply.text);
        let yan = sign(&json!({"sub": sub, "preferred_username": "yan", "exp": now() + 600}));
        assert_eq!(
            app.get("/api/user/v1/preferences/yan", &yan).await.status,
            StatusCode::UNAUTHORIZED,
            "{case}"
        );
    }
    let longest = sign(&json!({"sub": "s".repeat(255), "preferred_username": "zed", "exp": now() + 600}));
    assert_eq!(app.get("/api/user/v1/preferences/zed", &longest).await.status, StatusCode::OK);
}
