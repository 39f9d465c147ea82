//! The listener on a real socket: answers, limits, bad input closing one connection only,
//! and every wait bounded: a closed peer releases its connection even while a request of
//! it is parked, and a shutdown answers parked requests instead of waiting for them.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use herald_broker::{BrokerConfig, RunningBroker, ServerConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, JoinGroupRequest, JoinGroupResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config() -> ServerConfig {
    ServerConfig { listen: "127.0.0.1:0".parse().expect("addr"), ..ServerConfig::default() }
}

async fn start(server: ServerConfig) -> (RunningBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerConfig { data_dir: dir.path().to_path_buf(), ..BrokerConfig::default() };
    (RunningBroker::start(broker, server).await.expect("start"), dir)
}

fn frame<R: Encodable + HeaderVersion>(key: ApiKey, version: i16, correlation_id: i32, request: &R) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("server-test")))
        .encode(&mut buf, R::header_version(version))
        .expect("header");
    request.encode(&mut buf, version).expect("body");
    let mut frame = (buf.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    frame
}

fn api_versions_request(version: i16, correlation_id: i32) -> Vec<u8> {
    frame(ApiKey::ApiVersions, version, correlation_id, &ApiVersionsRequest::default())
}

/// A JoinGroup v3 of a new member (no member id needed first), which the group's initial
/// rebalance delay parks.
fn join_request(correlation_id: i32) -> Vec<u8> {
    let protocol = JoinGroupRequestProtocol::default().with_name(StrBytes::from_static_str("range"));
    let request = JoinGroupRequest::default()
        .with_group_id(StrBytes::from_static_str("parked").into())
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(300_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![protocol]);
    frame(ApiKey::JoinGroup, 3, correlation_id, &request)
}

/// A broker whose groups wait a minute for more members before their first rebalance.
async fn start_parking(server: ServerConfig) -> (RunningBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = BrokerConfig { data_dir: dir.path().to_path_buf(), ..BrokerConfig::default() };
    broker.groups.initial_rebalance_delay_ms = 60_000;
    (RunningBroker::start(broker, server).await.expect("start"), dir)
}

/// Waits up to `limit` for the broker's open connection count to reach `want`.
async fn connections_reach(server: &RunningBroker, want: usize, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if server.open_connections() == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.open_connections() == want
}

/// Waits until the broker has parked `want` group requests.
async fn parked(server: &RunningBroker, want: usize) {
    for _ in 0..1000 {
        if server.broker().groups().parked() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{} parked requests, not {want}", server.broker().groups().parked());
}

async fn read_response(stream: &mut TcpStream, version: i16) -> (i32, ApiVersionsResponse) {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.expect("response length");
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).await.expect("response body");
    let mut bytes = Bytes::from(body);
    let header = ResponseHeader::decode(&mut bytes, ApiVersionsResponse::header_version(version)).expect("header");
    let response = ApiVersionsResponse::decode(&mut bytes, version).expect("body");
    assert!(bytes.is_empty());
    (header.correlation_id, response)
}

