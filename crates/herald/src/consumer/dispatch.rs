//! The consumer's dispatch loop state: it turns received messages into handler runs and
//! ended runs into committable offsets. The bookkeeping (per-key order, parking, revokes,
//! progress) is `partitions.rs`; the handling itself is `handling.rs`. This file is the
//! edge between them: a message's first attempt runs inline (no task, no channel); one
//! that waits moves to its own task and reports back through a channel.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use rdkafka::Message;
use rdkafka::message::BorrowedMessage;
use tokio::sync::mpsc;

use super::handling::{First, Shared, first_attempt, handle};
use super::partitions::{FastMap, Keyed, Outcome, PartitionId, Partitions, Progress};
use super::record::Record;
use crate::sync::lock;

/// A partition: its topic (interned, so lookups do not allocate) and number.
pub(crate) type Slot = (Arc<str>, i32);

/// Progress per partition, shared with the rebalance callback so a revoke can commit
/// what is finished before the partition goes.
pub(crate) type SharedProgress = Arc<Mutex<FastMap<Slot, Progress>>>;

impl Keyed for Arc<Record> {
    fn offset(&self) -> i64 {
        Record::offset(self)
    }
    fn key(&self) -> Option<&[u8]> {
        Record::key(self)
    }
}

/// A message that ended on its own task.
pub(crate) struct Done {
    partition: PartitionId,
    record: Arc<Record>,
    epoch: u64,
    outcome: Outcome,
}

/// Reports a message's end from its task, also when the task panics: tokio drops a
/// panicked task's future, and with it this guard, so the run loop always hears back
/// (as `Abandoned`; a message that never reported would hold its key, its partition's
/// commits and shutdown).
struct Report {
    done: mpsc::UnboundedSender<Done>,
    message: Option<(PartitionId, Arc<Record>, u64)>,
}

impl Report {
    fn send(&mut self, outcome: Outcome) {
        if let Some((partition, record, epoch)) = self.message.take() {
            let _ = self.done.send(Done { partition, record, epoch, outcome });
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        self.send(Outcome::Abandoned);
    }
}

/// The run loop's state.
pub(crate) struct Dispatcher {
    shared: Arc<Shared>,
    progress: SharedProgress,
    partitions: Partitions<Arc<Record>>,
    /// Topic names seen, with their index; and the last one, compared before hashing
    /// (messages mostly come in runs of one topic).
    topics: FastMap<Arc<str>, u32>,
    last_topic: Option<(Arc<str>, u32)>,
    done: mpsc::UnboundedSender<Done>,
}

impl Dispatcher {
    pub(crate) fn new(shared: Arc<Shared>, progress: SharedProgress) -> (Self, mpsc::UnboundedReceiver<Done>) {
        let (done, done_rx) = mpsc::unbounded_channel();
        let config = &shared.config;
        let partitions = Partitions::new(config.in_flight_per_partition, config.park_keys_after_dead_letter);
        let dispatcher = Self { shared, progress, partitions, topics: FastMap::default(), last_topic: None, done };
        (dispatcher, done_rx)
    }

    /// Messages received and not ended.
    pub(crate) fn buffered(&self) -> usize {
        self.partitions.buffered()
    }

    /// Whether another message may be received.
    pub(crate) fn has_room(&self) -> bool {
        self.buffered() < self.shared.config.buffered_max
    }

    /// The interned name and index of topic `name`.
    fn topic(&mut self, name: &str) -> (Arc<str>, u32) {
        if let Some((topic, index)) = &self.last_topic
            && **topic == *name
        {
            return (Arc::clone(topic), *index);
        }
        let (topic, index) = match self.topics.get_key_value(name) {
            Some((topic, index)) => (Arc::clone(topic), *index),
            None => {
                let (topic, index): (Arc<str>, u32) = (Arc::from(name), self.topics.len() as u32);
                self.topics.insert(Arc::clone(&topic), index);
                (topic, index)
            }
        };
        self.last_topic = Some((Arc::clone(&topic), index));
        (topic, index)
    }

