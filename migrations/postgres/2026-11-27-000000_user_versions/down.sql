ALTER TABLE users RESET (fillfactor);
ALTER TABLE users DROP COLUMN version;
