use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use proptest::prelude::*;

use super::*;

fn api_versions_frame(version: i16, correlation_id: i32) -> Bytes {
    let mut buf = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("herald-test")));
    header.encode(&mut buf, ApiVersionsRequest::header_version(version)).expect("header");
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("herald"))
        .with_client_software_version(StrBytes::from_static_str("0.1.0"));
    request.encode(&mut buf, version).expect("body");
    buf.freeze()
}

fn decode_response(mut bytes: Bytes, version: i16) -> (i32, ApiVersionsResponse) {
    let header = ResponseHeader::decode(&mut bytes, ApiVersionsResponse::header_version(version)).expect("header");
    let body = ApiVersionsResponse::decode(&mut bytes, version).expect("body");
    assert!(bytes.is_empty(), "v{version}: {} bytes left over after the response", bytes.len());
    (header.correlation_id, body)
}

#[test]
fn every_advertised_version_of_every_api_decodes_and_encodes() {
    for &(api, min, max) in SUPPORTED_APIS {
        assert_eq!(api, ApiKey::ApiVersions, "a newly advertised API needs its round trip here");
        for version in min..=max {
            let response = handle_frame(api_versions_frame(version, 1000 + i32::from(version))).expect("handled");
            let (correlation_id, body) = decode_response(response, version);
            assert_eq!(correlation_id, 1000 + i32::from(version));
            assert_eq!(body.error_code, 0);
            let advertised = body.api_keys.iter().find(|k| k.api_key == ApiKey::ApiVersions as i16).expect("listed");
            assert_eq!((advertised.min_version, advertised.max_version), (min, max));
        }
    }
}

#[test]
fn an_unknown_api_versions_version_gets_the_v0_fallback() {
    let mut frame = BytesMut::from(&api_versions_frame(4, 77)[..]);
    frame[2..4].copy_from_slice(&9i16.to_be_bytes());
    let response = handle_frame(frame.freeze()).expect("answered");
    let (correlation_id, body) = decode_response(response, 0);
    assert_eq!(correlation_id, 77);
    assert_eq!(body.error_code, UNSUPPORTED_VERSION);
    assert!(body.api_keys.iter().any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version == 4));
}

#[test]
fn bad_frames_are_typed_errors() {
    assert_eq!(handle_frame(Bytes::from_static(&[0, 18, 0])), Err(FrameError::Truncated(3)));
    let unknown = Bytes::from_static(&[0x7f, 0x00, 0, 0, 0, 0, 0, 1]);
    assert_eq!(handle_frame(unknown), Err(FrameError::UnknownApiKey(0x7f00)));
    let metadata = Bytes::from_static(&[0, 3, 0, 12, 0, 0, 0, 1]);
    assert_eq!(handle_frame(metadata), Err(FrameError::Unsupported { api: ApiKey::Metadata, version: 12 }));
    let mut cut = BytesMut::from(&api_versions_frame(3, 5)[..]);
    cut.truncate(cut.len() - 3);
    assert!(matches!(handle_frame(cut.freeze()), Err(FrameError::Malformed { .. })));
    let mut extra = BytesMut::from(&api_versions_frame(2, 5)[..]);
    extra.put_u8(0);
    assert!(matches!(handle_frame(extra.freeze()), Err(FrameError::Malformed { .. })));
}

#[test]
fn the_length_prefix_is_bounded_before_allocation() {
    assert_eq!(frame_length(100u32.to_be_bytes(), 1000), Ok(100));
    assert_eq!(frame_length(1001u32.to_be_bytes(), 1000), Err(FrameError::TooLarge { length: 1001, max: 1000 }));
    assert_eq!(frame_length((-1i32).to_be_bytes(), 1000), Err(FrameError::NegativeLength(-1)));
    assert_eq!(with_length_prefix(b"abc")[..], [0, 0, 0, 3, b'a', b'b', b'c']);
}

proptest! {
    /// Any bytes at all: an answer or a typed error, never a panic.
    #[test]
    fn arbitrary_frames_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), version in 0i16..6) {
        let _ = handle_frame(Bytes::from(bytes.clone()));
        // And the same bytes behind a valid ApiVersions prefix, to reach the decoders.
        let mut frame = BytesMut::new();
        frame.put_i16(ApiKey::ApiVersions as i16);
        frame.put_i16(version);
        frame.put_slice(&bytes);
        let _ = handle_frame(frame.freeze());
    }
}
