//! Users created with the id their identity provider gives them ([`UserStore::provision`] with
//! `Some(id)`), next to users whose id the database assigns. An id the database assigns must never
//! be one an explicit insert took, before or after:
//!
//! - SQLite: `AUTOINCREMENT` assigns one more than the largest id the table ever held
//!   (`sqlite_sequence` follows explicit inserts too), and writes are serialized, so it never
//!   hands out a taken id.
//! - PostgreSQL: the identity column (`GENERATED ALWAYS`, so an explicit insert says
//!   `OVERRIDING SYSTEM VALUE`) draws from a sequence that knows nothing of explicit inserts. So
//!   the inserting transaction first moves the sequence past the id (`setval`), under a
//!   transaction-scoped advisory lock so that two such moves never undo each other. Only a
//!   default insert that drew the id before that move, and is still under way, can still
//!   collide with it: one of the two then fails on the primary key, and
//!   [`DieselStore::provision`](crate::DieselStore) looks again (a default insert draws the
//!   sequence's next value; an explicit one finds the id taken: another person has it).
//!
//! Such a user starts at `version` = its `created_at` (microseconds) rather than 0: its id may
//! have been a removed user's, and PostgreSQL's readers trust what they remember of a user id
//! while the user's version is the same, so a new user must never go through an old one's
//! versions. (A user keeps to one write at a time, each taking far more than a microsecond.)
//!
//! [`UserStore::provision`]: prefs_domain::UserStore::provision

use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::Sqlite;
use prefs_domain::{Error, User, UserId, Username};

use crate::error::{Failure, user_conflict};
use crate::rows::{NewUser, UserRow};

/// What a sign-up's insert (`row`) gives: the user, or why not. With `id` asked for, a subject
/// whose user has another id is [`Error::IdentityMismatch`] (the caller rolls back), as is an id
/// another subject's user holds.
pub(crate) fn signed_up(
    row: QueryResult<UserRow>,
    username: &Username,
    id: Option<UserId>,
) -> Result<User, Failure> {
    let user = User::try_from(row.map_err(|e| user_conflict(e, username))?)?;
    if id.is_some_and(|id| id != user.id) {
        // The subject's user has another id: rolled back, its username unchanged.
        return Err(Error::IdentityMismatch.into());
    }
    Ok(user)
}

/// `INSERT INTO users (id, …) VALUES (…) ON CONFLICT (subject) DO UPDATE SET username = …
/// RETURNING id, subject, username`: one fixed statement, prepared once per connection, which
/// inserts user `id` with `new`'s subject and username (at `version` = `created_at`), or, when the
/// subject exists, sets its username. Hand-written: PostgreSQL needs `OVERRIDING SYSTEM VALUE`
/// (which diesel's DSL cannot say) to insert into a `GENERATED ALWAYS` identity column.
pub(crate) struct Insert<'a> {
    /// The user's subject, username and creation time.
    pub(crate) new: &'a NewUser<'a>,
    /// The id asked for.
    pub(crate) id: i64,
}

impl Insert<'_> {
    fn walk<'b, DB>(&'b self, mut out: AstPass<'_, 'b, DB>, overriding: &'static str) -> QueryResult<()>
    where
        DB: Backend,
        i64: ToSql<BigInt, DB>,
        str: ToSql<Text, DB>,
    {
        out.push_sql("INSERT INTO users (id, subject, username, created_at, version)");
        out.push_sql(overriding);
        out.push_sql(" VALUES (");
        out.push_bind_param::<BigInt, _>(&self.id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(self.new.subject)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(self.new.username)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&self.new.created_at)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&self.new.created_at)?;
        out.push_sql(
            ") ON CONFLICT (subject) DO UPDATE SET username = excluded.username \
             RETURNING id, subject, username",
        );
        Ok(())
    }
}

impl QueryFragment<Pg> for Insert<'_> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.walk(out, " OVERRIDING SYSTEM VALUE")
    }
}

impl QueryFragment<Sqlite> for Insert<'_> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        self.walk(out, "")
    }
}

impl QueryId for Insert<'_> {
    type QueryId = Insert<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for Insert<'_> {
    type SqlType = (BigInt, Text, Text);
}
