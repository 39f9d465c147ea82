//! [`ApiError`]: a Kafka error code with a message, as answered per topic or partition.

use herald_log::{BatchError, InvalidBatch, LogError};
use kafka_protocol::error::ResponseError;

use crate::topics::TopicError;

/// A refused operation on one topic or partition; nothing of it took effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The Kafka error code.
    pub code: i16,
    /// What went wrong, in words for the client and the broker's log.
    pub message: String,
}

impl ApiError {
    /// An error with Kafka's `error` code.
    pub fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Self { code: error.code(), message: message.into() }
    }

    /// UNKNOWN_TOPIC_OR_PARTITION for `topic`.
    pub fn unknown_partition(topic: &str, partition: i32) -> Self {
        Self::new(ResponseError::UnknownTopicOrPartition, format!("no partition {partition} of topic {topic:?}"))
    }
}

impl From<LogError> for ApiError {
    fn from(error: LogError) -> Self {
        let code = match &error {
            LogError::InvalidBatch(invalid) => return invalid.into(),
            LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            LogError::StorageFull { .. } | LogError::Failed { .. } | LogError::Io { .. } => {
                ResponseError::KafkaStorageError
            }
            LogError::InvalidArgument(_) => ResponseError::InvalidRequest,
            _ => ResponseError::UnknownServerError,
        };
        Self::new(code, error.to_string())
    }
}

impl From<&InvalidBatch> for ApiError {
    fn from(invalid: &InvalidBatch) -> Self {
        let code = match invalid.reason {
            BatchError::TooLarge { .. } => ResponseError::MessageTooLarge,
            BatchError::CrcMismatch | BatchError::Truncated { .. } | BatchError::BadLength { .. } => {
                ResponseError::CorruptMessage
            }
            _ => ResponseError::InvalidRecord,
        };
        Self::new(code, invalid.to_string())
    }
}

impl From<TopicError> for ApiError {
    fn from(error: TopicError) -> Self {
        let code = match &error {
            TopicError::InvalidName(_) => ResponseError::InvalidTopicException,
            TopicError::Exists(_) => ResponseError::TopicAlreadyExists,
            TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition,
            TopicError::InvalidPartitions { .. } => ResponseError::InvalidPartitions,
            TopicError::InvalidConfig(_) => ResponseError::InvalidConfig,
            _ => ResponseError::KafkaStorageError,
        };
        Self::new(code, error.to_string())
    }
}
