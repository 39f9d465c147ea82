//! Kafka request frames: bounded length prefixes, header parsing, dispatch, responses.
//!
//! A frame is a 4-byte big-endian length and that many bytes. The length is checked
//! against `request_bytes_max` before anything is allocated. The API key, version and
//! correlation id are read by hand from the first 8 bytes (so a frame too short for them
//! is an error, not a panic); the rest is decoded with the `kafka-protocol` crate at the
//! version the client asked for. Every API version advertised in [`SUPPORTED_APIS`] is
//! really handled here; an unsupported ApiVersions version gets Kafka's fallback answer
//! (a v0 body with UNSUPPORTED_VERSION and the supported range), anything else unsupported
//! is an error for which the server closes that connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

/// Kafka's `socket.request.max.bytes` default: 100 MiB.
pub const REQUEST_BYTES_MAX_DEFAULT: u32 = 100 * 1024 * 1024;

/// Kafka error code UNSUPPORTED_VERSION.
pub const UNSUPPORTED_VERSION: i16 = 35;

/// The APIs and version ranges this broker handles, as advertised by ApiVersions.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[(ApiKey::ApiVersions, 0, 4)];

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
pub fn frame_length(prefix: [u8; 4], request_bytes_max: u32) -> Result<usize, FrameError> {
    let length = i32::from_be_bytes(prefix);
    let length = u32::try_from(length).map_err(|_| FrameError::NegativeLength(length))?;
    if length > request_bytes_max {
        return Err(FrameError::TooLarge { length, max: request_bytes_max });
    }
    Ok(length as usize)
}

/// The supported version range of `api`, if it is handled at all.
pub fn supported_versions(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS.iter().find(|(key, _, _)| *key == api).map(|(_, min, max)| (*min, *max))
}

/// Answers one request frame (without its length prefix); returns the response frame
/// (without its length prefix).
pub fn handle_frame(frame: Bytes) -> Result<Bytes, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::Truncated(frame.len()));
    }
    let mut fixed = &frame[..8];
    let api_key = fixed.get_i16();
    let version = fixed.get_i16();
    let correlation_id = fixed.get_i32();
    let api = ApiKey::try_from(api_key).map_err(|()| FrameError::UnknownApiKey(api_key))?;
    let supported = supported_versions(api).filter(|(min, max)| (*min..=*max).contains(&version));
    match (api, supported) {
        (ApiKey::ApiVersions, None) => Ok(api_versions_fallback(correlation_id)),
        (_, None) => Err(FrameError::Unsupported { api, version }),
        (ApiKey::ApiVersions, Some(_)) => {
            let mut body = frame;
            let header = RequestHeader::decode(&mut body, api.request_header_version(version))
                .map_err(malformed(api, version, "header"))?;
            // The request carries only the client's name and version; nothing to act on.
            ApiVersionsRequest::decode(&mut body, version).map_err(malformed(api, version, "body"))?;
            if body.has_remaining() {
                return Err(FrameError::Malformed {
                    api,
                    version,
                    reason: format!("{} trailing bytes", body.remaining()),
                });
            }
            encode_response(header.correlation_id, version, &api_versions_response())
        }
        (_, Some(_)) => Err(FrameError::Unsupported { api, version }),
    }
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
    encode_response(correlation_id, 0, &response).expect("a v0 ApiVersions response always encodes")
}

fn encode_response<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    response: &R,
) -> Result<Bytes, FrameError> {
    let mut out = BytesMut::new();
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let failed = malformed(ApiKey::ApiVersions, version, "response does not encode");
    header.encode(&mut out, R::header_version(version)).map_err(&failed)?;
    response.encode(&mut out, version).map_err(&failed)?;
    Ok(out.freeze())
}

/// Prefixes a response with its length, ready to write to the socket.
pub fn with_length_prefix(response: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + response.len());
    out.put_u32(response.len() as u32);
    out.put_slice(response);
    out.freeze()
}

/// Turns a `kafka-protocol` error (an `anyhow::Error`) into a typed frame error.
fn malformed<E: std::fmt::Display>(api: ApiKey, version: i16, what: &'static str) -> impl Fn(E) -> FrameError {
    move |e| FrameError::Malformed { api, version, reason: format!("{what}: {e}") }
}

#[cfg(test)]
mod tests;
