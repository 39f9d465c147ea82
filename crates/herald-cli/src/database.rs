//! `--database-url` for the commands that read a service's database (`outbox`, `store`,
//! `projections`, `sagas`): `postgres://...` or `sqlite://path`, opened one way for all.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};

/// An open database.
pub(crate) enum Pool {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

/// Connects to `url` (SQLite waits up to 5 s for a busy database).
pub(crate) async fn connect(url: &str) -> anyhow::Result<Pool> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let pool = sqlx::PgPool::connect(url).await.with_context(|| format!("connecting to {}", redact(url)))?;
        return Ok(Pool::Postgres(pool));
    }
    if url.starts_with("sqlite:") {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .with_context(|| format!("reading {url}"))?
            .busy_timeout(Duration::from_secs(5));
        let pool = sqlx::SqlitePool::connect_with(options).await.with_context(|| format!("opening {url}"))?;
        return Ok(Pool::Sqlite(pool));
    }
    bail!("--database-url {}: expected postgres://... or sqlite://...", redact(url))
}

/// The URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &credentials[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(super::redact("postgres://herald:secret@127.0.0.1/db"), "postgres://herald:***@127.0.0.1/db");
        assert_eq!(super::redact("postgres://127.0.0.1/db"), "postgres://127.0.0.1/db");
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}
