//! Scratch databases for tests (feature `testing`): each [`scratch`] is fresh, empty and isolated,
//! so tests may run in parallel.
//!
//! PostgreSQL scratch databases are created on the server named by `PREFS_TEST_POSTGRES_URL`, an
//! admin URL such as `postgres://postgres@127.0.0.1:55432/postgres` (`tests/postgres.sh start`
//! starts such a server and prints it; its TLS parameters, `sslmode=verify-full&sslrootcert=…`,
//! are honoured). With `PREFS_TEST_POSTGRES_POOLED_URL` as well (a pooler in front of that
//! server, such as `tests/pgbouncer.sh start` prints), the stores use the scratch database through
//! it while the databases are still created and dropped directly; `PREFS_PG_PREPARED_STATEMENTS`
//! sets [`StoreConfig::pg_prepared_statements`] of [`Scratch::config`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use diesel::Connection;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use tempfile::TempDir;

use crate::backend::Backend;
use crate::config::StoreConfig;
use crate::store::DieselStore;

/// The environment variable naming the PostgreSQL server for scratch databases.
pub const POSTGRES_URL_VAR: &str = "PREFS_TEST_POSTGRES_URL";

/// The environment variable naming a pooler in front of that server, through which the stores
/// reach the scratch databases (optional).
pub const POSTGRES_POOLED_URL_VAR: &str = "PREFS_TEST_POSTGRES_POOLED_URL";

/// The environment variable that sets [`StoreConfig::pg_prepared_statements`] of
/// [`Scratch::config`] (`true` or `false`; the default `true`).
pub const PREPARED_STATEMENTS_VAR: &str = "PREFS_PG_PREPARED_STATEMENTS";

/// Whether [`PREPARED_STATEMENTS_VAR`] leaves prepared statements on.
fn prepared_statements() -> bool {
    std::env::var(PREPARED_STATEMENTS_VAR).map_or(true, |v| !matches!(v.trim(), "false" | "0" | "no" | "off"))
}

/// A PostgreSQL connection to `url` (its TLS settings honoured), for administration and for
/// tests' own SQL.
///
/// # Errors
/// When the URL is unusable or the connection cannot be made.
pub async fn pg_connect(url: &str) -> Result<AsyncPgConnection, Box<dyn std::error::Error + Send + Sync>> {
    let connector = crate::postgres::connect::PgConnector::new(url, prepared_statements(), String::new())?;
    Ok(connector.connect().await?)
}

/// `url` with its database name replaced by `name`; the query (TLS parameters, …) is kept. Works
/// on URLs with several hosts too, which the `url` crate cannot parse.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// A fresh, empty database; it lasts as long as this value (a PostgreSQL one is dropped, best
/// effort, with `DROP DATABASE … WITH (FORCE)`).
#[derive(Debug)]
pub struct Scratch {
    /// The database URL, for [`StoreConfig::new`] or `DATABASE_URL`.
    pub url: String,
    backend: Backend,
    keep: Keep,
}

/// What keeps the database alive, and goes with it.
#[derive(Debug)]
enum Keep {
    /// The directory holding the SQLite file, deleted with it.
    Dir { _dir: TempDir },
    /// A PostgreSQL database, dropped best-effort when the scratch is.
    Database { admin_url: String, name: String },
}

/// Creates a fresh, empty database (not migrated) for `backend`: SQLite, a file in a new
/// temporary directory; PostgreSQL, `CREATE DATABASE prefs_test_…` on the server named by
/// [`POSTGRES_URL_VAR`].
///
/// # Panics
/// When the database cannot be created, or for PostgreSQL when [`POSTGRES_URL_VAR`] is not set:
/// tests never silently skip a backend.
pub async fn scratch(backend: Backend) -> Scratch {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::Builder::new()
                .prefix("prefs-test-")
                .tempdir()
                .expect("create a temporary directory");
            let path = dir.path().join("prefs.db");
            let url = path.to_str().expect("temporary paths are UTF-8").to_owned();
            Scratch { url, backend, keep: Keep::Dir { _dir: dir } }
        }
        Backend::Postgres => {
            let admin_url = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
                panic!(
                    "{POSTGRES_URL_VAR} is not set: PostgreSQL tests need a server. \
                     Run `tests/postgres.sh start` and export the URL it prints (or run `make test`)"
                )
            });
            let name = unique_name();
            let mut admin = pg_connect(&admin_url).await.unwrap_or_else(|e| {
                panic!("connect to {POSTGRES_URL_VAR} (is `tests/postgres.sh start` running?): {e}")
            });
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap_or_else(|e| panic!("create scratch database {name}: {e}"));
            let app_url = std::env::var(POSTGRES_POOLED_URL_VAR).unwrap_or_else(|_| admin_url.clone());
            let url = with_database(&app_url, &name);
            Scratch { url, backend, keep: Keep::Database { admin_url, name } }
        }
    }
}

impl Scratch {
    /// The backend of this database.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The default configuration for this database, with [`PREPARED_STATEMENTS_VAR`] applied.
    pub fn config(&self) -> StoreConfig {
        StoreConfig { pg_prepared_statements: prepared_statements(), ..StoreConfig::new(&self.url) }
    }

    /// A store over this database with the default configuration ([`Scratch::config`]), migrated.
    ///
    /// # Panics
    /// When connecting or migrating fails.
    pub async fn store(&self) -> DieselStore {
        let store = DieselStore::connect(&self.config()).await.expect("connect to the scratch database");
        store.migrate().await.expect("migrate the scratch database");
        store
    }

    /// Runs `sql` on this database over a connection of its own, as another program sharing the
    /// database would.
    ///
    /// # Panics
    /// When connecting or running `sql` fails.
    pub async fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                let mut conn =
                    diesel::SqliteConnection::establish(&self.url).expect("open the scratch database");
                diesel::connection::SimpleConnection::batch_execute(&mut conn, sql).expect("run the SQL");
            }
            Backend::Postgres => {
                let mut conn = pg_connect(&self.url).await.expect("connect to the scratch database");
                conn.batch_execute(sql).await.expect("run the SQL");
            }
        }
    }

    /// Closes, from the server's side, every connection to this database (PostgreSQL: as a
    /// restart or an idle timeout would); nothing on SQLite.
    ///
    /// # Panics
    /// When the server cannot be asked.
    pub async fn disconnect_everyone(&self) {
        if let Keep::Database { admin_url, name } = &self.keep {
            let mut admin = pg_connect(admin_url).await.expect("connect to the server");
            let sql = format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            );
            admin.batch_execute(&sql).await.expect("terminate the database's connections");
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Keep::Database { admin_url, name } = &self.keep {
            // Best effort, on a thread of its own: drop may run inside an async runtime.
            let admin_url = admin_url.clone();
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(async {
                    let mut admin = pg_connect(&admin_url).await?;
                    admin.batch_execute(&sql).await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                })
            })
            .join();
            if let Ok(Err(error)) = dropped {
                eprintln!("could not drop scratch database {name}: {error}");
            }
        }
    }
}

/// `prefs_test_<pid>_<counter>_<nanos>`: unique within a run and, by the clock, across runs.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("prefs_test_{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}
