-- herald outbox, SQLite. Applied by `SqliteOutbox::new` (recorded in herald_schema); the
-- same file works with `sqlx migrate` if you prefer to run it yourself.
--
-- SQLite runs one write transaction at a time, so ids are handed out in commit order.
-- AUTOINCREMENT matters: without it SQLite reuses the largest id after that row is deleted,
-- and a relay whose cursor sits at that id would skip the new row.
CREATE TABLE IF NOT EXISTS herald_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT    NOT NULL,
    topic       TEXT    NOT NULL,
    key         TEXT,
    headers     TEXT    NOT NULL,
    payload     BLOB    NOT NULL,
    created_ms  INTEGER NOT NULL
);

-- One row per relay name: its cursor (the last published id) and its lease.
CREATE TABLE IF NOT EXISTS herald_outbox_relay (
    name            TEXT    PRIMARY KEY,
    cursor_id       INTEGER NOT NULL DEFAULT 0,
    owner           TEXT,
    lease_until_ms  INTEGER NOT NULL DEFAULT 0
);
