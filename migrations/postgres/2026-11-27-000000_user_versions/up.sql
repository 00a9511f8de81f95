-- users.version: on PostgreSQL it grows by one in every transaction that writes the user's
-- preferences (that transaction also takes the user's write lock with it), so a reader that
-- remembers what it read at version v knows it is still right while the user is at v. SQLite's
-- readers go by PRAGMA data_version instead, and leave it at 0; the column is there on both so
-- that both keep one schema.
ALTER TABLE users ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
-- Every write updates its user's row: room left on each page keeps those updates HOT (no new
-- entries in the users indexes), from the first write on.
ALTER TABLE users SET (fillfactor = 80);
