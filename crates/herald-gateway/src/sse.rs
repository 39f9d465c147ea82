//! `GET /api/v1/topics/{topic}/events`: a topic as Server-Sent Events. Each event's `id:`
//! is the resume token after it, so `Last-Event-ID` (or `?from=`) resumes exactly there.
//! A feeder task reads the logs through a [`Cursor`] when the broker signals new data and
//! hands events to the response through a bounded buffer; a client that leaves the buffer
//! full for `stream_stall` gets `event: resync` with its last delivered token, and the
//! stream ends: never a silent skip.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::auth::Read;
use crate::cursor::{Cursor, Filter, From, Item};
use crate::problem::{Path, Problem, Query};
use crate::server::App;

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
    let body = Delivered { receiver, overflowed, last: start, ended: false };
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
    Item(Item),
    Error(String),
}

/// Reads the topic whenever the broker signals new data, until the client leaves, the
/// buffer stays full past `stream_stall`, the topic goes, or the gateway stops.
async fn feed(
    app: Arc<App>,
    mut cursor: Cursor,
    sender: mpsc::Sender<Fed>,
    overflowed: Arc<AtomicBool>,
    _permit: OwnedSemaphorePermit,
) {
    let _open = Open::new();
    let mut data = app.broker.subscribe_data();
    let mut stopping = app.stopping.clone();
    loop {
        data.borrow_and_update();
        let broker = Arc::clone(&app.broker);
        let max_bytes = app.config.read_bytes_max;
        let read = tokio::task::spawn_blocking(move || {
            let items = cursor.read(&broker, max_bytes);
            (cursor, items)
        })
        .await;
        let items = match read {
            Ok((back, Ok(items))) => {
                cursor = back;
                items
            }
            Ok((_, Err(problem))) => return drop(sender.send(Fed::Error(problem.detail)).await),
            Err(panic) => return drop(sender.send(Fed::Error(panic.to_string())).await),
        };
        if items.is_empty() {
            tokio::select! {
                changed = data.changed() => if changed.is_err() { return },
                () = sender.closed() => return,
                _ = stopping.wait_for(|s| *s) => return,
            }
            continue;
        }
        for item in items {
            match tokio::time::timeout(app.config.stream_stall, sender.send(Fed::Item(item))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => return overflowed.store(true, Ordering::SeqCst),
            }
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
    ended: bool,
}

impl futures_core::Stream for Delivered {
    type Item = Result<Event, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match this.receiver.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Fed::Item(Item::Event(message, token)))) => {
                let data = serde_json::to_string(&message).unwrap_or_default();
                this.last.clone_from(&token);
                Poll::Ready(Some(Ok(Event::default().id(token).data(data))))
            }
            Poll::Ready(Some(Fed::Item(Item::Gap { partition, from, to }))) => {
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
