//! Durable inboxes on SQLite and PostgreSQL: one table, `herald_inbox` (created by the
//! migrations in `migrations/<backend>/`), with the primary key (group_id, event_id), so
//! the database itself refuses a second record of an event.
//! Both sides share the SQL text except for placeholders; a macro writes the two impls.

use std::time::Duration;

use uuid::Uuid;

use super::{DURABLE_WINDOW_DEFAULT, Inbox, InboxError, InboxFuture, window_ms};

fn database(operation: &'static str) -> impl FnOnce(sqlx::Error) -> InboxError {
    move |source| InboxError::Database { operation, source }
}

macro_rules! sql_inbox {
    (
        $(#[$doc:meta])*
        $name:ident, $feature:literal, $backend:ident, $pool:ty, $conn:ty,
        insert = $insert:literal, select = $select:literal, delete = $delete:literal
    ) => {
        $(#[$doc])*
        #[cfg(feature = $feature)]
        #[derive(Debug, Clone)]
        pub struct $name {
            pool: $pool,
            window: Duration,
        }

        #[cfg(feature = $feature)]
        impl $name {
            /// Applies herald's inbox migration (`herald_inbox`) if missing; entries are kept
            /// for 7 days.
            pub async fn new(pool: $pool) -> Result<Self, InboxError> {
                Self::with_window(pool, DURABLE_WINDOW_DEFAULT).await
            }

            /// Like [`new`](Self::new), keeping entries for `window`.
            pub async fn with_window(pool: $pool, window: Duration) -> Result<Self, InboxError> {
                crate::schema::migrate!(pool, $backend, crate::schema::$backend::INBOX, database);
                Ok(Self { pool, window })
            }

            /// Claims `event_id` for `group` inside the caller's transaction (or on any
            /// connection): `true` if this is the first claim, `false` for a duplicate.
            /// Do the handler's writes in the same transaction and commit once: the effect
            /// and the claim then stand or fall together.
            pub async fn claim_in(
                connection: &mut $conn,
                group: &str,
                event_id: Uuid,
                now_ms: i64,
            ) -> Result<bool, InboxError> {
                let inserted = sqlx::query($insert)
                    .bind(group)
                    .bind(event_id.hyphenated().to_string())
                    .bind(now_ms)
                    .execute(connection)
                    .await
                    .map_err(database("claim event"))?;
                Ok(inserted.rows_affected() == 1)
            }

            /// The pool it writes to.
            pub fn pool(&self) -> &$pool {
                &self.pool
            }
        }

        #[cfg(feature = $feature)]
        impl Inbox for $name {
            fn contains<'a>(&'a self, group: &'a str, event_id: Uuid) -> InboxFuture<'a, bool> {
                Box::pin(async move {
                    let found: Option<(i64,)> = sqlx::query_as($select)
                        .bind(group)
                        .bind(event_id.hyphenated().to_string())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(database("look up event"))?;
                    Ok(found.is_some())
                })
            }

            fn record<'a>(&'a self, group: &'a str, event_id: Uuid, now_ms: i64) -> InboxFuture<'a, bool> {
                Box::pin(async move {
                    let mut connection = self.pool.acquire().await.map_err(database("acquire connection"))?;
                    Self::claim_in(&mut connection, group, event_id, now_ms).await
                })
            }

            fn prune(&self, now_ms: i64) -> InboxFuture<'_, u64> {
                let cutoff = now_ms.saturating_sub(window_ms(self.window));
                Box::pin(async move {
                    let deleted = sqlx::query($delete)
                        .bind(cutoff)
                        .execute(&self.pool)
                        .await
                        .map_err(database("prune"))?;
                    Ok(deleted.rows_affected())
                })
            }

            fn window(&self) -> Duration {
                self.window
            }
        }
    };
}

sql_inbox!(
    /// The inbox in a SQLite database. Open the pool with WAL and `synchronous=FULL` (see
    /// README.md) so a claim that committed survives power loss.
    SqliteInbox, "sqlite", sqlite, sqlx::SqlitePool, sqlx::SqliteConnection,
    insert = "INSERT INTO herald_inbox (group_id, event_id, recorded_at_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    select = "SELECT recorded_at_ms FROM herald_inbox WHERE group_id = ? AND event_id = ?",
    delete = "DELETE FROM herald_inbox WHERE recorded_at_ms < ?"
);

sql_inbox!(
    /// The inbox in a PostgreSQL database.
    PostgresInbox, "postgres", postgres, sqlx::PgPool, sqlx::PgConnection,
    insert = "INSERT INTO herald_inbox (group_id, event_id, recorded_at_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    select = "SELECT recorded_at_ms FROM herald_inbox WHERE group_id = $1 AND event_id = $2",
    delete = "DELETE FROM herald_inbox WHERE recorded_at_ms < $1"
);
