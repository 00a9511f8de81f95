//! Browser clients as Open edX's micro-frontends are: the JWT cookie pair, Django's CSRF checks
//! (`csrftoken` cookie, `X-CSRFToken` header, masked or not, and `Origin`), the CSRF token API,
//! and CORS, on both backends.

use prefs_http::{BrowserConfig, RESOURCES};
use prefs_storage::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Reply, TestApp, now, sign, spawn, spawn_browser, token};

const PAGE: &str = "https://apps.example.com";
const EVIL: &str = "https://evil.example.com";
const MERGE: &str = "application/merge-patch+json";
const ALICE: &str = "/api/user/v1/preferences/alice";
/// Django's CSRF characters, in its order (`string.ascii_letters + string.digits`).
const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SECRET: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz012345";

/// Cookies on, CORS for [`PAGE`], a CSRF cookie for plain HTTP.
fn browser() -> BrowserConfig {
    BrowserConfig {
        cors_origins: vec![PAGE.to_owned(), "http://127.0.0.1:9".to_owned()],
        jwt_cookies: true,
        ..BrowserConfig::default()
    }
}

/// The `Cookie` header an LMS-signed-in browser sends: the token split at its last `.`.
fn jwt_cookies(token: &str) -> String {
    let (header_payload, signature) = token.rsplit_once('.').unwrap();
    format!("edx-jwt-cookie-header-payload={header_payload}; edx-jwt-cookie-signature={signature}")
}

/// Django's `_mask_cipher_secret` with a given mask.
fn django_mask(secret: &str, mask: &str) -> String {
    let index = |c: u8| CHARS.iter().position(|x| *x == c).unwrap();
    let cipher: String = secret
        .bytes()
        .zip(mask.bytes())
        .map(|(s, m)| char::from(CHARS[(index(s) + index(m)) % CHARS.len()]))
        .collect();
    format!("{mask}{cipher}")
}

/// A request with raw headers and an optional JSON body.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, Value)>,
) -> Reply {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", app.base));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some((content_type, body)) = body {
        request = request.header("content-type", content_type).body(body.to_string());
    }
    let response = request.send().await.expect("the server answers");
    let (status, headers) = (response.status(), response.headers().clone());
    Reply { status, headers, text: response.text().await.unwrap() }
}

/// A cookie-authenticated PATCH of alice's preferences with `extra` headers.
async fn cookie_patch(app: &TestApp, cookie: &str, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("cookie", cookie)];
    headers.extend_from_slice(extra);
    call(app, Method::PATCH, ALICE, &headers, Some((MERGE, json!({"pref-lang": "fr"})))).await
}

