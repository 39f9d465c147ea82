//! HTTP produce against Kafka-protocol produce of the same batches, in the same run, on
//! this machine: one client sends batches of 100 records (about 100 bytes each) one after
//! another, each answered once fsynced (the broker's default durability), over a kept-alive
//! HTTP/1.1 connection to the gateway and over a Kafka connection (Produce v7, acks=-1,
//! built with kafka-protocol) to the broker. Medians of three runs.
//!
//! `cargo bench -p herald-gateway --bench produce`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use herald_gateway::GatewayConfig;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const BATCHES: usize = 200;
const RECORDS: usize = 100;
const RUNS: usize = 3;

fn value(n: usize) -> String {
    format!("{{\"orderId\":\"o{n}\",\"amountCents\":{},\"note\":\"{}\"}}", n * 7, "x".repeat(50))
}

/// Records per second over HTTP, one kept-alive connection.
async fn http(served: &common::Served) -> f64 {
    let connection = TcpStream::connect(served.http).await.expect("connect");
    connection.set_nodelay(true).expect("nodelay");
    let mut stream = BufReader::new(connection);
    let started = Instant::now();
    for batch in 0..BATCHES {
        let records: Vec<_> = (0..RECORDS).map(|i| serde_json::json!({ "key": format!("k{i}"), "value": value(batch * RECORDS + i), "valueEncoding": "text" })).collect();
        let body = serde_json::json!({ "records": records }).to_string();
        let request = format!(
            "POST /api/v1/topics/bench.http/messages HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.get_mut().write_all(request.as_bytes()).await.expect("send");
        let (status, _) = common::response(&mut stream).await;
        assert!(status.contains(" 200 "), "{status}");
    }
    (BATCHES * RECORDS) as f64 / started.elapsed().as_secs_f64()
}

/// Records per second over the Kafka protocol, one connection, the same records in one
/// uncompressed batch per request.
async fn kafka(served: &common::Served) -> f64 {
    let mut stream = TcpStream::connect(served.kafka).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let started = Instant::now();
    for batch in 0..BATCHES {
        let records: Vec<herald_gateway::Outgoing> = (0..RECORDS)
            .map(|i| herald_gateway::Outgoing {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(value(batch * RECORDS + i))),
                headers: Vec::new(),
            })
            .collect();
        let bytes = herald_gateway::encode(&records, herald_broker::internals::now_ms()).expect("encode");
        let partition = PartitionProduceData::default().with_index(0).with_records(Some(Bytes::from(bytes)));
        let topic = TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench.kafka")))
            .with_partition_data(vec![partition]);
        let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![topic]);
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(7)
            .with_correlation_id(batch as i32)
            .with_client_id(Some(StrBytes::from_static_str("bench")));
        header.encode(&mut buf, ProduceRequest::header_version(7)).expect("header");
        request.encode(&mut buf, 7).expect("request");
        // One write: a separate length prefix meets Nagle and delayed ACKs (40 ms).
        let mut framed = (buf.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&buf);
        stream.write_all(&framed).await.expect("request");
        let mut length = [0u8; 4];
        stream.read_exact(&mut length).await.expect("answer length");
        let mut answer = vec![0; u32::from_be_bytes(length) as usize];
        stream.read_exact(&mut answer).await.expect("answer");
        let mut answer = Bytes::from(answer);
        ResponseHeader::decode(&mut answer, ProduceResponse::header_version(7)).expect("header");
        let response = ProduceResponse::decode(&mut answer, 7).expect("response");
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0, "produce failed");
    }
    (BATCHES * RECORDS) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let served = common::Served::start(GatewayConfig::default()).await;
        for topic in ["bench.http", "bench.kafka"] {
            served.broker().create_topic(topic, Some(1), BTreeMap::new(), false).expect("topic");
        }
        let (mut over_http, mut over_kafka) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            over_kafka.push(kafka(&served).await);
            over_http.push(http(&served).await);
        }
        println!("HTTP {over_http:.0?} Kafka {over_kafka:.0?} records/s");
        let (h, k) = (median(over_http), median(over_kafka));
        println!(
            "| HTTP produce, batches of {RECORDS}, one client | {h:.0} vs Kafka protocol {k:.0} records/s: {:.2}x |",
            h / k
        );
        served.stop().await;
    });
}
