//! Kafka request frames: bounded length prefixes, header parsing, dispatch, responses.
//!
//! A frame is a 4-byte big-endian length and that many bytes. The length is checked
//! against `request_bytes_max` before anything is allocated. The API key, version and
//! correlation id are read by hand from the first 8 bytes (so a frame too short for them
//! is an error, not a panic); the rest is decoded with the `kafka-protocol` crate at the
//! version the client asked for. Every API version advertised in [`SUPPORTED_APIS`] is
//! really handled here; an unsupported ApiVersions version gets Kafka's fallback answer
//! (a v0 body with UNSUPPORTED_VERSION and the supported range), anything else unsupported
//! is an error for which the server closes that connection. The handlers live in the
//! private `api` module.

use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use crate::api;
use crate::broker::Broker;
use crate::error_codes::ErrorCodes;

/// Kafka's `socket.request.max.bytes` default: 100 MiB.
pub(crate) const REQUEST_BYTES_MAX_DEFAULT: u32 = 100 * 1024 * 1024;

/// Kafka error code UNSUPPORTED_VERSION.
pub(crate) const UNSUPPORTED_VERSION: i16 = 35;

/// The APIs and version ranges this broker handles, as advertised by ApiVersions.
pub(crate) const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 13),
    (ApiKey::Fetch, 0, 18),
    (ApiKey::ListOffsets, 0, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 0, 7),
    (ApiKey::DeleteTopics, 0, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeConfigs, 0, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::OffsetCommit, 0, 9),
    (ApiKey::OffsetFetch, 0, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::OffsetForLeaderEpoch, 0, 4),
    (ApiKey::DescribeLogDirs, 0, 4),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// Why a frame could not be answered; the server logs it and closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix exceeds `request_bytes_max`.
    #[error("request of {length} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Claimed length.
        length: u32,
        /// The limit.
        max: u32,
    },
    /// The length prefix is negative.
    #[error("negative request length {0}")]
    NegativeLength(i32),
    /// Too short to hold a request header.
    #[error("request of {0} bytes is too short for a header")]
    Truncated(usize),
    /// Not an API key Kafka defines.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// An API or version this broker does not handle.
    #[error("unsupported {api:?} version {version}")]
    Unsupported {
        /// The API.
        api: ApiKey,
        /// The version asked for.
        version: i16,
    },
    /// The bytes do not decode as that request.
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        /// The API.
        api: ApiKey,
        /// Its version.
        version: i16,
        /// What the decoder said.
        reason: String,
    },
}

/// Checks a frame's length prefix before the body is read or allocated.
pub(crate) fn frame_length(prefix: [u8; 4], request_bytes_max: u32) -> Result<usize, FrameError> {
    let length = i32::from_be_bytes(prefix);
    let length = u32::try_from(length).map_err(|_| FrameError::NegativeLength(length))?;
    if length > request_bytes_max {
        return Err(FrameError::TooLarge { length, max: request_bytes_max });
    }
    Ok(length as usize)
}

/// The supported version range of `api`, if it is handled at all.
pub(crate) fn supported_versions(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS.iter().find(|(key, _, _)| *key == api).map(|(_, min, max)| (*min, *max))
}

/// What the server sends back for one request.
pub enum Reply {
    /// The response is ready (`None`: the request expects no response, e.g. acks=0).
    Ready(Option<Bytes>),
    /// The response comes later (a produce waiting for its fsync, a long-polling fetch);
    /// the server awaits it concurrently with later requests and writes responses in
    /// request order.
    Pending(Pin<Box<dyn Future<Output = Result<Option<Bytes>, FrameError>> + Send>>),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Ready(bytes) => f.debug_tuple("Ready").field(&bytes.as_ref().map(Bytes::len)).finish(),
            Reply::Pending(_) => f.write_str("Pending"),
        }
    }
}

/// The decoded request header: which API, at which version, and the id to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The API.
    pub api: ApiKey,
    /// The version it is handled as (for a legacy request, the oldest kafka-protocol knows).
    pub version: i16,
    /// The version on the wire when it is older than kafka-protocol's (see `legacy`).
    pub legacy: Option<i16>,
    /// Echoed in the response.
    pub correlation_id: i32,
}

