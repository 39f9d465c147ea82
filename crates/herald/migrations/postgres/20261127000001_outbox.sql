-- herald outbox, PostgreSQL. Applied by `PostgresOutbox::new` (recorded in herald_schema);
-- the same file works with `sqlx migrate` if you prefer to run it yourself.
--
-- `txid` is the writing transaction's id. The relay reads rows in (txid, id) order and only
-- below pg_snapshot_xmin(pg_current_snapshot()): every transaction with a smaller id has
-- ended, so no row can later appear behind the relay's cursor (a bigserial alone is handed
-- out at INSERT, and transactions commit out of order: an `id > cursor` relay skips rows).
--
-- The primary key is (txid, id), the relay's read order: one index to maintain per row
-- written, not two.
CREATE TABLE IF NOT EXISTS herald_outbox (
    txid        XID8   NOT NULL DEFAULT pg_current_xact_id(),
    id          BIGINT GENERATED ALWAYS AS IDENTITY,
    event_id    UUID   NOT NULL,
    topic       TEXT   NOT NULL,
    key         TEXT,
    headers     TEXT   NOT NULL,
    payload     BYTEA  NOT NULL,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (txid, id)
);

-- One row per relay name: its cursor (the last published position) and its lease.
CREATE TABLE IF NOT EXISTS herald_outbox_relay (
    name            TEXT   PRIMARY KEY,
    cursor_txid     XID8   NOT NULL DEFAULT '0',
    cursor_id       BIGINT NOT NULL DEFAULT 0,
    owner           TEXT,
    lease_until_ms  BIGINT NOT NULL DEFAULT 0
);
