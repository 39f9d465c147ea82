//! [`RetryPolicy`]: exponential backoff with jitter, and the line between a retry and a
//! dead letter.

use std::time::Duration;

use crate::backoff::Backoff;

/// What a handler reports when it fails. `?` turns any error into a retryable one;
/// [`HandlerError::permanent`] marks one that no retry can fix.
///
/// Like `anyhow::Error`, it does not implement [`std::error::Error`] itself: that is what
/// lets every error convert into it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandlerError {
    /// Worth another try (a timeout, a dependency briefly down).
    Retryable(String),
    /// Will fail again however often it is tried (bad data, a rule violated).
    Permanent(String),
    /// The message could not be deserialized; never retried.
    Undecodable(String),
    /// The handler panicked (set by the runtime, which catches the panic); never retried:
    /// the message is dead-lettered and the consumer carries on.
    Panicked(String),
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    /// Any error, retryable: most failures of a handler's dependencies pass.
    fn from(error: E) -> Self {
        HandlerError::Retryable(error.to_string())
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (HandlerError::Retryable(text)
        | HandlerError::Permanent(text)
        | HandlerError::Undecodable(text)
        | HandlerError::Panicked(text)) = self;
        write!(f, "{}: {text}", self.class())
    }
}

impl HandlerError {
    /// A failure no retry can fix (bad data, a rule violated): dead-lettered at once.
    pub fn permanent(error: impl std::fmt::Display) -> Self {
        HandlerError::Permanent(error.to_string())
    }

    /// A failure worth another try, from anything printable (`?` does this for errors).
    pub fn retryable(error: impl std::fmt::Display) -> Self {
        HandlerError::Retryable(error.to_string())
    }

    /// The error class written to the dead-letter headers.
    pub fn class(&self) -> &'static str {
        match self {
            HandlerError::Retryable(_) => "retryable",
            HandlerError::Permanent(_) => "permanent",
            HandlerError::Undecodable(_) => "undecodable",
            HandlerError::Panicked(_) => "panicked",
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this delay.
    RetryAfter(Duration),
    /// Give up: send it to the dead-letter topic.
    DeadLetter,
}

/// Retries with exponential backoff and jitter ([`Backoff`]), up to `max_attempts`;
/// permanent, undecodable and panicked failures dead-letter at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The delays between attempts.
    pub backoff: Backoff,
    /// Attempts in total, the first included (1 means never retry).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { backoff: Backoff::default(), max_attempts: 5 }
    }
}

impl RetryPolicy {
    setters! {
        /// Sets the delays between attempts.
        backoff: Backoff,
        /// Sets the attempts in total, the first included.
        max_attempts: u32,
    }

    /// After attempt number `attempt` (1-based) failed with `error`: retry or dead-letter.
    /// `jitter` in `[0, 1)` comes from the caller, so tests choose it.
    pub fn decide(&self, attempt: u32, error: &HandlerError, jitter: f64) -> RetryDecision {
        if !matches!(error, HandlerError::Retryable(_)) || attempt >= self.max_attempts {
            return RetryDecision::DeadLetter;
        }
        RetryDecision::RetryAfter(self.backoff.delay(attempt, jitter))
    }

    /// The longest time a message can spend in retries (no jitter): an inbox's dedup
    /// window must be at least this long.
    pub fn horizon(&self) -> Duration {
        (1..self.max_attempts).map(|attempt| self.backoff.full_delay(attempt)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_cap_and_jitter_then_dead_letter() {
        let backoff =
            Backoff::default().initial_delay(Duration::from_millis(100)).max_delay(Duration::from_millis(500));
        let policy = RetryPolicy::default().backoff(backoff).max_attempts(5);
        let retryable = HandlerError::Retryable("timeout".into());
        let full = |attempt| policy.decide(attempt, &retryable, 1.0);
        assert_eq!(full(1), RetryDecision::RetryAfter(Duration::from_millis(100)));
        assert_eq!(full(2), RetryDecision::RetryAfter(Duration::from_millis(200)));
        assert_eq!(full(3), RetryDecision::RetryAfter(Duration::from_millis(400)));
        assert_eq!(full(4), RetryDecision::RetryAfter(Duration::from_millis(500)), "capped");
        assert_eq!(full(5), RetryDecision::DeadLetter, "five attempts in all");
        assert_eq!(
            policy.decide(1, &retryable, 0.0),
            RetryDecision::RetryAfter(Duration::from_millis(50)),
            "jitter halves at most"
        );
        assert_eq!(policy.horizon(), Duration::from_millis(100 + 200 + 400 + 500));
    }

    #[test]
    fn permanent_and_undecodable_errors_are_never_retried() {
        let policy = RetryPolicy::default();
        for error in [HandlerError::Permanent("bad".into()), HandlerError::Undecodable("not json".into())] {
            assert_eq!(policy.decide(1, &error, 0.5), RetryDecision::DeadLetter, "{error}");
        }
    }
}