    /// Copies a received message and runs or queues it.
    pub(crate) fn accept(&mut self, message: &BorrowedMessage<'_>) {
        let (topic, topic_index) = self.topic(message.topic());
        let id: PartitionId = (topic_index, message.partition());
        let record = Arc::new(Record::copy(message, topic));
        self.accept_record(id, record);
    }

    /// Runs or queues a copied message of partition `id`.
    fn accept_record(&mut self, id: PartitionId, record: Arc<Record>) {
        let admit = self.partitions.admit(id);
        if let Some(progress) = admit.assigned {
            lock(&self.progress).insert((Arc::from(record.topic()), id.1), progress);
        }
        if admit.idle {
            // Nothing of this partition queued or running, no parked keys: the message may
            // start now, and usually finishes inline, which then costs one progress update
            // and no scheduler work.
            match first_attempt(&record, &self.shared) {
                First::Finished => self.partitions.passed(id, record.offset()),
                first => {
                    let epoch = self.partitions.start_now(id, &record);
                    self.launch(id, epoch, record, first);
                }
            }
            return;
        }
        self.partitions.enqueue(id, record);
        self.start_ready(id);
    }

    /// Records a message that ended on its own task and starts whatever may run now.
    pub(crate) fn finish(&mut self, done: Done) {
        if done.outcome == Outcome::Abandoned {
            abandoned(&done.record);
        }
        if self.partitions.finish(done.partition, done.epoch, &done.record, done.outcome) {
            self.start_ready(done.partition);
        }
    }

    /// Forgets revoked partitions (see `Partitions::revoke`).
    pub(crate) fn revoke(&mut self, slots: Vec<Slot>) {
        for (topic, partition) in slots {
            if let Some(&index) = self.topics.get(&topic) {
                self.partitions.revoke((index, partition));
            }
        }
    }

    /// Starts every queued message of `id` that may run now.
    fn start_ready(&mut self, id: PartitionId) {
        while let Some(start) = self.partitions.next_start(id) {
            let first = if start.parked { First::Parked } else { first_attempt(&start.message, &self.shared) };
            self.launch(id, start.epoch, start.message, first);
        }
    }