impl Call {
    /// Encodes `response` as the answer to this call.
    /// Its error codes are counted in `herald_kafka_errors_total`.
    pub(crate) fn respond<R: Encodable + HeaderVersion + ErrorCodes>(&self, response: &R) -> Result<Bytes, FrameError> {
        response.error_codes(&mut |code| {
            if code != 0 {
                let (api, error_code) = (api_name(self.api as i16), code.to_string());
                metrics::counter!("herald_kafka_errors_total", "api" => api, "error_code" => error_code).increment(1);
            }
        });
        let bytes = encode_response(self.api, self.correlation_id, self.version, response)?;
        match self.legacy {
            None => Ok(bytes),
            Some(wire) => {
                // The response header (v0: the correlation id) stays; the body is rewritten.
                let body = bytes.slice(4..);
                let body = legacy::downgrade_response(self.api, wire, body, self.version).map_err(|reason| {
                    FrameError::Malformed { api: self.api, version: wire, reason: format!("legacy response: {reason}") }
                })?;
                Ok([&bytes[..4], &body[..]].concat().into())
            }
        }
    }
}

/// A request frame, decoded but not yet acted on.
#[derive(Debug)]
pub enum Decoded {
    /// A supported API at a supported version, and the client id from its header.
    Request(Call, Box<RequestKind>, Option<String>),
    /// ApiVersions at a version this broker does not know: answered with the v0 fallback.
    ApiVersionsFallback {
        /// Echoed in the response.
        correlation_id: i32,
    },
}

/// Decodes one request frame (without its length prefix): header checks, version gating,
/// then the body with `kafka-protocol`. Pure, so it is what the fuzz target drives.
pub fn decode_request(frame: Bytes) -> Result<Decoded, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::Truncated(frame.len()));
    }
    let mut fixed = &frame[..8];
    let api_key = fixed.get_i16();
    let version = fixed.get_i16();
    let correlation_id = fixed.get_i32();
    let api = ApiKey::try_from(api_key).map_err(|()| FrameError::UnknownApiKey(api_key))?;
    tracing::trace!(?api, version, correlation_id, bytes = frame.len(), "request");
    let supported = supported_versions(api).is_some_and(|(min, max)| (min..=max).contains(&version));
    if !supported {
        return match api {
            ApiKey::ApiVersions => Ok(Decoded::ApiVersionsFallback { correlation_id }),
            _ => Err(FrameError::Unsupported { api, version }),
        };
    }
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, api.request_header_version(version))
        .map_err(malformed(api, version, "header"))?;
    let client_id = header.client_id.map(|id| id.to_string());
    let mut call = Call { api, version, correlation_id, legacy: None };
    if let Some(handled) = legacy::handled_as(api, version) {
        call = Call { version: handled, legacy: Some(version), ..call };
        let malformed =
            |reason: String| FrameError::Malformed { api, version, reason: format!("legacy request: {reason}") };
        match legacy::upgrade_request(api, version, body, crate::broker::now_ms()).map_err(malformed)? {
            legacy::Upgraded::Body(upgraded) => body = upgraded,
            legacy::Upgraded::Request(request) => return Ok(Decoded::Request(call, request, client_id)),
        }
    }
    let b = &mut body;
    let request = match api {
        ApiKey::ApiVersions => RequestKind::ApiVersions(decode_body(b, call)?),
        ApiKey::Metadata => RequestKind::Metadata(decode_body(b, call)?),
        ApiKey::Produce => RequestKind::Produce(decode_body(b, call)?),
        ApiKey::Fetch => RequestKind::Fetch(decode_body(b, call)?),
        ApiKey::ListOffsets => RequestKind::ListOffsets(decode_body(b, call)?),
        ApiKey::CreateTopics => RequestKind::CreateTopics(decode_body(b, call)?),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(decode_body(b, call)?),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(decode_body(b, call)?),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(decode_body(b, call)?),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(decode_body(b, call)?),
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(decode_body(b, call)?),
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(decode_body(b, call)?),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(decode_body(b, call)?),
        ApiKey::InitProducerId => RequestKind::InitProducerId(decode_body(b, call)?),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(decode_body(b, call)?),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(decode_body(b, call)?),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(decode_body(b, call)?),
        ApiKey::JoinGroup => RequestKind::JoinGroup(decode_body(b, call)?),
        ApiKey::Heartbeat => RequestKind::Heartbeat(decode_body(b, call)?),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(decode_body(b, call)?),
        ApiKey::SyncGroup => RequestKind::SyncGroup(decode_body(b, call)?),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(decode_body(b, call)?),
        ApiKey::ListGroups => RequestKind::ListGroups(decode_body(b, call)?),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(decode_body(b, call)?),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(decode_body(b, call)?),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(decode_body(b, call)?),
        ApiKey::DescribeLogDirs => RequestKind::DescribeLogDirs(decode_body(b, call)?),
        ApiKey::DescribeProducers => RequestKind::DescribeProducers(decode_body(b, call)?),
        ApiKey::DescribeTopicPartitions => RequestKind::DescribeTopicPartitions(decode_body(b, call)?),
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(decode_body(b, call)?),
        ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(decode_body(b, call)?),
        _ => return Err(FrameError::Unsupported { api, version }),
    };
    Ok(Decoded::Request(call, Box::new(request), client_id))
}

