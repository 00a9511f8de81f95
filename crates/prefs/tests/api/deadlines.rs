//! Hostile traffic (docs/contract.md §4.3, §4.6): access is decided before a body is read, a body
//! must arrive within the body deadline, and a client that does not read its answer is dropped
//! after the send deadline. Raw sockets, since well-behaved clients do none of this.

use std::time::{Duration, Instant};

use prefs_domain::Limits;
use prefs_http::deadlines::Deadlines;
use prefs_http::{JwtConfig, Traffic};
use prefs_storage::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend_tests;
use crate::helpers::{SECRET, TestApp, now, sign, spawn_all, spawn_traffic, token};

const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";
/// What the head of each partial body says it holds: far more than is sent.
const DECLARED: usize = 2_000_000;
/// How long the tests wait for an answer the server owes.
const PATIENCE: Duration = Duration::from_secs(5);

backend_tests!(
    refused_requests_are_answered_before_their_body,
    a_late_body_is_408_in_every_dialect,
    a_body_on_time_is_taken,
    an_answer_nobody_reads_is_dropped,
);

/// A token for `user` of client `appA` that may read and write its namespace.
fn writer(user: &str) -> String {
    sign(&json!({"sub": format!("sub-{user}"), "preferred_username": user, "client_id": "appA",
        "scope": "user:preferences:read user:preferences:write", "exp": now() + 600}))
}

/// A server with these deadlines and the default limits.
async fn spawn_deadlines(backend: Backend, body: Duration, send: Duration) -> TestApp {
    spawn_traffic(backend, Traffic { deadlines: Deadlines { body, send }, ..Default::default() }).await
}

/// An answer read off a raw socket, and the socket.
struct Raw {
    status: u16,
    head: String,
    body: Value,
    /// From the end of what the client sent to the end of the answer.
    elapsed: Duration,
    stream: TcpStream,
}

/// How a body is framed on the wire.
#[derive(Debug, Clone, Copy)]
enum Framing {
    /// `Content-Length:` [`DECLARED`].
    Length,
    /// `Transfer-Encoding: chunked`, the last chunk never sent.
    Chunked,
}

/// Sends the head of a request with a body, then `sent` and no more of the body, and reads the
/// answer while the rest is still awaited.
async fn partial(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    content_type: &str,
    sent: &[u8],
) -> Raw {
    partial_framed(app, method, path, token, content_type, sent, Framing::Length).await
}

/// [`partial`], framed as `framing` says.
async fn partial_framed(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    content_type: &str,
    sent: &[u8],
    framing: Framing,
) -> Raw {
    let address = app.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let framing_header = match framing {
        Framing::Length => format!("Content-Length: {DECLARED}"),
        Framing::Chunked => "Transfer-Encoding: chunked".to_owned(),
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {content_type}\r\n{framing_header}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    match framing {
        Framing::Length => stream.write_all(sent).await.unwrap(),
        Framing::Chunked => {
            let chunk = [format!("{:x}\r\n", sent.len()).as_bytes(), sent, b"\r\n"].concat();
            stream.write_all(&chunk).await.unwrap();
        }
    }
    let started = Instant::now();
    let (status, head, body) =
        tokio::time::timeout(PATIENCE, read_answer(&mut stream)).await.unwrap_or_else(|_| {
            panic!("{method} {path}: no answer within {PATIENCE:?} while the body is awaited")
        });
    Raw { status, head, body, elapsed: started.elapsed(), stream }
}

/// Reads one answer with a `Content-Length`: its status, its head and its body as JSON.
async fn read_answer(stream: &mut TcpStream) -> (u16, String, Value) {
    let mut received = Vec::new();
    let mut buffer = [0; 4096];
    let end_of_head = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut buffer).await.expect("the connection stays up until the answer");
        assert!(read > 0, "the connection closed before an answer: {:?}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&received[..end_of_head]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while received.len() < end_of_head + length {
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(read > 0, "the connection closed in the answer's body");
        received.extend_from_slice(&buffer[..read]);
    }
    let body = &received[end_of_head..end_of_head + length];
    (status, head, if body.is_empty() { Value::Null } else { serde_json::from_slice(body).unwrap() })
}

/// Whether the server closes the connection within [`PATIENCE`] (end of stream, or a reset).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buffer = [0; 4096];
    let drained = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(PATIENCE, drained).await.is_ok()
}

/// A start of a JSON body, cut off.
fn cut_body() -> Vec<u8> {
    format!("{{\"key\": \"{}", "x".repeat(1000)).into_bytes()
}

