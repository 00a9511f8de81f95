//! The storage engine alone, doing the work of one prefs request with prefs' settings, as fast as
//! it can for a while, with `conns` connections (threads on SQLite, tasks of one current-thread
//! runtime on PostgreSQL, as in one actix worker):
//!
//! - `read`: the point select of one user's preferences in one namespace, every column of every
//!   row copied out (prefs' `PreferenceStore::namespace` query).
//! - `write`: the 3-key upsert transaction of a PATCH: SQLite `BEGIN IMMEDIATE`, PostgreSQL
//!   `BEGIN` then `UPDATE users SET version = version + 1 WHERE id = $1` (prefs' lock of the
//!   user, which also moves the version its readers check), then three
//!   `INSERT … ON CONFLICT (user_id, namespace, key) DO UPDATE`, then `COMMIT`.
//!
//! SQLite connections get prefs' PRAGMAs (`busy_timeout = 5000`, WAL, `synchronous = FULL`,
//! `foreign_keys = ON`); statements are prepared once per connection. Users are drawn from the
//! same token sample the HTTP load uses. Prints one `RESULT` line.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::Error;
use crate::sqlite::{Db, Step};

/// Which engine.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" => Ok(Self::Postgres),
            other => Err(format!("unknown backend {other}")),
        }
    }
}

/// Which work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
}

impl FromStr for Op {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            other => Err(format!("unknown op {other}")),
        }
    }
}

/// One measurement.
pub struct Plan {
    pub backend: Backend,
    /// A SQLite file path or a PostgreSQL URL.
    pub db: String,
    pub op: Op,
    pub conns: usize,
    pub duration: Duration,
    /// The user ids to pick from.
    pub users: Vec<i64>,
}

/// What one connection did: the latency of each operation, and the failed ones.
#[derive(Default)]
struct Tally {
    latencies_ns: Vec<u64>,
    errors: u64,
    /// The first error's message, printed with the result.
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_ns.extend(other.latencies_ns);
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
    }

    fn failed(&mut self, error: &dyn std::fmt::Display) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| error.to_string());
    }
}

/// The three keys a PATCH scenario writes, and the value written (same width as seeded ones).
const PATCHED: [&str; 3] = ["key-1", "key-4", "key-7"];

fn patched_value(key: &str, rng: &mut impl Rng) -> String {
    let k = &key[4..];
    format!("\"value-{k}-{:07}\"", rng.random_range(0..10_000_000))
}

pub fn run(plan: &Plan) -> Result<(), Error> {
    let started = Instant::now();
    let tally = match plan.backend {
        Backend::Sqlite => sqlite(plan)?,
        Backend::Postgres => postgres(plan)?,
    };
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies = tally.latencies_ns;
    latencies.sort_unstable();
    let ops = latencies.len();
    let percentile = |p: f64| {
        if ops == 0 {
            return 0.0;
        }
        let index = ((ops as f64 * p / 100.0).ceil() as usize).clamp(1, ops) - 1;
        latencies[index] as f64 / 1000.0
    };
    println!(
        "RESULT ops={ops} seconds={seconds:.3} rate={:.1} p50_us={:.1} p99_us={:.1} errors={}",
        ops as f64 / seconds,
        percentile(50.0),
        percentile(99.0),
        tally.errors
    );
    if let Some(error) = tally.first_error {
        eprintln!("first error: {error}");
    }
    Ok(())
}

const SELECT_NAMESPACE: &str = "SELECT id, user_id, namespace, key, value, created_at, updated_at, version \
     FROM preferences WHERE user_id = ?1 AND namespace = ?2 ORDER BY id";
const UPSERT: &str = "INSERT INTO preferences (user_id, namespace, key, value, created_at, updated_at, version) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1) ON CONFLICT (user_id, namespace, key) DO UPDATE SET \
     value = excluded.value, updated_at = excluded.updated_at, version = preferences.version + 1";

/// A row as prefs copies it out of the database.
#[allow(dead_code)] // built to cost what prefs pays
struct Row {
    id: i64,
    user_id: i64,
    namespace: String,
    key: String,
    value: String,
    created_at: i64,
    updated_at: i64,
    version: i64,
}

fn sqlite(plan: &Plan) -> Result<Tally, Error> {
    let users = Arc::new(plan.users.clone());
    let deadline = Instant::now() + plan.duration;
    let workers: Vec<_> = (0..plan.conns)
        .map(|_| {
            let (db, op, users) = (plan.db.clone(), plan.op, Arc::clone(&users));
            std::thread::spawn(move || sqlite_worker(&db, op, &users, deadline).map_err(|e| e.to_string()))
        })
        .collect();
    let mut tally = Tally::default();
    for worker in workers {
        tally.merge(worker.join().expect("a worker does not panic")?);
    }
    Ok(tally)
}

