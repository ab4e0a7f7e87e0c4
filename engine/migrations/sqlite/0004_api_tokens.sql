-- Bearer tokens of the JSON API (issue 14): only a SHA-256 hash of each
-- token's secret is stored; `person` or `role` is what it acts for;
-- `revoked_at` set refuses it at once. Times are milliseconds since the epoch.
CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    hash       TEXT    NOT NULL,
    person     TEXT,
    role       TEXT,
    note       TEXT,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
