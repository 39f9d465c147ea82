//! Console logins: the cookie carries a random session id, never the token itself (cookies
//! ignore ports, so every other service on the same host would receive a token). Sessions
//! live in memory: a restart asks for the token again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most sessions at once; the oldest goes first.
const SESSIONS_MAX: usize = 10_000;
/// How long a login lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Session ids and the tokens they stand for.
#[derive(Debug, Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, (String, Instant)>>);

impl Sessions {
    /// A new session for `token`: its id (244 random bits from the OS).
    pub(crate) fn open(&self, token: &str, now: Instant) -> String {
        let id = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let Ok(mut sessions) = self.0.lock() else { return id };
        sessions.retain(|_, (_, opened)| now.saturating_duration_since(*opened) < SESSION_TTL);
        if sessions.len() >= SESSIONS_MAX
            && let Some(oldest) = sessions.iter().min_by_key(|(_, (_, opened))| *opened).map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), (token.to_string(), now));
        id
    }

    /// The token session `id` stands for, while it lasts.
    pub(crate) fn token(&self, id: &str, now: Instant) -> Option<String> {
        let sessions = self.0.lock().ok()?;
        let (token, opened) = sessions.get(id)?;
        (now.saturating_duration_since(*opened) < SESSION_TTL).then(|| token.clone())
    }

    /// Ends session `id`.
    pub(crate) fn close(&self, id: &str) {
        if let Ok(mut sessions) = self.0.lock() {
            sessions.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_stands_for_its_token_until_it_expires_or_closes() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let id = sessions.open("token-aaaaaaaaaaaaaaaa", now);
        assert_eq!(id.len(), 64);
        assert_ne!(id, sessions.open("token-aaaaaaaaaaaaaaaa", now), "ids are random");
        assert_eq!(sessions.token(&id, now).as_deref(), Some("token-aaaaaaaaaaaaaaaa"));
        assert_eq!(sessions.token(&id, now + SESSION_TTL), None);
        assert_eq!(sessions.token("made-up", now), None);
        sessions.close(&id);
        assert_eq!(sessions.token(&id, now), None);
    }
}
