//! Private row types and their conversion into domain types, in one place. Domain types never
//! carry diesel derives.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use prefs_domain::{
    Error, Namespace, Preference, PreferenceId, PreferenceKey, PreferenceValue, User, UserId, Username,
};

use crate::schema::{preferences, users};

/// A `users` row as read.
#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub(crate) struct UserRow {
    id: i64,
    subject: String,
    username: String,
}

/// A `users` row to insert.
#[derive(Insertable)]
#[diesel(table_name = users)]
pub(crate) struct NewUser<'a> {
    pub(crate) subject: &'a str,
    pub(crate) username: &'a str,
    pub(crate) created_at: i64,
}

/// A `preferences` row as read.
#[derive(Queryable, Selectable)]
#[diesel(table_name = preferences, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub(crate) struct PreferenceRow {
    id: i64,
    user_id: i64,
    namespace: String,
    key: String,
    value: String,
    created_at: i64,
    updated_at: i64,
    version: i64,
}

/// A `preferences` row to insert.
#[derive(Insertable)]
#[diesel(table_name = preferences)]
pub(crate) struct NewPreference<'a> {
    pub(crate) user_id: i64,
    pub(crate) namespace: &'a str,
    pub(crate) key: &'a str,
    /// Compact JSON text.
    pub(crate) value: &'a str,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) version: i64,
}

/// The current time as stored: microseconds since the Unix epoch (UTC).
pub(crate) fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// A stored row that does not read back as a domain value: the database holds data prefs never
/// wrote.
fn corrupt(what: &str, row: i64, detail: impl std::fmt::Display) -> Error {
    Error::Internal(format!("stored {what} {row} is invalid: {detail}").into())
}

fn timestamp(micros: i64, row: i64) -> Result<DateTime<Utc>, Error> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| corrupt("preference", row, "timestamp out of range"))
}

impl TryFrom<UserRow> for User {
    type Error = Error;

    fn try_from(row: UserRow) -> Result<Self, Error> {
        let username = Username::parse(&row.username).map_err(|e| corrupt("user", row.id, e))?;
        Ok(User { id: UserId(row.id), subject: row.subject, username })
    }
}

impl TryFrom<PreferenceRow> for Preference {
    type Error = Error;

    fn try_from(row: PreferenceRow) -> Result<Self, Error> {
        let id = row.id;
        let value = PreferenceValue::from_stored_text(row.value).map_err(|e| corrupt("preference", id, e))?;
        Ok(Preference {
            id: PreferenceId(id),
            user_id: UserId(row.user_id),
            namespace: Namespace::from_stored(&row.namespace).map_err(|e| corrupt("preference", id, e))?,
            key: PreferenceKey::parse(&row.key).map_err(|e| corrupt("preference", id, e))?,
            value,
            created_at: timestamp(row.created_at, id)?,
            updated_at: timestamp(row.updated_at, id)?,
            version: row.version,
        })
    }
}

/// Converts rows read together, failing on the first invalid one.
pub(crate) fn preferences_from(rows: Vec<PreferenceRow>) -> Result<Vec<Preference>, Error> {
    rows.into_iter().map(Preference::try_from).collect()
}

/// One namespace's rows, loaded unordered, as preferences ordered by id: sorting a namespace's
/// few rows here costs less than the sorter SQLite runs for an `ORDER BY` its index does not give.
pub(crate) fn namespace_from(mut rows: Vec<PreferenceRow>) -> Result<Vec<Preference>, Error> {
    rows.sort_unstable_by_key(|row| row.id);
    preferences_from(rows)
}
