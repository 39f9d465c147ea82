//! A real browser: headless Chromium (driven over WebDriver by chromedriver) opens a page
//! whose `EventSource` reads a topic through a proxy that cuts its connection every few
//! hundred milliseconds; the browser reconnects on its own with `Last-Event-ID`, and the
//! ids it received have no gap and no duplicate while records keep arriving.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::webdriver::{Browser, tool};
use common::{Random, Served, produce};
use herald_gateway::GatewayConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PAGE: &str = r#"<!doctype html><html><body><script>
window.got = []; window.opens = 0;
const events = new EventSource("/api/v1/topics/browser/events?from=earliest");
events.onopen = () => { window.opens += 1; };
events.onmessage = (e) => { const r = JSON.parse(e.data); window.got.push([r.partition, r.offset]); };
</script></body></html>"#;

/// Serves `PAGE` at `/` and forwards `/api/...` to the gateway, cutting each forwarded
/// connection after a random 150-500 ms.
async fn cutting_proxy(gateway: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut random = Random::new(0xC0FFEE);
        while let Ok((client, _)) = listener.accept().await {
            let cut = Duration::from_millis(150 + random.below(350));
            tokio::spawn(serve(client, gateway, cut));
        }
    });
    addr
}

async fn serve(mut client: TcpStream, gateway: SocketAddr, cut: Duration) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await.unwrap_or(0) == 0 || head.len() > 16 * 1024 {
            return;
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"GET /api/") {
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PAGE}",
            PAGE.len()
        );
        let _ = client.write_all(reply.as_bytes()).await;
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(gateway).await else { return };
    if upstream.write_all(&head).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(cut, tokio::io::copy_bidirectional(&mut client, &mut upstream)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_event_source_resumes_without_gap_or_duplicate() {
    let Some(chromedriver) = tool("chromedriver", "HERALD_REQUIRE_CHROMIUM") else { return };
    const RECORDS: usize = 300;
    let served = Served::start(GatewayConfig::default().stream_retry(Duration::from_millis(50))).await;
    served.broker().create_topic("browser", Some(3), BTreeMap::new(), false).expect("topic");
    let proxy = cutting_proxy(served.http).await;
    // WebDriver calls block: each runs where blocking is allowed.
    let browser = tokio::task::block_in_place(|| Browser::start(&chromedriver, &[]));
    let eval = |script: &str| tokio::task::block_in_place(|| browser.eval(script, serde_json::json!([])));
    tokio::task::block_in_place(|| browser.open(&format!("http://{proxy}/")));
    let http = served.http;
    let producer = tokio::spawn(async move {
        for batch in 0..RECORDS / 10 {
            let records =
                (0..10).map(|i| serde_json::json!({ "key": format!("k{}", batch * 10 + i), "value": batch * 10 + i }));
            produce(http, "browser", records.collect()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let count = eval("return window.got.length;").as_u64().expect("a count");
        if count >= RECORDS as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "the browser got {count} of {RECORDS} records in 90 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    producer.await.expect("producer");
    // Anything past the records produced would be a duplicate: give it time to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = eval("return window.got;").as_array().expect("an array").clone();
    let opens = eval("return window.opens;").as_u64().expect("opens");
    tokio::task::block_in_place(|| drop(browser));
    let mut by_partition: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for pair in &got {
        by_partition.entry(pair[0].as_i64().expect("partition")).or_default().push(pair[1].as_i64().expect("offset"));
    }
    let total: usize = by_partition.values().map(Vec::len).sum();
    assert_eq!(total, RECORDS, "every record once");
    for (partition, offsets) in &by_partition {
        let want: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, &want, "partition {partition}: no gap, no duplicate, in order");
    }
    assert!(opens >= 3, "the proxy cut the stream and the browser reconnected ({opens} opens)");
    served.stop().await;
}