/// A refused request is answered at once, its body unread: a token without the namespace's
/// scopes (403), an ordinary user writing another's preferences or records (404), staff writing
/// another's (403, or 404 for a record that does not exist), whatever the body and however much of
/// it is still to come; then the connection is closed.
async fn refused_requests_are_answered_before_their_body(backend: Backend) {
    // A body deadline far beyond the test's patience: only an answer before the body counts.
    let app = spawn_deadlines(backend, Duration::from_secs(60), Deadlines::default().send).await;
    let (alice, bob, staff) = (token("alice", &[]), token("bob", &[]), token("carol", &["staff"]));
    let created = app
        .json(Method::POST, "/api/v2/user/me/preference/", &bob, JSON, &json!({"key": "k", "value": 1}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let (bob_id, record) = (created.json()["user_id"].clone(), created.json()["id"].clone());
    let body = cut_body();
    let refused: &[(&str, String, &str, &str, u16)] = &[
        ("PUT", "/preferences/appA".into(), &alice, JSON, 403),
        ("PATCH", "/preferences/appA".into(), &alice, MERGE, 403),
        ("PUT", "/preferences/appA/theme".into(), &alice, JSON, 403),
        ("PUT", "/user/2025-1/preferences/appA".into(), &alice, JSON, 403),
        ("PATCH", "/api/user/v1/preferences/bob".into(), &alice, MERGE, 404),
        ("PUT", "/api/user/v1/preferences/bob/theme".into(), &alice, JSON, 404),
        ("PATCH", "/api/user/v1/preferences/bob".into(), &staff, MERGE, 403),
        ("POST", format!("/api/v2/user/{bob_id}/preference/"), &alice, JSON, 404),
        ("POST", "/api/v2/user/999999/preference/".into(), &alice, JSON, 404),
        ("PUT", format!("/api/v2/user/{bob_id}/preference/{record}/"), &alice, JSON, 404),
        ("PATCH", format!("/api/v2/user/{bob_id}/preference/{record}/"), &alice, JSON, 404),
        ("POST", format!("/api/v2/user/{bob_id}/preference/"), &staff, JSON, 403),
        ("PUT", format!("/api/v2/user/{bob_id}/preference/{record}/"), &staff, JSON, 403),
        ("PUT", format!("/api/v2/user/{bob_id}/preference/999999/"), &staff, JSON, 404),
    ];
    for (method, path, token, content_type, status) in refused {
        let answer = partial(&app, method, path, token, content_type, &body).await;
        assert_eq!(answer.status, *status, "{method} {path}: {}", answer.head);
        assert!(answer.elapsed < Duration::from_secs(2), "{method} {path}: {:?}", answer.elapsed);
    }
    // The connection is closed, the rest of the body unread, however it is framed.
    for framing in [Framing::Length, Framing::Chunked] {
        let mut answer = partial_framed(&app, "PUT", "/preferences/appA", &alice, JSON, &body, framing).await;
        assert_eq!(answer.status, 403, "{}", answer.head);
        assert!(answer.head.contains("connection: close"), "{}", answer.head);
        assert!(closed(&mut answer.stream).await, "{framing:?}: the connection stays open");
    }
    // Nothing was written meanwhile.
    let records = app.get(&format!("/api/v2/user/{bob_id}/preference/"), &staff).await;
    assert_eq!(records.json()["count"], 1, "{records:?}");
}

/// A body that does not arrive whole within the deadline is 408 in the dialect's format, with
/// `Connection: close`, and the connection is closed; framed by length or chunked.
async fn a_late_body_is_408_in_every_dialect(backend: Backend) {
    let deadline = Duration::from_secs(1);
    let app = spawn_deadlines(backend, deadline, Deadlines::default().send).await;
    let (alice, body) = (writer("alice"), cut_body());
    let late = |answer: &Raw| {
        assert_eq!(answer.status, 408, "{}", answer.head);
        assert!(answer.head.contains("connection: close"), "{}", answer.head);
        assert!(
            answer.elapsed >= deadline - Duration::from_millis(100) && answer.elapsed < deadline * 3,
            "{:?}",
            answer.elapsed
        );
    };
    for framing in [Framing::Length, Framing::Chunked] {
        for (path, content_type) in [("/preferences/appA", JSON), ("/preferences/appA/theme", JSON)] {
            let mut answer = partial_framed(&app, "PUT", path, &alice, content_type, &body, framing).await;
            late(&answer);
            let error = &answer.body["errors"][0];
            assert_eq!((&error["status"], &error["code"]), (&json!("408"), &json!("request-timeout")));
            assert!(answer.head.contains("content-type: application/vnd.api+json"), "{}", answer.head);
            assert!(closed(&mut answer.stream).await, "PUT {path} ({framing:?}): the connection stays open");
        }
    }
    let mut answer = partial(&app, "PATCH", "/api/user/v1/preferences/alice", &alice, MERGE, &body).await;
    late(&answer);
    assert!(answer.body["developer_message"].as_str().unwrap().contains("did not arrive"), "{}", answer.body);
    assert!(answer.body["user_message"].is_string(), "{}", answer.body);
    assert!(closed(&mut answer.stream).await);
    let mut answer = partial(&app, "PUT", "/api/user/v1/preferences/alice/theme", &alice, JSON, &body).await;
    late(&answer);
    assert!(answer.body["developer_message"].is_string(), "{}", answer.body);
    assert!(closed(&mut answer.stream).await);
    for (method, path) in [("POST", "/api/v2/user/me/preference/"), ("PUT", "/api/v2/user/me/preference/1/")]
    {
        let mut answer = partial(&app, method, path, &alice, JSON, &body).await;
        late(&answer);
        assert_eq!(answer.body["errors"][0]["code"], "request-timeout", "{}", answer.body);
        assert!(closed(&mut answer.stream).await);
    }
    let multipart = "multipart/form-data; boundary=b";
    let answer = partial(&app, "POST", "/api/v2/user/me/preference/", &alice, multipart, &body).await;
    late(&answer);
    // Nothing was written, and the server serves on.
    let namespace = app.get("/preferences/appA", &alice).await;
    assert_eq!((namespace.status, namespace.json()), (StatusCode::OK, json!({})));
}

/// A body that arrives whole within the deadline, even slowly, is taken.
async fn a_body_on_time_is_taken(backend: Backend) {
    let app = spawn_deadlines(backend, Duration::from_secs(2), Deadlines::default().send).await;
    let alice = writer("alice");
    let body = br#"{"theme": "dark", "size": 3}"#;
    let address = app.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "PUT /preferences/appA HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {alice}\r\n\
         Content-Type: {JSON}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for half in body.chunks(body.len() / 2 + 1) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stream.write_all(half).await.unwrap();
    }
    let (status, head, _) = tokio::time::timeout(PATIENCE, read_answer(&mut stream)).await.unwrap();
    assert_eq!(status, 204, "{head}");
    let namespace = app.get("/preferences/appA", &alice).await;
    assert_eq!(namespace.json(), json!({"size": 3, "theme": "dark"}));
    let reply = app
        .json(Method::PATCH, "/api/user/v1/preferences/alice", &alice, MERGE, &json!({"lang": "fr"}))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
}

/// A client that asks for a large answer and reads none of it is dropped after the send deadline:
/// it never gets the whole answer, and the server serves others meanwhile and after.
async fn an_answer_nobody_reads_is_dropped(backend: Backend) {
    const MIB: usize = 1024 * 1024;
    let values = 8;
    let limits = Limits {
        max_namespace_bytes: 64 * MIB,
        max_body_bytes: 2 * MIB,
        max_value_bytes: MIB,
        ..Limits::default()
    };
    let deadlines = Deadlines { send: Duration::from_secs(1), ..Deadlines::default() };
    let traffic = Traffic { deadlines, ..Default::default() };
    let app = spawn_all(backend, limits, JwtConfig::with_secret(SECRET), Default::default(), traffic).await;
    let alice = writer("alice");
    for i in 0..values {
        let value = json!(format!("{i}").repeat(MIB - 16));
        let reply = app.json(Method::PUT, &format!("/preferences/appA/k{i}"), &alice, JSON, &value).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    }
    let whole = values * (MIB - 16);

    // A client with a small receive buffer that reads nothing.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = app.base.trim_start_matches("http://");
    let mut stream = socket.connect(address.parse().unwrap()).await.unwrap();
    let request =
        format!("GET /preferences/appA HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {alice}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let healthy = app.send(Method::GET, "/healthz", None, None, None).await;
    assert_eq!(healthy.status, StatusCode::OK);

    // By now the server has given up: what the client can still read ends before the answer does.
    let mut received = 0;
    let mut buffer = vec![0; 64 * 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => received += read,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_all).await.expect("the connection ends");
    assert!(
        received < whole,
        "the whole answer came through ({received} bytes) to a client that did not read"
    );
    let namespace = app.get("/preferences/appA/k0", &alice).await;
    assert_eq!(namespace.status, StatusCode::OK);
}