    /// Carries on with a started message whose first attempt got as far as `first`. Each
    /// message's first attempt runs right here, up to its first wait: one that finishes
    /// without waiting costs no task, no channel round trip and no boxed future of the
    /// runtime's own; one that waits (or fails, or needs the dead-letter topic or a
    /// database inbox) moves to its own task and reports through `done`.
    fn launch(&mut self, id: PartitionId, epoch: u64, record: Arc<Record>, first: First) {
        let ended = |dispatcher: &mut Self, outcome: Outcome| {
            if outcome == Outcome::Abandoned {
                abandoned(&record);
            }
            dispatcher.partitions.finish(id, epoch, &record, outcome);
        };
        let mut handling: Pin<Box<dyn Future<Output = Outcome> + Send>> = match first {
            First::Finished => return ended(self, Outcome::Handled),
            First::Abandoned => return ended(self, Outcome::Abandoned),
            First::NotStarted | First::Parked => {
                let parked = matches!(first, First::Parked);
                let (task_record, task_shared) = (Arc::clone(&record), Arc::clone(&self.shared));
                let mut handling: Pin<Box<dyn Future<Output = Outcome> + Send>> =
                    Box::pin(async move { handle(task_record, parked, &task_shared, None).await });
                // A no-op waker is enough for this first poll: if the future is pending, the
                // task below polls it again at once and registers its own waker.
                let mut cx = std::task::Context::from_waker(Waker::noop());
                match std::panic::catch_unwind(AssertUnwindSafe(|| handling.as_mut().poll(&mut cx))) {
                    Ok(Poll::Ready(outcome)) => return ended(self, outcome),
                    Ok(Poll::Pending) => handling,
                    Err(_) => return ended(self, Outcome::Abandoned),
                }
            }
            First::Started(started) => {
                let (task_record, task_shared) = (Arc::clone(&record), Arc::clone(&self.shared));
                Box::pin(async move { handle(task_record, false, &task_shared, Some(started)).await })
            }
        };
        let mut report = Report { done: self.done.clone(), message: Some((id, record, epoch)) };
        let mut cancel = self.shared.cancel.subscribe();
        tokio::spawn(async move {
            let cancelled = async move {
                if cancel.wait_for(|cancelled| *cancelled).await.is_err() {
                    std::future::pending::<()>().await; // unreachable: this task holds the sender
                }
            };
            tokio::select! {
                outcome = &mut handling => report.send(outcome),
                () = cancelled => {} // past the shutdown deadline: dropped, left uncommitted
            }
        });
    }
}

/// Logs and counts a message whose runtime path panicked: not its handler (a handler's
/// panic is dead-lettered) but, say, a user-supplied inbox (see `Outcome::Abandoned`).
fn abandoned(record: &Record) {
    tracing::error!(
        topic = record.topic(),
        partition = record.partition(),
        offset = record.offset(),
        "the consumer's own path panicked on this message (inbox or dead-letter writer); \
         it stays uncommitted and is redelivered after a restart or rebalance"
    );
    metrics::counter!("herald_abandoned_total").increment(1);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::Publisher;
    use crate::consumer::ConsumerConfig;
    use crate::consumer::context::erase;
    use crate::consumer::handling::Route;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Ping {
        id: String,
    }
    crate::event!(Ping, type = "ping.sent", version = 1, key = id);

    fn record(offset: i64, key: &str) -> Arc<Record> {
        let payload = crate::Envelope::new("test", Ping { id: key.into() }).to_json(1 << 20).expect("json");
        let headers = [(&b"event-type"[..], Some(&b"ping.sent"[..]))];
        let at = (0, offset);
        Arc::new(Record::from_parts(Arc::from("pings"), at, Some(&payload), Some(key.as_bytes()), headers.into_iter()))
    }

    /// A partition revoked while one of its keys still runs, then assigned back: the
    /// redelivered message of that key waits for the old run (one key never runs twice at
    /// once in a consumer), other keys do not, and only the new assignment's offsets count.
    #[tokio::test]
    async fn a_key_still_running_from_a_revoked_assignment_holds_its_redelivery() {
        let calls = Arc::new(AtomicU32::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let (c, r) = (Arc::clone(&calls), Arc::clone(&release));
        let handler = erase(
            move |_event: crate::Envelope<Ping>, _ctx| {
                let first = c.fetch_add(1, Ordering::SeqCst) == 0;
                let release = Arc::clone(&r);
                async move {
                    if first {
                        release.notified().await;
                    }
                    Ok(())
                }
            },
            1 << 20,
        );
        let publisher = Publisher::new(crate::PublisherConfig::default().brokers("127.0.0.1:1")).expect("publisher");
        let shared = Arc::new(Shared {
            config: ConsumerConfig::new("127.0.0.1:1", "g", &["pings"]),
            group: Arc::from("g"),
            handlers: [("ping.sent", Route::new("ping.sent", handler, None))].into_iter().collect(),
            inbox: None,
            publisher: Arc::new(publisher),
            cancel: tokio::sync::watch::channel(false).0,
            schemas: None,
        });
        let progress = SharedProgress::default();
        let (mut dispatcher, mut done_rx) = Dispatcher::new(shared, Arc::clone(&progress));
        let (_, topic) = dispatcher.topic("pings");
        let (id, slot): (PartitionId, Slot) = ((topic, 0), (Arc::from("pings"), 0));

        dispatcher.accept_record(id, record(10, "k"));
        assert_eq!((calls.load(Ordering::SeqCst), dispatcher.buffered()), (1, 1), "k@10 waits on its task");
        lock(&progress).remove(&slot); // what the rebalance callback does
        dispatcher.revoke(vec![slot.clone()]);

        dispatcher.accept_record(id, record(10, "k")); // assigned back: redelivered
        dispatcher.accept_record(id, record(11, "other"));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "another key runs; k's redelivery waits");
        release.notify_one();
        let done = done_rx.recv().await.expect("the first run reports");
        dispatcher.finish(done);
        assert_eq!(calls.load(Ordering::SeqCst), 3, "k's redelivery ran once its first run was done");
        assert_eq!(dispatcher.buffered(), 0);
        let partition = Arc::clone(&lock(&progress)[&slot]);
        assert_eq!(lock(&partition).committable(), Some(12), "both offsets of the new assignment");
    }
}
