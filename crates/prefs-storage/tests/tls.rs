//! PostgreSQL over TLS, each `sslmode` against a server that takes TLS connections only
//! (`PREFS_PG_TLS=1 tests/postgres.sh start`, which this suite runs: port 55433 unless
//! `PREFS_PG_PORT` says otherwise; a server already running there is used as it is), client
//! certificates (the role `prefs_cert`, which that server lets in by one only), and `prefer` and
//! `require` against a server that offers no TLS: the one `PREFS_TEST_POSTGRES_PLAIN_URL` names,
//! else the plain `tests/postgres.sh start` on its default port 55432, which this suite runs.

use std::process::Command;
use std::sync::OnceLock;

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Nullable, Text};
use diesel_async::RunQueryDsl;
use prefs_domain::PreferenceStore;
use prefs_storage::testing::pg_connect;
use prefs_storage::{DieselStore, StoreConfig};

/// The TLS-only server: its port and the directory of its certificates.
struct Server {
    port: String,
    tls: String,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/postgres.sh");
        let out = Command::new(script)
            .arg("start")
            .env("PREFS_PG_TLS", "1")
            .output()
            .expect("run tests/postgres.sh");
        assert!(out.status.success(), "tests/postgres.sh start: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).expect("UTF-8");
        let url = stdout.lines().last().expect("the URL").to_owned();
        let port = url.split("127.0.0.1:").nth(1).and_then(|rest| rest.split('/').next()).expect("a port");
        let tls =
            url.split("sslrootcert=").nth(1).and_then(|path| path.strip_suffix("/ca.pem")).expect("a CA");
        Server { port: port.to_owned(), tls: tls.to_owned() }
    })
}

/// The plain server's URL without its query: `PREFS_TEST_POSTGRES_PLAIN_URL`, else the one
/// `tests/postgres.sh start` prints (without PREFS_PG_TLS, so on its default port and directory).
fn plain_server() -> &'static str {
    static PLAIN: OnceLock<String> = OnceLock::new();
    PLAIN.get_or_init(|| {
        let url = match std::env::var("PREFS_TEST_POSTGRES_PLAIN_URL") {
            Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
            _ => {
                let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/postgres.sh");
                let out = Command::new(script)
                    .arg("start")
                    .env_remove("PREFS_PG_TLS")
                    .env_remove("PREFS_PG_PORT")
                    .env_remove("PREFS_PG_DIR")
                    .output()
                    .expect("run tests/postgres.sh");
                assert!(
                    out.status.success(),
                    "tests/postgres.sh start (plain): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8(out.stdout).expect("UTF-8").lines().last().expect("the URL").to_owned()
            }
        };
        url.split('?').next().expect("a URL").to_owned()
    })
}

/// A URL to the plain server with the query `query`.
fn plain(query: &str) -> String {
    format!("{}?{}", plain_server(), query.replace("$TLS", &server().tls))
}

/// A URL to the `prefs_cert` database as the role of that name (which the TLS server lets in by a
/// client certificate signed by its CA only), checking the server as `verify-full`, with `query`.
fn as_cert_role(query: &str) -> String {
    let server = server();
    let query = format!("sslmode=verify-full&sslrootcert=$TLS/ca.pem{query}").replace("$TLS", &server.tls);
    format!("postgres://prefs_cert:s3cret@127.0.0.1:{}/prefs_cert?{query}", server.port)
}

/// `error` and its sources, as one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain = format!("{chain}: {cause}");
        source = cause.source();
    }
    chain
}

/// A URL to the server's `postgres` database by `host` with the query `query`.
fn at(host: &str, query: &str) -> String {
    let server = server();
    let query = query.replace("$TLS", &server.tls);
    format!("postgres://postgres:s3cret@{host}:{}/postgres?{query}", server.port)
}

#[derive(QueryableByName)]
struct Ssl {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

/// Whether the connection `url` makes is encrypted, or why it could not be made.
async fn encrypted(url: &str) -> Result<bool, String> {
    let mut conn = pg_connect(url).await.map_err(|e| e.to_string())?;
    let row: Ssl = diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.ssl)
}

fn refused(url: &str, outcome: Result<bool, String>, says: &str) {
    let error = outcome.expect_err(url);
    assert!(error.contains(says), "{url}: {error}");
    assert!(!error.contains("s3cret"), "{error}");
}

#[tokio::test]
async fn disable_is_refused_by_a_tls_only_server_with_the_fix() {
    let url = at("127.0.0.1", "sslmode=disable");
    refused(&url, encrypted(&url).await, "the server requires TLS: add sslmode=require");
}

#[tokio::test]
async fn prefer_the_default_and_require_encrypt() {
    for query in ["", "sslmode=prefer", "sslmode=require", "sslmode=require&sslrootcert=$TLS/ca.pem"] {
        let url = at("127.0.0.1", query);
        assert_eq!(encrypted(&url).await, Ok(true), "{url}");
    }
}

#[tokio::test]
async fn verify_ca_checks_the_chain_but_not_the_name() {
    // A name the certificate does not hold, at the server's address.
    let url = at("db.invalid", "hostaddr=127.0.0.1&sslmode=verify-ca&sslrootcert=$TLS/ca.pem");
    assert_eq!(encrypted(&url).await, Ok(true), "{url}");
    let url = at("127.0.0.1", "sslmode=verify-ca&sslrootcert=$TLS/other-ca.pem");
    refused(&url, encrypted(&url).await, "certificate is not trusted: set sslrootcert");
    // `require` with a root certificate checks the chain too, as libpq does.
    let url = at("127.0.0.1", "sslmode=require&sslrootcert=$TLS/other-ca.pem");
    refused(&url, encrypted(&url).await, "certificate is not trusted: set sslrootcert");
}

