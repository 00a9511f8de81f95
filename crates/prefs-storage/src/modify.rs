//! The read-modify-write of [`PreferenceStore::modify`], written once for both backends: each
//! backend opens a [`Transaction`] its own way (SQLite in the writer's batch, PostgreSQL
//! pipelined), and [`modify`] runs the edit in it and builds the answer.
//!
//! [`PreferenceStore::modify`]: prefs_domain::PreferenceStore::modify

use diesel_async::{AsyncConnection, TransactionManager};
use prefs_domain::{Change, Edit, Error, Preference};

use crate::error::Failure;
use crate::rows::{NewPreference, PreferenceRow, namespace_from, now_micros};

/// One change of a write, ready to run.
pub(crate) enum Statement<'a> {
    /// Insert, or update the value of the existing key (which keeps its id and `created_at`):
    /// [`Upsert`](crate::queries::Upsert).
    Put(NewPreference<'a>),
    /// Delete a key: [`delete_key`](crate::queries::delete_key).
    Delete(&'a str),
    /// Rename a key: [`rename`](crate::queries::rename).
    Rename {
        /// The key now.
        from: &'a str,
        /// Its new name.
        to: &'a str,
    },
}

/// A write transaction's work: the lock and read first, the changes last.
pub(crate) trait Transaction {
    /// Excludes every other writer of `user` until the transaction ends, and reads the user's
    /// preferences in `namespace`, unordered; `None` when the user does not exist.
    async fn lock_and_load(
        &mut self,
        user: i64,
        namespace: &str,
    ) -> Result<Option<Vec<PreferenceRow>>, Failure>;

    /// Runs `statements` in order at `now` (microseconds), as the transaction's last work; for
    /// each, the row it wrote (`None` for a deletion, and for a rename of a key that does not
    /// exist). On PostgreSQL the transaction commits with them, in the same round trip, when no
    /// rename is among them: when one fails, PostgreSQL rolls the whole transaction back instead.
    /// On SQLite the writer commits the batch that holds the transaction once every transaction
    /// of the batch has run.
    async fn commit_with(
        &mut self,
        user: i64,
        namespace: &str,
        now: i64,
        statements: &[Statement<'_>],
    ) -> Result<Vec<Option<PreferenceRow>>, Failure>;
}

/// Runs `edit` on user `user`'s `namespace` in `transaction`: the preferences after it, ordered
/// by id; [`Error::UserNotFound`] when the user does not exist. The caller ends the transaction.
pub(crate) async fn modify(
    transaction: &mut impl Transaction,
    user: i64,
    namespace: &str,
    edit: &Edit,
) -> Result<Vec<Preference>, Failure> {
    let Some(rows) = transaction.lock_and_load(user, namespace).await? else {
        return Err(Error::UserNotFound.into());
    };
    let mut after = namespace_from(rows)?;
    let changes = edit(&after)?;
    let now = now_micros();
    let statements: Vec<Statement<'_>> = changes
        .iter()
        .map(|change| match change {
            Change::Put { key, value } => Statement::Put(NewPreference {
                user_id: user,
                namespace,
                key: key.as_str(),
                value: value.as_json_text(),
                created_at: now,
                updated_at: now,
                version: 1,
            }),
            Change::Delete { key } => Statement::Delete(key.as_str()),
            Change::Rename { from, to } => Statement::Rename { from: from.as_str(), to: to.as_str() },
        })
        .collect();
    // `after` follows the changes: every written row comes back (`RETURNING`), so the namespace
    // needs no second read.
    let written = transaction.commit_with(user, namespace, now, &statements).await?;
    for (change, row) in changes.iter().zip(written) {
        match (change, row) {
            (Change::Delete { key }, _) => after.retain(|p| p.key != *key),
            (_, Some(row)) => keep(&mut after, row.try_into()?),
            (_, None) => return Err(Error::Internal(format!("{change:?} wrote nothing").into()).into()),
        }
    }
    after.sort_unstable_by_key(|p| p.id);
    Ok(after)
}

/// Puts `written` in place of the preference with its id, or adds it.
fn keep(after: &mut Vec<Preference>, written: Preference) {
    match after.iter_mut().find(|p| p.id == written.id) {
        Some(old) => *old = written,
        None => after.push(written),
    }
}

/// Commits when `out` is `Ok`, else rolls back and returns `out`'s error unchanged: the end of a
/// SQLite writer's savepoint and of a PostgreSQL transaction managed by diesel-async.
pub(crate) async fn finish<C: AsyncConnection, T>(
    conn: &mut C,
    out: Result<T, Failure>,
) -> Result<T, Failure> {
    match out {
        Ok(value) => {
            C::TransactionManager::commit_transaction(conn).await?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = C::TransactionManager::rollback_transaction(conn).await {
                // The connection is discarded (its transaction state is broken).
                tracing::warn!(error = %rollback, "rollback failed");
            }
            Err(error)
        }
    }
}
