//! A stream of one topic for one client, whatever carries it (SSE, a WebSocket
//! subscription): [`start`] opens the place it starts from and spawns its feeder, which
//! catches up from the log through the stream's [`Cursor`], then follows the topic's
//! shared [`crate::tail::Tail`], and hands frames over through a bounded buffer. A client
//! that leaves the buffer full for `stream_stall` gets a `Resync` frame with its last
//! delivered token, and the stream ends: never a silent skip.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc};

use crate::cursor::{Cursor, Filter, From, Item};
use crate::problem::Problem;
use crate::server::App;
use crate::tail::{self, Batch};

/// The query of a stream.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamQuery {
    /// `earliest`, `latest` (the default), a token or a time in ms.
    pub(crate) from: Option<String>,
    /// Keys, comma-separated.
    pub(crate) key: Option<String>,
    /// `event-type` values, comma-separated.
    #[serde(rename = "type")]
    pub(crate) kind: Option<String>,
    /// Partitions, comma-separated.
    pub(crate) partition: Option<String>,
}

impl StreamQuery {
    /// The filter it asks for, within `filters_max` values.
    pub(crate) fn filter(&self, filters_max: usize) -> Result<Filter, Problem> {
        let list = |text: &Option<String>| -> Vec<String> {
            text.as_deref().unwrap_or_default().split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
        };
        let partitions = list(&self.partition)
            .iter()
            .map(|p| p.parse::<i32>().map_err(|_| Problem::bad_request(format!("partition {p:?} is not a number"))))
            .collect::<Result<Vec<_>, _>>()?;
        let filter = Filter { keys: list(&self.key), types: list(&self.kind), partitions };
        if filter.len() > filters_max {
            return Err(Problem::bad_request(format!("at most {filters_max} filter values per stream")));
        }
        Ok(filter)
    }
}

/// What a client is sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    /// How long a browser waits before reconnecting (SSE only).
    Retry(Duration),
    /// A record (its JSON) and the token after it.
    Event { data: Arc<str>, token: Arc<str> },
    /// Records retention removed before the stream reached them.
    Gap { partition: i32, from: i64, to: i64 },
    /// The stream failed (the topic went, a read failed).
    Error(String),
    /// The client was too slow: resume from this token.
    Resync(String),
}

/// Opens a stream of `topic` from `from` for a client reached through `kind` (`sse`,
/// `ws`): takes a stream permit, finds the place (a blocking read of the logs' bounds),
/// starts the feeder.
pub(crate) async fn start(
    app: &Arc<App>,
    topic: String,
    from: From,
    filter: Filter,
    kind: &'static str,
) -> Result<Frames, Problem> {
    let permit = Arc::clone(&app.streams).try_acquire_owned().map_err(|_| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} streams are open, the most allowed", app.config.streams_max),
        )
    })?;
    let broker = Arc::clone(&app.broker);
    let cursor = tokio::task::spawn_blocking(move || Cursor::open(&broker, &topic, &from, filter))
        .await
        .map_err(|e| Problem::internal(e.to_string()))??;
    let (sender, receiver) = mpsc::channel(app.config.stream_buffer);
    let overflowed = Arc::new(AtomicBool::new(false));
    let start = cursor.token();
    tokio::spawn(feed(Arc::clone(app), cursor, sender, Arc::clone(&overflowed), permit, kind));
    Ok(Frames { receiver, overflowed, last: start.into(), retry: Some(app.config.stream_retry), ended: false })
}

/// Counts open streams in `herald_gateway_streams` by kind.
struct Open(&'static str);

impl Open {
    fn new(kind: &'static str) -> Self {
        metrics::gauge!("herald_gateway_streams", "kind" => kind).increment(1.0);
        Self(kind)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!("herald_gateway_streams", "kind" => self.0).decrement(1.0);
    }
}

/// What the feeder hands the response.
#[derive(Debug)]
enum Fed {
    Event { data: Arc<str>, token: Arc<str> },
    Gap { partition: i32, from: i64, to: i64 },
    Error(String),
}

/// Whether the feeder goes on.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Go,
    Stop,
}

/// Feeds one stream: reads the log from its place until there is nothing more (catch-up),
/// then takes records from the topic's tail (live); falls back to catch-up whenever it
/// missed some. Ends when the client leaves, the buffer stays full past `stream_stall`
/// (`overflowed`), the topic goes, or the gateway stops.
async fn feed(
    app: Arc<App>,
    mut cursor: Cursor,
    sender: mpsc::Sender<Fed>,
    overflowed: Arc<AtomicBool>,
    _permit: OwnedSemaphorePermit,
    kind: &'static str,
) {
    let _open = Open::new(kind);
    let out = Out { sender, overflowed, stall: app.config.stream_stall };
    loop {
        let Some(tail) = app.tails.get(&app.broker, cursor.topic(), app.stopping.clone()) else {
            let _ = out.send(Fed::Error(format!("topic {:?} is gone", cursor.topic()))).await;
            return;
        };
        // Subscribed before catching up: whatever the tail reads after the catch-up's
        // last read comes through the subscription.
        let mut live = tail.subscribe();
        if catch_up(&app, &mut cursor, &out).await == Flow::Stop {
            return;
        }
        if follow(&app, &mut cursor, &mut live, &out).await == Flow::Stop {
            return;
        }
    }
}

