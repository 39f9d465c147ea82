//! Request versions Kafka 3.9 still accepts but kafka-protocol 0.18 (Kafka 4's schemas) no
//! longer encodes or decodes: small codecs that turn such a request into the oldest
//! version the broker handles, and that version's response back into the old shape.
//!
//! The handlers never see a legacy version: a request is rewritten into its *handled*
//! version (most old versions lack fields at the end or the start of a newer one, so the
//! rewrite adds their defaults; the rest are parsed by hand), and the response, encoded at
//! the handled version, is rewritten the other way (most drop `throttle_time_ms` or a
//! field; the rest are decoded and written by hand). Produce v0-2 and Fetch v0-3 also
//! carry message sets (magic 0 and 1) instead of record batches: [`message_set`]
//! converts them, up on the way in and down on the way out, as Kafka does.

mod message_set;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsResponse, DescribeConfigsResponse, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetCommitRequest, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ProduceRequest, ProduceResponse,
    RequestKind, TopicName, list_offsets_request, offset_commit_request, offset_for_leader_epoch_request,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

/// Each API with versions older than kafka-protocol's: its oldest version, and the
/// version its old requests are handled as.
pub(crate) const LEGACY_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 3),
    (ApiKey::Fetch, 0, 4),
    (ApiKey::ListOffsets, 0, 1),
    (ApiKey::CreateTopics, 0, 2),
    (ApiKey::DeleteTopics, 0, 1),
    (ApiKey::DescribeConfigs, 0, 1),
    (ApiKey::OffsetCommit, 0, 2),
    (ApiKey::OffsetFetch, 0, 1),
    (ApiKey::OffsetForLeaderEpoch, 0, 2),
    (ApiKey::DescribeLogDirs, 0, 1),
];

/// The version a request of `api` at `version` is handled as, if `version` is legacy.
pub(crate) fn handled_as(api: ApiKey, version: i16) -> Option<i16> {
    LEGACY_APIS
        .iter()
        .find(|(key, oldest, handled)| *key == api && (*oldest..*handled).contains(&version))
        .map(|(_, _, handled)| *handled)
}

/// A request body at legacy `version` as the body of the version it is handled as, or
/// (for the versions parsed by hand) as the request itself.
pub(crate) enum Upgraded {
    /// To be decoded at the handled version.
    Body(Bytes),
    /// Already decoded.
    Request(Box<RequestKind>),
}

/// Rewrites a legacy request body (after its header).
pub(crate) fn upgrade_request(api: ApiKey, version: i16, body: Bytes, now_ms: i64) -> Result<Upgraded, String> {
    let with = |prefix: &[u8], at: usize, body: &Bytes| -> Result<Bytes, String> {
        let head = body.get(..at).ok_or("truncated")?;
        Ok([head, prefix, &body[at..]].concat().into())
    };
    let body = match (api, version) {
        // v3 added transactional_id (null) in front; message sets become batches.
        (ApiKey::Produce, _) => return produce_request(with(&[0xff, 0xff], 0, &body)?, now_ms),
        // v3 added max_bytes after replica_id, max_wait_ms and min_bytes; v4 isolation_level.
        (ApiKey::Fetch, 0..=2) => with(&[0x7f, 0xff, 0xff, 0xff, 0], 12, &body)?,
        (ApiKey::Fetch, _) => with(&[0], 16, &body)?,
        (ApiKey::ListOffsets, _) => return list_offsets_request(body).map(|r| Upgraded::Request(Box::new(r))),
        // v1 added validate_only at the end; v2 is v1.
        (ApiKey::CreateTopics, 0) => with(&[0], body.len(), &body)?,
        // v1 added include_synonyms at the end.
        (ApiKey::DescribeConfigs, _) => with(&[0], body.len(), &body)?,
        (ApiKey::OffsetCommit, _) => {
            return offset_commit_request(version, body).map(|r| Upgraded::Request(Box::new(r)));
        }
        (ApiKey::OffsetForLeaderEpoch, _) => {
            return offset_for_leader_epoch_request(body).map(|r| Upgraded::Request(Box::new(r)));
        }
        // CreateTopics v1, DeleteTopics v0, OffsetFetch v0 and DescribeLogDirs v0 are
        // the same bytes as the version after them.
        _ => body,
    };
    Ok(Upgraded::Body(body))
}

