//! A lock that stays usable after a thread panicked while holding it: the consumer
//! catches handler panics and carries on, so the state under its locks (kept whole by the
//! code holding them) must stay reachable. (herald-log has the same three lines for the
//! broker side; the two crates share no dependency.)

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, ignoring poisoning.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
