//! Real identity providers: keys from PEM files, JWK set files and JWK set URLs (served by the
//! test itself), rotation, every algorithm, and one recipe per provider with tokens shaped as
//! that provider issues them. The recipes are the README's ("Identity providers").

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use prefs_domain::Limits;
use prefs_http::auth::{ClaimMap, claim_list, value_list};
use prefs_http::{BrowserConfig, JwtConfig, KeySources};
use prefs_storage::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{TestApp, no_address_limit, now, spawn_all, spawn_custom};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// A private key to sign with, and its public half as a JWK.
#[derive(Clone)]
struct Signer {
    algorithm: Algorithm,
    kid: Option<String>,
    key: EncodingKey,
    jwk: Jwk,
}

impl Signer {
    /// The fixture `{name}-private.pem`, signing with `algorithm`, published under `kid`.
    fn new(name: &str, algorithm: Algorithm, kid: Option<&str>) -> Self {
        let pem = std::fs::read(format!("{FIXTURES}/{name}-private.pem")).unwrap();
        let key = match algorithm {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
            _ => EncodingKey::from_rsa_pem(&pem),
        }
        .unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, algorithm).unwrap();
        jwk.common.key_id = kid.map(str::to_owned);
        Self { algorithm, kid: kid.map(str::to_owned), key, jwk }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid.clone_from(&self.kid);
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    /// The same key under another `kid`.
    fn with_kid(&self, kid: &str) -> Self {
        let mut other = self.clone();
        other.kid = Some(kid.to_owned());
        other.jwk.common.key_id = Some(kid.to_owned());
        other
    }
}

/// A JWK set server: `/jwks` and an OpenID Connect discovery document pointing at it. It counts
/// the fetches of the set and answers what the test last published.
struct KeyServer {
    base: String,
    answer: Arc<Mutex<(u16, String)>>,
    fetches: Arc<AtomicUsize>,
}

impl KeyServer {
    async fn start(keys: &[&Signer]) -> Self {
        let answer = Arc::new(Mutex::new((200, String::new())));
        let fetches = Arc::new(AtomicUsize::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (served, counted, issuer) = (answer.clone(), fetches.clone(), base.clone());
        let server = HttpServer::new(move || {
            let (served, counted, issuer) = (served.clone(), counted.clone(), issuer.clone());
            App::new()
                .route(
                    "/jwks",
                    web::get().to(move || {
                        let (served, counted) = (served.clone(), counted.clone());
                        async move {
                            counted.fetch_add(1, Ordering::SeqCst);
                            let (status, body) = served.lock().unwrap().clone();
                            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                                .insert_header(("cache-control", "public, max-age=3600"))
                                .body(body)
                        }
                    }),
                )
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(move || {
                        let issuer = issuer.clone();
                        async move {
                            HttpResponse::Ok()
                                .json(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}))
                        }
                    }),
                )
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        let server = Self { base, answer, fetches };
        server.publish(keys);
        server
    }

    fn publish(&self, keys: &[&Signer]) {
        let set = JwkSet { keys: keys.iter().map(|s| s.jwk.clone()).collect() };
        *self.answer.lock().unwrap() = (200, serde_json::to_string(&set).unwrap());
    }

