//! `GET /api/v1/topics/{topic}/events`: a topic as Server-Sent Events. Each event's `id:`
//! is the resume token after it, so `Last-Event-ID` (or `?from=`) resumes exactly there;
//! `event: resync` names the token to resume from when the client was too slow, and
//! `event: gap` reports records retention removed first.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use crate::auth::Read;
use crate::cursor::From;
use crate::problem::{Path, Problem, Query};
use crate::server::App;
use crate::stream::{self, Frame, Frames, StreamQuery};

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
    let frames = stream::start(&app, topic, from, filter, "sse").await?;
    Ok(Sse::new(Body(frames)).keep_alive(KeepAlive::new().interval(app.config.heartbeat)).into_response())
}

/// The response body: frames as SSE events.
struct Body(Frames);

impl futures_core::Stream for Body {
    type Item = Result<Event, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let frame = std::task::ready!(self.get_mut().0.poll_frame(cx));
        Poll::Ready(frame.map(|frame| Ok(event(frame))))
    }
}

fn event(frame: Frame) -> Event {
    match frame {
        Frame::Retry(retry) => Event::default().retry(retry),
        Frame::Event { data, token } => Event::default().id(&*token).data(&*data),
        Frame::Gap { partition, from, to } => Event::default()
            .event("gap")
            .data(serde_json::json!({ "partition": partition, "from": from, "to": to }).to_string()),
        Frame::Error(detail) => {
            Event::default().event("error").data(serde_json::json!({ "detail": detail }).to_string())
        }
        Frame::Resync(token) => {
            Event::default().event("resync").data(serde_json::json!({ "token": token }).to_string())
        }
    }
}
