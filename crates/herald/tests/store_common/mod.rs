//! The event store's evidence, written once over [`EventStore`] and run on each backend
//! (`store_sqlite.rs`, `store_postgres.rs`).

#![allow(dead_code, unreachable_pub)] // each backend's test file uses part of it

use std::collections::{BTreeMap, HashSet};

use herald::Envelope;
use herald::store::{
    Appended, Deletion, Direction, EventStore, ExpectedVersion, NewEvent, Position, StoreError, StoredEvent,
    StreamMetadata, Subscription, SubscriptionFilter,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: String,
    pub n: u64,
}
herald::event!(OrderPlaced, type = "order.placed", version = 1, key = order_id);

/// A fresh event for `stream`, numbered `n`.
pub fn event(stream: &str, n: u64) -> NewEvent {
    NewEvent::new(&Envelope::new("orders", OrderPlaced { order_id: stream.to_string(), n })).expect("encode")
}

/// A run's own stream names, so runs against one database do not meet.
pub fn stream(run: &str, name: &str) -> String {
    format!("{name}-{run}")
}

/// `rounds` rounds of `writers` tasks appending to one stream with the same expected
/// version: each round has exactly one winner, the others see `WrongExpectedVersion`
/// with the winner's version, and the stream's versions have no gaps or repeats.
pub async fn one_winner_per_round<S: EventStore + Clone>(store: S, stream: &str, writers: usize, rounds: u64) {
    let mut expected = ExpectedVersion::NoStream;
    for round in 0..rounds {
        let mut tasks = Vec::new();
        for writer in 0..writers {
            let (store, stream) = (store.clone(), stream.to_string());
            let events = vec![event(&stream, round * 1_000 + writer as u64)];
            tasks.push(tokio::spawn(async move { store.append(&stream, expected, events).await }));
        }
        let mut winners = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(appended) => {
                    winners += 1;
                    assert_eq!((appended.first_version, appended.last_version), (round, round));
                }
                Err(StoreError::WrongExpectedVersion { actual, .. }) => assert_eq!(actual, Some(round)),
                Err(other) => panic!("round {round}: {other}"),
            }
        }
        assert_eq!(winners, 1, "round {round}");
        expected = ExpectedVersion::Exact(round);
    }
    let events = store.read_stream(stream, 0, Direction::Forward, usize::MAX).await.expect("read");
    let versions: Vec<u64> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (0..rounds).collect::<Vec<_>>());
}

/// A retry of events that were stored (the answer was lost) returns the first result and
/// stores nothing twice; the same ids at another position are refused.
pub async fn retries_are_idempotent<S: EventStore + Clone>(store: S, stream: &str) {
    let first = store.append(stream, ExpectedVersion::NoStream, vec![event(stream, 0)]).await.expect("first");
    let batch = vec![event(stream, 1), event(stream, 2)];
    let stored = store.append(stream, ExpectedVersion::Exact(first.last_version), batch.clone()).await.expect("append");
    let again = store.append(stream, ExpectedVersion::Exact(first.last_version), batch.clone()).await.expect("retry");
    assert_eq!(again, Appended { already_stored: true, ..stored });
    let any = store.append(stream, ExpectedVersion::Any, batch.clone()).await.expect("retry with Any");
    assert!(any.already_stored);
    match store.append(stream, ExpectedVersion::Exact(stored.last_version), batch.clone()).await {
        Err(StoreError::DuplicateEventId { event_id, version, .. }) => {
            assert_eq!((event_id, version), (batch[0].event_id(), 1));
        }
        other => panic!("same ids at another position: {other:?}"),
    }
    let events = store.read_stream(stream, 0, Direction::Forward, 100).await.expect("read");
    assert_eq!(events.len(), 3, "stored once");
}

