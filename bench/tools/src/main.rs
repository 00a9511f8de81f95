//! `prefs-bench`: the helpers of `bench/run.sh`.
//!
//! ```text
//! prefs-bench seed-sqlite DB_PATH USERS          bulk-insert the benchmark data set (migrated, empty DB)
//! prefs-bench tokens USERS COUNT OUT_FILE        COUNT tokens of random seeded users (PREFS_JWT_SECRET)
//! prefs-bench wait-ready ADDR PATH SINCE_US [TOKEN]
//!                                                polls until ADDR answers PATH with a 2xx; prints the
//!                                                milliseconds since SINCE_US (µs since the epoch)
//! prefs-bench engine sqlite|postgres DB read|write CONNS SECONDS TOKENS_FILE
//!                                                the storage engine alone doing prefs' work
//! ```
//!
//! The data set (the same on both backends; `bench/run.sh` writes the PostgreSQL one with SQL):
//! user `i` (1-based) has subject `sub-i`, username `useri`, and preferences with ids
//! `(i-1)*20+1 ..= (i-1)*20+20`: first `key-0..key-9` in the global namespace, valued
//! `"value-K-IIIIIII"`, then `opt-0..opt-9` in the client namespace `bench-app`, valued
//! `{"enabled":true,"label":"item-K-IIIIIII"}` (`IIIIIII` is `i` on 7 digits).

mod engine;
mod sqlite;

use std::fmt::Write as _;
use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rand::seq::SliceRandom;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The client namespace of the data set.
pub const CLIENT: &str = "bench-app";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = match args.as_slice() {
        ["seed-sqlite", path, users] => seed_sqlite(path, users.parse().expect("USERS: a count")),
        ["tokens", users, count, out] => {
            tokens(users.parse().expect("USERS: a count"), count.parse().expect("COUNT: a count"), out)
        }
        ["wait-ready", addr, path, since, rest @ ..] => {
            wait_ready(addr, path, since.parse().expect("SINCE_US: microseconds"), rest.first().copied())
        }
        ["engine", backend, db, op, conns, seconds, tokens] => engine::run(&engine::Plan {
            backend: backend.parse().expect("sqlite or postgres"),
            db: (*db).to_owned(),
            op: op.parse().expect("read or write"),
            conns: conns.parse().expect("CONNS: a count"),
            duration: Duration::from_secs_f64(seconds.parse().expect("SECONDS: a number")),
            users: read_token_users(tokens).expect("a readable tokens file"),
        }),
        _ => {
            eprintln!("usage: see the documentation at the top of bench/tools/src/main.rs");
            std::process::exit(2);
        }
    };
    if let Err(error) = out {
        eprintln!("prefs-bench: {error}");
        std::process::exit(1);
    }
}

fn now_micros() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970");
    i64::try_from(since.as_micros()).expect("in range")
}