    fn answer(&self, status: u16, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_owned());
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn claims(user: &str) -> Value {
    json!({"sub": format!("sub-{user}"), "preferred_username": user, "exp": now() + 600})
}

fn jwks_url(url: String) -> JwtConfig {
    JwtConfig { keys: KeySources { jwks_url: Some(url), ..KeySources::default() }, ..JwtConfig::default() }
}

/// GET of the user's Open edX preferences: the status.
async fn edx_get(app: &TestApp, user: &str, token: &str) -> StatusCode {
    app.get(&format!("/api/user/v1/preferences/{user}"), token).await.status
}

/// Waits up to `seconds` for `/readyz` to be 200.
async fn ready_within(app: &TestApp, seconds: u64) -> bool {
    let client = reqwest::Client::new();
    for _ in 0..seconds * 10 {
        let status = client.get(format!("{}/readyz", app.base)).send().await.unwrap().status();
        if status == StatusCode::OK {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn every_algorithm(backend: Backend) {
    let table = [
        ("rs256", Algorithm::RS256),
        ("rs256", Algorithm::RS384),
        ("rs256", Algorithm::RS512),
        ("rs256", Algorithm::PS256),
        ("rs256", Algorithm::PS384),
        ("rs256", Algorithm::PS512),
        ("es256", Algorithm::ES256),
        ("es384", Algorithm::ES384),
        ("ed25519", Algorithm::EdDSA),
    ];
    // One PEM file holding every public key (and a certificate): each signs for its algorithms.
    let mut pem = String::new();
    for name in ["rs256-public", "es256-public", "es384-public", "ed25519-public", "rsa2-cert"] {
        pem.push_str(&std::fs::read_to_string(format!("{FIXTURES}/{name}.pem")).unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.pem");
    std::fs::write(&path, pem).unwrap();
    let keys = KeySources {
        public_key_file: Some(path.clone()),
        secret: Some(prefs_http::Secret(crate::helpers::SECRET.to_vec())),
        ..KeySources::default()
    };
    let app = spawn_custom(backend, Limits::default(), JwtConfig { keys, ..JwtConfig::default() }).await;
    for (name, algorithm) in table {
        let token = Signer::new(name, algorithm, None).sign(&claims("alice"));
        assert_eq!(edx_get(&app, "alice", &token).await, StatusCode::OK, "{algorithm:?}");
    }
    let certified = Signer::new("rsa2", Algorithm::RS256, None).sign(&claims("alice"));
    assert_eq!(edx_get(&app, "alice", &certified).await, StatusCode::OK, "the certificate's key");
    for algorithm in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let token = jsonwebtoken::encode(
            &Header::new(algorithm),
            &claims("alice"),
            &EncodingKey::from_secret(crate::helpers::SECRET),
        )
        .unwrap();
        assert_eq!(edx_get(&app, "alice", &token).await, StatusCode::OK, "{algorithm:?}");
    }
    // PREFS_JWT_ALGORITHMS narrows: an RS512 token against RS256 only.
    let keys = KeySources {
        public_key_file: Some(path),
        algorithms: vec![Algorithm::RS256],
        ..KeySources::default()
    };
    let narrow = spawn_custom(backend, Limits::default(), JwtConfig { keys, ..JwtConfig::default() }).await;
    let rs256 = Signer::new("rs256", Algorithm::RS256, None).sign(&claims("alice"));
    let rs512 = Signer::new("rs256", Algorithm::RS512, None).sign(&claims("alice"));
    assert_eq!(edx_get(&narrow, "alice", &rs256).await, StatusCode::OK);
    let refused = narrow.get("/api/user/v1/preferences/alice", &rs512).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.text.contains("algorithm RS512 is not accepted"), "{}", refused.text);
}

async fn jwks_url_rotation(backend: Backend) {
    let old = Signer::new("rs256", Algorithm::RS256, Some("old"));
    let new = Signer::new("rsa2", Algorithm::RS256, Some("new"));
    let server = KeyServer::start(&[&old]).await;
    let app = spawn_custom(backend, Limits::default(), jwks_url(format!("{}/jwks", server.base))).await;
    assert!(ready_within(&app, 10).await, "the first set loads");
    assert_eq!(edx_get(&app, "alice", &old.sign(&claims("alice"))).await, StatusCode::OK);
    // The provider publishes the new key beside the old: a token of either works at once.
    server.publish(&[&old, &new]);
    assert_eq!(edx_get(&app, "alice", &new.sign(&claims("alice"))).await, StatusCode::OK, "new key");
    assert_eq!(edx_get(&app, "alice", &old.sign(&claims("alice"))).await, StatusCode::OK, "old key");
    assert_eq!(edx_get(&app, "bob", &new.sign(&claims("bob"))).await, StatusCode::OK, "no refetch needed");
    // The old key is withdrawn: once prefs fetches again (an unknown kid may ask for that 30 s
    // after the last time), tokens of the old key are refused, remembered ones included.
    server.publish(&[&new]);
    let remembered = old.sign(&claims("alice"));
    assert_eq!(edx_get(&app, "alice", &remembered).await, StatusCode::OK, "not fetched yet");
    tokio::time::sleep(Duration::from_secs(31)).await;
    let unknown = new.with_kid("unknown").sign(&claims("alice"));
    assert_eq!(edx_get(&app, "alice", &unknown).await, StatusCode::UNAUTHORIZED);
    let refused = app.get("/api/user/v1/preferences/alice", &remembered).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    assert!(refused.text.contains("key prefs does not know"), "{}", refused.text);
    assert_eq!(edx_get(&app, "alice", &new.sign(&claims("alice"))).await, StatusCode::OK);
}

async fn unknown_kids_fetch_at_most_once(backend: Backend) {
    let key = Signer::new("rs256", Algorithm::RS256, Some("k1"));
    let server = KeyServer::start(&[&key]).await;
    let discovery = format!("{}/.well-known/openid-configuration", server.base);
    // 1,000 bad tokens from one address.
    let traffic = no_address_limit();
    let app =
        spawn_all(backend, Limits::default(), jwks_url(discovery), BrowserConfig::default(), traffic).await;
    assert!(ready_within(&app, 10).await);
    assert_eq!(
        edx_get(&app, "alice", &key.sign(&claims("alice"))).await,
        StatusCode::OK,
        "through discovery"
    );
    let before = server.fetches();
    let started = std::time::Instant::now();
    // Only the header matters to an unknown kid: the signature is never checked.
    let (_, rest) =
        key.sign(&claims("alice")).split_once('.').map(|(h, r)| (h.to_owned(), r.to_owned())).unwrap();
    for i in 0..1000 {
        use base64::Engine;
        let kid = format!("random-{i}-{}", rand_suffix(i));
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid}).to_string();
        let token = format!("{}.{rest}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header));
        assert_eq!(edx_get(&app, "alice", &token).await, StatusCode::UNAUTHORIZED);
    }
    let fetched = server.fetches() - before;
    let allowed = 1 + started.elapsed().as_secs() / 30;
    assert!(
        fetched as u64 <= allowed,
        "1,000 unknown kids fetched the set {fetched} times (at most {allowed})"
    );
}

fn rand_suffix(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ now() as u64
}

async fn key_server_down_at_start(backend: Backend) {
    let key = Signer::new("rs256", Algorithm::RS256, Some("k1"));
    let server = KeyServer::start(&[&key]).await;
    server.answer(503, "down");
    let app = spawn_custom(backend, Limits::default(), jwks_url(format!("{}/jwks", server.base))).await;
    let token = key.sign(&claims("alice"));
    let readyz = reqwest::get(format!("{}/readyz", app.base)).await.unwrap();
    assert_eq!(readyz.status(), StatusCode::SERVICE_UNAVAILABLE);
    let edx = app.get("/api/user/v1/preferences/alice", &token).await;
    assert_eq!(edx.status, StatusCode::SERVICE_UNAVAILABLE, "{}", edx.text);
    assert!(edx.json()["developer_message"].is_string(), "Open edX's format");
    let namespace = app.get("/preferences/app", &token).await;
    assert_eq!(namespace.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(namespace.json()["errors"][0]["code"], "unavailable");
    server.publish(&[&key]);
    assert!(ready_within(&app, 20).await, "recovers by itself");
    assert_eq!(edx_get(&app, "alice", &token).await, StatusCode::OK);
}

async fn garbage_keeps_the_last_good_set(backend: Backend) {
    let key = Signer::new("rs256", Algorithm::RS256, Some("k1"));
    let server = KeyServer::start(&[&key]).await;
    let app = spawn_custom(backend, Limits::default(), jwks_url(format!("{}/jwks", server.base))).await;
    assert!(ready_within(&app, 10).await);
    server.answer(200, "<html>not a key set</html>");
    let before = server.fetches();
    // An unknown kid makes prefs fetch the garbage; the last good set stays.
    assert_eq!(
        edx_get(&app, "alice", &key.with_kid("k2").sign(&claims("alice"))).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(server.fetches(), before + 1, "fetched once");
    assert_eq!(edx_get(&app, "bob", &key.sign(&claims("bob"))).await, StatusCode::OK);
    let readyz = reqwest::get(format!("{}/readyz", app.base)).await.unwrap();
    assert_eq!(readyz.status(), StatusCode::OK);
}

async fn jwks_file_reloads_when_it_changes(backend: Backend) {
    let old = Signer::new("rs256", Algorithm::RS512, Some("old"));
    let new = Signer::new("rsa2", Algorithm::RS512, Some("new"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let write = |keys: &[&Signer]| {
        let set = JwkSet { keys: keys.iter().map(|s| s.jwk.clone()).collect() };
        let temporary = dir.path().join("next.json");
        std::fs::write(&temporary, serde_json::to_string(&set).unwrap()).unwrap();
        std::fs::rename(&temporary, &path).unwrap();
    };
    write(&[&old]);
    let keys = KeySources { jwks_file: Some(path.clone()), ..KeySources::default() };
    let app = spawn_custom(backend, Limits::default(), JwtConfig { keys, ..JwtConfig::default() }).await;
    let remembered = old.sign(&claims("alice"));
    assert_eq!(edx_get(&app, "alice", &remembered).await, StatusCode::OK);
    write(&[&new]);
    let mut refused = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if edx_get(&app, "alice", &remembered).await == StatusCode::UNAUTHORIZED {
            refused = true;
            break;
        }
    }
    assert!(refused, "the withdrawn key is dropped within seconds");
    assert_eq!(edx_get(&app, "alice", &new.sign(&claims("alice"))).await, StatusCode::OK);
    // A broken file keeps the last good keys.
    std::fs::write(&path, "{").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(edx_get(&app, "bob", &new.sign(&claims("bob"))).await, StatusCode::OK);
}

async fn headers_and_plain_reasons(backend: Backend) {
    let key = Signer::new("rs256", Algorithm::RS256, Some("k1"));
    let server = KeyServer::start(&[&key]).await;
    let config = JwtConfig {
        issuers: value_list("https://a.example,https://b.example"),
        audiences: value_list("prefs,other"),
        ..jwks_url(format!("{}/jwks", server.base))
    };
    let app = spawn_custom(backend, Limits::default(), config).await;
    assert!(ready_within(&app, 10).await);
    let good = |iss: &str, aud: &str| {
        let mut c = claims("alice");
        c["iss"] = json!(iss);
        c["aud"] = json!(aud);
        c
    };
    // Any listed issuer and audience; Open edX's `JWT` scheme, in any case.
    for (iss, aud, scheme) in [
        ("https://a.example", "prefs", "Bearer"),
        ("https://b.example", "other", "JWT"),
        ("https://a.example", "other", "jwt"),
    ] {
        let token = key.sign(&good(iss, aud));
        let reply = raw_get(&app, &[format!("{scheme} {token}")]).await;
        assert_eq!(reply.0, StatusCode::OK, "{iss} {aud} {scheme}: {}", reply.1);
    }
    let token = key.sign(&good("https://a.example", "prefs"));
    let twice = raw_get(&app, &[format!("Bearer {token}"), format!("Bearer {token}")]).await;
    assert_eq!(twice.0, StatusCode::UNAUTHORIZED, "two Authorization headers");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    header.crit = Some(vec!["exp".into()]);
    let critical = jsonwebtoken::encode(&header, &good("https://a.example", "prefs"), &key.key).unwrap();
    assert_eq!(raw_get(&app, &[format!("Bearer {critical}")]).await.0, StatusCode::UNAUTHORIZED, "crit");
    let mut expired = good("https://a.example", "prefs");
    expired["exp"] = json!(now() - 3600);
    let (signed, _) = token.rsplit_once('.').unwrap();
    let cases = [
        (key.sign(&expired), "the token has expired"),
        (format!("{signed}.AAAA"), "signature does not verify"),
        (key.sign(&good("https://evil.example", "prefs")), "issuer (`iss`) is not accepted"),
        (key.sign(&good("https://a.example", "nope")), "audience (`aud`) is not accepted"),
        ("abc".into(), "malformed"),
        ("a.b.c".into(), "malformed"),
        (key.with_kid("zzz").sign(&good("https://a.example", "prefs")), "key prefs does not know"),
    ];
    for (token, reason) in cases {
        let (status, body) = raw_get(&app, &[format!("Bearer {token}")]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reason}");
        assert!(body.contains(reason), "{reason}: {body}");
        for internal in ["Base64", "JSON error", "InvalidSignature", "line 1 column", "ExpiredSignature"] {
            assert!(!body.contains(internal), "a library's words in {body}");
        }
    }
}

/// A GET of alice's Open edX preferences with these `Authorization` header values.
async fn raw_get(app: &TestApp, authorizations: &[String]) -> (StatusCode, String) {
    let mut request = reqwest::Client::new().get(format!("{}/api/user/v1/preferences/alice", app.base));
    for value in authorizations {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// One provider's recipe: how prefs is configured for it, and its tokens' claims for a user with
/// the given role, scopes and client.
struct Recipe {
    name: &'static str,
    configure: fn(String, std::path::PathBuf, &mut JwtConfig),
    claims: fn(&str, Role) -> Value,
    /// The client the user's own namespace belongs to (the token's client).
    client: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    User,
    Staff,
    Admin,
}

const SCOPES: &str = "openid user:preferences:read user:preferences:write user:preferences:read:other-app";

fn recipes() -> Vec<Recipe> {
    vec![
        Recipe {
            name: "Keycloak",
            configure: |url, _, c| {
                c.keys.jwks_url = Some(format!("{url}/.well-known/openid-configuration"));
                c.issuers = vec![url];
                c.audiences = value_list("prefs");
                c.claims.roles = claim_list("/realm_access/roles,/resource_access/prefs/roles");
            },
            claims: |user, role| {
                let roles = match role {
                    Role::User => json!(["offline_access", "uma_authorization"]),
                    Role::Staff => json!(["offline_access", "staff"]),
                    Role::Admin => json!(["admin"]),
                };
                json!({"sub": format!("f1b6{user}-4d1c"), "typ": "Bearer", "azp": "prefs-web", "aud": ["prefs", "account"],
                       "preferred_username": user, "email": format!("{user}@example.com"),
                       "realm_access": {"roles": roles}, "resource_access": {"account": {"roles": ["manage-account"]}},
                       "scope": SCOPES, "sid": "b5c1"})
            },
            client: "prefs-web",
        },
        Recipe {
            name: "Auth0",
            configure: |url, _, c| {
                c.keys.jwks_url = Some(format!("{url}/jwks"));
                c.issuers = vec![format!("{url}/")];
                c.audiences = value_list("https://prefs.example.com/api");
                c.claims.roles = claim_list("/https:~1~1prefs.example.com~1roles");
            },
            claims: |user, role| {
                let roles = match role {
                    Role::User => json!([]),
                    Role::Staff => json!(["staff"]),
                    Role::Admin => json!(["admin"]),
                };
                json!({"sub": format!("auth0|64f{user}"), "aud": ["https://prefs.example.com/api", "https://tenant.auth0.com/userinfo"],
                       "azp": "Xq7ZUfQvPqJd0rY", "scope": SCOPES, "https://prefs.example.com/roles": roles,
                       "permissions": ["user:preferences:read"]})
            },
            client: "Xq7ZUfQvPqJd0rY",
        },
        Recipe {
            name: "Okta",
            configure: |url, _, c| {
                c.keys.jwks_url = Some(format!("{url}/.well-known/openid-configuration"));
                c.issuers = vec![url];
                c.audiences = value_list("api://prefs");
                c.claims.roles = claim_list("groups");
                c.claims.staff_roles = value_list("prefs-staff");
                c.claims.admin_roles = value_list("prefs-admins");
            },
            claims: |user, role| {
                let groups = match role {
                    Role::User => json!(["Everyone"]),
                    Role::Staff => json!(["Everyone", "prefs-staff"]),
                    Role::Admin => json!(["Everyone", "prefs-admins"]),
                };
                json!({"ver": 1, "jti": "AT.x", "aud": "api://prefs", "cid": "0oa1prefsweb", "uid": "00u1",
                       "sub": format!("{user}@example.com"), "scp": SCOPES.split(' ').collect::<Vec<_>>(), "groups": groups})
            },
            client: "0oa1prefsweb",
        },
        Recipe {
            name: "Microsoft Entra ID",
            configure: |url, _, c| {
                c.keys.jwks_url = Some(format!("{url}/.well-known/openid-configuration"));
                c.issuers = vec![url];
                c.audiences = value_list("api://prefs,6e74172b-be56-4843-9ff4-e66a39bb12e3");
                c.claims.roles = claim_list("roles");
                c.claims.staff_roles = value_list("Prefs.Staff");
                c.claims.admin_roles = value_list("Prefs.Admin");
            },
            claims: |user, role| {
                let roles = match role {
                    Role::User => json!([]),
                    Role::Staff => json!(["Prefs.Staff"]),
                    Role::Admin => json!(["Prefs.Admin"]),
                };
                json!({"aud": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "azp": "2f1b-web-app", "azpacr": "0",
                       "oid": format!("oid-{user}"), "sub": format!("entra-{user}"), "tid": "72f9",
                       "preferred_username": format!("{user}@contoso.com"), "name": user, "roles": roles,
                       "scp": SCOPES, "ver": "2.0"})
            },
            client: "2f1b-web-app",
        },
        Recipe {
            name: "AWS Cognito",
            configure: |url, _, c| {
                c.keys.jwks_url = Some(format!("{url}/jwks"));
                c.issuers = vec![url];
                c.client_ids = value_list("5r2prefsappclient");
                c.claims.roles = claim_list("cognito:groups");
            },
            claims: |user, role| {
                let groups = match role {
                    Role::User => json!(["readers"]),
                    Role::Staff => json!(["staff"]),
                    Role::Admin => json!(["admin"]),
                };
                json!({"sub": format!("a1b2-{user}"), "cognito:groups": groups, "token_use": "access",
                       "scope": SCOPES, "auth_time": now(), "client_id": "5r2prefsappclient",
                       "username": user, "origin_jti": "o", "event_id": "e", "jti": "j"})
            },
            client: "5r2prefsappclient",
        },
        Recipe {
            name: "Google/Firebase",
            configure: |url, _, c| {
                c.keys.jwks_url = Some(format!("{url}/jwks"));
                c.issuers = vec![url];
                c.audiences = value_list("prefs-project");
                c.claims.roles = claim_list("roles,admin");
            },
            claims: |user, role| {
                // Custom claims set with the Admin SDK: `roles`, or `admin: true`; `scope` and
                // `client_id` for client namespaces.
                let mut claims = json!({"aud": "prefs-project", "sub": format!("uid{user}"), "user_id": format!("uid{user}"),
                       "email": format!("{user}@example.com"), "email_verified": true, "auth_time": now(),
                       "firebase": {"identities": {}, "sign_in_provider": "password"},
                       "scope": SCOPES, "client_id": "prefs-android"});
                match role {
                    Role::User => {}
                    Role::Staff => claims["roles"] = json!(["staff"]),
                    Role::Admin => claims["admin"] = json!(true),
                }
                claims
            },
            client: "prefs-android",
        },
        Recipe {
            name: "Open edX",
            configure: |url, file, c| {
                c.keys.jwks_file = Some(file);
                c.issuers = vec![format!("{url}/oauth2")];
                c.audiences = value_list("openedx");
                c.claims.roles = claim_list("roles,administrator");
                c.claims.staff_roles = value_list("staff,administrator");
                c.claims.admin_roles = value_list("admin");
                c.claims.user_id = claim_list("user_id");
            },
            claims: |user, role| {
                let mut claims = json!({"aud": "openedx", "iss": "", "preferred_username": user, "sub": format!("edx-{user}"),
                       "user_id": 1000 + user.len() as i64 * 7 + user.bytes().map(i64::from).sum::<i64>(),
                       "scopes": ["user_id", "email", "profile", "user:preferences:read", "user:preferences:write", "user:preferences:read:other-app"],
                       "filters": [], "is_restricted": false, "version": "1.2.0", "email_verified": true,
                       "administrator": role != Role::User, "client_id": "login-service-client-id"});
                if role == Role::Admin {
                    claims["roles"] = json!(["admin"]);
                }
                claims
            },
            client: "login-service-client-id",
        },
    ]
}

/// Each provider's recipe: users read and write their own preferences in all three dialects,
/// staff read others', admins write them, client namespace scopes work.
async fn provider_recipes(backend: Backend) {
    let key = Signer::new("rs256", Algorithm::RS256, Some("2024-kid"));
    let edx_key = Signer::new("rsa2", Algorithm::RS512, Some("openedx-2024"));
    let server = KeyServer::start(&[&key]).await;
    // Open edX's JWT_PUBLIC_SIGNING_JWK_SET, as a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, serde_json::to_string(&JwkSet { keys: vec![edx_key.jwk.clone()] }).unwrap())
        .unwrap();
    for recipe in recipes() {
        let name = recipe.name;
        let mut config = JwtConfig { claims: ClaimMap::default(), ..JwtConfig::default() };
        (recipe.configure)(server.base.clone(), file.clone(), &mut config);
        let signer = if name == "Open edX" { &edx_key } else { &key };
        let issuer = config.issuers[0].clone();
        let client_ids = config.client_ids.clone();
        let app = spawn_custom(backend, Limits::default(), config).await;
        assert!(ready_within(&app, 10).await, "{name}");
        // The provider's claims for `user`, issued now by the key server's issuer.
        let claims_of = |user: &str, role: Role| {
            let mut claims = (recipe.claims)(user, role);
            claims["iss"] = json!(issuer);
            claims["exp"] = json!(now() + 600);
            claims["iat"] = json!(now());
            claims
        };
        let token = |user: &str, role: Role| signer.sign(&claims_of(user, role));
        let alice = token("alice", Role::User);
        // The username prefs sees: the provider's username claim, else the subject.
        let me = app.get("/api/v2/user/me/preference/", &alice).await;
        assert_eq!(me.status, StatusCode::OK, "{name}: {}", me.text);
        let created = app
            .json(
                Method::POST,
                "/api/v2/user/me/preference/",
                &alice,
                "application/json",
                &json!({"key": "layout", "value": {"cols": 2}}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{name}: {}", created.text);
        let alice_id = created.json()["user_id"].as_i64().unwrap();
        if let Some(provider_id) = (recipe.claims)("alice", Role::User)["user_id"].as_i64() {
            assert_eq!(alice_id, provider_id, "{name}: the provider's user id is the prefs id");
        }
        let username = username_in(&alice);
        let edx = format!("/api/user/v1/preferences/{}", urlencode(&username));
        let patch = app
            .json(Method::PATCH, &edx, &alice, "application/merge-patch+json", &json!({"pref-lang": "fr"}))
            .await;
        assert_eq!(patch.status, StatusCode::NO_CONTENT, "{name}: {}", patch.text);
        assert_eq!(app.get(&edx, &alice).await.json()["pref-lang"], "fr", "{name}");
        let own = format!("/preferences/{}", urlencode(recipe.client));
        let put = app.json(Method::PUT, &own, &alice, "application/json", &json!({"theme": "dark"})).await;
        assert_eq!(put.status, StatusCode::NO_CONTENT, "{name}: {}", put.text);
        assert_eq!(app.get(&own, &alice).await.json(), json!({"theme": "dark"}), "{name}");
        // Another client's namespace: read with the specific scope, no write.
        assert_eq!(app.get("/preferences/other-app", &alice).await.status, StatusCode::OK, "{name}");
        let other = app
            .json(Method::PUT, "/preferences/other-app", &alice, "application/json", &json!({"a": 1}))
            .await;
        assert_eq!(other.status, StatusCode::FORBIDDEN, "{name}");
        // Roles: a user without one does not see alice; staff reads; admin writes.
        let bob = token("bob", Role::User);
        assert_eq!(app.get(&edx, &bob).await.status, StatusCode::NOT_FOUND, "{name}: bob");
        let stella = token("stella", Role::Staff);
        assert_eq!(app.get(&edx, &stella).await.json()["pref-lang"], "fr", "{name}: staff reads");
        let staff_write =
            app.json(Method::PATCH, &edx, &stella, "application/merge-patch+json", &json!({"x": "1"})).await;
        assert_eq!(staff_write.status, StatusCode::FORBIDDEN, "{name}: staff writes");
        let ada = token("ada", Role::Admin);
        let admin_write =
            app.json(Method::PATCH, &edx, &ada, "application/merge-patch+json", &json!({"x": "1"})).await;
        assert_eq!(admin_write.status, StatusCode::NO_CONTENT, "{name}: admin writes: {}", admin_write.text);
        let record = app.get(&format!("/api/v2/user/{alice_id}/preference/"), &ada).await;
        assert_eq!(record.json()["count"], 3, "{name}: layout, pref-lang, x");
        if let Some(client) = client_ids.first() {
            // PREFS_JWT_CLIENT_IDS: another app's token is refused.
            let mut claims = claims_of("alice", Role::User);
            claims["client_id"] = json!(format!("{client}-other"));
            let reply = app.get(&edx, &signer.sign(&claims)).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{name}: another client");
            assert!(reply.text.contains("client prefs does not accept"), "{name}: {}", reply.text);
        }
        if let Some(id) = (recipe.claims)("alice", Role::User)["user_id"].as_i64() {
            // PREFS_JWT_USER_ID_CLAIM: a token whose id disagrees with alice's is refused.
            let mut claims = claims_of("alice", Role::User);
            claims["user_id"] = json!(id + 1);
            let reply = app.get(&edx, &signer.sign(&claims)).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{name}: another user id: {}", reply.text);
        }
    }
}

/// The username prefs reads from `token`: its first username claim present (the recipes' claims
/// are all usable).
fn username_in(token: &str) -> String {
    use base64::Engine;
    let payload =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    ["preferred_username", "username", "sub"]
        .iter()
        .find_map(|c| claims.get(*c).and_then(Value::as_str))
        .unwrap()
        .to_owned()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Client ids as providers write them (a URL, ZITADEL's `id@project`) and odd claim types never
/// cost a token its validity; the namespace is reached through its percent-encoded path.
async fn any_client_id_and_odd_claims(backend: Backend) {
    let app = crate::helpers::spawn(backend).await;
    for client in ["https://app.example.com/web", "312847@prefs-project", "auth0|x y"] {
        let mut claims = claims("alice");
        claims["client_id"] = json!(client);
        claims["scope"] = json!(["user:preferences:read", "user:preferences:write"]);
        claims["roles"] = json!("nothing-special");
        let token = crate::helpers::sign(&claims);
        let path = format!("/preferences/{}", urlencode(client));
        let put = app.json(Method::PUT, &path, &token, "application/json", &json!({"theme": "dark"})).await;
        assert_eq!(put.status, StatusCode::NO_CONTENT, "{client}: {}", put.text);
        assert_eq!(app.get(&path, &token).await.json(), json!({"theme": "dark"}), "{client}");
    }
    // A roles claim of an unexpected type, scope as a number, a client id that is an array: the
    // token still works where those claims do not matter.
    let mut odd = claims("bob");
    odd["scope"] = json!(7);
    odd["client_id"] = json!(["a"]);
    odd["roles"] = json!(5);
    let token = crate::helpers::sign(&odd);
    assert_eq!(edx_get(&app, "bob", &token).await, StatusCode::OK);
    assert_eq!(app.get("/preferences/a", &token).await.status, StatusCode::FORBIDDEN);
}

/// Open edX's own tokens: RS512 with a `kid` from the LMS's JWK set (a file), sent as
/// `JWT <token>` and as a micro-frontend's cookie pair, with and without CSRF proof; the
/// `administrator: true` claim makes a staff member who reads other users' preferences.
async fn open_edx_tokens_by_header_and_cookies(backend: Backend) {
    let key = Signer::new("rsa2", Algorithm::RS512, Some("openedx-2024"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, serde_json::to_string(&JwkSet { keys: vec![key.jwk.clone()] }).unwrap()).unwrap();
    let jwt = JwtConfig {
        keys: KeySources { jwks_file: Some(file), ..KeySources::default() },
        issuers: value_list("https://lms.example.com/oauth2"),
        audiences: value_list("openedx"),
        claims: ClaimMap {
            roles: claim_list("roles,administrator"),
            staff_roles: value_list("staff,administrator"),
            user_id: claim_list("user_id"),
            ..ClaimMap::default()
        },
        ..JwtConfig::default()
    };
    let origin = "https://apps.example.com";
    let browser = prefs_http::BrowserConfig {
        jwt_cookies: true,
        cors_origins: vec![origin.into()],
        ..Default::default()
    };
    let app = crate::helpers::spawn_settings(backend, Limits::default(), jwt, browser).await;
    let token = |user: &str, id: i64, administrator: bool| {
        key.sign(&json!({"iss": "https://lms.example.com/oauth2", "aud": "openedx", "sub": format!("edx-{user}"),
            "preferred_username": user, "user_id": id, "administrator": administrator, "email_verified": true,
            "scopes": ["user_id", "email", "profile"], "filters": [], "is_restricted": false, "version": "1.2.0",
            "exp": now() + 600, "iat": now()}))
    };
    let alice = token("alice", 42, false);
    let path = "/api/user/v1/preferences/alice";
    let send = |method: Method, headers: Vec<(&'static str, String)>, body: Option<Value>| {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", app.base));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/merge-patch+json").body(body.to_string());
        }
        async move { request.send().await.unwrap().status() }
    };
    let (header_payload, signature) = alice.rsplit_once('.').unwrap();
    let jwt_cookies =
        format!("edx-jwt-cookie-header-payload={header_payload}; edx-jwt-cookie-signature={signature}");
    let csrf = "abcdefghijklmnopqrstuvwxyzABCDEF";
    let patch = json!({"pref-lang": "fr"});
    assert_eq!(
        send(Method::GET, vec![("authorization", format!("JWT {alice}"))], None).await,
        StatusCode::OK
    );
    assert_eq!(
        send(Method::GET, vec![("cookie", jwt_cookies.clone())], None).await,
        StatusCode::OK,
        "cookie pair"
    );
    let no_proof = send(Method::PATCH, vec![("cookie", jwt_cookies.clone())], Some(patch.clone())).await;
    assert_eq!(no_proof, StatusCode::FORBIDDEN, "a cookie write without CSRF proof");
    let with_proof = vec![
        ("cookie", format!("{jwt_cookies}; csrftoken={csrf}")),
        ("x-csrftoken", csrf.to_owned()),
        ("origin", origin.to_owned()),
    ];
    assert_eq!(send(Method::PATCH, with_proof, Some(patch)).await, StatusCode::NO_CONTENT, "with CSRF proof");
    let stella = token("stella", 43, true);
    let read = app.get(path, &stella).await;
    assert_eq!(read.json()["pref-lang"], "fr", "administrator: true reads others' preferences");
    let write =
        app.json(Method::PATCH, path, &stella, "application/merge-patch+json", &json!({"x": "1"})).await;
    assert_eq!(write.status, StatusCode::FORBIDDEN, "and, as staff, does not write them");
    let me = app.get("/api/v2/user/me/preference/", &alice).await;
    assert_eq!(me.json()["results"][0]["user_id"], 42, "the LMS's user id is the prefs id");
}

backend_tests!(
    open_edx_tokens_by_header_and_cookies,
    any_client_id_and_odd_claims,
    every_algorithm,
    jwks_url_rotation,
    unknown_kids_fetch_at_most_once,
    key_server_down_at_start,
    garbage_keeps_the_last_good_set,
    jwks_file_reloads_when_it_changes,
    headers_and_plain_reasons,
    provider_recipes,
);
