//! One topic partition: its log plus the idempotent-producer state that guards appends.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use herald_log::{BatchHeader, InvalidBatch, Log, LogConfig, LogError, Storage, validate_batches};
use kafka_protocol::error::ResponseError;

use crate::error::ApiError;
use crate::producer_state::{Placement, ProducerBatch, ProducerState, ProducerStateConfig, Verdict};

/// Bytes read per step while rebuilding producer state from the log.
const REBUILD_READ_BYTES: u32 = 1 << 20;

/// Where an accepted produce landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the batch's first record (the original one for a retried duplicate).
    pub base_offset: u64,
    /// The partition's log start offset.
    pub log_start_offset: u64,
    /// The batch is acknowledged once the log is durable up to here.
    pub durable_at: u64,
}

/// A partition of a topic.
#[derive(Debug)]
pub struct Partition {
    log: Log,
    producers: Mutex<ProducerState>,
}

impl Partition {
    /// Opens (or creates) the partition log in `dir` and rebuilds its producer state from
    /// the batches of the last `expiration_ms`.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        log_config: LogConfig,
        producer_config: ProducerStateConfig,
        now_ms: i64,
    ) -> Result<Self, LogError> {
        let log = Log::open(storage, dir, log_config)?;
        let producers = rebuild_producer_state(&log, producer_config, now_ms)?;
        Ok(Self { log, producers: Mutex::new(producers) })
    }

    /// The log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Consumes the partition, returning its log (to close it cleanly).
    pub fn into_log(self) -> Log {
        self.log
    }

    /// Appends one produce request's records for this partition, applying the
    /// idempotent-producer rules. The write reaches the page cache before this returns;
    /// the caller waits for [`Appended::durable_at`] when the durability policy says so.
    pub fn append(&self, records: &mut [u8], max_message_bytes: u32, now_ms: i64) -> Result<Appended, ApiError> {
        let headers = validate_batches(records, max_message_bytes).map_err(|e| ApiError::from(&e))?;
        let [header] = headers.as_slice() else {
            return Err(ApiError::new(
                ResponseError::InvalidRecord,
                format!("a produce request must carry exactly one record batch per partition, not {}", headers.len()),
            ));
        };
        if header.attributes & 0x30 != 0 {
            return Err(ApiError::new(
                ResponseError::InvalidRecord,
                "transactional and control batches are not supported",
            ));
        }
        let batch = producer_batch(header);
        let mut producers = self.producers();
        let placement = match producers.check(&batch) {
            Verdict::Append => {
                let info = self.log.append_unsynced(records, now_ms)?;
                let placement = Placement { base_offset: info.base_offset, timestamp_ms: -1 };
                producers.record(&batch, placement, now_ms);
                placement
            }
            Verdict::Duplicate(placement) => placement,
            Verdict::DuplicateSequence => {
                return Err(ApiError::new(
                    ResponseError::DuplicateSequenceNumber,
                    format!("sequence {} of producer {} was written before", batch.first_sequence, batch.producer_id),
                ));
            }
            Verdict::OutOfOrderSequence { expected } => {
                return Err(ApiError::new(
                    ResponseError::OutOfOrderSequenceNumber,
                    format!(
                        "producer {} sent sequence {}, expected {expected}",
                        batch.producer_id, batch.first_sequence
                    ),
                ));
            }
            Verdict::InvalidEpoch { current } => {
                return Err(ApiError::new(
                    ResponseError::InvalidProducerEpoch,
                    format!("producer {} epoch {} is older than {current}", batch.producer_id, batch.epoch),
                ));
            }
            Verdict::UnknownProducer => {
                return Err(ApiError::new(
                    ResponseError::UnknownProducerId,
                    format!("no state for producer {} (expired or never seen)", batch.producer_id),
                ));
            }
        };
        drop(producers);
        Ok(Appended {
            base_offset: placement.base_offset,
            log_start_offset: self.log.log_start_offset(),
            durable_at: self.log.log_end_offset(),
        })
    }

    /// The idempotent producers this partition remembers.
    pub fn active_producers(&self) -> Vec<crate::producer_state::ActiveProducer> {
        self.producers().active()
    }

    /// `(producer id, last sequence)` of the batches the producer state remembers.
    pub(crate) fn remembered_producer_batches(&self) -> Vec<(i64, i32)> {
        self.producers().remembered_batches()
    }

    /// Forgets producers idle past the expiration time.
    pub fn expire_producers(&self, now_ms: i64) -> usize {
        self.producers().expire(now_ms)
    }

    fn producers(&self) -> MutexGuard<'_, ProducerState> {
        herald_log::sync::lock(&self.producers)
    }
}

fn producer_batch(header: &BatchHeader) -> ProducerBatch {
    ProducerBatch {
        producer_id: header.producer_id,
        epoch: header.producer_epoch,
        first_sequence: header.base_sequence,
        record_count: header.record_count as i32,
    }
}