/// Reads forward and backward, from a version, with a limit; decoded back to the event.
pub async fn streams_read_both_ways<S: EventStore + Clone>(store: S, stream: &str) {
    let events: Vec<NewEvent> = (0..5).map(|n| event(stream, n)).collect();
    store.append(stream, ExpectedVersion::NoStream, events).await.expect("append");
    let forward = store.read_stream(stream, 2, Direction::Forward, 2).await.expect("forward");
    assert_eq!(forward.iter().map(|e| e.stream_version).collect::<Vec<_>>(), [2, 3]);
    let backward = store.read_stream(stream, 3, Direction::Backward, 10).await.expect("backward");
    assert_eq!(backward.iter().map(|e| e.stream_version).collect::<Vec<_>>(), [3, 2, 1, 0]);
    let decoded: Envelope<OrderPlaced> = forward[0].decode(1 << 20).expect("decode");
    assert_eq!(decoded.data.n, 2);
    assert_eq!(store.stream_version(stream).await.expect("version"), Some(4));
    assert_eq!(store.stream_version("nothing-here").await.expect("version"), None);
}

/// A subscription from the beginning sees `want` events of these streams (filtered by the
/// run's prefix), each once, in a global order that keeps each stream's versions in order;
/// resuming from its checkpoint returns nothing it already returned.
pub async fn subscribe_until<S: EventStore + Clone>(
    store: S,
    prefix: &str,
    want: usize,
) -> (Vec<StoredEvent>, Position) {
    let filter = SubscriptionFilter::all().stream_prefix(prefix);
    let mut subscription = Subscription::new(store, Position::default(), filter);
    let mut seen = Vec::new();
    while seen.len() < want {
        let next = tokio::time::timeout(std::time::Duration::from_secs(60), subscription.next()).await;
        seen.push(next.expect("an event within 60 s").expect("read"));
    }
    (seen, subscription.position())
}

/// Every committed event once, none twice, and each stream's versions in order.
pub fn check_order(events: &[StoredEvent], committed: &HashSet<uuid::Uuid>) {
    let ids: HashSet<uuid::Uuid> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), events.len(), "an event returned twice");
    assert_eq!(&ids, committed, "returned and committed differ");
    let mut next: BTreeMap<&str, u64> = BTreeMap::new();
    for event in events {
        let expected = next.entry(&event.stream_id).or_insert(0);
        assert_eq!(event.stream_version, *expected, "{} out of order", event.stream_id);
        *expected += 1;
    }
    assert!(events.windows(2).all(|w| w[0].position < w[1].position), "global order");
}

/// Shared by the backends' crash-free property test: a model of one stream's appends.
#[derive(Debug, Default)]
pub struct Model {
    pub streams: BTreeMap<String, Vec<uuid::Uuid>>,
}

impl Model {
    /// What the store should answer (`Ok(first, last, already)` or the error's name).
    pub fn append(
        &mut self,
        stream: &str,
        expected: ExpectedVersion,
        ids: &[uuid::Uuid],
    ) -> Result<(u64, u64, bool), &'static str> {
        let found: Vec<(String, u64)> = ids
            .iter()
            .filter_map(|id| {
                self.streams
                    .iter()
                    .find_map(|(s, stored)| stored.iter().position(|x| x == id).map(|v| (s.clone(), v as u64)))
            })
            .collect();
        let events = self.streams.get(stream).map_or(0, Vec::len) as u64;
        if found.len() == ids.len()
            && found.iter().all(|(s, _)| s == stream)
            && found.windows(2).all(|w| w[1].1 == w[0].1 + 1)
        {
            let first = found[0].1;
            let fits = match expected {
                ExpectedVersion::Any => true,
                ExpectedVersion::NoStream => first == 0,
                ExpectedVersion::StreamExists => first > 0,
                ExpectedVersion::Exact(v) => first == v + 1,
            };
            if fits {
                return Ok((first, first + ids.len() as u64 - 1, true));
            }
        }
        if !found.is_empty() {
            return Err("DuplicateEventId");
        }
        let actual = events.checked_sub(1);
        let fits = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::StreamExists => actual.is_some(),
            ExpectedVersion::Exact(v) => actual == Some(v),
        };
        if !fits {
            return Err("WrongExpectedVersion");
        }
        self.streams.entry(stream.to_string()).or_default().extend_from_slice(ids);
        Ok((events, events + ids.len() as u64 - 1, false))
    }
}

