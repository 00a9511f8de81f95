-- The benchmark data set on PostgreSQL, the same rows bench/tools (seed-sqlite) writes on SQLite:
-- user i has subject `sub-i`, username `useri`, and preferences with ids (i-1)*20+1 ..= (i-1)*20+20:
-- key-0..key-9 in `global` valued "value-K-IIIIIII", then opt-0..opt-9 in `bench-app` valued
-- {"enabled":true,"label":"item-K-IIIIIII"} (IIIIIII: i on 7 digits).
--
-- psql -v users=N -v now=MICROS -f bench/seed-postgres.sql postgres://...  (on a migrated database)
--
-- Fast: one transaction that truncates the tables first, so with wal_level=minimal (the bench
-- cluster's setting) nothing is written to the WAL; rows are generated in key order by the server;
-- foreign-key triggers are off for the load (session_replication_role, superuser), which is safe as
-- every row's user is inserted first. A checkpoint at the end writes the new pages out now, so
-- the measurements that follow do not pay for the load.
\set ON_ERROR_STOP on
SET session_replication_role = replica;
BEGIN;
TRUNCATE preferences, users RESTART IDENTITY;
INSERT INTO users (id, subject, username, created_at) OVERRIDING SYSTEM VALUE
SELECT i, 'sub-' || i, 'user' || i, :now
FROM generate_series(1, :users) AS i;
INSERT INTO preferences (id, user_id, namespace, key, value, created_at, updated_at, version) OVERRIDING SYSTEM VALUE
SELECT (i - 1) * 20 + j + 1,
       i,
       CASE WHEN j < 10 THEN 'global' ELSE 'bench-app' END,
       CASE WHEN j < 10 THEN 'key-' ELSE 'opt-' END || (j % 10),
       CASE WHEN j < 10
            THEN '"value-' || (j % 10) || '-' || lpad((i % 10000000)::text, 7, '0') || '"'
            ELSE '{"enabled":true,"label":"item-' || (j % 10) || '-' || lpad((i % 10000000)::text, 7, '0') || '"}'
       END,
       :now, :now, 1
FROM generate_series(1, :users) AS i CROSS JOIN LATERAL generate_series(0, 19) AS j;
COMMIT;
SET session_replication_role = DEFAULT;
-- New rows prefs creates get fresh ids.
SELECT setval(pg_get_serial_sequence('users', 'id'), :users);
SELECT setval(pg_get_serial_sequence('preferences', 'id'), :users * 20);
-- What autovacuum would have done on a live database: statistics, hint bits, visibility map.
VACUUM (ANALYZE) users, preferences;
-- Write everything out now, so that no measurement pays for the load's dirty pages.
CHECKPOINT;
