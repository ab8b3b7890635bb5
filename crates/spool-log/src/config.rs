//! The settings one partition log obeys, derived from topic configs by
//! [`topic_config::log_config`](crate::topic_config::log_config).

/// Per-topic log settings. `Default` gives Kafka's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: a segment is rolled before it would grow past this size.
    pub segment_bytes: u64,
    /// `segment.ms`: a segment is rolled once its first batch is this old.
    pub segment_ms: i64,
    /// `retention.ms`: sealed segments whose newest timestamp is older are deleted; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`: oldest sealed segments are deleted while the log is larger; -1 = no limit.
    pub retention_bytes: i64,
    /// `index.interval.bytes`: bytes between two offset-index entries.
    pub index_interval_bytes: u32,
    /// `max.message.bytes`: largest batch accepted.
    pub max_message_bytes: u32,
    /// `message.timestamp.type=LogAppendTime`: the broker stamps batches with its clock.
    pub log_append_time: bool,
    /// `flush.messages`: fsync after this many messages; `None` leaves flushing to the OS.
    pub flush_messages: Option<u64>,
    /// `flush.ms`: fsync when the last one is this old; `None` leaves flushing to the OS.
    pub flush_ms: Option<u64>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            retention_ms: 604_800_000,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            log_append_time: false,
            flush_messages: None,
            flush_ms: None,
        }
    }
}

impl LogConfig {
    /// Segment size actually used: file positions in the offset index are 32-bit, and Kafka's
    /// `segment.bytes` is an INT, so anything larger is clamped.
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.clamp(1, i32::MAX as u64)
    }
}
