//! The Diesel storage adapter of prefs: [`DieselStore`] implements the domain's
//! [`UserStore`](prefs_domain::UserStore) and [`PreferenceStore`](prefs_domain::PreferenceStore)
//! over SQLite (embedded, a file) or PostgreSQL, chosen by the database URL.
//!
//! ```no_run
//! # async fn demo() -> Result<(), prefs_storage::StorageError> {
//! use prefs_storage::{DieselStore, StoreConfig};
//!
//! let store = DieselStore::connect(&StoreConfig::new("sqlite://prefs.db")).await?;
//! store.migrate().await?;
//! # Ok(()) }
//! ```
//!
//! Both backends share one schema (equivalent migrations in `migrations/sqlite` and
//! `migrations/postgres`, with the same versions), and the queries they both run are written once,
//! with diesel's DSL where it can say them (`queries.rs`); each backend runs them its own way, in
//! a module of its own (`sqlite/`, `postgres/`), and only the facade (`store.rs`) sees both.
//! Values are stored as compact JSON text and timestamps as microseconds since the Unix epoch.
//!
//! SQLite reads run inline, on the calling thread, over a connection of that thread's own (WAL
//! readers never wait for the writer). `modify` runs in one transaction that excludes every other
//! writer of the user. On SQLite one writer thread per process runs them all and commits those
//! queued meanwhile together (one `BEGIN IMMEDIATE … COMMIT`, each in a savepoint of its own;
//! other processes queue on the busy timeout). On PostgreSQL each moves the user's row to its
//! next `version` (an `UPDATE`, which locks it), on a connection of its worker thread's own pool,
//! with its statements pipelined in two round trips (`BEGIN` goes with the lock and the read,
//! `COMMIT` with the changes). Waiting for a connection, the writer or a lock is bounded by
//! [`StoreConfig::pool_wait`], after which operations report
//! [`Error::Unavailable`](prefs_domain::Error::Unavailable).
//!
//! Users are remembered by token subject ([`StoreConfig::user_cache`]); every read and write of a
//! user's data comes back to the facade through one path, which forgets them when it finds the
//! user removed (`users.rs`). The store remembers the namespaces and single preferences its reads
//! found ([`StoreConfig::namespace_cache_bytes`], shared by its threads, `cache.rs`), and uses
//! them only while they are still right: on SQLite while nobody committed to the database since,
//! on PostgreSQL while the user's `version` is the same. PostgreSQL reads under way together on a
//! thread go in one query, which checks the versions and loads only what changed.
//!
//! PostgreSQL connections honour libpq's TLS parameters in the URL (`sslmode`, `sslrootcert`,
//! `sslcert`, `sslkey`; rustls, no OpenSSL), several hosts with `target_session_attrs`, and, with
//! [`StoreConfig::pg_prepared_statements`] off, work behind a transaction-mode pooler.
//!
//! The `testing` feature adds `prefs_storage::testing`: fresh scratch databases for this crate's
//! contract suite (`tests/contract.rs`) and for other crates' tests.

// Shared by both backends, importing neither.
mod backend;
mod cache;
mod config;
mod error;
mod modify;
mod queries;
mod rows;
mod schema;
mod status;
mod user_ids;
mod users;

// One module per backend, never importing each other.
mod postgres;
mod sqlite;

// The facade: picks a backend from the URL.
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use backend::Backend;
pub use config::{DatabaseUrl, SqliteSynchronous, StoreConfig};
pub use error::StorageError;
pub use status::PoolStatus;
pub use store::DieselStore;
