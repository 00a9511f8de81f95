//! HTTP tests over real TCP: the application built as `prefs serve` builds it, on port 0, against
//! a fresh SQLite file and a fresh PostgreSQL database per test.

mod auth;
mod browser;
mod clients;
mod conditional;
mod deadlines;
mod edx;
mod helpers;
mod namespaces;
mod openapi;
mod ops;
mod providers;
mod proxies;
mod rate_limits;
mod records;

/// Runs each listed `async fn(Backend)` once per backend, as `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(prefs_storage::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(prefs_storage::Backend::Postgres).await
                }
            )*
        }
    };
}
