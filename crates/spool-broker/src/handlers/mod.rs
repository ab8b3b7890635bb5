//! Request handlers, grouped by concern. Each takes the decoded request and returns the
//! response body; Kafka error codes are chosen here, from the storage layer's errors.

pub(crate) mod api_versions;
pub(crate) mod cluster;
pub(crate) mod configs;
pub(crate) mod consumer_groups;
pub(crate) mod fetch;
pub(crate) mod groups;
pub(crate) mod init_producer_id;
pub(crate) mod list_offsets;
pub(crate) mod metadata;
pub(crate) mod produce;
pub(crate) mod topics;

use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spool_log::{LogError, TopicMeta};
use tracing::info;

use crate::state::BrokerState;

/// Owned string for a response field.
pub(crate) fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// The Kafka error code a storage error is reported as.
pub(crate) fn log_error_code(e: &LogError) -> ResponseError {
    use LogError::*;
    match e {
        Corrupt(_) => ResponseError::CorruptMessage,
        RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        RecordListTooLarge { .. } => ResponseError::RecordListTooLarge,
        Closed { .. } => ResponseError::NotLeaderOrFollower,
        Deleted { .. } => ResponseError::UnknownTopicOrPartition,
        InvalidRecord(_) => ResponseError::InvalidRecord,
        OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        InvalidTopicName { .. } => ResponseError::InvalidTopicException,
        InvalidPartitions { .. } => ResponseError::InvalidPartitions,
        InvalidConfig { .. } => ResponseError::InvalidConfig,
        _ => ResponseError::KafkaStorageError,
    }
}

/// Looks a topic up by name, creating it when auto-creation is on and the caller allows it.
pub(crate) fn find_or_create(
    state: &BrokerState,
    name: &str,
    allow_create: bool,
) -> Result<TopicMeta, ResponseError> {
    if let Some(meta) = state.logs.topic(name) {
        return Ok(meta);
    }
    if spool_log::topic_config::validate_name(name).is_err() {
        return Err(ResponseError::InvalidTopicException);
    }
    if !(allow_create && state.config.auto_create_topics) {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    match state
        .logs
        .create_topic(name, state.config.default_partitions, Default::default())
    {
        Ok(meta) => {
            info!(
                topic = name,
                partitions = meta.partitions,
                "auto-created topic"
            );
            Ok(meta)
        }
        // Another connection created it first.
        Err(LogError::TopicAlreadyExists(_)) => state
            .logs
            .topic(name)
            .ok_or(ResponseError::UnknownTopicOrPartition),
        Err(e) => Err(log_error_code(&e)),
    }
}

/// Converts a stored topic id to the wire type.
pub(crate) fn uuid(id: [u8; 16]) -> uuid::Uuid {
    uuid::Uuid::from_bytes(id)
}
