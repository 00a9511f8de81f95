-- Users and their preferences (docs/contract.md §1). Ids come from AUTOINCREMENT so they are never reused.
-- Timestamps are microseconds since the Unix epoch (UTC); `value` is compact serialized JSON.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE preferences (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    UNIQUE (user_id, namespace, key)
);
