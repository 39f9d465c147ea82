//! Aggregates on the event store: an [`Aggregate`] is pure code (`handle` a command
//! against the state, `apply` an event to it), and a [`Repository`] loads one (snapshot
//! plus the events after it), executes a command, appends the resulting events with the
//! version it loaded as the expectation, and retries a bounded number of times when
//! another writer got there first. Snapshots are taken every `snapshot_every` events and
//! carry the aggregate's snapshot schema version; one of another version is ignored and
//! the state rebuilt from the events.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::{Direction, EventStore, ExpectedVersion, NewEvent, Snapshot, StoreError, StoredEvent};
use crate::envelope::{ENVELOPE_BYTES_MAX_DEFAULT, Envelope};

/// An aggregate's events as one type (usually an enum of [`Event`](crate::Event) types;
/// [`events!`](crate::events) implements this for one).
pub trait EventSet: Sized + Send + Sync + 'static {
    /// The event's type (`order.placed`).
    fn event_type(&self) -> &'static str;
    /// The event's schema version.
    fn event_version(&self) -> u32;
    /// The event's `data` as JSON.
    fn to_data(&self) -> Result<serde_json::Value, serde_json::Error>;
    /// The event of `event_type` in this envelope JSON (at the newest version, upcasting
    /// done), decoded straight to its type; `None` for a type that is not in the set.
    fn from_envelope(event_type: &str, envelope: &[u8]) -> Option<Result<Self, serde_json::Error>>;
}

/// Implements [`EventSet`] for an enum whose variants each hold one event type:
///
/// ```
/// # #[derive(serde::Serialize, serde::Deserialize)] struct OrderPlaced { order_id: String }
/// # herald::event!(OrderPlaced, type = "order.placed", version = 1, key = order_id);
/// # #[derive(serde::Serialize, serde::Deserialize)] struct OrderShipped { order_id: String }
/// # herald::event!(OrderShipped, type = "order.shipped", version = 1, key = order_id);
/// enum OrderEvent { Placed(OrderPlaced), Shipped(OrderShipped) }
/// herald::events!(OrderEvent { Placed(OrderPlaced), Shipped(OrderShipped) });
/// ```
#[macro_export]
macro_rules! events {
    ($name:ident { $($variant:ident($ty:ty)),+ $(,)? }) => {
        impl $crate::store::EventSet for $name {
            fn event_type(&self) -> &'static str {
                match self { $( $name::$variant(_) => <$ty as $crate::Event>::TYPE ),+ }
            }
            fn event_version(&self) -> u32 {
                match self { $( $name::$variant(_) => <$ty as $crate::Event>::VERSION ),+ }
            }
            fn to_data(&self) -> ::std::result::Result<$crate::__serde_json::Value, $crate::__serde_json::Error> {
                match self { $( $name::$variant(event) => $crate::__serde_json::to_value(event) ),+ }
            }
            fn from_envelope(
                event_type: &str,
                envelope: &[u8],
            ) -> ::std::option::Option<::std::result::Result<Self, $crate::__serde_json::Error>> {
                $(
                    if event_type == <$ty as $crate::Event>::TYPE {
                        return Some(
                            $crate::__serde_json::from_slice::<$crate::Envelope<$ty>>(envelope)
                                .map(|envelope| $name::$variant(envelope.data)),
                        );
                    }
                )+
                None
            }
        }
    };
}