fn assert_edx(reply: &Reply, status: StatusCode, says: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    let message = reply.json()["developer_message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains(says), "{message:?} does not say {says:?}");
}

/// The `Access-Control-*` headers of an answer.
fn cors_headers(reply: &Reply) -> Vec<String> {
    reply.headers.keys().map(|k| k.as_str().to_owned()).filter(|k| k.starts_with("access-control-")).collect()
}

fn assert_cors_for(reply: &Reply, origin: &str) {
    assert_eq!(reply.header("access-control-allow-origin"), Some(origin), "{reply:?}");
    assert_eq!(reply.header("access-control-allow-credentials"), Some("true"), "{reply:?}");
    let exposed = reply.header("access-control-expose-headers").unwrap_or_default().to_ascii_lowercase();
    for name in ["etag", "location", "request-id", "retry-after"] {
        assert!(exposed.split(", ").any(|e| e == name), "{name} not exposed: {exposed}");
    }
    assert!(reply.header("vary").unwrap_or_default().contains("Origin"), "{reply:?}");
}

backend_tests!(
    the_cookie_pair_authenticates,
    one_cookie_is_a_401_in_each_dialect,
    cookies_are_off_by_default,
    the_authorization_header_wins,
    cookie_writes_need_a_matching_csrf_token,
    csrf_failures_are_403_in_each_dialect,
    cookie_writes_from_another_origin_are_refused,
    header_authenticated_writes_need_no_csrf_token,
    the_csrf_api_sets_the_cookie_and_its_token_works,
    preflights_answer_each_routes_methods,
    cors_headers_reach_pages_on_errors_too,
    unlisted_origins_get_no_cors_headers,
    any_origin_is_without_credentials,
    without_origins_there_is_no_cors,
);

async fn the_cookie_pair_authenticates(backend: Backend) {
    let app = spawn_browser(backend, browser()).await;
    let alice = token("alice", &[]);
    app.json(Method::PATCH, ALICE, &alice, MERGE, &json!({"pref-lang": "fr"})).await;
    let reply = call(&app, Method::GET, ALICE, &[("cookie", &jwt_cookies(&alice))], None).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json(), json!({"pref-lang": "fr"}));
    // With other cookies around, and the `USE-JWT-COOKIE` header the frontend library sends.
    let cookie = format!("sessionid=x; {}; csrftoken={SECRET}", jwt_cookies(&alice));
    let reply =
        call(&app, Method::GET, ALICE, &[("cookie", &cookie), ("use-jwt-cookie", "true")], None).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    // Cookies are verified as a header token is: a forged signature is a 401.
    let forged = format!("{}AAAA", alice);
    let reply = call(&app, Method::GET, ALICE, &[("cookie", &jwt_cookies(&forged))], None).await;
    assert_edx(&reply, StatusCode::UNAUTHORIZED, "Authentication failed");
    let expired = sign(&json!({"sub": "sub-alice", "preferred_username": "alice", "exp": now() - 3600}));
    let reply = call(&app, Method::GET, ALICE, &[("cookie", &jwt_cookies(&expired))], None).await;
    assert_edx(&reply, StatusCode::UNAUTHORIZED, "Authentication failed");
}

