-- herald event store, SQLite. Applied by `SqliteEventStore::new` (recorded in
-- herald_schema); the same file works with `sqlx migrate` if you prefer to run it yourself.
--
-- herald_events is both the store and its outbox. SQLite has one writer at a time, so ids
-- (AUTOINCREMENT: never reused) are in commit order and are the global order.
CREATE TABLE IF NOT EXISTS herald_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id       TEXT    NOT NULL,
    stream_version  INTEGER NOT NULL,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    event_version   INTEGER NOT NULL,
    topic           TEXT    NOT NULL,
    headers         TEXT    NOT NULL,
    payload         BLOB    NOT NULL,
    created_ms      INTEGER NOT NULL,
    CONSTRAINT herald_events_stream_version UNIQUE (stream_id, stream_version),
    CONSTRAINT herald_events_event_id UNIQUE (event_id)
);

-- One row per stream: its last version (-1: no events yet). Appends write this row first,
-- which takes SQLite's write lock before anything is read.
CREATE TABLE IF NOT EXISTS herald_streams (
    stream_id  TEXT    PRIMARY KEY,
    version    INTEGER NOT NULL,
    last_txid  INTEGER NOT NULL DEFAULT 0,
    -- Stream metadata: reads of the stream skip events before truncate_before, beyond the
    -- last max_count, or older than max_age_ms; deleted is 0 (live), 1 (soft: reads see
    -- nothing until the next append) or 2 (hard: events removed, appends refused).
    max_count        BIGINT,
    max_age_ms       BIGINT,
    truncate_before  BIGINT   NOT NULL DEFAULT 0,
    deleted          SMALLINT NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS herald_events_relay (
    name            TEXT    PRIMARY KEY,
    cursor_txid     INTEGER NOT NULL DEFAULT 0,
    cursor_id       INTEGER NOT NULL DEFAULT 0,
    owner           TEXT,
    lease_until_ms  INTEGER NOT NULL DEFAULT 0
);

-- The latest snapshot of each stream's aggregate: its state after `version`, serialized
-- with the aggregate's snapshot schema version (another version is ignored and the state
-- rebuilt from events).
CREATE TABLE IF NOT EXISTS herald_snapshots (
    stream_id       TEXT   PRIMARY KEY,
    version         BIGINT NOT NULL,
    schema_version  INTEGER NOT NULL,
    state           BLOB    NOT NULL,
    created_ms      BIGINT NOT NULL
);
