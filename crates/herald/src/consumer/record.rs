//! [`Record`]: a consumed message copied out of librdkafka in one allocation (payload,
//! key and headers in one buffer), instead of rdkafka's `detach`, which allocates per
//! header and per field. The consumer copies every message, so this is on the hot path.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use rdkafka::Message;
use rdkafka::message::BorrowedMessage;

use super::headers::raw_headers;

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

/// A header as [`Record::raw_headers`] yields it: name and value (`None` for null).
type RawHeader<'a> = (&'a [u8], Option<&'a [u8]>);

impl Record {
    /// Copies `message` (of `topic`, already interned by the caller).
    pub(crate) fn copy(message: &BorrowedMessage<'_>, topic: Arc<str>) -> Self {
        let at = (message.partition(), message.offset());
        Self::from_parts(topic, at, message.payload(), message.key(), raw_headers(message))
    }

    /// A record of `topic` at (partition, offset) from its parts.
    pub(crate) fn from_parts<'a>(
        topic: Arc<str>,
        (partition, offset): (i32, i64),
        payload: Option<&[u8]>,
        key: Option<&[u8]>,
        headers: impl Iterator<Item = RawHeader<'a>>,
    ) -> Self {
        // Room for the usual few headers; the Vec grows if they are more.
        let mut bytes = Vec::with_capacity(payload.map_or(0, <[u8]>::len) + key.map_or(0, <[u8]>::len) + 256);
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
        for (name, value) in headers {
            // Names longer than u16::MAX are not valid Kafka header keys in practice; such a
            // header is cut, never a panic.
            let name = &name[..name.len().min(usize::from(u16::MAX))];
            bytes.extend_from_slice(&(name.len() as u16).to_le_bytes());
            bytes.extend_from_slice(name);
            match value {
                Some(value) => {
                    let value = &value[..value.len().min(i32::MAX as usize)];
                    bytes.extend_from_slice(&(value.len() as i32).to_le_bytes());
                    bytes.extend_from_slice(value);
                }
                None => bytes.extend_from_slice(&(-1i32).to_le_bytes()),
            }
        }
        let headers_range = headers_start..bytes.len();
        Self { topic, partition, offset, bytes, payload: payload_range, key: key_range, headers: headers_range }
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

    /// The payload without Confluent's schema framing (a zero byte and a schema id), if
    /// it has it: the envelope's JSON either way.
    pub fn envelope_bytes(&self) -> &[u8] {
        crate::registry::unframed(self.payload())
    }

    /// The payload, `None` for a null payload (a tombstone).
    pub fn payload_or_null(&self) -> Option<&[u8]> {
        self.payload.clone().map(|p| &self.bytes[p])
    }

    /// The key, if any.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.clone().map(|k| &self.bytes[k])
    }

    /// The headers in order: name (read as UTF-8, invalid bytes replaced by U+FFFD) and
    /// value (`None` for a null value).
    pub fn headers(&self) -> impl Iterator<Item = (Cow<'_, str>, Option<&[u8]>)> {
        self.raw_headers().map(|(name, value)| (String::from_utf8_lossy(name), value))
    }

    /// The first header called `name`, as UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.raw_headers()
            .find(|(n, _)| *n == name.as_bytes())
            .and_then(|(_, v)| v)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The headers in order as they arrived: names and values as bytes.
    pub fn raw_headers(&self) -> impl Iterator<Item = RawHeader<'_>> {
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
    use super::*;

    #[test]
    fn a_copy_keeps_payload_key_and_every_header_in_order() {
        let headers: [RawHeader<'_>; 5] = [
            (b"event-type", Some(b"user.created")),
            (b"empty", Some(b"")),
            (b"null", None),
            (b"\xff\xfename", Some(b"odd")),
            (b"event-type", Some(b"shadowed")),
        ];
        let record =
            Record::from_parts(Arc::from("user.created"), (2, 41), Some(b"{}"), Some(b"user-1"), headers.into_iter());
        assert_eq!((record.topic(), record.partition(), record.offset()), ("user.created", 2, 41));
        assert_eq!(record.payload_or_null(), Some(&b"{}"[..]));
        assert_eq!(record.key(), Some(&b"user-1"[..]));
        assert_eq!(record.raw_headers().collect::<Vec<_>>(), headers.to_vec(), "bytes as they arrived");
        let names: Vec<_> = record.headers().map(|(name, _)| name.into_owned()).collect();
        assert_eq!(names, ["event-type", "empty", "null", "\u{fffd}\u{fffd}name", "event-type"]);
        assert_eq!(record.header("event-type"), Some("user.created"), "the first one wins");

        let record = Record::from_parts(Arc::from("t"), (0, 0), None, None, std::iter::empty());
        assert_eq!((record.payload_or_null(), record.key(), record.headers().count()), (None, None, 0));
        assert_eq!(record.payload(), b"");
    }
}
