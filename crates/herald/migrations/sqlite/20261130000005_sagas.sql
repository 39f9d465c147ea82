-- herald sagas. Applied by the saga runner (recorded in herald_schema); the same file
-- works with `sqlx migrate`. The runner also applies the inbox and outbox migrations:
-- an incoming event's claim and the outgoing messages commit with the instance.
--
-- One row per saga instance: its state as JSON, the step it is at, a version that every
-- write checks and moves (optimistic concurrency), and how it ended.
CREATE TABLE IF NOT EXISTS herald_sagas (
    saga        TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    status      TEXT    NOT NULL,
    step        TEXT,
    state       TEXT    NOT NULL,
    started_ms  BIGINT  NOT NULL,
    updated_ms  BIGINT  NOT NULL,
    ended_ms    BIGINT,
    PRIMARY KEY (saga, id)
);
CREATE INDEX IF NOT EXISTS herald_sagas_by_status ON herald_sagas (saga, status);

-- What happened to each instance, in order: events in, deadlines fired, notes, messages
-- out, compensations, the end.
CREATE TABLE IF NOT EXISTS herald_saga_history (
    saga      TEXT    NOT NULL,
    id        TEXT    NOT NULL,
    version   BIGINT  NOT NULL,
    seq       BIGINT  NOT NULL,
    at_ms     BIGINT  NOT NULL,
    kind      TEXT    NOT NULL,
    what      TEXT    NOT NULL,
    event_id  TEXT,
    PRIMARY KEY (saga, id, version, seq)
);

-- Deadlines not fired yet. A runner leases due ones (lease_owner, lease_until_ms) and
-- fires each in a transaction that deletes it, only if it is still the one it leased
-- (set_version: the instance version that set it).
CREATE TABLE IF NOT EXISTS herald_saga_deadlines (
    saga            TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    due_ms          BIGINT  NOT NULL,
    set_version     BIGINT  NOT NULL,
    lease_owner     TEXT,
    lease_until_ms  BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (saga, id, name)
);
CREATE INDEX IF NOT EXISTS herald_saga_deadlines_due ON herald_saga_deadlines (saga, due_ms);

-- Each saga's declared steps, in order (comma-separated), written by its runner, so
-- `herald sagas show` can list an instance's remaining steps.
CREATE TABLE IF NOT EXISTS herald_saga_definitions (
    saga   TEXT PRIMARY KEY,
    steps  TEXT NOT NULL
);
