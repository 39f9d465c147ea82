//! [`Tail`]: a topic's live edge, read from the log once for every stream that has
//! caught up. One task per topic with streams reads new records when the broker signals
//! data, encodes each once (its JSON and the token after it) and broadcasts the batch;
//! streams take what is at their own position and skip what they have. A stream that
//! falls behind the broadcast, or sees an offset past its position, reads the log itself
//! again (catch-up) — positions, not the broadcast, decide what is delivered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use herald_broker::internals::Broker;
use tokio::sync::{broadcast, watch};

use crate::cursor::{Cursor, Filter, From, Item, Take};
use crate::records::Message;
use crate::token::Positions;

/// Batches a slow stream may fall behind before it reads the log again.
const BROADCAST_BATCHES: usize = 256;

/// How often an idle tail checks whether any stream still uses it.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// One record as every stream sends it.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) message: Message,
    /// The record as JSON (an SSE `data:` line).
    pub(crate) data: Arc<str>,
    /// The token after it, for a stream that reads every partition.
    pub(crate) token: Arc<str>,
}

/// The tails of topics with live streams.
#[derive(Debug, Default)]
pub(crate) struct Tails(Mutex<HashMap<String, Weak<Tail>>>);

/// Records read at once, and the place they were read from.
#[derive(Debug)]
pub(crate) struct Batch {
    /// The tail's positions before the batch: a stream at exactly this place follows
    /// in step, and each record's shared token is its own.
    pub(crate) from: Positions,
    pub(crate) records: Vec<Shared>,
}

/// A topic's live edge.
#[derive(Debug)]
pub(crate) struct Tail {
    sender: broadcast::Sender<Arc<Batch>>,
}

impl Tail {
    /// A receiver of the batches read from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.sender.subscribe()
    }
}

impl Tails {
    /// `topic`'s tail, started if no stream holds one (blocking: opens a cursor).
    pub(crate) fn get(&self, broker: &Arc<Broker>, topic: &str, stopping: watch::Receiver<bool>) -> Option<Arc<Tail>> {
        let mut tails = herald_log::sync::lock(&self.0);
        if let Some(tail) = tails.get(topic).and_then(Weak::upgrade) {
            return Some(tail);
        }
        tails.retain(|_, tail| tail.strong_count() > 0);
        let cursor = Cursor::open(broker, topic, &From::Latest, Filter::default()).ok()?;
        let tail = Arc::new(Tail { sender: broadcast::channel(BROADCAST_BATCHES).0 });
        tails.insert(topic.to_string(), Arc::downgrade(&tail));
        tokio::spawn(follow(Arc::clone(broker), cursor, Arc::downgrade(&tail), stopping));
        Some(tail)
    }
}

/// Reads the topic's new records whenever the broker signals data, while any stream
/// holds the tail.
async fn follow(broker: Arc<Broker>, mut cursor: Cursor, tail: Weak<Tail>, mut stopping: watch::Receiver<bool>) {
    let mut data = broker.subscribe_data();
    loop {
        data.borrow_and_update();
        let Some(live) = tail.upgrade() else { return };
        loop {
            let from = cursor.positions().clone();
            let reader = Arc::clone(&broker);
            let Ok((back, read)) = tokio::task::spawn_blocking(move || {
                let read = cursor.read(&reader, 1 << 20);
                (cursor, read)
            })
            .await
            else {
                return;
            };
            cursor = back;
            // A topic gone or unreadable ends the tail; its streams see that themselves.
            let Ok(items) = read else { return };
            if items.is_empty() {
                break;
            }
            let records = items.into_iter().filter_map(shared).collect();
            let _ = live.sender.send(Arc::new(Batch { from, records }));
        }
        drop(live);
        tokio::select! {
            changed = data.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(IDLE_CHECK) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

/// A gap at the tail is left out: a stream that meets the next record sees an offset
/// past its position and reads the log itself, where it finds the gap.
fn shared(item: Item) -> Option<Shared> {
    let Item::Event(message, token) = item else { return None };
    let data = serde_json::to_string(&message).unwrap_or_default().into();
    Some(Shared { message: *message, data, token: token.into() })
}

/// A record to send: its data and the token after it.
pub(crate) type Outbound = (Arc<str>, Arc<str>);

/// What a stream at `cursor` takes from a tail's batch: each record to send, with its data
/// and the token after it, and whether records before one were missed (then the stream
/// reads the log from its place; nothing after the miss is taken).
pub(crate) fn take(cursor: &mut Cursor, batch: &Batch) -> (Vec<Outbound>, bool) {
    // In step with the tail, the tail's token is the stream's; otherwise (just after a
    // catch-up that read further than the tail had) the stream's own place makes it.
    let in_step = cursor.positions() == &batch.from;
    let mut send = Vec::new();
    for record in &batch.records {
        match cursor.take(&record.message) {
            Take::Skip => {}
            Take::Behind => return (send, true),
            Take::Deliver => {
                let token = if in_step { Arc::clone(&record.token) } else { cursor.token().into() };
                send.push((Arc::clone(&record.data), token));
            }
        }
    }
    (send, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::decode;
    use crate::records::{Outgoing, encode};

    fn record(partition: i32, offset: i64, tail_token: &str) -> Shared {
        let batch = encode(&[Outgoing::default()], 0).expect("encode");
        let (mut messages, _) = decode(partition, batch, 0).expect("decode");
        let mut message = messages.remove(0);
        message.offset = offset;
        Shared { message, data: format!("{partition}@{offset}").into(), token: tail_token.into() }
    }

    fn cursor_at(positions: &[(i32, i64)]) -> Cursor {
        Cursor::at("t", positions.iter().copied().collect(), Filter::default())
    }

    #[test]
    fn a_stream_ahead_of_the_tail_makes_its_own_tokens() {
        // The tail read from {0:4, 1:6}; the stream's catch-up already read to {0:5, 1:7}.
        let batch = Batch {
            from: [(0, 4), (1, 6)].into_iter().collect(),
            records: vec![
                record(0, 4, "0:5,1:6"),
                record(0, 5, "0:6,1:6"),
                record(1, 6, "0:6,1:7"),
                record(1, 7, "0:6,1:8"),
            ],
        };
        let mut cursor = cursor_at(&[(0, 5), (1, 7)]);
        let (send, behind) = take(&mut cursor, &batch);
        let got: Vec<(String, String)> = send.iter().map(|(d, t)| (d.to_string(), t.to_string())).collect();
        // The tail's token after 0@5 says 1:6, behind what this stream sent: a resume
        // from it would repeat 1@6.
        assert_eq!(got, [("0@5".into(), "0:6,1:7".into()), ("1@7".into(), "0:6,1:8".into())]);
        assert!(!behind);
    }

    #[test]
    fn a_stream_in_step_shares_the_tails_tokens_and_a_miss_stops_it() {
        let batch = Batch {
            from: [(0, 4), (1, 6)].into_iter().collect(),
            records: vec![record(0, 4, "0:5,1:6"), record(1, 6, "0:5,1:7")],
        };
        let mut cursor = cursor_at(&[(0, 4), (1, 6)]);
        let (send, behind) = take(&mut cursor, &batch);
        assert_eq!(send.iter().map(|(_, t)| t.to_string()).collect::<Vec<_>>(), ["0:5,1:6", "0:5,1:7"]);
        assert!(!behind);
        let mut late = cursor_at(&[(0, 3), (1, 6)]);
        let (send, behind) = take(&mut late, &batch);
        assert!(send.is_empty() && behind, "0@3 was missed: read the log");
    }
}