async fn one_cookie_is_a_401_in_each_dialect(backend: Backend) {
    let app = spawn_browser(backend, browser()).await;
    let alice = token("alice", &[]);
    let (header_payload, signature) = alice.rsplit_once('.').unwrap();
    for cookie in [
        format!("edx-jwt-cookie-header-payload={header_payload}"),
        format!("edx-jwt-cookie-signature={signature}"),
        format!("edx-jwt-cookie-header-payload={header_payload}; edx-jwt-cookie-signature="),
    ] {
        let headers = [("cookie", cookie.as_str())];
        let reply = call(&app, Method::GET, ALICE, &headers, None).await;
        assert_edx(&reply, StatusCode::UNAUTHORIZED, "only one of the cookies");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        let reply = call(&app, Method::GET, "/api/v2/user/me/preference/", &headers, None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
        assert_eq!(reply.json()["errors"][0]["code"], "unauthorized", "{reply:?}");
        let reply = call(&app, Method::GET, "/preferences/appA", &headers, None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
        assert_eq!(reply.header("content-type"), Some("application/vnd.api+json"));
        assert_eq!(reply.json()["errors"][0]["code"], "unauthorized", "{reply:?}");
    }
    // Neither cookie: as any request without a token.
    let reply = call(&app, Method::GET, ALICE, &[("cookie", "csrftoken=x")], None).await;
    assert_edx(&reply, StatusCode::UNAUTHORIZED, "no Authorization header");
}

async fn cookies_are_off_by_default(backend: Backend) {
    let app = spawn(backend).await;
    let alice = token("alice", &[]);
    let reply = call(&app, Method::GET, ALICE, &[("cookie", &jwt_cookies(&alice))], None).await;
    assert_edx(&reply, StatusCode::UNAUTHORIZED, "no Authorization header");
}

async fn the_authorization_header_wins(backend: Backend) {
    let app = spawn_browser(backend, browser()).await;
    let alice = token("alice", &[]);
    let bob = token("bob", &[]);
    // bob's header, alice's cookies: the request is bob's, and alice's preferences are hidden.
    let headers = [("cookie", jwt_cookies(&alice)), ("authorization", format!("Bearer {bob}"))];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let reply = call(&app, Method::GET, ALICE, &headers, None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
    // A bad header is a 401 whatever the cookies.
    let headers = [("cookie", jwt_cookies(&alice)), ("authorization", "Bearer nope".to_owned())];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let reply = call(&app, Method::GET, ALICE, &headers, None).await;
    assert_edx(&reply, StatusCode::UNAUTHORIZED, "Authentication failed");
}

async fn cookie_writes_need_a_matching_csrf_token(backend: Backend) {
    let app = spawn_browser(backend, browser()).await;
    let alice = token("alice", &[]);
    let cookie = format!("{}; csrftoken={SECRET}", jwt_cookies(&alice));
    let reply = cookie_patch(&app, &cookie, &[]).await;
    assert_edx(&reply, StatusCode::FORBIDDEN, "CSRF token missing");
    assert_eq!(app.get(ALICE, &alice).await.json(), json!({}), "nothing written");

    // The cookie's value itself, then Django-masked forms of it.
    let reply = cookie_patch(&app, &cookie, &[("x-csrftoken", SECRET)]).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    for mask in ["a".repeat(32), "9".repeat(32), "Zq3xT0aa9LmPw8eRtYuI2oPaSdFgHjKl".to_owned()] {
        let masked = django_mask(SECRET, &mask);
        let reply = cookie_patch(&app, &cookie, &[("x-csrftoken", &masked)]).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{mask}: {reply:?}");
    }
    // A cookie that is itself masked (older Django), against the raw secret and another mask.
    let masked_cookie =
        format!("{}; csrftoken={}", jwt_cookies(&alice), django_mask(SECRET, &"k".repeat(32)));
    let reply = cookie_patch(&app, &masked_cookie, &[("x-csrftoken", SECRET)]).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    let reply =
        cookie_patch(&app, &masked_cookie, &[("x-csrftoken", &django_mask(SECRET, &"Q".repeat(32)))]).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    // The same secret among other csrftoken cookies (prefs' own and the LMS's domain-wide one).
    let two = format!("csrftoken={}; {}; csrftoken={SECRET}", "z".repeat(32), jwt_cookies(&alice));
    let reply = cookie_patch(&app, &two, &[("x-csrftoken", SECRET)]).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");

    // Wrong tokens.
    let other = "BbCdEfGhIjKlMnOpQrStUvWxYz012345";
    let wrong = [
        (other.to_owned(), "incorrect"),
        (django_mask(other, &"a".repeat(32)), "incorrect"),
        (format!("{SECRET}x"), "incorrect length"),
        (SECRET.replace('A', "-"), "incorrect length or characters"),
        (String::new(), "incorrect length"),
    ];
    for (sent, says) in wrong {
        let reply = cookie_patch(&app, &cookie, &[("x-csrftoken", &sent)]).await;
        assert_edx(&reply, StatusCode::FORBIDDEN, says);
    }
    // No csrftoken cookie, or a malformed one.
    for cookie in [jwt_cookies(&alice), format!("{}; csrftoken=short", jwt_cookies(&alice))] {
        let reply = cookie_patch(&app, &cookie, &[("x-csrftoken", SECRET)]).await;
        assert_edx(&reply, StatusCode::FORBIDDEN, "CSRF cookie not set");
    }
    // Every write method is checked; reads are not.
    let headers = [("cookie", cookie.as_str())];
    let one = format!("{ALICE}/pref-lang");
    let reply = call(&app, Method::PUT, &one, &headers, Some(("application/json", json!("en")))).await;
    assert_edx(&reply, StatusCode::FORBIDDEN, "CSRF");
    let reply = call(&app, Method::DELETE, &one, &headers, None).await;
    assert_edx(&reply, StatusCode::FORBIDDEN, "CSRF");
    let reply = call(&app, Method::GET, &one, &headers, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let reply = call(&app, Method::HEAD, &one, &headers, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    // A bad token still comes first: 401, not 403.
    let forged = format!("{}; csrftoken={SECRET}", jwt_cookies(&format!("{alice}x")));
    let reply = cookie_patch(&app, &forged, &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
}

async fn csrf_failures_are_403_in_each_dialect(backend: Backend) {
    let app = spawn_browser(backend, browser()).await;
    let claims = json!({"sub": "sub-alice", "preferred_username": "alice", "exp": now() + 600,
        "scope": "user:preferences:read user:preferences:write", "client_id": "appA"});
    let alice = sign(&claims);
    let cookie = format!("{}; csrftoken={SECRET}", jwt_cookies(&alice));
    let record = Some(("application/json", json!({"key": "k", "value": 1})));
    let reply =
        call(&app, Method::POST, "/api/v2/user/me/preference/", &[("cookie", &cookie)], record.clone()).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    assert_eq!(reply.json()["errors"][0]["code"], "forbidden", "{reply:?}");
    let with_token = [("cookie", cookie.as_str()), ("x-csrftoken", SECRET)];
    let reply = call(&app, Method::POST, "/api/v2/user/me/preference/", &with_token, record).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");

    let body = Some(("application/json", json!({"theme": "dark"})));
    let reply = call(&app, Method::PUT, "/preferences/appA", &[("cookie", &cookie)], body.clone()).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/vnd.api+json"));
    let error = &reply.json()["errors"][0];
    assert_eq!((&error["status"], &error["code"]), (&json!("403"), &json!("forbidden")), "{error}");
    assert!(error["detail"].as_str().unwrap().starts_with("CSRF Failed"), "{error}");
    let reply = call(&app, Method::PUT, "/preferences/appA", &with_token, body).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
}

async fn cookie_writes_from_another_origin_are_refused(backend: Backend) {
    let app = spawn_browser(backend, browser()).await;
    let alice = token("alice", &[]);
    let cookie = format!("{}; csrftoken={SECRET}", jwt_cookies(&alice));
    for origin in [EVIL, "null", "https://apps.example.com.evil.example", "http://apps.example.com"] {
        let reply = cookie_patch(&app, &cookie, &[("x-csrftoken", SECRET), ("origin", origin)]).await;
        assert_edx(&reply, StatusCode::FORBIDDEN, "Origin checking failed");
    }
    // A listed origin, prefs' own, and none at all (not a browser's cross-origin request).
    let own = app.base.clone();
    for origin in [Some(PAGE), Some(own.as_str()), None] {
        let mut headers = vec![("x-csrftoken", SECRET)];
        headers.extend(origin.map(|o| ("origin", o)));
        let reply = cookie_patch(&app, &cookie, &headers).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{origin:?}: {reply:?}");
    }
    // Reads are not checked.
    let reply = call(&app, Method::GET, ALICE, &[("cookie", &cookie), ("origin", EVIL)], None).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
}

async fn header_authenticated_writes_need_no_csrf_token(backend: Backend) {
    let app = spawn_browser(backend, browser()).await;
    let alice = token("alice", &[]);
    let authorization = format!("JWT {alice}");
    let headers = [("authorization", authorization.as_str()), ("origin", EVIL), ("cookie", "csrftoken=nope")];
    let reply = call(&app, Method::PATCH, ALICE, &headers, Some((MERGE, json!({"a": "b"})))).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
}

/// The `csrftoken` value of a `Set-Cookie` header, and the header.
fn set_cookie(reply: &Reply) -> (String, String) {
    let header = reply.header("set-cookie").expect("Set-Cookie").to_owned();
    let value = header.split(';').next().unwrap().strip_prefix("csrftoken=").expect("csrftoken").to_owned();
    (value, header)
}

async fn the_csrf_api_sets_the_cookie_and_its_token_works(backend: Backend) {
    let app = spawn_browser(backend, browser()).await;
    let alice = token("alice", &[]);
    let reply = call(&app, Method::GET, "/csrf/api/v1/token", &[("origin", PAGE)], None).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_cors_for(&reply, PAGE);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let (secret, header) = set_cookie(&reply);
    assert_eq!(secret.len(), 32, "{header}");
    assert!(secret.bytes().all(|c| c.is_ascii_alphanumeric()), "{header}");
    assert_eq!(header, format!("csrftoken={secret}; Max-Age=31449600; Path=/; SameSite=None; Secure"));
    let token = reply.json()["csrfToken"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);
    assert_ne!(&token[32..], secret, "masked");

    let cookie = format!("{}; csrftoken={secret}", jwt_cookies(&alice));
    let reply = cookie_patch(&app, &cookie, &[("x-csrftoken", &token), ("origin", PAGE)]).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    assert_eq!(app.get(ALICE, &alice).await.json(), json!({"pref-lang": "fr"}));

    // Asked again with the cookie: the same secret, another mask.
    let reply = call(&app, Method::GET, "/csrf/api/v1/token", &[("cookie", &cookie)], None).await;
    assert_eq!(set_cookie(&reply).0, secret);
    let again = reply.json()["csrfToken"].as_str().unwrap().to_owned();
    assert_ne!(again, token);
    let reply = cookie_patch(&app, &cookie, &[("x-csrftoken", &again)]).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    // A masked cookie (the LMS's, from an older Django) keeps its secret.
    let masked = django_mask(SECRET, &"m".repeat(32));
    let reply =
        call(&app, Method::GET, "/csrf/api/v1/token", &[("cookie", &format!("csrftoken={masked}"))], None)
            .await;
    assert_eq!(set_cookie(&reply).0, SECRET);
    // A malformed one is replaced.
    let reply = call(&app, Method::GET, "/csrf/api/v1/token", &[("cookie", "csrftoken=bad")], None).await;
    assert_ne!(set_cookie(&reply).0, "bad");
    assert_eq!(set_cookie(&reply).0.len(), 32);

    // Same-site deployments over plain HTTP choose their cookie.
    let lax = BrowserConfig {
        csrf_cookie_same_site: prefs_http::SameSite::Lax,
        csrf_cookie_secure: false,
        ..browser()
    };
    let app = spawn_browser(backend, lax).await;
    let reply = call(&app, Method::GET, "/csrf/api/v1/token", &[], None).await;
    let (secret, header) = set_cookie(&reply);
    assert_eq!(header, format!("csrftoken={secret}; Max-Age=31449600; Path=/; SameSite=Lax"));
    // Other methods: 405 with Allow.
    let reply = call(&app, Method::POST, "/csrf/api/v1/token", &[], None).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{reply:?}");
    assert_eq!(reply.header("allow"), Some("GET, HEAD, OPTIONS"));
}

/// A path of the route pattern `pattern`, every `{segment}` filled in.
fn concrete(pattern: &str) -> String {
    let segment = |s: &str| match s {
        "{version}" => "2025-1".to_owned(),
        s if s.starts_with('{') => "p1".to_owned(),
        s => s.to_owned(),
    };
    pattern.split('/').map(segment).collect::<Vec<_>>().join("/")
}

async fn preflights_answer_each_routes_methods(backend: Backend) {
    let app = spawn_browser(backend, browser()).await;
    let requested = "content-type,use-jwt-cookie,x-csrftoken,if-match";
    assert!(RESOURCES.iter().any(|(path, _)| *path == "/csrf/api/v1/token"));
    for (pattern, allow) in RESOURCES {
        let path = concrete(pattern);
        let method = allow.split(", ").find(|m| !matches!(*m, "GET" | "HEAD" | "OPTIONS")).unwrap_or("GET");
        let headers = [
            ("origin", PAGE),
            ("access-control-request-method", method),
            ("access-control-request-headers", requested),
        ];
        let reply = call(&app, Method::OPTIONS, &path, &headers, None).await;
        assert!(reply.status.is_success(), "{path}: {reply:?}");
        assert_cors_for(&reply, PAGE);
        assert_eq!(reply.header("access-control-allow-methods"), Some(*allow), "{path}");
        let allowed = reply.header("access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
        for name in [
            "authorization",
            "content-type",
            "if-match",
            "if-none-match",
            "use-jwt-cookie",
            "x-csrftoken",
            "request-id",
        ] {
            assert!(allowed.split(", ").any(|a| a == name), "{path}: {name} not in {allowed}");
        }
        assert_eq!(reply.header("access-control-max-age"), Some("7200"), "{path}");
        // A plain OPTIONS still answers Allow, and no preflight headers.
        let reply = call(&app, Method::OPTIONS, &path, &[("origin", PAGE)], None).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{path}: {reply:?}");
        assert_eq!(reply.header("allow"), Some(*allow), "{path}");
        assert_eq!(reply.header("access-control-allow-methods"), None, "{path}");
    }
}

async fn cors_headers_reach_pages_on_errors_too(backend: Backend) {
    let app = spawn_browser(backend, browser()).await;
    let alice = token("alice", &[]);
    let authorization = format!("Bearer {alice}");
    // A 400 with field_errors.
    let headers = [("origin", PAGE), ("authorization", authorization.as_str())];
    let reply =
        call(&app, Method::PATCH, ALICE, &headers, Some((MERGE, json!({"time_zone": "Mars/Base"})))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert!(reply.json()["field_errors"]["time_zone"].is_object(), "{reply:?}");
    assert_cors_for(&reply, PAGE);
    // A 401, a 403 (CSRF), a 404 off every route, a 405; and a 200 with its ETag.
    let reply = call(&app, Method::GET, ALICE, &[("origin", PAGE)], None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert_cors_for(&reply, PAGE);
    let cookie = jwt_cookies(&alice);
    let reply = cookie_patch(&app, &cookie, &[("origin", PAGE)]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    assert_cors_for(&reply, PAGE);
    let reply = call(&app, Method::GET, "/nope", &[("origin", PAGE)], None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
    assert_cors_for(&reply, PAGE);
    let reply = call(&app, Method::POST, ALICE, &[("origin", PAGE)], None).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{reply:?}");
    assert_cors_for(&reply, PAGE);
    let reply = call(&app, Method::GET, ALICE, &headers, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_cors_for(&reply, PAGE);
    assert!(reply.header("etag").is_some());
    // The Open edX dialect still varies on Accept.
    assert!(reply.header("vary").unwrap().contains("Accept"), "{reply:?}");
}

async fn unlisted_origins_get_no_cors_headers(backend: Backend) {
    let app = spawn_browser(backend, browser()).await;
    let alice = token("alice", &[]);
    let authorization = format!("Bearer {alice}");
    for origin in [Some(EVIL), Some("null"), None] {
        let mut headers = vec![("authorization", authorization.as_str())];
        headers.extend(origin.map(|o| ("origin", o)));
        let reply = call(&app, Method::GET, ALICE, &headers, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{origin:?}: {reply:?}");
        assert_eq!(cors_headers(&reply), Vec::<String>::new(), "{origin:?}");
        let reply = call(&app, Method::GET, "/nope", &headers, None).await;
        assert_eq!(cors_headers(&reply), Vec::<String>::new(), "{origin:?}");
    }
    let preflight = [("origin", EVIL), ("access-control-request-method", "PATCH")];
    let reply = call(&app, Method::OPTIONS, ALICE, &preflight, None).await;
    assert_eq!(cors_headers(&reply), Vec::<String>::new(), "{reply:?}");
}

async fn any_origin_is_without_credentials(backend: Backend) {
    let config = BrowserConfig { cors_origins: vec!["*".into()], ..BrowserConfig::default() };
    let app = spawn_browser(backend, config).await;
    let alice = token("alice", &[]);
    let authorization = format!("Bearer {alice}");
    let reply =
        call(&app, Method::GET, ALICE, &[("origin", EVIL), ("authorization", &authorization)], None).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    assert_eq!(reply.header("access-control-allow-credentials"), None);
    assert!(reply.header("access-control-expose-headers").unwrap().contains("etag"), "{reply:?}");
    let preflight = [("origin", EVIL), ("access-control-request-method", "PATCH")];
    let reply = call(&app, Method::OPTIONS, ALICE, &preflight, None).await;
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    assert_eq!(reply.header("access-control-allow-credentials"), None);
    assert_eq!(reply.header("access-control-allow-methods"), Some("GET, HEAD, PATCH, OPTIONS"));
}

async fn without_origins_there_is_no_cors(backend: Backend) {
    let app = spawn(backend).await;
    let preflight = [("origin", PAGE), ("access-control-request-method", "PATCH")];
    let reply = call(&app, Method::OPTIONS, ALICE, &preflight, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    assert_eq!(reply.header("allow"), Some("GET, HEAD, PATCH, OPTIONS"));
    assert_eq!(cors_headers(&reply), Vec::<String>::new());
    let reply = call(&app, Method::GET, ALICE, &[("origin", PAGE)], None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(cors_headers(&reply), Vec::<String>::new());
    assert_eq!(reply.header("vary"), Some("Accept"), "{reply:?}");
}
