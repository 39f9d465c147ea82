//! `GET /api/v1/topics/{topic}/events`: a topic as Server-Sent Events. Each event's `id:`
//! is the resume token after it, so `Last-Event-ID` (or `?from=`) resumes exactly there.
//! A feeder task catches up from the log through the stream's [`Cursor`], then follows
//! the topic's shared [`crate::tail::Tail`], and hands events to the response through a
//! bounded buffer; a client that leaves the buffer full for `stream_stall` gets
//! `event: resync` with its last delivered token, and the stream ends: never a silent
//! skip.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc};

use crate::auth::Read;
use crate::cursor::{Cursor, Filter, From, Item};
use crate::problem::{Path, Problem, Query};
use crate::server::App;
use crate::tail::{self, Batch};

/// The query of a stream.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamQuery {
    /// `earliest`, `latest` (the default), a token or a time in ms.
    from: Option<String>,
    /// Keys, comma-separated.
    key: Option<String>,
    /// `event-type` values, comma-separated.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Partitions, comma-separated.
    partition: Option<String>,
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

/// Opens a stream.
pub(crate) async fn events(
    _: Read,
    State(app): State<Arc<App>>,
    Path(topic): Path<String>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let filter = query.filter(app.config.filters_max)?;
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
    let from = match resume.or(query.from.as_deref()) {
        Some(text) => From::parse(text)?,
        None => From::Latest,
    };
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
    tokio::spawn(feed(Arc::clone(&app), cursor, sender, Arc::clone(&overflowed), permit));
    let body = Delivered { receiver, overflowed, last: start, retry: Some(app.config.stream_retry), ended: false };
    Ok(Sse::new(body).keep_alive(KeepAlive::new().interval(app.config.heartbeat)).into_response())
}

/// Counts open streams in `herald_gateway_streams`.
struct Open;

impl Open {
    fn new() -> Self {
        metrics::gauge!("herald_gateway_streams", "kind" => "sse").increment(1.0);
        Self
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!("herald_gateway_streams", "kind" => "sse").decrement(1.0);
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
) {
    let _open = Open::new();
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
    stall: std::time::Duration,
}

impl Out {
    async fn send(&self, fed: Fed) -> Flow {
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
    loop {
        let batch = tokio::select! {
            batch = live.recv() => batch,
            () = out.sender.closed() => return Flow::Stop,
            _ = stopping.wait_for(|s| *s) => return Flow::Stop,
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

/// The response body: buffered events as SSE, then `resync` if the feeder gave up on
/// the client.
struct Delivered {
    receiver: mpsc::Receiver<Fed>,
    overflowed: Arc<AtomicBool>,
    /// The token after the last event delivered.
    last: String,
    /// Sent first: how long a browser waits before it reconnects.
    retry: Option<std::time::Duration>,
    ended: bool,
}

impl futures_core::Stream for Delivered {
    type Item = Result<Event, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(retry) = this.retry.take() {
            return Poll::Ready(Some(Ok(Event::default().retry(retry))));
        }
        match this.receiver.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Fed::Event { data, token })) => {
                this.last.replace_range(.., &token);
                Poll::Ready(Some(Ok(Event::default().id(&*token).data(&*data))))
            }
            Poll::Ready(Some(Fed::Gap { partition, from, to })) => {
                let data = serde_json::json!({ "partition": partition, "from": from, "to": to }).to_string();
                Poll::Ready(Some(Ok(Event::default().event("gap").data(data))))
            }
            Poll::Ready(Some(Fed::Error(detail))) => {
                this.ended = true;
                let data = serde_json::json!({ "detail": detail }).to_string();
                Poll::Ready(Some(Ok(Event::default().event("error").data(data))))
            }
            Poll::Ready(None) => {
                this.ended = true;
                if !this.overflowed.load(Ordering::SeqCst) {
                    return Poll::Ready(None);
                }
                let data = serde_json::json!({ "token": this.last }).to_string();
                Poll::Ready(Some(Ok(Event::default().event("resync").data(data))))
            }
        }
    }
}
