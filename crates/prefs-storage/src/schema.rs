//! The database schema, written by hand once for both backends; the migrations in
//! `migrations/sqlite` and `migrations/postgres` create exactly these columns.

diesel::table! {
    /// Users known to prefs.
    users (id) {
        /// Assigned by the database, never reused; or given: the user's id at the identity
        /// provider, which the database never assigns afterwards ([`crate::user_ids`]).
        id -> BigInt,
        /// The token `sub`; unique.
        subject -> Text,
        /// Unique, compared exactly.
        username -> Text,
        /// Microseconds since the Unix epoch (UTC).
        created_at -> BigInt,
        /// On PostgreSQL, grows by one in every transaction that writes the user's preferences
        /// (readers check the answers they remember against it); SQLite's readers go by
        /// `PRAGMA data_version` instead, and leave it as it starts. Starts at 0, or at
        /// `created_at` for a user created with a given id, which may have been a removed user's.
        version -> BigInt,
    }
}

diesel::table! {
    /// Preferences: `(user, namespace, key) -> value`.
    preferences (id) {
        /// Assigned by the database, never reused; kept across updates and renames.
        id -> BigInt,
        /// The owner; rows go when the user does (`ON DELETE CASCADE`).
        user_id -> BigInt,
        /// `global` or a client id.
        namespace -> Text,
        /// Unique per user and namespace.
        key -> Text,
        /// Compact serialized JSON.
        value -> Text,
        /// Microseconds since the Unix epoch (UTC).
        created_at -> BigInt,
        /// Microseconds since the Unix epoch (UTC).
        updated_at -> BigInt,
        /// Starts at 1, grows by one on every change.
        version -> BigInt,
    }
}