/// Rewrites a response body encoded at the handled version into legacy `version`.
pub(crate) fn downgrade_response(api: ApiKey, version: i16, body: Bytes, handled: i16) -> Result<Bytes, String> {
    let no_throttle =
        |body: Bytes| body.get(4..).map(Bytes::copy_from_slice).ok_or_else(|| "truncated response".to_string());
    let mut b = body.clone();
    let mut out = BytesMut::new();
    match (api, version) {
        (ApiKey::Produce, 2) => return Ok(body),
        (ApiKey::Produce, _) => {
            produce_response(&ProduceResponse::decode(&mut b, handled).map_err(decoded)?, version, &mut out)
        }
        (ApiKey::Fetch, _) => {
            fetch_response(&FetchResponse::decode(&mut b, handled).map_err(decoded)?, version, &mut out)?
        }
        (ApiKey::ListOffsets, _) => {
            list_offsets_response(&ListOffsetsResponse::decode(&mut b, handled).map_err(decoded)?, &mut out)
        }
        (ApiKey::CreateTopics, 1) | (ApiKey::DeleteTopics, 0) => return no_throttle(body),
        (ApiKey::CreateTopics, _) => {
            create_topics_response(&CreateTopicsResponse::decode(&mut b, handled).map_err(decoded)?, &mut out)
        }
        (ApiKey::DescribeConfigs, _) => {
            describe_configs_response(&DescribeConfigsResponse::decode(&mut b, handled).map_err(decoded)?, &mut out)
        }
        (ApiKey::OffsetForLeaderEpoch, 1) => return no_throttle(body),
        (ApiKey::OffsetForLeaderEpoch, _) => offset_for_leader_epoch_response(
            &OffsetForLeaderEpochResponse::decode(&mut b, handled).map_err(decoded)?,
            &mut out,
        ),
        // OffsetCommit v0-1 answer as v2, OffsetFetch v0 as v1, DescribeLogDirs v0 as v1.
        _ => return Ok(body),
    }
    Ok(out.freeze())
}

fn decoded(e: impl std::fmt::Display) -> String {
    format!("response does not decode: {e}")
}

fn produce_request(body: Bytes, now_ms: i64) -> Result<Upgraded, String> {
    let mut request = ProduceRequest::decode(&mut body.clone(), 3).map_err(|e| e.to_string())?;
    for partition in request.topic_data.iter_mut().flat_map(|t| t.partition_data.iter_mut()) {
        // A set that does not convert stays as it is: the produce then answers
        // CORRUPT_MESSAGE for that partition alone.
        if let Some(converted) = partition.records.as_deref().and_then(|set| message_set::to_batch(set, now_ms).ok()) {
            partition.records = Some(converted.into());
        }
    }
    Ok(Upgraded::Request(Box::new(RequestKind::Produce(request))))
}

fn produce_response(response: &ProduceResponse, version: i16, out: &mut BytesMut) {
    array(out, &response.responses, |out, topic| {
        string(out, &topic.name);
        array(out, &topic.partition_responses, |out, p| {
            out.put_i32(p.index);
            out.put_i16(p.error_code);
            out.put_i64(p.base_offset);
        });
    });
    if version >= 1 {
        out.put_i32(response.throttle_time_ms);
    }
}

/// A stored batch that does not convert fails its partition alone (CORRUPT_MESSAGE, as
/// Kafka answers a fetch that meets a corrupt batch), not the whole answer.
fn fetch_response(response: &FetchResponse, version: i16, out: &mut BytesMut) -> Result<(), String> {
    const CORRUPT_MESSAGE: i16 = 2;
    if version >= 1 {
        out.put_i32(response.throttle_time_ms);
    }
    let magic = if version >= 2 { 1 } else { 0 };
    out.put_i32(response.responses.len() as i32);
    for topic in &response.responses {
        string(out, &topic.topic);
        out.put_i32(topic.partitions.len() as i32);
        for p in &topic.partitions {
            let (set, error_code) = match p.records.as_deref() {
                Some(batches) if !batches.is_empty() => match message_set::from_batches(batches, magic) {
                    Ok(set) => (set, p.error_code),
                    Err(error) => {
                        tracing::warn!(topic = %topic.topic.0, partition = p.partition_index, %error, "down-conversion failed");
                        (Vec::new(), CORRUPT_MESSAGE)
                    }
                },
                _ => (Vec::new(), p.error_code),
            };
            out.put_i32(p.partition_index);
            out.put_i16(error_code);
            out.put_i64(p.high_watermark);
            out.put_i32(set.len() as i32);
            out.put_slice(&set);
        }
    }
    Ok(())
}

fn list_offsets_request(body: Bytes) -> Result<RequestKind, String> {
    let mut r = Reader(body);
    let replica_id = r.i32()?;
    let topics = r.array(|r| {
        let name = r.string()?;
        let partitions = r.array(|r| {
            let partition_index = r.i32()?;
            let timestamp = r.i64()?;
            let _max_num_offsets = r.i32()?;
            Ok(list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(partition_index)
                .with_timestamp(timestamp))
        })?;
        Ok(list_offsets_request::ListOffsetsTopic::default().with_name(TopicName(name)).with_partitions(partitions))
    })?;
    let request = ListOffsetsRequest::default().with_replica_id(replica_id.into()).with_topics(topics);
    Ok(RequestKind::ListOffsets(request))
}

/// v0 answers a list of offsets; Herald has one to give (the log start or the end).
fn list_offsets_response(response: &ListOffsetsResponse, out: &mut BytesMut) {
    array(out, &response.topics, |out, topic| {
        string(out, &topic.name);
        array(out, &topic.partitions, |out, p| {
            out.put_i32(p.partition_index);
            out.put_i16(p.error_code);
            let found = p.error_code == 0 && p.offset >= 0;
            out.put_i32(i32::from(found));
            if found {
                out.put_i64(p.offset);
            }
        });
    });
}