/// A consistency boundary whose state is the fold of its events.
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stream prefix: instance `42` lives in stream `<TYPE>-42`.
    const TYPE: &'static str;
    /// The schema version of the serialized state; bump it when the state's shape changes
    /// and older snapshots are ignored.
    const SNAPSHOT_VERSION: u32 = 1;
    /// What it is asked to do.
    type Command: Send + Sync;
    /// What it records.
    type Event: EventSet;
    /// Why it refuses a command.
    type Error: std::fmt::Display + Send;
    /// Checks `command` against the state: the events it causes, or a refusal.
    fn handle(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);
}

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError<E> {
    /// The aggregate refused the command.
    #[error("refused: {0}")]
    Rejected(E),
    /// Other writers kept getting there first, `attempts` times.
    #[error("stream {stream}: still conflicting after {attempts} attempts")]
    Conflict {
        /// The stream.
        stream: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A stored event is not one of the aggregate's, or its data does not decode.
    #[error("stream {stream} version {version}: {problem}")]
    Decode {
        /// The stream.
        stream: String,
        /// The event's version.
        version: u64,
        /// What is wrong.
        problem: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A loaded aggregate.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    /// Its state.
    pub state: A,
    /// The last version folded in (`None`: a new aggregate).
    pub version: Option<u64>,
}

/// What a command did.
#[derive(Debug)]
pub struct Executed<A: Aggregate> {
    /// The state after the new events.
    pub state: A,
    /// The events appended.
    pub events: Vec<A::Event>,
    /// The stream's version after them.
    pub version: Option<u64>,
}

/// Loads and changes aggregates of type `A` in store `S`.
#[derive(Debug, Clone)]
pub struct Repository<S, A> {
    store: S,
    source: String,
    snapshot_every: u64,
    attempts: u32,
    _aggregate: PhantomData<fn() -> A>,
}

impl<S: EventStore, A: Aggregate> Repository<S, A> {
    /// A repository on `store`: events say `herald` as their source, a snapshot every 100
    /// events, 3 attempts per command.
    pub fn new(store: S) -> Self {
        Self { store, source: "herald".into(), snapshot_every: 100, attempts: 3, _aggregate: PhantomData }
    }

    /// The envelopes' `source` (the service's name).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// A snapshot every `events` events (0: never).
    pub fn snapshot_every(mut self, events: u64) -> Self {
        self.snapshot_every = events;
        self
    }

    /// Attempts per command when other writers get there first (at least 1).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The stream of instance `id`.
    pub fn stream(id: &str) -> String {
        format!("{}-{id}", A::TYPE)
    }

    /// The current state: the latest usable snapshot plus the events after it.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, RepositoryError<A::Error>> {
        let stream = Self::stream(id);
        let start = match self.store.load_snapshot(&stream).await? {
            Some(snapshot) if snapshot.schema_version == A::SNAPSHOT_VERSION => {
                serde_json::from_slice::<A>(&snapshot.state)
                    .ok()
                    .map(|state| Loaded { state, version: Some(snapshot.version) })
            }
            _ => None,
        };
        let start = start.unwrap_or(Loaded { state: A::default(), version: None });
        self.fold(&stream, start, |_| true).await
    }

    /// The state as of version `version` (time travel), from the events alone.
    pub async fn load_at_version(&self, id: &str, version: u64) -> Result<Loaded<A>, RepositoryError<A::Error>> {
        let start = Loaded { state: A::default(), version: None };
        self.fold(&Self::stream(id), start, |event| event.stream_version <= version).await
    }

    /// The state as of `time_ms` (ms since the epoch: events appended then or before).
    pub async fn load_as_of(&self, id: &str, time_ms: i64) -> Result<Loaded<A>, RepositoryError<A::Error>> {
        let start = Loaded { state: A::default(), version: None };
        self.fold(&Self::stream(id), start, |event| event.created_ms <= time_ms).await
    }

    /// Folds the stream's events after `loaded.version` into it while `take` holds.
    async fn fold(
        &self,
        stream: &str,
        mut loaded: Loaded<A>,
        take: impl Fn(&StoredEvent) -> bool,
    ) -> Result<Loaded<A>, RepositoryError<A::Error>> {
        loop {
            let from = loaded.version.map_or(0, |v| v + 1);
            let events = self.store.read_stream(stream, from, Direction::Forward, 1_000).await?;
            let full = events.len() == 1_000;
            for stored in &events {
                if !take(stored) {
                    return Ok(loaded);
                }
                loaded.state.apply(&decode::<A>(stream, stored)?);
                loaded.version = Some(stored.stream_version);
            }
            if !full {
                return Ok(loaded);
            }
        }
    }

    /// Loads instance `id`, has it handle `command`, and appends the events it causes,
    /// expecting the version it loaded; on a conflict, loads again and retries.
    pub async fn execute(&self, id: &str, command: &A::Command) -> Result<Executed<A>, RepositoryError<A::Error>> {
        let stream = Self::stream(id);
        for _ in 0..self.attempts {
            let Loaded { mut state, version } = self.load(id).await?;
            let events = state.handle(command).map_err(RepositoryError::Rejected)?;
            if events.is_empty() {
                return Ok(Executed { state, events, version });
            }
            let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            let new: Vec<NewEvent> = events.iter().map(|e| self.encode(e)).collect::<Result<_, _>>()?;
            match self.store.append(&stream, expected, new).await {
                Ok(appended) => {
                    for event in &events {
                        state.apply(event);
                    }
                    self.snapshot_if_due(&stream, &state, version, appended.last_version).await;
                    return Ok(Executed { state, events, version: Some(appended.last_version) });
                }
                Err(StoreError::WrongExpectedVersion { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(RepositoryError::Conflict { stream, attempts: self.attempts })
    }

    /// Stores a snapshot of instance `id` as it is now (also taken every `snapshot_every`
    /// events by `execute`); returns the version it covers.
    pub async fn snapshot(&self, id: &str) -> Result<Option<u64>, RepositoryError<A::Error>> {
        let Loaded { state, version } = self.load(id).await?;
        let Some(version) = version else { return Ok(None) };
        let state =
            serde_json::to_vec(&state).map_err(|e| StoreError::Invalid(format!("serializing the state: {e}")))?;
        let snapshot = Snapshot { version, schema_version: A::SNAPSHOT_VERSION, state };
        self.store.save_snapshot(&Self::stream(id), snapshot).await?;
        Ok(Some(version))
    }

    fn encode(&self, event: &A::Event) -> Result<NewEvent, StoreError> {
        let data = event.to_data().map_err(|source| crate::EnvelopeError::Json {
            context: format!("serializing {}", event.event_type()),
            source,
        })?;
        let envelope = Envelope {
            event_id: Uuid::now_v7(),
            event_type: event.event_type().to_string(),
            event_version: format!("{}.0.0", event.event_version()),
            timestamp: crate::time::rfc3339_now(),
            source: self.source.clone(),
            correlation_id: None,
            causation_id: None,
            trace_id: None,
            data,
        };
        NewEvent::of(&envelope, event.event_type(), event.event_version(), ENVELOPE_BYTES_MAX_DEFAULT)
    }

    /// Stores a snapshot when this append crossed a multiple of `snapshot_every`. Best
    /// effort: a failure only means the next load reads more events.
    async fn snapshot_if_due(&self, stream: &str, state: &A, before: Option<u64>, last: u64) {
        let every = self.snapshot_every;
        let count_before = before.map_or(0, |v| v + 1);
        if every == 0 || (last + 1) / every == count_before / every {
            return;
        }
        let Ok(bytes) = serde_json::to_vec(state) else { return };
        let snapshot = Snapshot { version: last, schema_version: A::SNAPSHOT_VERSION, state: bytes };
        if let Err(error) = self.store.save_snapshot(stream, snapshot).await {
            tracing::warn!(%error, stream, "saving a snapshot failed; loads read more events until the next one");
        }
    }
}

/// A stored event as one of `A`'s events.
fn decode<A: Aggregate>(stream: &str, stored: &StoredEvent) -> Result<A::Event, RepositoryError<A::Error>> {
    let problem = |problem: String| RepositoryError::Decode {
        stream: stream.to_string(),
        version: stored.stream_version,
        problem,
    };
    match A::Event::from_envelope(&stored.event_type, &stored.payload) {
        Some(Ok(event)) => Ok(event),
        Some(Err(error)) => Err(problem(error.to_string())),
        None => Err(problem(format!("{} is not one of {}'s events", stored.event_type, A::TYPE))),
    }
}

/// Given/when/then for an aggregate, without a store:
/// `AggregateTest::<Order>::given(events).when(&command).then(expected)`.
#[derive(Debug)]
pub struct AggregateTest<A: Aggregate> {
    state: A,
}

/// The outcome of [`AggregateTest::when`].
#[derive(Debug)]
pub struct AggregateOutcome<A: Aggregate> {
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> AggregateTest<A> {
    /// An aggregate that has recorded `events`.
    pub fn given(events: impl IntoIterator<Item = A::Event>) -> Self {
        let mut state = A::default();
        for event in events {
            state.apply(&event);
        }
        Self { state }
    }

    /// It handles `command`.
    pub fn when(self, command: &A::Command) -> AggregateOutcome<A> {
        AggregateOutcome { result: self.state.handle(command) }
    }
}

impl<A: Aggregate> AggregateOutcome<A>
where
    A::Event: PartialEq + std::fmt::Debug,
    A::Error: std::fmt::Debug,
{
    /// Asserts it recorded exactly `expected`.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => assert_eq!(events, expected, "the events recorded"),
            Err(error) => panic!("expected {expected:?}, but the command was refused: {error:?}"),
        }
    }

    /// Asserts it refused the command, and that `check` holds for the refusal.
    #[track_caller]
    pub fn then_error(self, check: impl FnOnce(&A::Error) -> bool) {
        match self.result {
            Ok(events) => panic!("expected a refusal, but it recorded {events:?}"),
            Err(error) => assert!(check(&error), "an unexpected refusal: {error:?}"),
        }
    }
}
