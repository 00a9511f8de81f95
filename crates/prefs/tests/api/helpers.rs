//! The test application and a client for it.

use std::time::{SystemTime, UNIX_EPOCH};

use prefs::{Application, Settings};
use prefs_domain::Limits;
use prefs_http::{BrowserConfig, JwtConfig, Traffic};
use prefs_storage::Backend;
use prefs_storage::testing::Scratch;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

/// The HS256 secret of every test server.
pub const SECRET: &[u8] = b"test-secret-that-is-at-least-32-bytes-long";

/// A running prefs server and the database it owns.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    client: reqwest::Client,
    _database: Scratch,
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: header::HeaderMap,
    pub text: String,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Signs arbitrary claims with the test secret.
pub fn sign(claims: &Value) -> String {
    sign_with(claims, SECRET)
}

/// Signs arbitrary claims with `secret` (HS256).
pub fn sign_with(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// A valid token for `username` (also its subject) with `roles`.
pub fn token(username: &str, roles: &[&str]) -> String {
    sign(
        &json!({"sub": format!("sub-{username}"), "preferred_username": username, "roles": roles, "exp": now() + 600}),
    )
}

/// Starts a server on a fresh database of `backend` with the default limits.
pub async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, Limits::default()).await
}

/// Starts a server on a fresh database of `backend`.
pub async fn spawn_with(backend: Backend, limits: Limits) -> TestApp {
    spawn_custom(backend, limits, JwtConfig::with_secret(SECRET)).await
}

/// Starts a server on a fresh database of `backend` verifying tokens as `jwt` says.
pub async fn spawn_custom(backend: Backend, limits: Limits, jwt: JwtConfig) -> TestApp {
    spawn_settings(backend, limits, jwt, BrowserConfig::default()).await
}

/// Starts a server on a fresh database of `backend` offering browsers what `browser` says.
pub async fn spawn_browser(backend: Backend, browser: BrowserConfig) -> TestApp {
    spawn_settings(backend, Limits::default(), JwtConfig::with_secret(SECRET), browser).await
}

/// Starts a server on a fresh database of `backend` with all of its settings.
pub async fn spawn_settings(
    backend: Backend,
    limits: Limits,
    jwt: JwtConfig,
    browser: BrowserConfig,
) -> TestApp {
    spawn_all(backend, limits, jwt, browser, Traffic::default()).await
}

/// Starts a server on a fresh database of `backend` meeting traffic as `traffic` says.
pub async fn spawn_traffic(backend: Backend, traffic: Traffic) -> TestApp {
    spawn_all(backend, Limits::default(), JwtConfig::with_secret(SECRET), BrowserConfig::default(), traffic)
        .await
}

/// The default traffic settings without the rate limit per address on requests without a valid
/// token: for tests that send many bad tokens from one address on purpose.
pub fn no_address_limit() -> Traffic {
    let rate_limits = prefs_http::rate_limits::RateLimits {
        address: prefs_http::rate_limits::Rate::Off,
        ..Default::default()
    };
    Traffic { rate_limits, ..Traffic::default() }
}

/// Starts a server on a fresh database of `backend` with every setting given.
pub async fn spawn_all(
    backend: Backend,
    limits: Limits,
    jwt: JwtConfig,
    browser: BrowserConfig,
    traffic: Traffic,
) -> TestApp {
    serve(prefs_storage::testing::scratch(backend).await, limits, jwt, browser, traffic).await
}

/// Starts a server on `database`.
async fn serve(
    database: Scratch,
    limits: Limits,
    jwt: JwtConfig,
    browser: BrowserConfig,
    traffic: Traffic,
) -> TestApp {
    let settings = Settings {
        bind: "127.0.0.1:0".into(),
        store: database.config(),
        migrate: true,
        jwt,
        limits,
        workers: Some(2),
        browser,
        traffic,
    };
    let app = Application::build(settings).await.expect("the application builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp { base, client: reqwest::Client::new(), _database: database }
}

impl TestApp {
    /// Another server on this one's database, with `limits` and otherwise the defaults (as prefs
    /// restarted with other limits); this one goes on running.
    pub async fn with_limits(self, limits: Limits) -> TestApp {
        serve(
            self._database,
            limits,
            JwtConfig::with_secret(SECRET),
            BrowserConfig::default(),
            Traffic::default(),
        )
        .await
    }

    /// Sends a request; `body` goes with `content_type` when given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        Reply { status, headers, text }
    }

    /// `GET path` with a token.
    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(Method::GET, path, Some(token), None, None).await
    }

    /// A request with a JSON body of the given content type.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        token: &str,
        content_type: &str,
        body: &Value,
    ) -> Reply {
        self.send(method, path, Some(token), Some(content_type), Some(body.to_string().into_bytes())).await
    }
}

/// Sends `body` with `Transfer-Encoding: chunked` (no Content-Length) over a raw socket and
/// returns the response status.
pub async fn chunked(app: &TestApp, path: &str, token: &str, content_type: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(100) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if stream.write_all(&framed).await.is_err() {
            break; // the server may answer and close before the body ends
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}
