//! A minimal safe wrapper over the bundled SQLite (libsqlite3-sys, the build prefs links through
//! diesel): a connection, prepared statements, binding and stepping. Only what the seeder and the
//! engine baseline need.

use std::ffi::{CStr, CString, c_int};
use std::ptr;

use libsqlite3_sys as ffi;

/// An error from SQLite: its result code and message.
#[derive(Debug)]
pub struct SqliteError {
    pub code: c_int,
    pub message: String,
}

impl std::fmt::Display for SqliteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sqlite error {}: {}", self.code, self.message)
    }
}

impl std::error::Error for SqliteError {}

pub type Result<T> = std::result::Result<T, SqliteError>;

/// One connection. Not shared between threads (each thread opens its own, as a pool would).
pub struct Db {
    raw: *mut ffi::sqlite3,
}

// A connection may move to another thread (SQLite is built thread-safe); it is never shared.
unsafe impl Send for Db {}

impl Db {
    /// Opens `path` read-write, creating it if needed, with URI names allowed: the flags diesel
    /// uses.
    pub fn open(path: &str) -> Result<Self> {
        let name = CString::new(path).expect("no NUL in a path");
        let mut raw = ptr::null_mut();
        let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE | ffi::SQLITE_OPEN_URI;
        let code = unsafe { ffi::sqlite3_open_v2(name.as_ptr(), &mut raw, flags, ptr::null()) };
        let db = Self { raw };
        if code != ffi::SQLITE_OK {
            return Err(db.error(code));
        }
        Ok(db)
    }

    fn error(&self, code: c_int) -> SqliteError {
        let message = if self.raw.is_null() {
            "cannot open".to_owned()
        } else {
            unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.raw)) }.to_string_lossy().into_owned()
        };
        SqliteError { code, message }
    }

    /// Runs one or more statements without results.
    pub fn exec(&self, sql: &str) -> Result<()> {
        let sql = CString::new(sql).expect("no NUL in SQL");
        let code =
            unsafe { ffi::sqlite3_exec(self.raw, sql.as_ptr(), None, ptr::null_mut(), ptr::null_mut()) };
        if code != ffi::SQLITE_OK {
            return Err(self.error(code));
        }
        Ok(())
    }

    /// Prepares one statement, to be reused.
    pub fn prepare(&self, sql: &str) -> Result<Stmt<'_>> {
        let text = CString::new(sql).expect("no NUL in SQL");
        let mut raw = ptr::null_mut();
        let code = unsafe { ffi::sqlite3_prepare_v2(self.raw, text.as_ptr(), -1, &mut raw, ptr::null_mut()) };
        if code != ffi::SQLITE_OK {
            return Err(self.error(code));
        }
        Ok(Stmt { db: self, raw })
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        unsafe { ffi::sqlite3_close(self.raw) };
    }
}

/// A prepared statement of a [`Db`].
pub struct Stmt<'db> {
    db: &'db Db,
    raw: *mut ffi::sqlite3_stmt,
}

/// What a step produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Row,
    Done,
}

impl Stmt<'_> {
    fn check(&self, code: c_int) -> Result<()> {
        if code != ffi::SQLITE_OK {
            return Err(self.db.error(code));
        }
        Ok(())
    }

    /// Binds parameter `index` (1-based) to an integer.
    pub fn bind_i64(&mut self, index: c_int, value: i64) -> Result<()> {
        self.check(unsafe { ffi::sqlite3_bind_int64(self.raw, index, value) })
    }

    /// Binds parameter `index` (1-based) to a text; SQLite copies it.
    pub fn bind_text(&mut self, index: c_int, value: &str) -> Result<()> {
        let len = c_int::try_from(value.len()).expect("text under 2 GiB");
        self.check(unsafe {
            ffi::sqlite3_bind_text(self.raw, index, value.as_ptr().cast(), len, ffi::SQLITE_TRANSIENT())
        })
    }

    /// One step.
    pub fn step(&mut self) -> Result<Step> {
        match unsafe { ffi::sqlite3_step(self.raw) } {
            ffi::SQLITE_ROW => Ok(Step::Row),
            ffi::SQLITE_DONE => Ok(Step::Done),
            code => Err(self.db.error(code)),
        }
    }

    /// Resets the statement for its next run (bindings stay).
    pub fn reset(&mut self) {
        unsafe { ffi::sqlite3_reset(self.raw) };
    }

    /// Runs a statement without results to its end, then resets it.
    pub fn run(&mut self) -> Result<()> {
        let out = self.step();
        self.reset();
        out.map(drop)
    }

    /// Column `index` (0-based) of the current row as an integer.
    pub fn column_i64(&self, index: c_int) -> i64 {
        unsafe { ffi::sqlite3_column_int64(self.raw, index) }
    }

    /// Column `index` (0-based) of the current row as text (empty for NULL).
    pub fn column_text(&self, index: c_int) -> &str {
        unsafe {
            let text = ffi::sqlite3_column_text(self.raw, index);
            if text.is_null() {
                return "";
            }
            let len = usize::try_from(ffi::sqlite3_column_bytes(self.raw, index)).unwrap_or(0);
            std::str::from_utf8(std::slice::from_raw_parts(text, len)).unwrap_or("")
        }
    }
}

impl Drop for Stmt<'_> {
    fn drop(&mut self) {
        unsafe { ffi::sqlite3_finalize(self.raw) };
    }
}
