//! The queries both backends run, written once with diesel's DSL (their types named by
//! `#[auto_type]`), and the one fixed statement both prepare by hand ([`Upsert`]). Each backend
//! runs them its own way: SQLite inline, PostgreSQL on shared read connections or pipelined.

use std::borrow::Cow;

use diesel::dsl;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Text};
use prefs_domain::{Error, User};

use crate::error::Failure;
use crate::rows::{NewPreference, PreferenceRow, UserRow};
use crate::schema::{preferences, users};

/// Whether user `user` exists.
#[dsl::auto_type]
pub(crate) fn user_exists(user: i64) -> _ {
    dsl::select(dsl::exists(users::table.find(user)))
}

/// The user of a subject. Lookups by a unique key use `get_result`, not `first`: `first` binds a
/// `LIMIT`, and SQLite re-plans a statement whose `LIMIT` is re-bound, on every call.
#[dsl::auto_type]
pub(crate) fn user_by_subject<'a>(subject: &'a str) -> _ {
    users::table.filter(users::subject.eq(subject))
}

/// The user of an id.
#[dsl::auto_type]
pub(crate) fn user_by_id(id: i64) -> _ {
    users::table.find(id)
}

/// The user of a username.
#[dsl::auto_type]
pub(crate) fn user_by_username<'a>(username: &'a str) -> _ {
    users::table.filter(users::username.eq(username))
}

/// Which user a lookup asks for.
#[derive(Clone)]
pub(crate) enum UserKey<'a> {
    /// By token subject.
    Subject(Cow<'a, str>),
    /// By id.
    Id(i64),
    /// By username.
    Username(Cow<'a, str>),
}

impl UserKey<'_> {
    /// The same lookup, owning its text.
    pub(crate) fn into_owned(self) -> UserKey<'static> {
        match self {
            Self::Subject(subject) => UserKey::Subject(Cow::Owned(subject.into_owned())),
            Self::Id(id) => UserKey::Id(id),
            Self::Username(username) => UserKey::Username(Cow::Owned(username.into_owned())),
        }
    }
}

/// The preferences of one user in one namespace, unordered.
#[dsl::auto_type]
pub(crate) fn in_namespace<'a>(user: i64, namespace: &'a str) -> _ {
    preferences::table.filter(preferences::user_id.eq(user)).filter(preferences::namespace.eq(namespace))
}

/// The preference of one key of one user's namespace.
#[dsl::auto_type]
pub(crate) fn of_key<'a>(user: i64, namespace: &'a str, key: &'a str) -> _ {
    let namespace: in_namespace<'a> = in_namespace(user, namespace);
    namespace.filter(preferences::key.eq(key))
}

/// The preference of one id in one user's namespace.
#[dsl::auto_type]
pub(crate) fn of_id<'a>(user: i64, namespace: &'a str, id: i64) -> _ {
    let namespace: in_namespace<'a> = in_namespace(user, namespace);
    namespace.filter(preferences::id.eq(id))
}

/// Every preference of one user, ordered by namespace and id.
#[dsl::auto_type]
pub(crate) fn all_of(user: i64) -> _ {
    preferences::table.filter(preferences::user_id.eq(user)).order((preferences::namespace, preferences::id))
}

/// Deletes the preference of one key.
#[dsl::auto_type]
pub(crate) fn delete_key<'a>(user: i64, namespace: &'a str, key: &'a str) -> _ {
    let of_key: of_key<'a> = of_key(user, namespace, key);
    dsl::delete(of_key)
}

/// What a rename sets: the new key, `updated_at`, and the next version.
type Renamed<'a> = (
    dsl::Eq<preferences::key, &'a str>,
    dsl::Eq<preferences::updated_at, i64>,
    dsl::Eq<preferences::version, dsl::Add<preferences::version, i64>>,
);

/// Renames a key at `now` (microseconds), moving its version. (`#[auto_type]` cannot name an
/// `UPDATE`.)
pub(crate) fn rename<'a>(
    user: i64,
    namespace: &'a str,
    from: &'a str,
    to: &'a str,
    now: i64,
) -> dsl::Update<of_key<'a>, Renamed<'a>> {
    diesel::update(of_key(user, namespace, from)).set((
        preferences::key.eq(to),
        preferences::updated_at.eq(now),
        preferences::version.eq(preferences::version + 1),
    ))
}

/// `rows`, the preferences of one user a query found; when there are none,
/// [`Error::UserNotFound`] unless `exists` (which runs [`user_exists`]) says the user exists.
/// Generic over a future rather than a connection: a function bounded by diesel's traits on a
/// connection borrowed for any lifetime (PostgreSQL's reads) cannot be proven `Send`.
pub(crate) async fn rows_of_user<F>(
    rows: Vec<PreferenceRow>,
    exists: impl FnOnce() -> F,
) -> Result<Vec<PreferenceRow>, Failure>
where
    F: Future<Output = QueryResult<bool>>,
{
    if rows.is_empty() && !exists().await? {
        return Err(Error::UserNotFound.into());
    }
    Ok(rows)
}

/// The user a lookup found, if any.
pub(crate) fn found_user(row: Option<UserRow>) -> Result<Option<User>, Failure> {
    Ok(row.map(User::try_from).transpose()?)
}

/// `INSERT … ON CONFLICT … DO UPDATE … RETURNING` of one preference, as one fixed statement that
/// both backends prepare once per connection and then reuse. Hand-written because diesel's
/// upsert DSL marks every `DO UPDATE` unsafe to cache (a changeset may skip `None` fields):
/// SQLite would parse it again on each run, and PostgreSQL prepare it in a round trip of its
/// own, on every write. It inserts [`NewPreference`]'s columns, and returns the schema's.
pub(crate) struct Upsert<'a>(pub(crate) &'a NewPreference<'a>);

impl QueryId for Upsert<'_> {
    type QueryId = Upsert<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB> QueryFragment<DB> for Upsert<'_>
where
    DB: diesel::backend::Backend,
    i64: ToSql<BigInt, DB>,
    str: ToSql<Text, DB>,
    String: ToSql<Text, DB>,
    <preferences::table as Table>::AllColumns: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let new = self.0;
        out.push_sql(
            "INSERT INTO preferences (user_id, namespace, key, value, created_at, updated_at, version) VALUES (",
        );
        out.push_bind_param::<BigInt, _>(&new.user_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(new.namespace)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(new.key)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(new.value)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&new.created_at)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&new.updated_at)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&new.version)?;
        out.push_sql(
            ") ON CONFLICT (user_id, namespace, key) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at, version = preferences.version + 1 RETURNING ",
        );
        // The schema's columns, in its order, as the row type says.
        preferences::all_columns.walk_ast(out.reborrow())
    }
}

impl Query for Upsert<'_> {
    type SqlType = preferences::SqlType;
}
