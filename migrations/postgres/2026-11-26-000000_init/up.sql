-- Users and their preferences (docs/contract.md §1). Identity columns never reuse ids.
-- Timestamps are microseconds since the Unix epoch (UTC); `value` is compact serialized JSON kept
-- as TEXT (not jsonb) so values round-trip byte for byte and strings may hold \u0000.
CREATE TABLE users (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE preferences (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    UNIQUE (user_id, namespace, key)
);
