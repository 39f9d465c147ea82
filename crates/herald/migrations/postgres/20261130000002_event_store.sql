-- herald event store, PostgreSQL. Applied by `PostgresEventStore::new` (recorded in
-- herald_schema); the same file works with `sqlx migrate` if you prefer to run it yourself.
--
-- herald_events is both the store and its outbox: the relay publishes rows in (txid, id)
-- order below pg_snapshot_xmin(pg_current_snapshot()), as it does herald_outbox, and
-- read_all / subscriptions read the same order. Within a stream, versions are dense from 0.
CREATE TABLE IF NOT EXISTS herald_events (
    txid            XID8   NOT NULL DEFAULT pg_current_xact_id(),
    id              BIGINT GENERATED ALWAYS AS IDENTITY,
    stream_id       TEXT   NOT NULL,
    stream_version  BIGINT NOT NULL,
    event_id        UUID   NOT NULL,
    event_type      TEXT   NOT NULL,
    event_version   INT    NOT NULL,
    topic           TEXT   NOT NULL,
    headers         TEXT   NOT NULL,
    payload         BYTEA  NOT NULL,
    created_ms      BIGINT NOT NULL,
    PRIMARY KEY (txid, id),
    CONSTRAINT herald_events_stream_version UNIQUE (stream_id, stream_version),
    CONSTRAINT herald_events_event_id UNIQUE (event_id)
);

-- One row per stream: its last version (-1: no events yet) and the transaction that wrote
-- it. Appends lock this row first, so appends to one stream take turns; a transaction
-- whose id is below `last_txid` may not append (its events would sort before earlier
-- versions in the global order) and is retried.
CREATE TABLE IF NOT EXISTS herald_streams (
    stream_id  TEXT   PRIMARY KEY,
    version    BIGINT NOT NULL,
    last_txid  XID8   NOT NULL DEFAULT '0',
    -- Stream metadata: reads of the stream skip events before truncate_before, beyond the
    -- last max_count, or older than max_age_ms; deleted is 0 (live), 1 (soft: reads see
    -- nothing until the next append) or 2 (hard: events removed, appends refused).
    max_count        BIGINT,
    max_age_ms       BIGINT,
    truncate_before  BIGINT   NOT NULL DEFAULT 0,
    deleted          SMALLINT NOT NULL DEFAULT 0
);

-- The relays publishing herald_events: a cursor and a lease per relay name, as
-- herald_outbox_relay is for the outbox.
CREATE TABLE IF NOT EXISTS herald_events_relay (
    name            TEXT   PRIMARY KEY,
    cursor_txid     XID8   NOT NULL DEFAULT '0',
    cursor_id       BIGINT NOT NULL DEFAULT 0,
    owner           TEXT,
    lease_until_ms  BIGINT NOT NULL DEFAULT 0
);

-- The latest snapshot of each stream's aggregate: its state after `version`, serialized
-- with the aggregate's snapshot schema version (another version is ignored and the state
-- rebuilt from events).
CREATE TABLE IF NOT EXISTS herald_snapshots (
    stream_id       TEXT   PRIMARY KEY,
    version         BIGINT NOT NULL,
    schema_version  INT    NOT NULL,
    state           BYTEA  NOT NULL,
    created_ms      BIGINT NOT NULL
);
