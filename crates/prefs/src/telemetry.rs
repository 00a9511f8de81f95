//! Logging: `tracing` to stderr, human-readable by default and JSON with `PREFS_LOG_FORMAT=json`,
//! level from `RUST_LOG` (default `info`).
//!
//! Lines are written by a thread of their own ([`tracing_appender::non_blocking()`]): a request
//! does not wait for stderr, and the lines that queue up while one is written go out together,
//! in one write. None is dropped: when 128k lines are queued, logging waits.

use std::io::{BufWriter, IsTerminal};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Text is colored only on a terminal (no escape codes in files).
/// Keep the guard until the process ends: dropping it writes out the lines still queued.
#[must_use = "dropping the guard stops the log writer"]
pub fn init(json: bool) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("prefs-log")
        .finish(BufWriter::new(std::io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}