/// Replays `ops` (stream index, expectation code, batch size or a reused batch) against
/// the store and the model; their answers must agree at every step.
pub async fn agrees_with_the_model<S: EventStore + Clone>(store: S, run: &str, ops: &[(u8, u8, u8)]) {
    let streams: Vec<String> = (0..3).map(|i| format!("model{i}-{run}")).collect();
    let mut model = Model::default();
    let mut batches: Vec<Vec<NewEvent>> = Vec::new();
    for &(s, e, b) in ops {
        let stream = &streams[usize::from(s) % streams.len()];
        let actual = model.streams.get(stream.as_str()).map_or(0, Vec::len) as u64;
        let expected = match e % 5 {
            0 => ExpectedVersion::Any,
            1 => ExpectedVersion::NoStream,
            2 => ExpectedVersion::StreamExists,
            3 => ExpectedVersion::Exact(actual.saturating_sub(1)),
            _ => ExpectedVersion::Exact(actual),
        };
        let batch = if b % 4 == 0 && !batches.is_empty() {
            batches[usize::from(b) % batches.len()].clone() // a retry, maybe elsewhere
        } else {
            let batch: Vec<NewEvent> = (0..=u64::from(b % 3)).map(|n| event(stream, n)).collect();
            batches.push(batch.clone());
            batch
        };
        let ids: Vec<uuid::Uuid> = batch.iter().map(NewEvent::event_id).collect();
        let want = model.append(stream, expected, &ids);
        let got = match store.append(stream, expected, batch).await {
            Ok(a) => Ok((a.first_version, a.last_version, a.already_stored)),
            Err(StoreError::WrongExpectedVersion { .. }) => Err("WrongExpectedVersion"),
            Err(StoreError::DuplicateEventId { .. }) => Err("DuplicateEventId"),
            Err(other) => panic!("{other}"),
        };
        assert_eq!(got, want, "{stream} {expected:?} {ids:?}");
    }
    for stream in &streams {
        let stored = store.read_stream(stream, 0, Direction::Forward, usize::MAX).await.expect("read");
        let ids: Vec<uuid::Uuid> = stored.iter().map(|e| e.event_id).collect();
        assert_eq!(ids, model.streams.get(stream.as_str()).cloned().unwrap_or_default(), "{stream}");
    }
}

/// Stream metadata limits what reads return; a soft delete hides the stream until its next
/// append; a hard delete removes it and refuses appends for good.
pub async fn metadata_and_deletes<S: EventStore + Clone>(store: S) {
    let stream = "meta-1";
    let batch: Vec<NewEvent> = (0..10).map(|n| event(stream, n)).collect();
    store.append(stream, ExpectedVersion::NoStream, batch).await.expect("append");
    let versions = |events: Vec<StoredEvent>| events.iter().map(|e| e.stream_version).collect::<Vec<_>>();
    let read = || store.read_stream(stream, 0, Direction::Forward, 100);
    let last_three = StreamMetadata { max_count: Some(3), ..StreamMetadata::default() };
    store.set_metadata(stream, last_three).await.expect("max count");
    assert_eq!(versions(read().await.expect("read")), [7, 8, 9]);
    store
        .set_metadata(stream, StreamMetadata { truncate_before: 5, ..StreamMetadata::default() })
        .await
        .expect("truncate");
    assert_eq!(versions(read().await.expect("read")), [5, 6, 7, 8, 9]);
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let young = StreamMetadata { max_age: Some(std::time::Duration::from_millis(10)), ..StreamMetadata::default() };
    store.set_metadata(stream, young).await.expect("max age");
    assert!(read().await.expect("read").is_empty(), "all older than 10 ms");
    store.set_metadata(stream, StreamMetadata::default()).await.expect("clear");
    assert_eq!(read().await.expect("read").len(), 10);

    store.delete_stream(stream, Deletion::Soft).await.expect("soft delete");
    assert!(read().await.expect("read").is_empty(), "soft-deleted");
    store.append(stream, ExpectedVersion::Exact(9), vec![event(stream, 10)]).await.expect("append revives it");
    assert_eq!(versions(read().await.expect("read")), [10], "the old events stay hidden");

    store.delete_stream(stream, Deletion::Hard).await.expect("hard delete");
    assert!(read().await.expect("read").is_empty());
    for expected in [ExpectedVersion::Any, ExpectedVersion::Exact(10), ExpectedVersion::NoStream] {
        match store.append(stream, expected, vec![event(stream, 11)]).await {
            Err(StoreError::StreamDeleted { .. }) => {}
            other => panic!("an append to a hard-deleted stream: {other:?}"),
        }
    }
}
