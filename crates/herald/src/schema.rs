//! herald's own tables in a service's database: each store applies its migrations
//! (`migrations/<backend>/*.sql`, embedded) at construction and records them in
//! `herald_schema`, apart from the service's own `_sqlx_migrations`.

/// PostgreSQL: every herald store takes the same advisory lock while it migrates.
#[cfg(feature = "postgres")]
pub(crate) mod postgres {
    pub(crate) const LOCK: &str = "SELECT pg_advisory_xact_lock(7345237112)";
    pub(crate) const SELECT: &str = "SELECT name FROM herald_schema WHERE name = $1";
    pub(crate) const INSERT: &str = "INSERT INTO herald_schema (name, applied_ms) VALUES ($1, $2)";
    pub(crate) const INBOX: [(&str, &str); 1] =
        [("20261130000001_inbox", include_str!("../migrations/postgres/20261130000001_inbox.sql"))];
    pub(crate) const OUTBOX: [(&str, &str); 1] =
        [("20261127000001_outbox", include_str!("../migrations/postgres/20261127000001_outbox.sql"))];
    pub(crate) const EVENT_STORE: [(&str, &str); 1] =
        [("20261130000002_event_store", include_str!("../migrations/postgres/20261130000002_event_store.sql"))];
    pub(crate) const PROJECTIONS: [(&str, &str); 2] = [
        ("20261130000003_projections", include_str!("../migrations/postgres/20261130000003_projections.sql")),
        (
            "20261130000004_projection_versions",
            include_str!("../migrations/postgres/20261130000004_projection_versions.sql"),
        ),
    ];
    pub(crate) const SAGAS: [(&str, &str); 1] =
        [("20261130000005_sagas", include_str!("../migrations/postgres/20261130000005_sagas.sql"))];
}

/// SQLite: one writer at a time, so no lock is needed.
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    pub(crate) const LOCK: &str = "";
    pub(crate) const SELECT: &str = "SELECT name FROM herald_schema WHERE name = ?";
    pub(crate) const INSERT: &str = "INSERT INTO herald_schema (name, applied_ms) VALUES (?, ?)";
    pub(crate) const INBOX: [(&str, &str); 1] =
        [("20261130000001_inbox", include_str!("../migrations/sqlite/20261130000001_inbox.sql"))];
    pub(crate) const OUTBOX: [(&str, &str); 1] =
        [("20261127000001_outbox", include_str!("../migrations/sqlite/20261127000001_outbox.sql"))];
    pub(crate) const EVENT_STORE: [(&str, &str); 1] =
        [("20261130000002_event_store", include_str!("../migrations/sqlite/20261130000002_event_store.sql"))];
    pub(crate) const PROJECTIONS: [(&str, &str); 2] = [
        ("20261130000003_projections", include_str!("../migrations/sqlite/20261130000003_projections.sql")),
        (
            "20261130000004_projection_versions",
            include_str!("../migrations/sqlite/20261130000004_projection_versions.sql"),
        ),
    ];
    pub(crate) const SAGAS: [(&str, &str); 1] =
        [("20261130000005_sagas", include_str!("../migrations/sqlite/20261130000005_sagas.sql"))];
}

/// Applies `migrations` (name, SQL) that `herald_schema` does not list yet, in order, in
/// one transaction opened after taking the backend's lock (so concurrent starters, the
/// inbox's and the outbox's among them, do not race on `CREATE TABLE IF NOT EXISTS`);
/// database errors go through `$error(operation)`.
macro_rules! migrate {
    ($pool:expr, $backend:ident, $migrations:expr, $error:path) => {{
        use crate::schema::$backend::{INSERT, LOCK, SELECT};
        let mut tx = $pool.begin().await.map_err($error("begin migration"))?;
        if !LOCK.is_empty() {
            sqlx::query(LOCK).execute(&mut *tx).await.map_err($error("lock for migration"))?;
        }
        sqlx::query("CREATE TABLE IF NOT EXISTS herald_schema (name TEXT PRIMARY KEY, applied_ms BIGINT NOT NULL)")
            .execute(&mut *tx)
            .await
            .map_err($error("create table herald_schema"))?;
        for (name, sql) in $migrations {
            let applied: Option<(String,)> = sqlx::query_as(SELECT)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err($error("read herald_schema"))?;
            if applied.is_some() {
                continue;
            }
            sqlx::raw_sql(sql).execute(&mut *tx).await.map_err($error("apply migration"))?;
            sqlx::query(INSERT)
                .bind(name)
                .bind(crate::time::now_ms())
                .execute(&mut *tx)
                .await
                .map_err($error("record migration"))?;
        }
        tx.commit().await.map_err($error("commit migration"))?;
    }};
}
pub(crate) use migrate;
