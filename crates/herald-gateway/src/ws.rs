//! `GET /api/v1/ws`: streams and publishing over one WebSocket, as JSON text frames.
//!
//! From the client: `{"op":"subscribe","id":"s1","topic":"orders","from":"earliest"}`
//! (`from`, `key`, `type`, `partition` as in the SSE query), `{"op":"unsubscribe","id":"s1"}`,
//! and `{"op":"publish","topic":"orders","records":[...]}` (records as in the REST produce;
//! needs a token with write scope). From the server: `subscribed`, `unsubscribed`,
//! `event` (`id`, `token`, `record`), `resync` (`id`, `token`: the subscription ended,
//! resume from there), `gap`, `published` (`offsets`) and `error` (`detail`, and the `id`
//! it concerns). Each subscription is a stream with the same buffer and stall rule as
//! SSE; the server pings every heartbeat and answers pings.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::auth::{Read, Scope, authorize, same_origin};
use crate::cursor::From;
use crate::messages::{ProduceRecord, publish};
use crate::problem::Problem;
use crate::server::App;
use crate::stream::{self, Frame, Frames, StreamQuery};

/// A client's request.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum Request {
    Subscribe {
        id: String,
        topic: String,
        #[serde(flatten)]
        query: StreamQuery,
    },
    Unsubscribe {
        id: String,
    },
    Publish {
        topic: String,
        records: Vec<ProduceRecord>,
    },
}

pub(crate) async fn socket(
    _: Read,
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Browsers apply no CORS to WebSockets: a page of another origin is refused here.
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    let allowed = |o: &str| app.config.cors_origins.iter().any(|allowed| allowed == o || allowed == "*");
    if origin.is_some_and(|o| !allowed(o)) && !same_origin(&headers) {
        return Problem::new(StatusCode::FORBIDDEN, "a WebSocket from this origin is not allowed").into_response();
    }
    let may_publish =
        authorize(app.config.tokens.as_ref(), Some(&app.sessions), &headers, uri.query(), Scope::Write).is_ok();
    upgrade.max_message_size(app.config.body_bytes_max).on_upgrade(move |socket| serve(app, socket, may_publish))
}

/// One connection: requests in, frames out, until either side closes or the gateway
/// stops.
async fn serve(app: Arc<App>, mut socket: WebSocket, may_publish: bool) {
    let (out, mut outgoing) = mpsc::channel::<String>(app.config.stream_buffer);
    let mut connection = Connection { app: Arc::clone(&app), subscriptions: HashMap::new(), out, may_publish };
    let mut ping = tokio::time::interval(app.config.heartbeat);
    let mut stopping = app.stopping.clone();
    loop {
        let send = tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => connection.handle(&text).await,
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => continue,
            },
            Some(frame) = outgoing.recv() => Message::Text(frame.into()),
            _ = ping.tick() => Message::Ping(bytes::Bytes::new()),
            () = async { drop(stopping.wait_for(|s| *s).await) } => break,
        };
        if socket.send(send).await.is_err() {
            break;
        }
    }
    for (_, pump) in connection.subscriptions {
        pump.abort();
    }
}

struct Connection {
    app: Arc<App>,
    /// Each subscription's pump, which moves its frames to the socket.
    subscriptions: HashMap<String, JoinHandle<()>>,
    out: mpsc::Sender<String>,
    may_publish: bool,
}

impl Connection {
    /// Carries out a request; the answer goes out before any of its events.
    async fn handle(&mut self, text: &str) -> Message {
        let reply = match serde_json::from_str::<Request>(text) {
            Err(error) => error_frame(None, &format!("not a request: {error}")),
            Ok(Request::Subscribe { id, topic, query }) => self.subscribe(id, topic, query).await,
            Ok(Request::Unsubscribe { id }) => match self.subscriptions.remove(&id) {
                Some(pump) => {
                    pump.abort();
                    serde_json::json!({ "op": "unsubscribed", "id": id }).to_string()
                }
                None => error_frame(Some(&id), "no such subscription"),
            },
            Ok(Request::Publish { topic, records }) if self.may_publish => {
                match publish(&self.app, topic, records).await {
                    Ok(offsets) => {
                        let offsets: Vec<_> =
                            offsets.iter().map(|(p, o)| serde_json::json!({ "partition": p, "offset": o })).collect();
                        serde_json::json!({ "op": "published", "offsets": offsets }).to_string()
                    }
                    Err(problem) => error_frame(None, &problem.detail),
                }
            }
            Ok(Request::Publish { .. }) => error_frame(None, "this token may not publish (write scope needed)"),
        };
        Message::Text(reply.into())
    }

    async fn subscribe(&mut self, id: String, topic: String, query: StreamQuery) -> String {
        self.subscriptions.retain(|_, pump| !pump.is_finished());
        if self.subscriptions.contains_key(&id) {
            return error_frame(Some(&id), "this id is subscribed already");
        }
        if self.subscriptions.len() >= self.app.config.ws_subscriptions_max {
            return error_frame(
                Some(&id),
                &format!("at most {} subscriptions per socket", self.app.config.ws_subscriptions_max),
            );
        }
        let opened = async {
            let filter = query.filter(self.app.config.filters_max)?;
            let from = From::parse(query.from.as_deref().unwrap_or("latest"))?;
            stream::start(&self.app, topic, from, filter, "ws").await
        };
        match opened.await {
            Ok(frames) => {
                let token = frames.last().to_string();
                self.subscriptions.insert(id.clone(), tokio::spawn(pump(id.clone(), frames, self.out.clone())));
                serde_json::json!({ "op": "subscribed", "id": id, "token": token }).to_string()
            }
            Err(problem) => error_frame(Some(&id), &problem.detail),
        }
    }
}

/// Moves a subscription's frames to the socket, waiting while it is busy (so a slow
/// client fills the subscription's buffer, and gets `resync`).
async fn pump(id: String, mut frames: Frames, out: mpsc::Sender<String>) {
    let quoted = serde_json::to_string(&id).unwrap_or_default();
    while let Some(frame) = frames.next().await {
        let text = match frame {
            Frame::Retry(_) => continue,
            Frame::Event { data, token } => {
                format!(r#"{{"op":"event","id":{quoted},"token":"{token}","record":{data}}}"#)
            }
            Frame::Gap { partition, from, to } => {
                serde_json::json!({ "op": "gap", "id": id, "partition": partition, "from": from, "to": to }).to_string()
            }
            Frame::Error(detail) => error_frame(Some(&id), &detail),
            Frame::Resync(token) => serde_json::json!({ "op": "resync", "id": id, "token": token }).to_string(),
        };
        if out.send(text).await.is_err() {
            return;
        }
    }
}

fn error_frame(id: Option<&str>, detail: &str) -> String {
    serde_json::json!({ "op": "error", "id": id, "detail": detail }).to_string()
}