/// Bulk-inserts the data set into a freshly migrated SQLite database, in one transaction with
/// prepared statements, rows in key order. Journal and fsync are off while loading (the file is
/// new: a failed load is simply redone); at the end the database is back in WAL mode and the
/// file is synced to disk.
fn seed_sqlite(path: &str, users: i64) -> Result<(), Error> {
    let started = Instant::now();
    let db = sqlite::Db::open(path)?;
    {
        let mut count =
            db.prepare("SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM preferences)")?;
        count.step()?;
        if count.column_i64(0) != 0 {
            return Err(format!("{path} is not empty: seed a freshly migrated database").into());
        }
    }
    db.exec(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -1048576; \
         PRAGMA foreign_keys = OFF; BEGIN",
    )?;
    let now = now_micros();
    {
        let mut user =
            db.prepare("INSERT INTO users (id, subject, username, created_at) VALUES (?1, ?2, ?3, ?4)")?;
        let mut pref = db.prepare(
            "INSERT INTO preferences (id, user_id, namespace, key, value, created_at, updated_at, version) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1)",
        )?;
        let (mut text, mut key, mut value) = (String::new(), String::new(), String::new());
        for i in 1..=users {
            text.clear();
            write!(text, "sub-{i}")?;
            user.bind_i64(1, i)?;
            user.bind_text(2, &text)?;
            text.clear();
            write!(text, "user{i}")?;
            user.bind_text(3, &text)?;
            user.bind_i64(4, now)?;
            user.run()?;
            for j in 0..20_i64 {
                let k = j % 10;
                key.clear();
                value.clear();
                let namespace = if j < 10 {
                    write!(key, "key-{k}")?;
                    write!(value, "\"value-{k}-{:07}\"", i % 10_000_000)?;
                    "global"
                } else {
                    write!(key, "opt-{k}")?;
                    write!(value, "{{\"enabled\":true,\"label\":\"item-{k}-{:07}\"}}", i % 10_000_000)?;
                    CLIENT
                };
                pref.bind_i64(1, (i - 1) * 20 + j + 1)?;
                pref.bind_i64(2, i)?;
                pref.bind_text(3, namespace)?;
                pref.bind_text(4, &key)?;
                pref.bind_text(5, &value)?;
                pref.bind_i64(6, now)?;
                pref.run()?;
            }
            if i % 100_000 == 0 {
                eprintln!("  {i} users, {:.1} s", started.elapsed().as_secs_f64());
            }
        }
    }
    db.exec("COMMIT; PRAGMA journal_mode = WAL")?;
    drop(db);
    // Loaded without fsync: write the file out now, or the first checkpoint of the first
    // benchmark would pay for gigabytes of dirty pages.
    std::fs::File::open(path)?.sync_all()?;
    eprintln!(
        "seeded {users} users ({} preferences) in {:.1} s",
        users * 20,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes `count` lines `user_id username token`, for `count` seeded users in random order
/// (every user when `count >= users`, else a uniform random sample). The tokens carry the
/// subject and username of the seeded user, the read and write scopes and `client_id`
/// `bench-app`, and expire in a day.
fn tokens(users: i64, count: usize, out: &str) -> Result<(), Error> {
    let secret = std::env::var("PREFS_JWT_SECRET").map_err(|_| "PREFS_JWT_SECRET must be set")?;
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let mut rng = rand::rng();
    let mut ids: Vec<i64> = if usize::try_from(users)? <= count {
        (1..=users).collect()
    } else {
        (0..count).map(|_| rng.random_range(1..=users)).collect()
    };
    ids.shuffle(&mut rng);
    let now = now_micros() / 1_000_000;
    let mut file = BufWriter::new(std::fs::File::create(out)?);
    for id in ids {
        let claims = serde_json::json!({
            "sub": format!("sub-{id}"),
            "username": format!("user{id}"),
            "scope": "user:preferences:read user:preferences:write",
            "client_id": CLIENT,
            "iat": now,
            "exp": now + 24 * 3600,
        });
        let token = jsonwebtoken::encode(&header, &claims, &key)?;
        writeln!(file, "{id} user{id} {token}")?;
    }
    file.flush()?;
    Ok(())
}

/// The user ids of a tokens file.
fn read_token_users(path: &str) -> Result<Vec<i64>, Error> {
    let text = std::fs::read_to_string(path)?;
    let ids = text
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::parse)
        .collect::<Result<Vec<i64>, _>>()?;
    if ids.is_empty() {
        return Err(format!("{path} holds no tokens").into());
    }
    Ok(ids)
}

/// Polls `GET path` on `addr` every 200 µs until the answer is a 2xx, then prints the time since
/// `since_us` in milliseconds. Gives up after 60 s.
fn wait_ready(addr: &str, path: &str, since_us: i64, token: Option<&str>) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        write!(request, "Authorization: Bearer {token}\r\n")?;
    }
    request.push_str("\r\n");
    loop {
        if let Ok(mut stream) = TcpStream::connect(addr) {
            let mut head = [0_u8; 12];
            let answered =
                stream.write_all(request.as_bytes()).is_ok() && stream.read_exact(&mut head).is_ok();
            if answered && head.starts_with(b"HTTP/1.1 2") {
                let elapsed_us = now_micros() - since_us;
                println!("{:.1}", elapsed_us as f64 / 1000.0);
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("{addr}{path} did not answer 2xx within 60 s").into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}
