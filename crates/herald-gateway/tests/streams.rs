//! SSE streams against a real broker: 1,000 disconnect-and-resume cycles while records are
//! produced to several partitions deliver every record once, in per-partition order, equal
//! to the log; a stalled client gets `resync` with its last token, holding a bounded
//! buffer, and resumes from it without a gap.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Random, Served, Stream, call, produce};
use herald_gateway::GatewayConfig;

const PARTITIONS: u32 = 4;

/// Every record of `partition` as the page API returns it: (offset, value).
async fn log_of(served: &Served, topic: &str, partition: u32) -> Vec<(i64, serde_json::Value)> {
    let mut out = Vec::new();
    loop {
        let path = format!("/api/v1/topics/{topic}/partitions/{partition}/messages?offset={}&limit=1000", out.len());
        let page = call(served.http, "GET", &path, &[], None).await.json();
        let messages = page["messages"].as_array().expect("messages").clone();
        if messages.is_empty() {
            return out;
        }
        out.extend(messages.iter().map(|m| (m["offset"].as_i64().expect("offset"), m["value"].clone())));
    }
}

/// Records `events` by partition and keeps the last id.
fn take(
    delivered: &mut BTreeMap<i64, Vec<(i64, serde_json::Value)>>,
    events: Vec<common::Event>,
    token: &mut Option<String>,
) {
    for event in events {
        let message: serde_json::Value = serde_json::from_str(&event.data).expect("json");
        let partition = message["partition"].as_i64().expect("partition");
        let offset = message["offset"].as_i64().expect("offset");
        delivered.entry(partition).or_default().push((offset, message["value"].clone()));
        *token = event.id;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_resumes_deliver_every_record_once_in_order() {
    let served = Served::start(GatewayConfig::default()).await;
    served.broker().create_topic("resume", Some(PARTITIONS), BTreeMap::new(), false).expect("topic");
    let http = served.http;
    let producer = tokio::spawn(async move {
        for batch in 0..400u64 {
            let records = (0..10).map(|i| {
                let n = batch * 10 + i;
                serde_json::json!({ "key": format!("k{}", n % 16), "value": { "n": n } })
            });
            produce(http, "resume", records.collect()).await;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });
    let mut random = Random::new(0x5EED);
    let mut token: Option<String> = None;
    let mut delivered: BTreeMap<i64, Vec<(i64, serde_json::Value)>> = BTreeMap::new();
    let mut cycles = 0;
    while cycles < 1_000 {
        let mut stream = match &token {
            Some(t) => Stream::open(http, "/api/v1/topics/resume/events", &[("last-event-id", t)]).await,
            None => Stream::open(http, "/api/v1/topics/resume/events?from=earliest", &[]).await,
        };
        assert_eq!(stream.status, 200);
        let want = 1 + random.below(6);
        let mut events = Vec::new();
        while (events.len() as u64) < want {
            match stream.next(Duration::from_secs(10)).await {
                Some(event) => events.push(event),
                None => panic!("no event within 10 s at cycle {cycles}"),
            }
        }
        take(&mut delivered, events, &mut token);
        drop(stream); // cut, wherever the server is
        cycles += 1;
    }
    producer.await.expect("producer");
    let total = 4_000;
    let mut stream =
        Stream::open(http, "/api/v1/topics/resume/events", &[("last-event-id", token.as_deref().unwrap_or(""))]).await;
    let mut rest = Vec::new();
    while delivered.values().map(Vec::len).sum::<usize>() + rest.len() < total {
        rest.push(stream.next(Duration::from_secs(10)).await.expect("the rest arrives"));
    }
    take(&mut delivered, rest, &mut token);
    assert!(stream.next(Duration::from_millis(300)).await.is_none(), "nothing beyond the log");
    for partition in 0..PARTITIONS {
        let log = log_of(&served, "resume", partition).await;
        let got = delivered.remove(&i64::from(partition)).unwrap_or_default();
        assert_eq!(got.len(), log.len(), "partition {partition}: every record once");
        assert_eq!(got, log, "partition {partition}: in order, equal to the log");
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_gets_resync_and_resumes_without_a_gap() {
    let config = GatewayConfig::default().stream_buffer(16).stream_stall(Duration::from_millis(300));
    let served = Served::start(config).await;
    served.broker().create_topic("stall", Some(1), BTreeMap::new(), false).expect("topic");
    const RECORDS: usize = 4_000;
    let body = "x".repeat(4_000);
    for _ in 0..RECORDS / 100 {
        let records = (0..100).map(|_| serde_json::json!({ "value": body, "valueEncoding": "text" })).collect();
        produce(served.http, "stall", records).await;
    }
    // 16 MB of events: more than the socket buffers hold, so the feeder waits on a full
    // buffer while the client does not read.
    let mut stream = Stream::open(served.http, "/api/v1/topics/stall/events?from=earliest", &[]).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (mut offsets, mut last_id, mut resync) = (Vec::new(), None, None);
    while let Some(event) = stream.next(Duration::from_secs(5)).await {
        match event.event.as_deref() {
            Some("resync") => resync = Some(event.data),
            _ => {
                let message: serde_json::Value = serde_json::from_str(&event.data).expect("json");
                offsets.push(message["offset"].as_i64().expect("offset"));
                last_id = event.id;
            }
        }
    }
    let resync = resync.expect("a resync event before the stream closed");
    let resync: serde_json::Value = serde_json::from_str(&resync).expect("json");
    assert_eq!(resync["token"].as_str(), last_id.as_deref(), "resync names the last delivered token");
    assert!(offsets.len() < RECORDS, "the stalled stream was cut short ({} events), not buffered whole", offsets.len());
    let mut stream = Stream::open(
        served.http,
        "/api/v1/topics/stall/events",
        &[("last-event-id", last_id.as_deref().unwrap_or(""))],
    )
    .await;
    while offsets.len() < RECORDS {
        let event = stream.next(Duration::from_secs(10)).await.expect("the rest after resuming");
        let message: serde_json::Value = serde_json::from_str(&event.data).expect("json");
        offsets.push(message["offset"].as_i64().expect("offset"));
    }
    assert_eq!(offsets, (0..RECORDS as i64).collect::<Vec<_>>(), "no gap, no duplicate");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_removed_before_a_stream_reached_them_come_as_a_gap() {
    let served = Served::start(GatewayConfig::default()).await;
    served.broker().create_topic("gap", Some(1), BTreeMap::new(), false).expect("topic");
    produce(served.http, "gap", (0..10).map(|n| serde_json::json!({ "value": n })).collect()).await;
    let log = served.broker().partition("gap", 0).expect("partition");
    log.log().delete_records_before(5).expect("delete records");
    let mut stream = Stream::open(served.http, "/api/v1/topics/gap/events", &[("last-event-id", "0:2")]).await;
    let gap = stream.next(Duration::from_secs(5)).await.expect("a gap event");
    assert_eq!(gap.event.as_deref(), Some("gap"));
    let gap: serde_json::Value = serde_json::from_str(&gap.data).expect("json");
    assert_eq!(gap, serde_json::json!({ "partition": 0, "from": 2, "to": 5 }));
    let next = stream.next(Duration::from_secs(5)).await.expect("the records after it");
    let message: serde_json::Value = serde_json::from_str(&next.data).expect("json");
    assert_eq!((message["offset"].as_i64(), next.id.as_deref()), (Some(5), Some("0:6")));
    served.stop().await;
}