fn create_topics_response(response: &CreateTopicsResponse, out: &mut BytesMut) {
    array(out, &response.topics, |out, topic| {
        string(out, &topic.name);
        out.put_i16(topic.error_code);
    });
}

/// v0 says `is_default` where v1 says where a value comes from.
fn describe_configs_response(response: &DescribeConfigsResponse, out: &mut BytesMut) {
    const SOURCE_DEFAULT: i8 = 5;
    out.put_i32(response.throttle_time_ms);
    array(out, &response.results, |out, result| {
        out.put_i16(result.error_code);
        nullable_string(out, result.error_message.as_deref());
        out.put_i8(result.resource_type);
        string(out, &result.resource_name);
        array(out, &result.configs, |out, config| {
            string(out, &config.name);
            nullable_string(out, config.value.as_deref());
            out.put_u8(u8::from(config.read_only));
            out.put_u8(u8::from(config.config_source == SOURCE_DEFAULT));
            out.put_u8(u8::from(config.is_sensitive));
        });
    });
}

/// v0 has no generation or member (a commit outside the group protocol); v1 has them and
/// a commit time per partition, which v2 replaced with one retention time.
fn offset_commit_request(version: i16, body: Bytes) -> Result<RequestKind, String> {
    let mut r = Reader(body);
    let group_id = r.string()?;
    let (generation, member_id) = if version >= 1 { (r.i32()?, r.string()?) } else { (-1, StrBytes::default()) };
    let topics = r.array(|r| {
        let name = r.string()?;
        let partitions = r.array(|r| {
            let partition_index = r.i32()?;
            let committed_offset = r.i64()?;
            if version >= 1 {
                let _commit_timestamp = r.i64()?;
            }
            let committed_metadata = r.nullable_string()?;
            Ok(offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(partition_index)
                .with_committed_offset(committed_offset)
                .with_committed_metadata(committed_metadata))
        })?;
        Ok(offset_commit_request::OffsetCommitRequestTopic::default()
            .with_name(TopicName(name))
            .with_partitions(partitions))
    })?;
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id.into())
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(member_id)
        .with_retention_time_ms(-1)
        .with_topics(topics);
    Ok(RequestKind::OffsetCommit(request))
}

/// v2 added the current leader epoch to each partition.
fn offset_for_leader_epoch_request(body: Bytes) -> Result<RequestKind, String> {
    let mut r = Reader(body);
    let topics = r.array(|r| {
        let topic = r.string()?;
        let partitions = r.array(|r| {
            let partition = r.i32()?;
            let leader_epoch = r.i32()?;
            Ok(offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_leader_epoch(leader_epoch))
        })?;
        Ok(offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
            .with_topic(TopicName(topic))
            .with_partitions(partitions))
    })?;
    Ok(RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default().with_topics(topics)))
}

/// v0 has neither the throttle time nor each partition's leader epoch.
fn offset_for_leader_epoch_response(response: &OffsetForLeaderEpochResponse, out: &mut BytesMut) {
    array(out, &response.topics, |out, topic| {
        string(out, &topic.topic);
        array(out, &topic.partitions, |out, p| {
            out.put_i16(p.error_code);
            out.put_i32(p.partition);
            out.put_i64(p.end_offset);
        });
    });
}

fn array<T>(out: &mut BytesMut, items: &[T], mut each: impl FnMut(&mut BytesMut, &T)) {
    out.put_i32(items.len() as i32);
    for item in items {
        each(out, item);
    }
}

fn string(out: &mut BytesMut, s: &str) {
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
}

fn nullable_string(out: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.put_i16(-1),
    }
}

/// Reads the classic (non-flexible) encoding by hand, every length checked against what
/// is left before anything is allocated.
struct Reader(Bytes);

impl Reader {
    fn take(&mut self, n: usize) -> Result<Bytes, String> {
        if self.0.len() < n {
            return Err(format!("truncated: {n} bytes wanted, {} left", self.0.len()));
        }
        Ok(self.0.split_to(n))
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?[..].try_into().map_err(|_| "4 bytes")?))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take(8)?[..].try_into().map_err(|_| "8 bytes")?))
    }

    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take(2)?[..].try_into().map_err(|_| "2 bytes")?))
    }

    fn nullable_string(&mut self) -> Result<Option<StrBytes>, String> {
        let length = self.i16()?;
        if length < 0 {
            return Ok(None);
        }
        let bytes = self.take(length as usize)?;
        StrBytes::from_utf8(bytes).map(Some).map_err(|_| "a string is not UTF-8".to_string())
    }

    fn string(&mut self) -> Result<StrBytes, String> {
        self.nullable_string()?.ok_or_else(|| "a null string where one is required".to_string())
    }

    /// An array of `each`, its count bounded by the bytes left (every element takes at
    /// least one).
    fn array<T>(&mut self, mut each: impl FnMut(&mut Self) -> Result<T, String>) -> Result<Vec<T>, String> {
        let count = self.i32()?;
        let count = usize::try_from(count).unwrap_or(0);
        if count > self.0.len() {
            return Err(format!("an array of {count} in {} bytes", self.0.len()));
        }
        (0..count).map(|_| each(self)).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests;
