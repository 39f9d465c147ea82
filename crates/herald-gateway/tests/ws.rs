//! WebSocket streams against a real broker: 1,000 disconnect-and-resume cycles of a
//! subscription while a producer publishes over another socket deliver every record once,
//! in per-partition order, equal to the log; a read-only token cannot publish.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{Random, Served, call};
use futures_util::{SinkExt, StreamExt};
use herald_gateway::{GatewayConfig, Tokens};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(http: SocketAddr, query: &str) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{http}/api/v1/ws{query}")).await.expect("ws");
    socket
}

/// The next JSON text frame (pings are answered by the library), within 10 s.
async fn next(socket: &mut Socket) -> serde_json::Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("a frame within 10 s");
        match frame.expect("open").expect("frame") {
            Message::Text(text) => return serde_json::from_str(&text).expect("json"),
            _ => continue,
        }
    }
}

async fn send(socket: &mut Socket, request: serde_json::Value) {
    socket.send(Message::Text(request.to_string().into())).await.expect("send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_resumed_subscriptions_deliver_every_record_once_in_order() {
    let served = Served::start(GatewayConfig::default()).await;
    served.broker().create_topic("ws.in", Some(3), BTreeMap::new(), false).expect("topic");
    let http = served.http;
    const TOTAL: u64 = 4_000;
    let producer = tokio::spawn(async move {
        let mut socket = connect(http, "").await;
        for batch in 0..TOTAL / 10 {
            let records: Vec<_> = (0..10)
                .map(|i| serde_json::json!({ "key": format!("k{}", (batch * 10 + i) % 16), "value": batch * 10 + i }))
                .collect();
            send(&mut socket, serde_json::json!({ "op": "publish", "topic": "ws.in", "records": records })).await;
            let reply = next(&mut socket).await;
            assert_eq!(reply["op"], "published", "{reply}");
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });
    let mut random = Random::new(0xBEEF);
    let (mut token, mut delivered) = ("earliest".to_string(), BTreeMap::<i64, Vec<(i64, serde_json::Value)>>::new());
    let mut count = 0u64;
    for cycle in 0..1_000 {
        let mut socket = connect(http, "").await;
        send(&mut socket, serde_json::json!({ "op": "subscribe", "id": "s", "topic": "ws.in", "from": token })).await;
        assert_eq!(next(&mut socket).await["op"], "subscribed", "cycle {cycle}");
        for _ in 0..1 + random.below(6) {
            let frame = next(&mut socket).await;
            assert_eq!(frame["op"], "event", "{frame}");
            let record = &frame["record"];
            let partition = record["partition"].as_i64().expect("partition");
            delivered
                .entry(partition)
                .or_default()
                .push((record["offset"].as_i64().expect("offset"), record["value"].clone()));
            token = frame["token"].as_str().expect("token").to_string();
            count += 1;
        }
        drop(socket); // cut
    }
    producer.await.expect("producer");
    let mut socket = connect(http, "").await;
    send(&mut socket, serde_json::json!({ "op": "subscribe", "id": "rest", "topic": "ws.in", "from": token })).await;
    assert_eq!(next(&mut socket).await["op"], "subscribed");
    while count < TOTAL {
        let frame = next(&mut socket).await;
        let record = &frame["record"];
        delivered
            .entry(record["partition"].as_i64().expect("p"))
            .or_default()
            .push((record["offset"].as_i64().expect("o"), record["value"].clone()));
        count += 1;
    }
    send(&mut socket, serde_json::json!({ "op": "unsubscribe", "id": "rest" })).await;
    assert_eq!(next(&mut socket).await["op"], "unsubscribed", "nothing beyond the log came first");
    for partition in 0..3 {
        let mut log = Vec::new();
        loop {
            let path = format!("/api/v1/topics/ws.in/partitions/{partition}/messages?offset={}&limit=1000", log.len());
            let page = call(http, "GET", &path, &[], None).await.json();
            let messages = page["messages"].as_array().expect("messages").clone();
            if messages.is_empty() {
                break;
            }
            log.extend(messages.iter().map(|m| (m["offset"].as_i64().expect("offset"), m["value"].clone())));
        }
        assert_eq!(
            delivered.remove(&partition).unwrap_or_default(),
            log,
            "partition {partition}: once, in order, as logged"
        );
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_subscribes_but_cannot_publish() {
    let tokens = Tokens::parse("read read-token-0123456789\nwrite write-token-0123456789\n").expect("tokens");
    let served = Served::start(GatewayConfig::default().tokens(tokens)).await;
    served.broker().create_topic("ws.secured", Some(1), BTreeMap::new(), false).expect("topic");
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws", served.http)).await.is_err(),
        "no token: refused"
    );
    let publish = serde_json::json!({ "op": "publish", "topic": "ws.secured", "records": [{ "value": 1 }] });
    let mut reader = connect(served.http, "?access_token=read-token-0123456789").await;
    send(&mut reader, publish.clone()).await;
    let refused = next(&mut reader).await;
    assert_eq!(refused["op"], "error");
    assert!(refused["detail"].as_str().expect("detail").contains("write"));
    send(&mut reader, serde_json::json!({ "op": "subscribe", "id": "a", "topic": "ws.secured", "from": "earliest" }))
        .await;
    assert_eq!(next(&mut reader).await["op"], "subscribed");
    let mut writer = connect(served.http, "?access_token=write-token-0123456789").await;
    send(&mut writer, publish).await;
    assert_eq!(next(&mut writer).await["op"], "published");
    let event = next(&mut reader).await;
    assert_eq!((event["op"].as_str(), event["record"]["value"].as_i64()), (Some("event"), Some(1)));
    send(&mut reader, serde_json::json!({ "op": "nonsense" })).await;
    assert_eq!(next(&mut reader).await["op"], "error");
    served.stop().await;
}