/// The name of Kafka API `key` as the request metrics label it (`other` for APIs the
/// broker does not implement).
pub(crate) fn api_name(key: i16) -> &'static str {
    match key {
        0 => "Produce",
        1 => "Fetch",
        2 => "ListOffsets",
        3 => "Metadata",
        8 => "OffsetCommit",
        9 => "OffsetFetch",
        10 => "FindCoordinator",
        11 => "JoinGroup",
        12 => "Heartbeat",
        13 => "LeaveGroup",
        14 => "SyncGroup",
        15 => "DescribeGroups",
        16 => "ListGroups",
        18 => "ApiVersions",
        19 => "CreateTopics",
        20 => "DeleteTopics",
        21 => "DeleteRecords",
        22 => "InitProducerId",
        32 => "DescribeConfigs",
        33 => "AlterConfigs",
        37 => "CreatePartitions",
        42 => "DeleteGroups",
        44 => "IncrementalAlterConfigs",
        23 => "OffsetForLeaderEpoch",
        35 => "DescribeLogDirs",
        47 => "OffsetDelete",
        60 => "DescribeCluster",
        61 => "DescribeProducers",
        68 => "ConsumerGroupHeartbeat",
        69 => "ConsumerGroupDescribe",
        75 => "DescribeTopicPartitions",
        _ => "other",
    }
}

/// Answers one request frame (without its length prefix). Blocking: handlers may fsync,
/// so the server calls this off the async threads, one frame of a connection at a time,
/// which keeps each connection's requests applied in order.
pub fn handle_frame(broker: &Arc<Broker>, frame: Bytes) -> Result<Reply, FrameError> {
    handle_frame_from(broker, frame, "")
}

