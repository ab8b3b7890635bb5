//! Broker configuration, with Kafka's names where Kafka has the same setting.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Default of [`BrokerConfig::max_queued_request_bytes`]: 256 MiB.
pub const DEFAULT_MAX_QUEUED_REQUEST_BYTES: usize = 256 * 1024 * 1024;

/// Everything the broker needs to run.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Data directory holding topics and their logs (`log.dirs`).
    pub data_dir: PathBuf,
    /// Host and port given to clients in metadata (`advertised.listeners`); `None` means the
    /// address the listener is bound to.
    pub advertised: Option<(String, u16)>,
    /// This broker's id (`node.id`).
    pub node_id: i32,
    /// Create unknown topics on Metadata and Produce (`auto.create.topics.enable`, default true).
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics with -1 (`num.partitions`, default 1).
    pub default_partitions: i32,
    /// Largest request accepted (`socket.request.max.bytes`, default 100 MiB).
    pub max_request_bytes: usize,
    /// Bytes of large requests (over one 64 KiB read) buffered at once across all connections
    /// (`queued.max.request.bytes`, which Kafka leaves unbounded by default). A connection waits
    /// for room before it buffers such a request, so a flood meets back-pressure; one request
    /// larger than the whole budget is admitted alone.
    pub max_queued_request_bytes: usize,
    /// How long a connection holding request memory (see `max_queued_request_bytes`) may go
    /// without sending a byte of its request before it is closed, so a few stalled senders
    /// cannot hold the budget from everyone else (default 30 s; Kafka's nearest is
    /// `connections.max.idle.ms`, 10 minutes, which does not free memory any sooner).
    pub stalled_request_timeout: std::time::Duration,
    /// Open connections accepted at once (`max.connections`).
    pub max_connections: usize,
    /// Bounds applied to every request before decoding.
    pub guard: spool_protocol::guard::GuardLimits,
    /// Most partitions one topic may have; CreateTopics and CreatePartitions above it fail
    /// with INVALID_PARTITIONS rather than creating that many directories.
    pub max_partitions_per_topic: i32,
    /// Consumer-group timeouts and limits (group.min/max.session.timeout.ms,
    /// group.initial.rebalance.delay.ms, group.max.size).
    pub group: crate::group::GroupConfig,
    /// How long committed offsets of an empty group are kept (offsets.retention.minutes,
    /// default 7 days).
    pub offsets_retention_ms: i64,
    /// How often retention runs (`log.retention.check.interval.ms`, default 5 minutes).
    pub retention_check_interval_ms: u64,
}

impl BrokerConfig {
    /// Defaults for a broker keeping its data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        BrokerConfig {
            data_dir: data_dir.into(),
            advertised: None,
            node_id: 1,
            auto_create_topics: true,
            default_partitions: 1,
            max_request_bytes: spool_protocol::frame::DEFAULT_MAX_REQUEST_BYTES,
            max_queued_request_bytes: DEFAULT_MAX_QUEUED_REQUEST_BYTES,
            stalled_request_timeout: std::time::Duration::from_secs(30),
            max_connections: 10_000,
            guard: Default::default(),
            max_partitions_per_topic: 10_000,
            group: Default::default(),
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_check_interval_ms: 300_000,
        }
    }

    /// The address clients are told to use, given the bound one.
    pub fn advertised_for(&self, bound: SocketAddr) -> (String, u16) {
        self.advertised
            .clone()
            .unwrap_or_else(|| (bound.ip().to_string(), bound.port()))
    }
}
