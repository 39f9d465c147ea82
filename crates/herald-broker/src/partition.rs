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

    /// Forgets producers idle past the expiration time.
    pub fn expire_producers(&self, now_ms: i64) -> usize {
        self.producers().expire(now_ms)
    }

    fn producers(&self) -> MutexGuard<'_, ProducerState> {
        self.producers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
