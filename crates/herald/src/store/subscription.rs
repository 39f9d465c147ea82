//! [`Subscription`]: every event after a checkpoint, first the stored ones (catch-up), then
//! live ones as they commit, in the global order, filtered by event type or stream prefix.
//! It reads with [`EventStore::read_all`], which returns only events no later commit can
//! precede, so moving the checkpoint past them never skips one; it never returns an
//! event twice within a run.

use std::collections::VecDeque;
use std::time::Duration;

use super::{EventStore, Position, StoreError, StoredEvent};

/// Which events a subscription returns (all by default).
#[derive(Debug, Clone, Default)]
pub struct SubscriptionFilter {
    event_types: Vec<String>,
    stream_prefix: Option<String>,
}

impl SubscriptionFilter {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only events of these types.
    pub fn event_types(mut self, types: &[&str]) -> Self {
        self.event_types = types.iter().map(|t| t.to_string()).collect();
        self
    }

    /// Only events of streams whose id starts with `prefix` (`order-`).
    pub fn stream_prefix(mut self, prefix: &str) -> Self {
        self.stream_prefix = Some(prefix.to_string());
        self
    }

    fn matches(&self, event: &StoredEvent) -> bool {
        (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
            && self.stream_prefix.as_deref().is_none_or(|p| event.stream_id.starts_with(p))
    }
}

/// Events after a checkpoint, catch-up then live. Store [`Subscription::position`] as the
/// checkpoint (with the effects of the events before it) to resume there.
#[derive(Debug)]
pub struct Subscription<S> {
    store: S,
    filter: SubscriptionFilter,
    buffer: VecDeque<StoredEvent>,
    /// The last event returned.
    returned: Position,
    /// How far the store has been read (past filtered-out events too).
    scanned: Position,
    batch: usize,
    poll_interval: Duration,
}

impl<S: EventStore> Subscription<S> {
    /// Events of `store` after `from` (`Position::default()`: from the beginning).
    pub fn new(store: S, from: Position, filter: SubscriptionFilter) -> Self {
        Self {
            store,
            filter,
            buffer: VecDeque::new(),
            returned: from,
            scanned: from,
            batch: 1_000,
            poll_interval: Duration::from_millis(100),
        }
    }

    /// Events read per query while catching up.
    pub fn batch(mut self, events: usize) -> Self {
        self.batch = events.max(1);
        self
    }

    /// How often a live subscription looks for events appended by other processes (this
    /// process's appends wake it at once).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The checkpoint: resuming from it returns exactly the events not yet returned.
    pub fn position(&self) -> Position {
        if self.buffer.is_empty() { self.scanned } else { self.returned }
    }

    /// The next event, waiting for one if the subscription has caught up.
    pub async fn next(&mut self) -> Result<StoredEvent, StoreError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.returned = event.position;
                return Ok(event);
            }
            // Registered before reading, so an append that commits during the read wakes
            // the wait below.
            let appended = self.store.appended();
            let woken = appended.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.fill().await? == 0 {
                let _ = tokio::time::timeout(self.poll_interval, woken).await;
            }
        }
    }

    /// The next event if one is stored now, without waiting.
    pub async fn try_next(&mut self) -> Result<Option<StoredEvent>, StoreError> {
        if self.buffer.is_empty() {
            self.fill().await?;
        }
        Ok(self.buffer.pop_front().inspect(|event| self.returned = event.position))
    }

    /// Reads the next batch; returns how many events were read (matching or not).
    async fn fill(&mut self) -> Result<usize, StoreError> {
        let events = self.store.read_all(self.scanned, self.batch).await?;
        let read = events.len();
        if let Some(last) = events.last() {
            self.scanned = last.position;
        }
        self.buffer.extend(events.into_iter().filter(|e| self.filter.matches(e)));
        Ok(read)
    }
}
