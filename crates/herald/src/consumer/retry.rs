//! [`RetryPolicy`]: exponential backoff with jitter, and the line between a retry and a
//! dead letter.

use std::time::Duration;

/// What a handler reports when it fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// Worth another try (a timeout, a dependency briefly down).
    #[error("retryable: {0}")]
    Retryable(String),
    /// Will fail again however often it is tried (bad data, a rule violated).
    #[error("permanent: {0}")]
    Permanent(String),
    /// The message could not be deserialized; never retried.
    #[error("undecodable: {0}")]
    Undecodable(String),
    /// The handler panicked (set by the runtime, which catches the panic); never retried:
    /// the message is dead-lettered and the consumer carries on.
    #[error("panicked: {0}")]
    Panicked(String),
}

impl HandlerError {
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

/// Exponential backoff: `initial_delay * multiplier^(attempt-1)`, capped at `max_delay`,
/// then jittered to 50–100% so retries of many messages do not line up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the second attempt.
    pub initial_delay: Duration,
    /// Growth per attempt.
    pub multiplier: f64,
    /// Upper bound of a delay.
    pub max_delay: Duration,
    /// Attempts in total, the first included (1 means never retry).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_secs(30),
            max_attempts: 5,
        }
    }
}

impl RetryPolicy {
    /// After attempt number `attempt` (1-based) failed with `error`: retry or dead-letter.
    /// `jitter` in `[0, 1)` comes from the caller, so tests choose it.
    pub fn decide(&self, attempt: u32, error: &HandlerError, jitter: f64) -> RetryDecision {
        if !matches!(error, HandlerError::Retryable(_)) || attempt >= self.max_attempts {
            return RetryDecision::DeadLetter;
        }
        RetryDecision::RetryAfter(self.delay(attempt, jitter))
    }

    /// The backoff after attempt number `attempt` (1-based) failed, whatever the error:
    /// `initial_delay * multiplier^(attempt-1)`, capped, jittered to 50–100% by `jitter`
    /// in `[0, 1)`. (The outbox relay, which never gives up, uses this alone.)
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial_delay.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        let capped = base.min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(capped * (0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
    }

    /// The longest time a message can spend in retries (no jitter): an inbox's dedup
    /// window must be at least this long.
    pub fn horizon(&self) -> Duration {
        (1..self.max_attempts)
            .map(|attempt| {
                let exponent = i32::try_from(attempt - 1).unwrap_or(i32::MAX);
                let base = self.initial_delay.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
                Duration::from_secs_f64(base.min(self.max_delay.as_secs_f64()))
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_cap_and_jitter_then_dead_letter() {
        let policy = RetryPolicy {
            initial_delay: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_millis(500),
            max_attempts: 5,
        };
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
