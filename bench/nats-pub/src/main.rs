//! Publishes N messages of S bytes to a JetStream file-storage stream, keeping W acks in
//! flight (windowed async publish), and prints msgs/s and ack latency as JSON.
//! Usage: nats-pub <url> <messages> <size> <window>

use std::collections::VecDeque;
use std::time::Instant;

use async_nats::jetstream::{self, stream};

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, messages, size, window] = &args[..] else {
        return Err("usage: nats-pub <url> <messages> <size> <window>".into());
    };
    let (messages, size, window): (usize, usize, usize) = (messages.parse()?, size.parse()?, window.parse()?);
    let client = async_nats::connect(url.as_str()).await?;
    let js = jetstream::new(client);
    let _ = js.delete_stream("BENCH").await;
    js.create_stream(stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let payload = bytes::Bytes::from(vec![b'x'; size]);
    let mut pending = VecDeque::with_capacity(window);
    let mut latencies = Vec::with_capacity(messages);
    let start = Instant::now();
    for _ in 0..messages {
        let sent = Instant::now();
        let ack = js.publish("bench", payload.clone()).await?;
        pending.push_back((sent, ack));
        if pending.len() >= window {
            let (sent, ack) = pending.pop_front().ok_or("empty")?;
            ack.await?;
            latencies.push(sent.elapsed().as_micros() as u64);
        }
    }
    while let Some((sent, ack)) = pending.pop_front() {
        ack.await?;
        latencies.push(sent.elapsed().as_micros() as u64);
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{{\"mode\":\"nats-js-publish\",\"messages\":{messages},\"seconds\":{seconds},\"msgs_per_sec\":{},\"latency_us\":{{\"p50\":{},\"p99\":{},\"p999\":{}}}}}",
        messages as f64 / seconds,
        pct(0.5),
        pct(0.99),
        pct(0.999)
    );
    Ok(())
}