/// The stream's side of the buffer.
struct Out {
    sender: mpsc::Sender<Fed>,
    overflowed: Arc<AtomicBool>,
    stall: Duration,
}

impl Out {
    async fn send(&self, fed: Fed) -> Flow {
        // Room in the buffer is the common case: no timer for it.
        let fed = match self.sender.try_send(fed) {
            Ok(()) => return Flow::Go,
            Err(mpsc::error::TrySendError::Closed(_)) => return Flow::Stop,
            Err(mpsc::error::TrySendError::Full(fed)) => fed,
        };
        match tokio::time::timeout(self.stall, self.sender.send(fed)).await {
            Ok(Ok(())) => Flow::Go,
            Ok(Err(_)) => Flow::Stop,
            Err(_) => {
                self.overflowed.store(true, Ordering::SeqCst);
                Flow::Stop
            }
        }
    }
}

/// Reads the log from the cursor until a read finds nothing.
async fn catch_up(app: &Arc<App>, cursor: &mut Cursor, out: &Out) -> Flow {
    loop {
        let (broker, max_bytes, mut own) = (Arc::clone(&app.broker), app.config.read_bytes_max, cursor.clone());
        let read = tokio::task::spawn_blocking(move || {
            let items = own.read(&broker, max_bytes);
            (own, items)
        })
        .await;
        let items = match read {
            Ok((moved, Ok(items))) => {
                *cursor = moved;
                items
            }
            Ok((_, Err(problem))) => {
                out.send(Fed::Error(problem.detail)).await;
                return Flow::Stop;
            }
            Err(panic) => {
                out.send(Fed::Error(panic.to_string())).await;
                return Flow::Stop;
            }
        };
        if items.is_empty() {
            return Flow::Go;
        }
        for item in items {
            let fed = match item {
                Item::Event(message, token) => {
                    Fed::Event { data: serde_json::to_string(&message).unwrap_or_default().into(), token: token.into() }
                }
                Item::Gap { partition, from, to } => Fed::Gap { partition, from, to },
            };
            if out.send(fed).await == Flow::Stop {
                return Flow::Stop;
            }
        }
    }
}

/// Takes the tail's batches until the stream misses records (`Go`: catch up again) or
/// ends (`Stop`).
async fn follow(app: &Arc<App>, cursor: &mut Cursor, live: &mut broadcast::Receiver<Arc<Batch>>, out: &Out) -> Flow {
    let mut stopping = app.stopping.clone();
    // Made once: registering these anew for every batch costs as much as the batch.
    let closed = out.sender.closed();
    let stop = async { drop(stopping.wait_for(|s| *s).await) };
    tokio::pin!(closed, stop);
    loop {
        let batch = tokio::select! {
            batch = live.recv() => batch,
            () = &mut closed => return Flow::Stop,
            () = &mut stop => return Flow::Stop,
        };
        // Lagged behind the broadcast, or the tail ended: read the log again.
        let Ok(batch) = batch else { return Flow::Go };
        let (send, behind) = tail::take(cursor, &batch);
        for (data, token) in send {
            if out.send(Fed::Event { data, token }).await == Flow::Stop {
                return Flow::Stop;
            }
        }
        if behind {
            return Flow::Go;
        }
    }
}

/// A stream's frames as they come: buffered events, then `Resync` if the feeder gave up
/// on the client.
#[derive(Debug)]
pub(crate) struct Frames {
    receiver: mpsc::Receiver<Fed>,
    overflowed: Arc<AtomicBool>,
    /// The token after the last event handed out.
    last: Arc<str>,
    /// Sent first: how long a browser waits before it reconnects.
    retry: Option<Duration>,
    ended: bool,
}

impl Frames {
    /// The next frame; `None` once the stream has ended.
    pub(crate) async fn next(&mut self) -> Option<Frame> {
        std::future::poll_fn(|cx| self.poll_frame(cx)).await
    }

    /// The token after the last event handed out.
    pub(crate) fn last(&self) -> &str {
        &self.last
    }

    pub(crate) fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(retry) = self.retry.take() {
            return Poll::Ready(Some(Frame::Retry(retry)));
        }
        let frame = match std::task::ready!(self.receiver.poll_recv(cx)) {
            Some(Fed::Event { data, token }) => {
                self.last = Arc::clone(&token);
                Frame::Event { data, token }
            }
            Some(Fed::Gap { partition, from, to }) => Frame::Gap { partition, from, to },
            Some(Fed::Error(detail)) => {
                self.ended = true;
                Frame::Error(detail)
            }
            None => {
                self.ended = true;
                if !self.overflowed.load(Ordering::SeqCst) {
                    return Poll::Ready(None);
                }
                Frame::Resync(self.last.to_string())
            }
        };
        Poll::Ready(Some(frame))
    }
}
