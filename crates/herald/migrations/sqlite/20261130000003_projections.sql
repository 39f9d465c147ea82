-- herald projections. Applied by the projection runner (recorded in herald_schema); the
-- same file works with `sqlx migrate`.
--
-- One row per projection name and version: the position of the last event folded into its
-- read model (written in the same transaction as the read model), whether it is parked at
-- a failing event, and a command for it (`retry` or `skip`) from `herald projections`.
CREATE TABLE IF NOT EXISTS herald_projection_checkpoints (
    name             TEXT    NOT NULL,
    version          INTEGER NOT NULL,
    txid             BIGINT  NOT NULL DEFAULT 0,
    id               BIGINT  NOT NULL DEFAULT 0,
    last_event_ms    BIGINT,
    updated_ms       BIGINT  NOT NULL DEFAULT 0,
    parked_txid      BIGINT,
    parked_id        BIGINT,
    parked_event_id  TEXT,
    parked_error     TEXT,
    command          TEXT,
    PRIMARY KEY (name, version)
);

-- Events a projection was told to skip, with the error they caused.
CREATE TABLE IF NOT EXISTS herald_projection_skips (
    name        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    txid        BIGINT  NOT NULL,
    id          BIGINT  NOT NULL,
    event_id    TEXT    NOT NULL,
    error       TEXT    NOT NULL,
    skipped_ms  BIGINT  NOT NULL,
    PRIMARY KEY (name, version, txid, id)
);