fn sqlite_worker(path: &str, op: Op, users: &[i64], deadline: Instant) -> Result<Tally, Error> {
    let db = Db::open(path)?;
    db.exec("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    let mut select = db.prepare(SELECT_NAMESPACE)?;
    let mut begin = db.prepare("BEGIN IMMEDIATE")?;
    let mut upsert = db.prepare(UPSERT)?;
    let mut commit = db.prepare("COMMIT")?;
    let mut rng = rand::rng();
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let user = users[rng.random_range(0..users.len())];
        let started = Instant::now();
        let done = match op {
            Op::Read => (|| -> crate::sqlite::Result<()> {
                select.bind_i64(1, user)?;
                select.bind_text(2, "global")?;
                let mut rows = Vec::with_capacity(10);
                while select.step()? == Step::Row {
                    rows.push(Row {
                        id: select.column_i64(0),
                        user_id: select.column_i64(1),
                        namespace: select.column_text(2).to_owned(),
                        key: select.column_text(3).to_owned(),
                        value: select.column_text(4).to_owned(),
                        created_at: select.column_i64(5),
                        updated_at: select.column_i64(6),
                        version: select.column_i64(7),
                    });
                }
                select.reset();
                std::hint::black_box(rows);
                Ok(())
            })(),
            Op::Write => (|| -> crate::sqlite::Result<()> {
                begin.run()?;
                let now = crate::now_micros();
                for key in PATCHED {
                    upsert.bind_i64(1, user)?;
                    upsert.bind_text(2, "global")?;
                    upsert.bind_text(3, key)?;
                    upsert.bind_text(4, &patched_value(key, &mut rng))?;
                    upsert.bind_i64(5, now)?;
                    upsert.run()?;
                }
                commit.run()
            })(),
        };
        match done {
            Ok(()) => tally.latencies_ns.push(started.elapsed().as_nanos() as u64),
            Err(error) => {
                select.reset();
                let _ = db.exec("ROLLBACK");
                tally.failed(&error);
            }
        }
    }
    Ok(tally)
}

fn postgres(plan: &Plan) -> Result<Tally, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let deadline = Instant::now() + plan.duration;
        let users = Arc::new(plan.users.clone());
        let mut workers = Vec::new();
        for _ in 0..plan.conns {
            let (client, connection) = tokio_postgres::connect(&plan.db, tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    eprintln!("postgres connection: {error}");
                }
            });
            let (op, users) = (plan.op, Arc::clone(&users));
            workers.push(tokio::spawn(async move { postgres_worker(client, op, &users, deadline).await }));
        }
        let mut tally = Tally::default();
        for worker in workers {
            tally.merge(worker.await?.map_err(|e| e.to_string())?);
        }
        Ok(tally)
    })
}

async fn postgres_worker(
    client: tokio_postgres::Client,
    op: Op,
    users: &[i64],
    deadline: Instant,
) -> Result<Tally, tokio_postgres::Error> {
    let select = client
        .prepare(
            "SELECT id, user_id, namespace, key, value, created_at, updated_at, version \
             FROM preferences WHERE user_id = $1 AND namespace = $2 ORDER BY id",
        )
        .await?;
    let lock = client.prepare("UPDATE users SET version = version + 1 WHERE id = $1").await?;
    let upsert = client
        .prepare(
            "INSERT INTO preferences (user_id, namespace, key, value, created_at, updated_at, version) \
             VALUES ($1, $2, $3, $4, $5, $5, 1) ON CONFLICT (user_id, namespace, key) DO UPDATE SET \
             value = excluded.value, updated_at = excluded.updated_at, version = preferences.version + 1",
        )
        .await?;
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let (user, values) = {
            let mut rng = rand::rng();
            let user = users[rng.random_range(0..users.len())];
            (user, PATCHED.map(|key| patched_value(key, &mut rng)))
        };
        let started = Instant::now();
        let done: Result<(), tokio_postgres::Error> = match op {
            Op::Read => {
                async {
                    let rows: Vec<Row> = client
                        .query(&select, &[&user, &"global"])
                        .await?
                        .iter()
                        .map(|r| Row {
                            id: r.get(0),
                            user_id: r.get(1),
                            namespace: r.get(2),
                            key: r.get(3),
                            value: r.get(4),
                            created_at: r.get(5),
                            updated_at: r.get(6),
                            version: r.get(7),
                        })
                        .collect();
                    std::hint::black_box(rows);
                    Ok(())
                }
                .await
            }
            Op::Write => {
                async {
                    client.batch_execute("BEGIN").await?;
                    client.execute(&lock, &[&user]).await?;
                    let now = crate::now_micros();
                    for (key, value) in PATCHED.iter().zip(&values) {
                        client.execute(&upsert, &[&user, &"global", key, value, &now]).await?;
                    }
                    client.batch_execute("COMMIT").await
                }
                .await
            }
        };
        match done {
            Ok(()) => tally.latencies_ns.push(started.elapsed().as_nanos() as u64),
            Err(error) => {
                let _ = client.batch_execute("ROLLBACK").await;
                tally.failed(&error);
            }
        }
    }
    Ok(tally)
}
