-- herald inbox, SQLite. Applied by `SqliteInbox::new` (recorded in herald_schema);
-- the same file works with `sqlx migrate` if you prefer to run it yourself.
--
-- One row per (consumer group, event id) that a group handled: the primary key makes the
-- database itself refuse a second claim of an event, so a claim committed in the
-- handler's own transaction gives exactly-once effects. Rows older than the inbox's
-- window are pruned by recorded_at_ms.
CREATE TABLE IF NOT EXISTS herald_inbox (
    group_id        TEXT   NOT NULL,
    event_id        TEXT   NOT NULL,
    recorded_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (group_id, event_id)
);

CREATE INDEX IF NOT EXISTS herald_inbox_recorded_at ON herald_inbox (recorded_at_ms);