#[tokio::test]
async fn verify_full_checks_the_chain_and_the_name() {
    for host in ["127.0.0.1", "localhost"] {
        let url = at(host, "sslmode=verify-full&sslrootcert=$TLS/ca.pem");
        assert_eq!(encrypted(&url).await, Ok(true), "{url}");
    }
    let url = at("db.invalid", "hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert=$TLS/ca.pem");
    refused(&url, encrypted(&url).await, "does not name the host");
    let url = at("127.0.0.1", "sslmode=verify-full&sslrootcert=$TLS/other-ca.pem");
    refused(&url, encrypted(&url).await, "certificate is not trusted: set sslrootcert");
    // The operating system's roots do not hold the test CA.
    let url = at("127.0.0.1", "sslrootcert=system");
    refused(&url, encrypted(&url).await, "certificate is not trusted");
}

#[tokio::test]
async fn the_store_migrates_over_verify_full_and_says_what_to_fix_otherwise() {
    let good = DieselStore::connect(&StoreConfig::new(at(
        "localhost",
        "sslmode=verify-full&sslrootcert=$TLS/ca.pem",
    )))
    .await
    .unwrap();
    good.migrate().await.unwrap();
    good.ping().await.unwrap();
    let plain = DieselStore::connect(&StoreConfig::new(at("127.0.0.1", "sslmode=disable"))).await.unwrap();
    let chain = chain(&plain.migrate().await.unwrap_err());
    assert!(chain.contains("the server requires TLS: add sslmode=require"), "{chain}");
    assert!(!chain.contains("s3cret"), "{chain}");
}

#[derive(QueryableByName)]
struct Client {
    #[diesel(sql_type = Text)]
    role: String,
    #[diesel(sql_type = Nullable<Text>)]
    client_dn: Option<String>,
}

#[tokio::test]
async fn a_client_certificate_from_the_servers_ca_logs_its_role_in() {
    let url = as_cert_role("&sslcert=$TLS/client.crt&sslkey=$TLS/client.key");
    let store = DieselStore::connect(&StoreConfig::new(url.clone())).await.unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    // The server took the certificate as the role's.
    let mut conn = pg_connect(&url).await.unwrap();
    let client: Client = diesel::sql_query(
        "SELECT current_user::text AS role, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!((client.role.as_str(), client.client_dn.as_deref()), ("prefs_cert", Some("/CN=prefs_cert")));
    // Other roles still get in without one.
    let url = at("127.0.0.1", "sslmode=verify-full&sslrootcert=$TLS/ca.pem");
    assert_eq!(encrypted(&url).await, Ok(true), "{url}");
}

#[tokio::test]
async fn without_a_client_certificate_the_role_is_refused_with_the_fix() {
    let url = as_cert_role("");
    refused(&url, encrypted(&url).await, "the server wants a client certificate for this user: add sslcert=");
    let store = DieselStore::connect(&StoreConfig::new(url.clone())).await.unwrap();
    let chain = chain(&store.migrate().await.unwrap_err());
    assert!(chain.contains("the server wants a client certificate"), "{chain}");
    assert!(!chain.contains("s3cret"), "{chain}");
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let url = as_cert_role("&sslcert=$TLS/other-client.crt&sslkey=$TLS/other-client.key");
    refused(&url, encrypted(&url).await, "the server refused the client certificate (sslcert)");
    // Whatever the role: the server checks every certificate it is sent.
    let url = at(
        "127.0.0.1",
        "sslmode=verify-full&sslrootcert=$TLS/ca.pem&sslcert=$TLS/other-client.crt&sslkey=$TLS/other-client.key",
    );
    refused(&url, encrypted(&url).await, "the server refused the client certificate (sslcert)");
}

#[tokio::test]
async fn prefer_the_default_falls_back_to_plain_text_when_the_server_offers_no_tls() {
    for query in ["", "sslmode=prefer", "sslmode=disable"] {
        let url = plain(query);
        assert_eq!(encrypted(&url).await, Ok(false), "{url}");
    }
    let store = DieselStore::connect(&StoreConfig::new(plain("sslmode=prefer"))).await.unwrap();
    store.ping().await.unwrap();
}

#[tokio::test]
async fn require_and_stronger_refuse_a_server_that_offers_no_tls_with_the_fix() {
    for (query, mode) in [
        ("sslmode=require", "require"),
        ("sslmode=verify-ca&sslrootcert=$TLS/ca.pem", "verify-ca"),
        ("sslmode=verify-full&sslrootcert=$TLS/ca.pem", "verify-full"),
    ] {
        let url = plain(query);
        refused(
            &url,
            encrypted(&url).await,
            &format!("the server does not offer TLS, which sslmode={mode} requires"),
        );
    }
    let store = DieselStore::connect(&StoreConfig::new(plain("sslmode=require"))).await.unwrap();
    let chain = chain(&store.migrate().await.unwrap_err());
    assert!(chain.contains("the server does not offer TLS, which sslmode=require requires"), "{chain}");
}
