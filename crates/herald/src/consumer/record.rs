//! [`Record`]: a consumed message copied out of librdkafka in one allocation (payload,
//! key and headers in one buffer), instead of rdkafka's `detach`, which allocates per
//! header and per field. The consumer copies every message, so this is on the hot path.

use std::ops::Range;
use std::sync::Arc;

use rdkafka::Message;
use rdkafka::message::Headers;

/// One consumed message, immutable, shared by the scheduler, the handler's context and
/// (on failure) the dead-letter writer.
#[derive(Debug)]
pub struct Record {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    /// Payload, then key, then headers encoded as (u16 name length, name, i32 value
    /// length or -1, value)*.
    bytes: Vec<u8>,
    payload: Option<Range<usize>>,
    key: Option<Range<usize>>,
    headers: Range<usize>,
}

impl Record {
    /// Copies `message` (of `topic`, already interned by the caller).
    pub(crate) fn copy(message: &impl Message, topic: Arc<str>) -> Self {
        let payload = message.payload();
        let key = message.key();
        let headers = message.headers();
        // One pass over the headers (each read through rdkafka checks the name's UTF-8),
        // into room for the usual few; the Vec grows if they are more.
        let mut bytes = Vec::with_capacity(
            payload.map_or(0, <[u8]>::len) + key.map_or(0, <[u8]>::len) + headers.as_ref().map_or(0, |_| 256),
        );
        let payload_range = payload.map(|p| {
            bytes.extend_from_slice(p);
            0..bytes.len()
        });
        let key_range = key.map(|k| {
            let start = bytes.len();
            bytes.extend_from_slice(k);
            start..bytes.len()
        });
        let headers_start = bytes.len();
        if let Some(headers) = headers {
            for h in headers.iter() {
                // Names longer than u16::MAX are not valid Kafka header keys in practice;
                // such a header is cut, never a panic.
                let name = &h.key.as_bytes()[..h.key.len().min(usize::from(u16::MAX))];
                bytes.extend_from_slice(&(name.len() as u16).to_le_bytes());
                bytes.extend_from_slice(name);
                match h.value {
                    Some(value) => {
                        let value = &value[..value.len().min(i32::MAX as usize)];
                        bytes.extend_from_slice(&(value.len() as i32).to_le_bytes());
                        bytes.extend_from_slice(value);
                    }
                    None => bytes.extend_from_slice(&(-1i32).to_le_bytes()),
                }
            }
        }
        let headers_range = headers_start..bytes.len();
        Self {
            topic,
            partition: message.partition(),
            offset: message.offset(),
            bytes,
            payload: payload_range,
            key: key_range,
            headers: headers_range,
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The offset.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The payload (empty for a null payload).
    pub fn payload(&self) -> &[u8] {
        self.payload_or_null().unwrap_or_default()
    }

    /// The payload, `None` for a null payload (a tombstone).
    pub fn payload_or_null(&self) -> Option<&[u8]> {
        self.payload.clone().map(|p| &self.bytes[p])
    }

    /// The key, if any.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.clone().map(|k| &self.bytes[k])
    }

    /// The headers in order: name and value (`None` for a null value).
    pub fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        // Names came from `&str`, so they are UTF-8; a name cut at u16::MAX bytes could end
        // mid-character and then reads as empty rather than panicking.
        self.raw_headers().map(|(name, value)| (std::str::from_utf8(name).unwrap_or_default(), value))
    }

    /// The first header called `name`, as UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.raw_headers()
            .find(|(n, _)| *n == name.as_bytes())
            .and_then(|(_, v)| v)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The headers with names as bytes (no UTF-8 check: the lookup above runs per message).
    fn raw_headers(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        let mut rest = &self.bytes[self.headers.clone()];
        std::iter::from_fn(move || {
            let (len, tail) = rest.split_first_chunk::<2>()?;
            let (name, tail) = tail.split_at_checked(usize::from(u16::from_le_bytes(*len)))?;
            let (len, tail) = tail.split_first_chunk::<4>()?;
            let (value, tail) = match usize::try_from(i32::from_le_bytes(*len)) {
                Ok(len) => {
                    let (value, tail) = tail.split_at_checked(len)?;
                    (Some(value), tail)
                }
                Err(_) => (None, tail),
            };
            rest = tail;
            Some((name, value))
        })
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};

    use super::*;

    #[test]
    fn a_copy_keeps_payload_key_and_every_header_in_order() {
        let headers = OwnedHeaders::new()
            .insert(Header { key: "event-type", value: Some("user.created") })
            .insert(Header { key: "empty", value: Some("") })
            .insert(Header { key: "null", value: None::<&[u8]> })
            .insert(Header { key: "event-type", value: Some("shadowed") });
        let message = OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(b"user-1".to_vec()),
            "user.created".into(),
            Timestamp::NotAvailable,
            2,
            41,
            Some(headers),
        );
        let record = Record::copy(&message, Arc::from("user.created"));
        assert_eq!((record.topic(), record.partition(), record.offset()), ("user.created", 2, 41));
        assert_eq!(record.payload_or_null(), Some(&b"{}"[..]));
        assert_eq!(record.key(), Some(&b"user-1"[..]));
        let all: Vec<_> = record.headers().collect();
        assert_eq!(
            all,
            vec![
                ("event-type", Some(&b"user.created"[..])),
                ("empty", Some(&b""[..])),
                ("null", None),
                ("event-type", Some(&b"shadowed"[..]))
            ]
        );
        assert_eq!(record.header("event-type"), Some("user.created"), "the first one wins");

        let bare = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, None);
        let record = Record::copy(&bare, Arc::from("t"));
        assert_eq!((record.payload_or_null(), record.key(), record.headers().count()), (None, None, 0));
        assert_eq!(record.payload(), b"");
    }
}
