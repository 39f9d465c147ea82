//! [`SagaDb`]: the database side of sagas — instances, history, deadlines, and the inbox
//! and outbox rows that commit with them — as SQL both backends run (`sql`) and one
//! macro-generated impl per backend.

use std::future::Future;

use uuid::Uuid;

use super::SagaError;
use super::plan::{Instance, Write};

/// A stored history line: version, sequence, time, kind, what, event id.
pub(crate) type HistoryLine = (i64, i64, i64, String, String, Option<String>);

/// A listed instance: saga, the instance, and when it ended.
pub(crate) type Listed = (String, Instance, Option<i64>);

/// The database side of sagas. One implementation per backend.
pub trait SagaDb: Send + Sync + Clone + 'static {
    /// The transaction decisions are written in.
    type Tx: Send;
    /// Opens a transaction.
    fn begin(&self) -> impl Future<Output = Result<Self::Tx, SagaError>> + Send;
    /// Commits it.
    fn commit(tx: Self::Tx) -> impl Future<Output = Result<(), SagaError>> + Send;
    /// Rolls it back now.
    fn rollback(tx: Self::Tx) -> impl Future<Output = Result<(), SagaError>> + Send;
    /// Claims `event_id` for `group` in the inbox; false for a duplicate.
    #[doc(hidden)]
    fn claim_in(tx: &mut Self::Tx, group: &str, event_id: Uuid)
    -> impl Future<Output = Result<bool, SagaError>> + Send;
    /// Claims `event_id` for `group` and loads instance `id` of `saga`: `None` for a
    /// duplicate. One round trip where the backend allows it.
    #[doc(hidden)]
    fn claim_load_in(
        tx: &mut Self::Tx,
        group: &str,
        event_id: Uuid,
        saga: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<Option<Instance>>, SagaError>> + Send;
    /// Loads instance `id` of `saga`.
    #[doc(hidden)]
    fn load_in(
        tx: &mut Self::Tx,
        saga: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<Instance>, SagaError>> + Send;
    /// Writes a decision if the instance is still at the version it was planned from;
    /// false otherwise (the caller rolls back and tries again).
    #[doc(hidden)]
    fn write_in(tx: &mut Self::Tx, saga: &str, write: &Write) -> impl Future<Output = Result<bool, SagaError>> + Send;
    /// Leases up to `limit` deadlines of `saga` due at `now_ms` to `owner` until
    /// `until_ms`: (instance, name, the version that set it).
    #[doc(hidden)]
    fn lease_due(
        &self,
        saga: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<(String, String, i64)>, SagaError>> + Send;
    /// Deletes a leased deadline inside `tx` if it is still the one leased to `owner`;
    /// false if it was cancelled, set again or leased by another since.
    #[doc(hidden)]
    fn take_deadline_in(
        tx: &mut Self::Tx,
        saga: &str,
        deadline: (&str, &str, i64),
        owner: &str,
    ) -> impl Future<Output = Result<bool, SagaError>> + Send;
    /// Instances, newest first, of `saga` and `status` (empty: any).
    #[doc(hidden)]
    fn list(&self, saga: &str, status: &str, limit: i64)
    -> impl Future<Output = Result<Vec<Listed>, SagaError>> + Send;
    /// Instance `id` (of `saga`, or of any when empty) with its history and deadlines
    /// (name, due, lease owner).
    #[doc(hidden)]
    #[allow(clippy::type_complexity)]
    fn show(
        &self,
        saga: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<(Listed, Vec<HistoryLine>, Vec<(String, i64, Option<String>)>)>, SagaError>> + Send;
    /// Records `saga`'s steps, in order.
    #[doc(hidden)]
    fn define(&self, saga: &str, steps: &[&str]) -> impl Future<Output = Result<(), SagaError>> + Send;
    /// `saga`'s steps as its runner recorded them.
    #[doc(hidden)]
    fn steps(&self, saga: &str) -> impl Future<Output = Result<Vec<String>, SagaError>> + Send;
    /// Instances of `saga` by status.
    #[doc(hidden)]
    fn counts(&self, saga: &str) -> impl Future<Output = Result<Vec<(String, i64)>, SagaError>> + Send;
}

/// The SQL both backends run, with `$n` placeholders (SQLite reads them as `?n`).
pub(crate) mod sql {
    pub(crate) const CLAIM: &str = "INSERT INTO herald_inbox (group_id, event_id, recorded_at_ms) \
         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
    pub(crate) const LOAD: &str = "SELECT id, version, status, step, state, started_ms, updated_ms \
         FROM herald_sagas WHERE saga = $1 AND id = $2";
    pub(crate) const INSERT: &str = "INSERT INTO herald_sagas \
         (saga, id, version, status, step, state, started_ms, updated_ms, ended_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (saga, id) DO NOTHING";
    pub(crate) const UPDATE: &str = "UPDATE herald_sagas SET version = $3, status = $4, step = $5, state = $6, \
         updated_ms = $7, ended_ms = $8 WHERE saga = $1 AND id = $2 AND version = $9";
    /// Followed by one `VALUES` row per history line.
    pub(crate) const HISTORY: &str = "INSERT INTO herald_saga_history \
         (saga, id, version, seq, at_ms, kind, what, event_id) ";
    pub(crate) const SET: &str = "INSERT INTO herald_saga_deadlines \
         (saga, id, name, due_ms, set_version, lease_owner, lease_until_ms) VALUES ($1, $2, $3, $4, $5, NULL, 0) \
         ON CONFLICT (saga, id, name) DO UPDATE SET due_ms = excluded.due_ms, \
         set_version = excluded.set_version, lease_owner = NULL, lease_until_ms = 0";
    pub(crate) const CANCEL: &str = "DELETE FROM herald_saga_deadlines WHERE saga = $1 AND id = $2 AND name = $3";
    pub(crate) const CANCEL_ALL: &str = "DELETE FROM herald_saga_deadlines WHERE saga = $1 AND id = $2";
    pub(crate) const LEASE: &str = "UPDATE herald_saga_deadlines SET lease_owner = $2, lease_until_ms = $3 \
         WHERE saga = $1 AND due_ms <= $4 AND lease_until_ms < $4 AND (id, name) IN \
         (SELECT id, name FROM herald_saga_deadlines WHERE saga = $1 AND due_ms <= $4 AND lease_until_ms < $4 \
         ORDER BY due_ms LIMIT $5) RETURNING id, name, set_version";
    pub(crate) const TAKE: &str = "DELETE FROM herald_saga_deadlines WHERE saga = $1 AND id = $2 AND name = $3 \
         AND set_version = $4 AND lease_owner = $5";
    pub(crate) const LIST: &str = "SELECT saga, id, version, status, step, state, started_ms, updated_ms, \
         ended_ms FROM herald_sagas WHERE ($1 = '' OR saga = $1) AND ($2 = '' OR status = $2) \
         ORDER BY started_ms DESC, id LIMIT $3";
    pub(crate) const FIND: &str = "SELECT saga, id, version, status, step, state, started_ms, updated_ms, \
         ended_ms FROM herald_sagas WHERE ($1 = '' OR saga = $1) AND id = $2 ORDER BY saga LIMIT 1";
    pub(crate) const HISTORY_OF: &str = "SELECT version, seq, at_ms, kind, what, event_id \
         FROM herald_saga_history WHERE saga = $1 AND id = $2 ORDER BY version, seq";
    pub(crate) const DEADLINES_OF: &str = "SELECT name, due_ms, lease_owner FROM herald_saga_deadlines \
         WHERE saga = $1 AND id = $2 ORDER BY due_ms";
    pub(crate) const DEFINE: &str = "INSERT INTO herald_saga_definitions (saga, steps) VALUES ($1, $2) \
         ON CONFLICT (saga) DO UPDATE SET steps = excluded.steps";
    pub(crate) const STEPS: &str = "SELECT steps FROM herald_saga_definitions WHERE saga = $1";
    pub(crate) const COUNTS: &str =
        "SELECT status, CAST(count(*) AS BIGINT) FROM herald_sagas WHERE saga = $1 GROUP BY status";
}

/// A [`sql::LOAD`] row.
pub(crate) type LoadRow = (String, i64, String, Option<String>, String, i64, i64);

pub(crate) fn loaded((id, version, status, step, state, started_ms, updated_ms): LoadRow) -> Instance {
    Instance { id, version, status, step, state, started_ms, updated_ms }
}

/// A [`sql::LIST`] row.
pub(crate) type ListRow = (String, String, i64, String, Option<String>, String, i64, i64, Option<i64>);

pub(crate) fn listed(row: ListRow) -> Listed {
    let (saga, id, version, status, step, state, started_ms, updated_ms, ended) = row;
    (saga, Instance { id, version, status, step, state, started_ms, updated_ms }, ended)
}

/// The [`SagaDb`] impl of one backend: the shared statements through `$sql` (placeholder
/// style), transactions opened with `$begin`, the backend's outbox insert, and its
/// one-statement claim and load if it has one (`$claim_load`, returning a claimed flag
/// and a [`sql::LOAD`] row of optional columns).
macro_rules! saga_db {
    ($name:ident, $db:ty, $sql:path, $begin:literal, $outbox:literal, $claim_load:expr) => {
        use uuid::Uuid;
        use $crate::saga::SagaError;
        use $crate::saga::database;
        use $crate::saga::db::{HistoryLine, ListRow, Listed, LoadRow, SagaDb, listed, loaded, sql};
        use $crate::saga::plan::{Instance, Write};

        impl SagaDb for $name {
            type Tx = sqlx::Transaction<'static, $db>;

            async fn begin(&self) -> Result<Self::Tx, SagaError> {
                self.pool.begin_with($begin).await.map_err(database("begin"))
            }

            async fn commit(tx: Self::Tx) -> Result<(), SagaError> {
                tx.commit().await.map_err(database("commit"))
            }

            async fn rollback(tx: Self::Tx) -> Result<(), SagaError> {
                tx.rollback().await.map_err(database("roll back"))
            }

            async fn claim_in(tx: &mut Self::Tx, group: &str, event_id: Uuid) -> Result<bool, SagaError> {
                let done = sqlx::query($sql(sql::CLAIM))
                    .bind(group)
                    .bind(event_id.hyphenated().to_string())
                    .bind($crate::time::now_ms())
                    .execute(&mut **tx)
                    .await
                    .map_err(database("claim the event"))?;
                Ok(done.rows_affected() == 1)
            }

            async fn claim_load_in(
                tx: &mut Self::Tx,
                group: &str,
                event_id: Uuid,
                saga: &str,
                id: &str,
            ) -> Result<Option<Option<Instance>>, SagaError> {
                let Some(claim_load) = $claim_load else {
                    if !Self::claim_in(tx, group, event_id).await? {
                        return Ok(None);
                    }
                    return Self::load_in(tx, saga, id).await.map(Some);
                };
                type Row = (
                    bool,
                    Option<String>,
                    Option<i64>,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                    Option<i64>,
                    Option<i64>,
                );
                let row: Row = sqlx::query_as($sql(claim_load))
                    .bind(group)
                    .bind(event_id.hyphenated().to_string())
                    .bind($crate::time::now_ms())
                    .bind(saga)
                    .bind(id)
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(database("claim the event and load its instance"))?;
                let (claimed, id, version, status, step, state, started_ms, updated_ms) = row;
                if !claimed {
                    return Ok(None);
                }
                let (Some(id), Some(version), Some(status), Some(state), Some(started_ms), Some(updated_ms)) =
                    (id, version, status, state, started_ms, updated_ms)
                else {
                    return Ok(Some(None));
                };
                Ok(Some(Some(loaded((id, version, status, step, state, started_ms, updated_ms)))))
            }

            async fn load_in(tx: &mut Self::Tx, saga: &str, id: &str) -> Result<Option<Instance>, SagaError> {
                let row: Option<LoadRow> = sqlx::query_as($sql(sql::LOAD))
                    .bind(saga)
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(database("load the instance"))?;
                Ok(row.map(loaded))
            }

            async fn write_in(tx: &mut Self::Tx, saga: &str, write: &Write) -> Result<bool, SagaError> {
                let i = &write.instance;
                let done = if i.version == 1 {
                    sqlx::query($sql(sql::INSERT))
                        .bind(saga)
                        .bind(&i.id)
                        .bind(i.version)
                        .bind(&i.status)
                        .bind(&i.step)
                        .bind(&i.state)
                        .bind(i.started_ms)
                        .bind(i.updated_ms)
                        .bind(write.ended_ms)
                        .execute(&mut **tx)
                        .await
                } else {
                    sqlx::query($sql(sql::UPDATE))
                        .bind(saga)
                        .bind(&i.id)
                        .bind(i.version)
                        .bind(&i.status)
                        .bind(&i.step)
                        .bind(&i.state)
                        .bind(i.updated_ms)
                        .bind(write.ended_ms)
                        .bind(i.version - 1)
                        .execute(&mut **tx)
                        .await
                };
                if done.map_err(database("write the instance"))?.rows_affected() != 1 {
                    return Ok(false);
                }
                Self::rows_in(tx, saga, write).await?;
                Ok(true)
            }

            async fn lease_due(
                &self,
                saga: &str,
                owner: &str,
                now_ms: i64,
                until_ms: i64,
                limit: i64,
            ) -> Result<Vec<(String, String, i64)>, SagaError> {
                let mut tx = self.begin().await?;
                let due: Vec<(String, String, i64)> = sqlx::query_as($sql(sql::LEASE))
                    .bind(saga)
                    .bind(owner)
                    .bind(until_ms)
                    .bind(now_ms)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(database("lease due deadlines"))?;
                Self::commit(tx).await?;
                Ok(due)
            }

            async fn take_deadline_in(
                tx: &mut Self::Tx,
                saga: &str,
                (id, name, set_version): (&str, &str, i64),
                owner: &str,
            ) -> Result<bool, SagaError> {
                let done = sqlx::query($sql(sql::TAKE))
                    .bind(saga)
                    .bind(id)
                    .bind(name)
                    .bind(set_version)
                    .bind(owner)
                    .execute(&mut **tx)
                    .await
                    .map_err(database("take the deadline"))?;
                Ok(done.rows_affected() == 1)
            }

            async fn list(&self, saga: &str, status: &str, limit: i64) -> Result<Vec<Listed>, SagaError> {
                let rows: Vec<ListRow> = sqlx::query_as($sql(sql::LIST))
                    .bind(saga)
                    .bind(status)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database("list instances"))?;
                Ok(rows.into_iter().map(listed).collect())
            }

            async fn show(
                &self,
                saga: &str,
                id: &str,
            ) -> Result<Option<(Listed, Vec<HistoryLine>, Vec<(String, i64, Option<String>)>)>, SagaError> {
                let row: Option<ListRow> = sqlx::query_as($sql(sql::FIND))
                    .bind(saga)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(database("find the instance"))?;
                let Some(row) = row else { return Ok(None) };
                let found = listed(row);
                let history: Vec<HistoryLine> = sqlx::query_as($sql(sql::HISTORY_OF))
                    .bind(&found.0)
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database("read the history"))?;
                let deadlines: Vec<(String, i64, Option<String>)> = sqlx::query_as($sql(sql::DEADLINES_OF))
                    .bind(&found.0)
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database("read the deadlines"))?;
                Ok(Some((found, history, deadlines)))
            }

            async fn define(&self, saga: &str, steps: &[&str]) -> Result<(), SagaError> {
                sqlx::query($sql(sql::DEFINE))
                    .bind(saga)
                    .bind(steps.join(","))
                    .execute(&self.pool)
                    .await
                    .map_err(database("record the steps"))?;
                Ok(())
            }

            async fn steps(&self, saga: &str) -> Result<Vec<String>, SagaError> {
                let steps: Option<String> = sqlx::query_scalar($sql(sql::STEPS))
                    .bind(saga)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(database("read the steps"))?;
                Ok(steps.unwrap_or_default().split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
            }

            async fn counts(&self, saga: &str) -> Result<Vec<(String, i64)>, SagaError> {
                sqlx::query_as($sql(sql::COUNTS))
                    .bind(saga)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database("count instances"))
            }
        }

        impl $name {
            /// The history, outbox and deadline rows of a written decision.
            async fn rows_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                saga: &str,
                write: &Write,
            ) -> Result<(), SagaError> {
                let i = &write.instance;
                if !write.history.is_empty() {
                    // One statement for all lines: a step's round trips are its cost.
                    let mut insert = sqlx::QueryBuilder::<$db>::new(sql::HISTORY);
                    insert.push_values(write.history.iter().enumerate(), |mut row, (seq, line)| {
                        row.push_bind(saga)
                            .push_bind(&i.id)
                            .push_bind(i.version)
                            .push_bind(seq as i64)
                            .push_bind(i.updated_ms)
                            .push_bind(line.kind)
                            .push_bind(&line.what)
                            .push_bind(line.event_id.map(|id| id.hyphenated().to_string()));
                    });
                    insert.build().execute(&mut **tx).await.map_err(database("write the history"))?;
                }
                for row in &write.outbox {
                    sqlx::query($outbox)
                        .bind(row.event_id.hyphenated().to_string())
                        .bind(&row.topic)
                        .bind(&row.key)
                        .bind(&row.headers)
                        .bind(&row.payload)
                        .bind(row.created_ms)
                        .execute(&mut **tx)
                        .await
                        .map_err(database("enqueue a message"))?;
                }
                let cancels = write.cancel.iter().map(|name| (sql::CANCEL, Some(name.as_str())));
                let all = write.cancel_all.then_some((sql::CANCEL_ALL, None));
                for (statement, name) in cancels.chain(all) {
                    let query = sqlx::query($sql(statement)).bind(saga).bind(&i.id);
                    let query = match name {
                        Some(name) => query.bind(name),
                        None => query,
                    };
                    query.execute(&mut **tx).await.map_err(database("cancel a deadline"))?;
                }
                if write.cancel_all {
                    return Ok(());
                }
                for (name, due_ms) in &write.set {
                    sqlx::query($sql(sql::SET))
                        .bind(saga)
                        .bind(&i.id)
                        .bind(name)
                        .bind(*due_ms)
                        .bind(i.version)
                        .execute(&mut **tx)
                        .await
                        .map_err(database("set a deadline"))?;
                }
                Ok(())
            }
        }
    };
}
pub(crate) use saga_db;
