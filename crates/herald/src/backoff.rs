//! Exponential backoff with jitter, the one used wherever herald waits before trying
//! again: a handler's retries, the dead-letter writer and the outbox relay.

use std::time::Duration;

/// `initial_delay * multiplier^(attempt-1)`, capped at `max_delay`, then jittered to
/// 50–100% so that many waiters do not retry in step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial_delay: Duration,
    /// Growth per failure (at least 1).
    pub multiplier: f64,
    /// Upper bound of a delay.
    pub max_delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial_delay: Duration::from_millis(100), multiplier: 2.0, max_delay: Duration::from_secs(30) }
    }
}

impl Backoff {
    setters! {
        /// Sets the delay after the first failure.
        initial_delay: Duration,
        /// Sets the growth per failure.
        multiplier: f64,
        /// Sets the upper bound of a delay.
        max_delay: Duration,
    }

    /// The delay after failure number `attempt` (1-based), jittered by `jitter` in
    /// `[0, 1)` (the caller's, so tests choose it; [`jitter`] in production).
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        self.full_delay(attempt).mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// The delay after failure number `attempt` without jitter (its upper bound).
    pub fn full_delay(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial_delay.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        Duration::from_secs_f64(base.min(self.max_delay.as_secs_f64()))
    }
}

/// A jitter in `[0, 1)` from the random bits of a fresh UUID v7 (no RNG dependency).
pub fn jitter() -> f64 {
    f64::from(uuid::Uuid::now_v7().as_bytes()[15]) / 256.0
}
