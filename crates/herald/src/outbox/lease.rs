//! The relay's view of its lease, as plain logic over instants the caller passes in.
//!
//! The database holds the lease until `request time + ttl` by the relay's clock; the relay
//! counts its own validity from the moment it *sent* the renewal (never later), minus a
//! margin, so it stops publishing before any other relay can have taken over. Relays compare
//! their own wall clocks with the stored deadline, so their clocks must agree to within that
//! margin (a tenth of the lease: 1 s by default) — NTP does this; a larger skew could let a
//! second relay take a live lease, which repeats events but never skips one.

use std::time::{Duration, Instant};

/// Lease state of one relay.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    ttl: Duration,
    /// When the last successful acquire or renewal was requested.
    renewed_at: Option<Instant>,
}

impl Lease {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self { ttl, renewed_at: None }
    }

    /// Whether this relay believes it holds the lease at `now`.
    pub(crate) fn valid(&self, now: Instant) -> bool {
        self.renewed_at.is_some_and(|at| now < at + self.ttl - self.margin())
    }

    /// Whether to renew (or try to acquire) at `now`: a third of the way into the lease,
    /// so two renewals can fail before it lapses.
    pub(crate) fn renew_due(&self, now: Instant) -> bool {
        self.renewed_at.is_none_or(|at| now >= at + self.ttl / 3)
    }

    /// When the next renewal is due (now, if none is held).
    pub(crate) fn renew_at(&self, now: Instant) -> Instant {
        self.renewed_at.map_or(now, |at| at + self.ttl / 3)
    }

    /// The acquire or renewal requested at `requested_at` succeeded.
    pub(crate) fn renewed(&mut self, requested_at: Instant) {
        self.renewed_at = Some(requested_at);
    }

    /// Another relay holds it, or this one gave it up.
    pub(crate) fn lost(&mut self) {
        self.renewed_at = None;
    }

    /// Room for clock drift between this process and the others reading the lease.
    fn margin(&self) -> Duration {
        self.ttl / 10
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_from_the_request_until_the_margin_and_renewed_a_third_in() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut lease = Lease::new(ms(3_000));
        assert!(!lease.valid(t0), "not held before the first acquire");
        assert!(lease.renew_due(t0));
        lease.renewed(t0);
        assert!(lease.valid(t0 + ms(2_699)));
        assert!(!lease.valid(t0 + ms(2_700)), "stops 10% before the database's deadline");
        assert!(!lease.renew_due(t0 + ms(999)));
        assert!(lease.renew_due(t0 + ms(1_000)));
        assert_eq!(lease.renew_at(t0), t0 + ms(1_000));
        lease.renewed(t0 + ms(1_000));
        assert!(lease.valid(t0 + ms(3_699)));
        lease.lost();
        assert!(!lease.valid(t0 + ms(1_001)));
        assert!(lease.renew_due(t0 + ms(1_001)));
    }
}
