//! The storage layer's error type. Each variant corresponds to one Kafka error code, chosen by
//! the broker; the messages are meant to be shown to clients and operators as they are.

use std::io;
use std::path::{Path, PathBuf};

use spool_protocol::batch::BatchError;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A file operation failed (KAFKA_STORAGE_ERROR).
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"write"`, `"open"`, ...).
        op: &'static str,
        /// File or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// An fsync failed earlier; the log refuses further writes and syncs (KAFKA_STORAGE_ERROR).
    ///
    /// Sticky on purpose: after a failed fsync Linux may drop the dirty pages and report the next
    /// fsync as successful, so retrying would claim durability for data that is gone.
    #[error("log {} is offline after a failed fsync: {reason}", path.display())]
    Offline {
        /// Partition directory.
        path: PathBuf,
        /// The fsync error.
        reason: String,
    },
    /// The batch in a produce request is malformed or its CRC is wrong (CORRUPT_MESSAGE).
    #[error(transparent)]
    Corrupt(#[from] BatchError),
    /// Bytes already stored in a segment do not parse; found while reading (KAFKA_STORAGE_ERROR).
    #[error("segment {} is corrupt at byte {position}: {error}", path.display())]
    CorruptSegment {
        /// Segment file.
        path: PathBuf,
        /// Byte position of the bad batch.
        position: u64,
        /// What was wrong.
        error: BatchError,
    },
    /// The batch is larger than the topic's `max.message.bytes` (MESSAGE_TOO_LARGE).
    #[error("record batch of {size} bytes exceeds max.message.bytes ({max})")]
    RecordTooLarge {
        /// Size of the batch.
        size: usize,
        /// The topic's limit.
        max: u32,
    },
    /// The batch cannot fit in any segment (RECORD_LIST_TOO_LARGE).
    #[error("record batch of {size} bytes exceeds segment.bytes ({segment_bytes})")]
    RecordListTooLarge {
        /// Size of the batch.
        size: usize,
        /// The topic's segment size.
        segment_bytes: u64,
    },
    /// The batch breaks a rule Kafka enforces on produce (INVALID_RECORD).
    #[error("invalid record batch: {0}")]
    InvalidRecord(&'static str),
    /// An idempotent producer's batch does not follow its previous one (OUT_OF_ORDER_SEQUENCE_NUMBER).
    #[error(
        "out of order sequence for producer {producer_id} epoch {epoch}: expected {expected}, got {received}"
    )]
    OutOfOrderSequence {
        /// Producer id.
        producer_id: i64,
        /// Producer epoch of the batch.
        epoch: i16,
        /// Sequence the log expected next.
        expected: i32,
        /// First sequence of the batch.
        received: i32,
    },
    /// The producer was fenced by a newer epoch (INVALID_PRODUCER_EPOCH).
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current}")]
    InvalidProducerEpoch {
        /// Producer id.
        producer_id: i64,
        /// Epoch of the batch.
        epoch: i16,
        /// Epoch the log knows.
        current: i16,
    },
    /// The requested offset is outside the log (OFFSET_OUT_OF_RANGE).
    #[error("offset {requested} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// Offset asked for.
        requested: i64,
        /// First offset in the log.
        log_start: i64,
        /// Next offset to be written.
        log_end: i64,
    },
    /// The log was closed by a shutdown (NOT_LEADER_OR_FOLLOWER fits: try again later).
    #[error("log {} is closed", path.display())]
    Closed {
        /// Partition directory.
        path: PathBuf,
    },
    /// The log's topic was deleted while a caller still held it (UNKNOWN_TOPIC_OR_PARTITION).
    #[error("log {} was deleted", path.display())]
    Deleted {
        /// Partition directory.
        path: PathBuf,
    },
    /// A topic of that name exists (TOPIC_ALREADY_EXISTS).
    #[error("Topic '{0}' already exists.")]
    TopicAlreadyExists(String),
    /// No topic of that name (UNKNOWN_TOPIC_OR_PARTITION).
    #[error("Topic '{0}' does not exist.")]
    UnknownTopic(String),
    /// The topic name breaks Kafka's naming rules or collides with another (INVALID_TOPIC_EXCEPTION).
    #[error("{reason}")]
    InvalidTopicName {
        /// The name given.
        name: String,
        /// Kafka's wording of the problem.
        reason: String,
    },
    /// A partition count that cannot be used (INVALID_PARTITIONS).
    #[error("{reason}")]
    InvalidPartitions {
        /// Topic concerned.
        topic: String,
        /// Kafka's wording of the problem.
        reason: String,
    },
    /// A topic config is unknown or its value is invalid (INVALID_CONFIG).
    #[error("{reason}")]
    InvalidConfig {
        /// Config name.
        key: String,
        /// Kafka's wording of the problem.
        reason: String,
    },
    /// The persisted topic metadata cannot be read (KAFKA_STORAGE_ERROR).
    #[error("topic metadata {} is unreadable: {reason}", path.display())]
    Metadata {
        /// Metadata file.
        path: PathBuf,
        /// Parser message.
        reason: String,
    },
}

/// Wraps an I/O error with what was being done and to which path.
pub(crate) fn io_err<P: AsRef<Path>>(
    op: &'static str,
    path: P,
) -> impl FnOnce(io::Error) -> LogError {
    // The path is copied only when there is an error: these sit on every read's success path.
    move |source| LogError::Io {
        op,
        path: path.as_ref().to_path_buf(),
        source,
    }
}
