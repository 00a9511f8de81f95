DROP TABLE preferences;
DROP TABLE users;
