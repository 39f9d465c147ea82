-- herald projections, versioned read models. Applied by the projection runner (recorded in
-- herald_schema); the same file works with `sqlx migrate`.
--
-- Each projection version owns its physical tables (`<table>_v<version>`, listed in
-- `tables`, comma-separated). `herald_projection_live` names the version its views
-- (`<table>`) point at; a newer version builds beside it and takes over once caught up,
-- and the older one is marked `retired_ms` and its tables dropped after a grace period.
ALTER TABLE herald_projection_checkpoints ADD COLUMN created_ms BIGINT;
ALTER TABLE herald_projection_checkpoints ADD COLUMN tables TEXT;
ALTER TABLE herald_projection_checkpoints ADD COLUMN retired_ms BIGINT;

CREATE TABLE IF NOT EXISTS herald_projection_live (
    name         TEXT    PRIMARY KEY,
    version      INTEGER NOT NULL,
    switched_ms  BIGINT  NOT NULL
);

-- A Kafka-fed projection version's checkpoint: the next offset to fold per partition,
-- moved in the same transaction as the read model's writes (records below it are
-- redeliveries and are passed over).
CREATE TABLE IF NOT EXISTS herald_projection_offsets (
    name         TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    topic        TEXT    NOT NULL,
    partition    INTEGER NOT NULL,
    next_offset  BIGINT  NOT NULL,
    PRIMARY KEY (name, version, topic, partition)
);