/// True when the server closed the connection (a read sees EOF or a reset).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn answers_api_versions_in_order_on_one_connection() {
    let (server, _dir) = start(config()).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.expect("connect");
    for (i, version) in [0i16, 3, 4, 1].into_iter().enumerate() {
        stream.write_all(&api_versions_request(version, i as i32)).await.expect("send");
    }
    for (i, version) in [0i16, 3, 4, 1].into_iter().enumerate() {
        let (correlation_id, response) = read_response(&mut stream, version).await;
        assert_eq!(correlation_id, i as i32);
        assert_eq!(response.error_code, 0);
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn bad_input_closes_only_that_connection() {
    let (server, _dir) = start(ServerConfig { request_bytes_max: 1024, ..config() }).await;
    let mut oversized = TcpStream::connect(server.local_addr()).await.expect("connect");
    oversized.write_all(&(1025u32).to_be_bytes()).await.expect("send");
    assert!(closed(&mut oversized).await, "a length over request_bytes_max closes the connection");
    let mut garbage = TcpStream::connect(server.local_addr()).await.expect("connect");
    garbage.write_all(&[0, 0, 0, 8, 0x7f, 0x7f, 0, 0, 0, 0, 0, 1]).await.expect("send");
    assert!(closed(&mut garbage).await, "an unknown API key closes the connection");
    let mut good = TcpStream::connect(server.local_addr()).await.expect("connect");
    good.write_all(&api_versions_request(3, 9)).await.expect("send");
    assert_eq!(read_response(&mut good, 3).await.0, 9, "other connections keep working");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn connection_limit_and_slow_requests_are_enforced() {
    let limited = ServerConfig { connections_max: 2, request_timeout: Duration::from_millis(300), ..config() };
    let (server, _dir) = start(limited).await;
    let mut first = TcpStream::connect(server.local_addr()).await.expect("connect");
    let mut second = TcpStream::connect(server.local_addr()).await.expect("connect");
    // Make sure both are accepted before the third arrives.
    for stream in [&mut first, &mut second] {
        stream.write_all(&api_versions_request(2, 1)).await.expect("send");
        read_response(stream, 2).await;
    }
    let mut third = TcpStream::connect(server.local_addr()).await.expect("connect");
    assert!(closed(&mut third).await, "the third connection is over connections_max");
    // A request that starts but never finishes is cut off after request_timeout.
    first.write_all(&[0, 0, 0, 20, 0, 18]).await.expect("send");
    assert!(closed(&mut first).await, "a partial request times out");
    let mut fourth = TcpStream::connect(server.local_addr()).await.expect("connect");
    fourth.write_all(&api_versions_request(3, 4)).await.expect("send");
    assert_eq!(read_response(&mut fourth, 3).await.0, 4, "a freed slot is reused");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_closed_peer_releases_its_connection_while_its_join_is_parked() {
    let (server, _dir) = start_parking(config()).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.expect("connect");
    stream.write_all(&join_request(1)).await.expect("send");
    parked(&server, 1).await;
    assert_eq!(server.open_connections(), 1);
    drop(stream);
    assert!(connections_reach(&server, 0, Duration::from_secs(1)).await, "released within 1 s of the FIN");
    parked(&server, 0).await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_closed_peer_is_noticed_while_its_requests_fill_the_queue() {
    // One answer may wait: the parked join is the writer's, the next fills the queue, and
    // the reader then waits for room while watching the socket.
    let (server, _dir) = start_parking(ServerConfig { in_flight_max: 1, ..config() }).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.expect("connect");
    stream.write_all(&join_request(1)).await.expect("send");
    parked(&server, 1).await;
    stream.write_all(&api_versions_request(3, 2)).await.expect("send");
    stream.write_all(&api_versions_request(3, 3)).await.expect("send");
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    assert!(connections_reach(&server, 0, Duration::from_secs(1)).await, "released within 1 s of the FIN");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_answers_a_parked_join_not_coordinator_without_waiting_for_the_rebalance() {
    let (server, _dir) = start_parking(config()).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.expect("connect");
    stream.write_all(&join_request(7)).await.expect("send");
    parked(&server, 1).await;
    let shutdown = tokio::spawn(server.shutdown());
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.expect("an answer before the close");
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).await.expect("response body");
    let mut bytes = Bytes::from(body);
    let header = ResponseHeader::decode(&mut bytes, JoinGroupResponse::header_version(3)).expect("header");
    let response = JoinGroupResponse::decode(&mut bytes, 3).expect("body");
    assert_eq!(header.correlation_id, 7);
    assert_eq!(response.error_code, 16, "NOT_COORDINATOR");
    assert!(closed(&mut stream).await, "then the connection closes");
    // Well inside the 60 s rebalance delay and the default 10 s grace.
    tokio::time::timeout(Duration::from_secs(5), shutdown).await.expect("prompt").expect("task").expect("clean");
}

#[tokio::test]
async fn shutdown_answers_a_long_poll_at_once_with_what_it_has() {
    let (server, _dir) = start(config()).await;
    server.broker().create_topic("quiet", Some(1), Default::default(), false).expect("topic");
    let mut stream = TcpStream::connect(server.local_addr()).await.expect("connect");
    let partition = FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20);
    let topic = FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_static_str("quiet")))
        .with_partitions(vec![partition]);
    // Would wait up to the broker's cap for a record that never comes.
    let request = FetchRequest::default()
        .with_max_wait_ms(60_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![topic]);
    stream.write_all(&frame(ApiKey::Fetch, 12, 3, &request)).await.expect("send");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shutdown = tokio::spawn(server.shutdown());
    let mut prefix = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut prefix))
        .await
        .expect("answered long before the fetch's own deadline")
        .expect("an answer before the close");
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).await.expect("response body");
    let mut bytes = Bytes::from(body);
    let header = ResponseHeader::decode(&mut bytes, FetchResponse::header_version(12)).expect("header");
    let response = FetchResponse::decode(&mut bytes, 12).expect("body");
    assert_eq!(header.correlation_id, 3);
    assert_eq!(response.responses[0].partitions[0].error_code, 0, "an empty answer, not an error");
    tokio::time::timeout(Duration::from_secs(5), shutdown).await.expect("prompt").expect("task").expect("clean");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_a_connection_that_never_reads_after_the_grace() {
    let grace = Duration::from_millis(300);
    let (server, _dir) = start(ServerConfig { shutdown_grace: grace, ..config() }).await;
    // Small buffers (no autotuning), so the answers back up quickly and a stalled write
    // means the broker stopped reading.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.set_send_buffer_size(8192).expect("SO_SNDBUF");
    let mut stream = socket.connect(server.local_addr()).await.expect("connect");
    // Requests whose answers fill both socket buffers, so the writer blocks.
    let request = api_versions_request(3, 1);
    let mut sent = 0usize;
    while tokio::time::timeout(Duration::from_millis(500), stream.write_all(&request)).await.is_ok() {
        sent += 1;
        assert!(sent < 1_000_000, "the broker never stopped reading");
    }
    assert_eq!(server.open_connections(), 1);
    let started = std::time::Instant::now();
    server.shutdown().await.expect("clean shutdown");
    let took = started.elapsed();
    assert!(took >= grace, "the connection was given its grace ({took:?})");
    assert!(took < grace + Duration::from_secs(5), "closed after the grace, not left open ({took:?})");
}