/// [`handle_frame`] for a request from `client_host` (shown to group tools, as Kafka does).
pub(crate) fn handle_frame_from(broker: &Arc<Broker>, frame: Bytes, client_host: &str) -> Result<Reply, FrameError> {
    let (call, request, client_id) = match decode_request(frame)? {
        Decoded::Request(call, request, client_id) => (call, request, client_id),
        Decoded::ApiVersionsFallback { correlation_id } => {
            return Ok(Reply::Ready(Some(api_versions_fallback(correlation_id))));
        }
    };
    let version = call.version;
    let ready = |bytes: Result<Bytes, FrameError>| bytes.map(|b| Reply::Ready(Some(b)));
    match *request {
        // The request carries only the client's name and version; nothing to act on.
        RequestKind::ApiVersions(_) => ready(call.respond(&api_versions_response())),
        RequestKind::Metadata(r) => ready(call.respond(&api::metadata(broker, r, version))),
        RequestKind::Produce(r) => api::produce(broker, r, call),
        RequestKind::Fetch(r) => api::fetch(broker, r, call),
        RequestKind::ListOffsets(r) => ready(call.respond(&api::list_offsets(broker, r))),
        RequestKind::CreateTopics(r) => ready(call.respond(&api::create_topics(broker, r, version))),
        RequestKind::DeleteTopics(r) => ready(call.respond(&api::delete_topics(broker, r, version))),
        RequestKind::CreatePartitions(r) => ready(call.respond(&api::create_partitions(broker, r))),
        RequestKind::DescribeConfigs(r) => ready(call.respond(&api::describe_configs(broker, r, version))),
        RequestKind::AlterConfigs(r) => ready(call.respond(&api::alter_configs(broker, r))),
        RequestKind::IncrementalAlterConfigs(r) => ready(call.respond(&api::incremental_alter_configs(broker, r))),
        RequestKind::DeleteRecords(r) => ready(call.respond(&api::delete_records(broker, r))),
        RequestKind::DescribeCluster(_) => ready(call.respond(&api::describe_cluster(broker))),
        RequestKind::InitProducerId(r) => ready(call.respond(&api::init_producer_id(broker, r))),
        RequestKind::FindCoordinator(r) => ready(call.respond(&api::find_coordinator(broker, r, version))),
        RequestKind::JoinGroup(r) => {
            api::join_group(broker, r, call, client_id.unwrap_or_default(), client_host.to_string())
        }
        RequestKind::SyncGroup(r) => api::sync_group(broker, r, call),
        RequestKind::Heartbeat(r) => ready(call.respond(&api::heartbeat(broker, r))),
        RequestKind::LeaveGroup(r) => ready(call.respond(&api::leave_group(broker, r, version))),
        RequestKind::OffsetCommit(r) => api::offset_commit(broker, r, call),
        RequestKind::OffsetFetch(r) => ready(call.respond(&api::offset_fetch(broker, r, version))),
        RequestKind::ListGroups(r) => ready(call.respond(&api::list_groups(broker, r, version))),
        RequestKind::DescribeGroups(r) => ready(call.respond(&api::describe_groups(broker, r, version))),
        RequestKind::DeleteGroups(r) => ready(call.respond(&api::delete_groups(broker, r))),
        RequestKind::OffsetDelete(r) => ready(call.respond(&api::offset_delete(broker, r))),
        RequestKind::OffsetForLeaderEpoch(r) => ready(call.respond(&api::offset_for_leader_epoch(broker, r))),
        RequestKind::DescribeLogDirs(r) => ready(call.respond(&api::describe_log_dirs(broker, r))),
        RequestKind::DescribeProducers(r) => ready(call.respond(&api::describe_producers(broker, r))),
        RequestKind::DescribeTopicPartitions(r) => ready(call.respond(&api::describe_topic_partitions(broker, r))),
        RequestKind::ConsumerGroupHeartbeat(r) => ready(call.respond(&api::consumer_group_heartbeat(broker, r))),
        RequestKind::ConsumerGroupDescribe(r) => ready(call.respond(&api::consumer_group_describe(broker, r))),
        _ => Err(FrameError::Unsupported { api: call.api, version }),
    }
}

/// Decodes a request body at the call's version. Bytes left over after the body are
/// ignored, as Kafka ignores them: librdkafka 2.0.2 (Debian's kcat) appends three bytes
/// to its all-topics Metadata v12 request.
fn decode_body<R: Decodable>(body: &mut Bytes, call: Call) -> Result<R, FrameError> {
    let request = R::decode(body, call.version).map_err(malformed(call.api, call.version, "body"))?;
    if body.has_remaining() {
        tracing::debug!(api = ?call.api, version = call.version, bytes = body.remaining(), "ignoring trailing request bytes");
    }
    Ok(request)
}

/// The ApiVersions answer: every API and version range this broker handles.
fn api_versions_response() -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default().with_api_key(*key as i16).with_min_version(*min).with_max_version(*max)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys)
}

/// Kafka's answer to an ApiVersions version it does not know: a v0 body (which every
/// client can parse) with UNSUPPORTED_VERSION and the supported ranges, so the client
/// retries with a version both sides speak.
fn api_versions_fallback(correlation_id: i32) -> Bytes {
    let response = api_versions_response().with_error_code(UNSUPPORTED_VERSION);
    encode_response(ApiKey::ApiVersions, correlation_id, 0, &response)
        .expect("a v0 ApiVersions response always encodes")
}

fn encode_response<R: Encodable + HeaderVersion>(
    api: ApiKey,
    correlation_id: i32,
    version: i16,
    response: &R,
) -> Result<Bytes, FrameError> {
    let mut out = BytesMut::new();
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let failed = malformed(api, version, "response does not encode");
    header.encode(&mut out, R::header_version(version)).map_err(&failed)?;
    response.encode(&mut out, version).map_err(&failed)?;
    Ok(out.freeze())
}

/// Turns a `kafka-protocol` error (an `anyhow::Error`) into a typed frame error.
fn malformed<E: std::fmt::Display>(api: ApiKey, version: i16, what: &'static str) -> impl Fn(E) -> FrameError {
    move |e| FrameError::Malformed { api, version, reason: format!("{what}: {e}") }
}

pub(crate) mod legacy;

#[cfg(test)]
mod tests;