/// Replays the batch headers written within the expiration window, so a producer that
/// retries across a broker restart still gets its original offsets.
fn rebuild_producer_state(log: &Log, config: ProducerStateConfig, now_ms: i64) -> Result<ProducerState, LogError> {
    let mut state = ProducerState::new(config);
    let since = now_ms.saturating_sub(config.expiration_ms);
    let Some(start) = log.offset_for_timestamp(since)? else {
        return Ok(state);
    };
    let mut offset = start.offset.max(log.log_start_offset());
    loop {
        let read = log.read(offset, REBUILD_READ_BYTES)?;
        if read.bytes.is_empty() {
            break;
        }
        let mut rest = read.bytes.as_slice();
        while !rest.is_empty() {
            let header = BatchHeader::parse(rest, rest.len() as u64)
                .map_err(|reason| LogError::InvalidBatch(InvalidBatch { position: offset, reason }))?;
            let placement = Placement { base_offset: header.base_offset, timestamp_ms: -1 };
            state.record(&producer_batch(&header), placement, header.max_timestamp.min(now_ms));
            offset = header.next_offset();
            rest = &rest[header.size as usize..];
        }
    }
    state.expire(now_ms);
    Ok(state)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use herald_log::FsStorage;

    use super::*;

    /// A one-record batch from producer `id` with sequence `sequence` (CRC recomputed).
    fn idempotent_batch(id: i64, epoch: i16, sequence: i32) -> Vec<u8> {
        let mut batch = herald_log::testing::batch_bytes(1, 8, 1_700_000_000_000);
        batch[43..51].copy_from_slice(&id.to_be_bytes());
        batch[51..53].copy_from_slice(&epoch.to_be_bytes());
        batch[53..57].copy_from_slice(&sequence.to_be_bytes());
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    fn open(dir: &std::path::Path, now: i64) -> Partition {
        Partition::open(
            Arc::new(FsStorage),
            dir.to_path_buf(),
            LogConfig::default(),
            ProducerStateConfig::default(),
            now,
        )
        .expect("open")
    }

    #[test]
    fn a_retry_after_a_restart_gets_its_original_offset() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("t-0");
        let now = 1_700_000_000_000;
        let partition = open(&dir, now);
        let mut offsets = Vec::new();
        for sequence in 0..8 {
            let appended = partition.append(&mut idempotent_batch(7, 0, sequence), 1 << 20, now).expect("append");
            partition.log().sync_through(appended.durable_at).expect("sync");
            offsets.push(appended.base_offset);
        }
        partition.into_log().close().expect("close");

        let reopened = open(&dir, now + 1000);
        // The last batch, retried: its original offset, nothing appended.
        let retried = reopened.append(&mut idempotent_batch(7, 0, 7), 1 << 20, now).expect("duplicate");
        assert_eq!(retried.base_offset, offsets[7]);
        assert_eq!(reopened.log().log_end_offset(), 8);
        // Older than the five remembered batches: DUPLICATE_SEQUENCE_NUMBER.
        let old = reopened.append(&mut idempotent_batch(7, 0, 1), 1 << 20, now).expect_err("too old");
        assert_eq!(old.code, ResponseError::DuplicateSequenceNumber.code());
        // A gap: OUT_OF_ORDER_SEQUENCE_NUMBER. The next one in line: appended.
        let gap = reopened.append(&mut idempotent_batch(7, 0, 10), 1 << 20, now).expect_err("gap");
        assert_eq!(gap.code, ResponseError::OutOfOrderSequenceNumber.code());
        let next = reopened.append(&mut idempotent_batch(7, 0, 8), 1 << 20, now).expect("next");
        assert_eq!(next.base_offset, 8);
        // A stale epoch is fenced.
        let stale = reopened.append(&mut idempotent_batch(7, -1, 9), 1 << 20, now).expect_err("fenced");
        assert_eq!(stale.code, ResponseError::InvalidProducerEpoch.code());
    }

    #[test]
    fn producers_older_than_the_expiration_are_not_rebuilt() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("t-0");
        let written = 1_700_000_000_000;
        let partition = open(&dir, written);
        let appended = partition.append(&mut idempotent_batch(3, 0, 0), 1 << 20, written).expect("append");
        partition.log().sync_through(appended.durable_at).expect("sync");
        partition.into_log().close().expect("close");
        let day_later = written + ProducerStateConfig::default().expiration_ms + 60_000;
        let reopened = open(&dir, day_later);
        let retried = reopened.append(&mut idempotent_batch(3, 0, 1), 1 << 20, day_later).expect_err("forgotten");
        assert_eq!(retried.code, ResponseError::UnknownProducerId.code());
    }

    #[test]
    fn several_batches_in_one_request_and_transactional_batches_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let partition = open(&tmp.path().join("t-0"), 0);
        let mut two = herald_log::testing::batch_bytes(1, 8, 0);
        two.extend(herald_log::testing::batch_bytes(1, 8, 0));
        let error = partition.append(&mut two, 1 << 20, 0).expect_err("two batches");
        assert_eq!(error.code, ResponseError::InvalidRecord.code());
        let mut big = herald_log::testing::batch_bytes(1, 4000, 0);
        let error = partition.append(&mut big, 1000, 0).expect_err("too large");
        assert_eq!(error.code, ResponseError::MessageTooLarge.code());
        let mut corrupt = herald_log::testing::batch_bytes(1, 8, 0);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let error = partition.append(&mut corrupt, 1 << 20, 0).expect_err("corrupt");
        assert_eq!(error.code, ResponseError::CorruptMessage.code());
        let mut transactional = idempotent_batch(5, 0, 0);
        transactional[22] |= 0x10;
        let crc = crc32c::crc32c(&transactional[21..]);
        transactional[17..21].copy_from_slice(&crc.to_be_bytes());
        let error = partition.append(&mut transactional, 1 << 20, 0).expect_err("transactional");
        assert_eq!(error.code, ResponseError::InvalidRecord.code());
        assert_eq!(partition.log().log_end_offset(), 0, "nothing refused was written");
    }
}
