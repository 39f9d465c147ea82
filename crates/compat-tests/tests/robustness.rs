//! Bad input on one connection (negative and oversized lengths, a truncated frame left
//! idle, an unknown API key, random garbage) closes or errors that connection only, while
//! an rdkafka producer on another connection keeps producing.

use std::time::Duration;

use herald_broker::{BrokerConfig, ServerConfig};
use herald_compat_tests::TestBroker;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// True when the broker closes the connection within a few seconds.
async fn closes(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue, // an error response; keep reading until the close
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_connections_close_while_a_producer_keeps_going() {
    let server = ServerConfig { request_timeout: Duration::from_millis(500), ..ServerConfig::default() };
    let broker = TestBroker::start_with(BrokerConfig::default(), server).await;
    let producer: FutureProducer = herald_compat_tests::client(&broker)
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    let topic = "steady";
    let keep_producing = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut offsets = Vec::new();
            for i in 0..400u32 {
                let value = i.to_string();
                let delivery = producer
                    .send(FutureRecord::<(), _>::to(topic).partition(0).payload(&value), Duration::from_secs(10))
                    .await
                    .map_err(|(e, _)| e)
                    .expect("delivered despite the bad neighbours");
                offsets.push(delivery.offset);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            offsets
        })
    };

    let random: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative length", (-5i32).to_be_bytes().to_vec()),
        ("oversized length", (200u32 * 1024 * 1024).to_be_bytes().to_vec()),
        ("unknown API key", vec![0, 0, 0, 8, 0x7f, 0x7f, 0, 0, 0, 0, 0, 1]),
        ("unsupported version", vec![0, 0, 0, 10, 0, 0, 0x40, 0, 0, 0, 0, 1, 0xff, 0xff]),
        ("random garbage", random),
        ("truncated frame, then idle", vec![0, 0, 0, 100, 0, 18, 0, 3]),
    ];
    for (name, bytes) in cases {
        let mut bad = TcpStream::connect(broker.addr()).await.expect("connect");
        bad.write_all(&bytes).await.expect("send");
        assert!(closes(&mut bad).await, "{name}: the connection stays open");
    }

    let offsets = keep_producing.await.expect("producer task");
    assert_eq!(offsets, (0..400).collect::<Vec<i64>>(), "every record landed, in order, once");
}
