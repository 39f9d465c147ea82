//! The listener on a real socket: answers, limits, and bad input closing one connection only.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use herald_broker::{BrokerConfig, RunningBroker, ServerConfig};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
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

fn api_versions_request(version: i16, correlation_id: i32) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("server-test")))
        .encode(&mut buf, ApiVersionsRequest::header_version(version))
        .expect("header");
    ApiVersionsRequest::default().encode(&mut buf, version).expect("body");
    let mut frame = (buf.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    frame
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
