//! Client, producer and consumer settings, named after (and defaulting like) Kafka's Java client.
//!
//! Each field's documentation names the Java property it mirrors.

use std::time::Duration;

pub use spool_protocol::compression::Compression;

use crate::error::{Error, Result};

/// Settings shared by every component of a [`Client`](crate::Client).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `bootstrap.servers`: `host:port` pairs used to discover the cluster. Only the first one
    /// that answers matters; the cluster's advertised addresses are used afterwards.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`: sent in every request header; shows up in broker logs and quotas.
    pub client_id: String,
    /// `request.timeout.ms` (30 s): how long to wait for any one response. A connection whose
    /// request timed out is closed, like Kafka's client does.
    pub request_timeout: Duration,
    /// `socket.connection.setup.timeout.ms` (10 s): TCP connect plus the ApiVersions handshake.
    pub connect_timeout: Duration,
    /// `metadata.max.age.ms` (5 min): cached topic metadata older than this is refreshed.
    pub metadata_max_age: Duration,
    /// `retry.backoff.ms` (100 ms): first pause before a retry.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms` (1 s): the backoff doubles up to this.
    pub retry_backoff_max: Duration,
    /// Largest response frame accepted (100 MiB); a bigger declared length closes the connection.
    /// No Java equivalent: it bounds what a misbehaving broker can make the client buffer.
    pub max_response_size: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap_servers: vec!["localhost:9092".to_string()],
            client_id: "spool-client".to_string(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            metadata_max_age: Duration::from_secs(300),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            max_response_size: 100 * 1024 * 1024,
        }
    }
}

impl ClientConfig {
    /// Defaults with `bootstrap_servers` parsed from a comma-separated list.
    pub fn new(bootstrap_servers: &str) -> Self {
        ClientConfig {
            bootstrap_servers: bootstrap_servers
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            ..Default::default()
        }
    }

    /// Backoff before retry number `attempt` (1-based): doubles from `retry_backoff` up to
    /// `retry_backoff_max`, with up to 20% jitter like Kafka's client.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let base = self.retry_backoff.as_millis() as u64;
        let max = self.retry_backoff_max.as_millis().max(base as u128) as u64;
        let exp = base.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
        let ms = exp.min(max) as f64;
        let jitter = 0.8 + rand::random::<f64>() * 0.4;
        Duration::from_millis(((ms * jitter) as u64).min(max))
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.bootstrap_servers.is_empty() {
            return Err(Error::Config("bootstrap_servers is empty".into()));
        }
        if self.request_timeout.is_zero() {
            return Err(Error::Config("request_timeout must be positive".into()));
        }
        Ok(())
    }
}

/// `acks`: how many replicas must have a record before the broker answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// `acks=0`: the broker sends no answer; offsets are unknown (-1).
    None,
    /// `acks=1`: the leader wrote it.
    Leader,
    /// `acks=all` (`-1`, the default): every in-sync replica has it.
    #[default]
    All,
}

impl Acks {
    /// The wire value.
    pub fn as_i16(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `acks` (all).
    pub acks: Acks,
    /// `enable.idempotence`: `None` (the default) means Kafka's default, on unless `acks` is not
    /// `all`; `Some(true)` with `acks` other than `all` is a configuration error. Idempotence
    /// makes retries safe: the broker drops duplicates by producer id and sequence number.
    pub enable_idempotence: Option<bool>,
    /// `linger.ms` (5 ms, Kafka 4's default): how long a batch waits for more records.
    pub linger: Duration,
    /// `batch.size` (16384): bytes per partition batch before it is sent regardless of linger.
    pub batch_size: usize,
    /// Not in Kafka's Java client: how far (bytes) a partition's batch may grow past
    /// `batch_size` while it cannot be sent yet, because an older batch of the partition still
    /// waits or the partition has as many batches in flight as it may (1,000,000, librdkafka's
    /// `batch.size`; at most `max_request_size`). Those records wait either way; in one batch
    /// they make one request instead of many, and requests are what limits a busy producer. A batch the broker finds too large
    /// (MESSAGE_TOO_LARGE, e.g. a topic with a small `max.message.bytes`) is split and sent
    /// again. Set it to `batch_size` (or less) for the Java client's batches.
    pub backlog_batch_size: usize,
    /// `compression.type` (none).
    pub compression: Compression,
    /// `max.request.size` (1 MiB): largest produce request, and so largest record.
    pub max_request_size: usize,
    /// `buffer.memory` (32 MiB): bytes of records waiting to be sent before `send` waits.
    pub buffer_memory: usize,
    /// `max.block.ms` (60 s): how long `send` may wait for metadata or buffer space.
    pub max_block: Duration,
    /// `delivery.timeout.ms` (120 s): a record not acknowledged by then fails.
    pub delivery_timeout: Duration,
    /// `retries` (effectively unbounded; `delivery_timeout` bounds them).
    pub retries: u32,
    /// `max.in.flight.requests.per.connection` (5, the most idempotence allows): produce
    /// requests outstanding per broker. An idempotent producer may have that many batches of
    /// one partition in flight (their sequence numbers keep retries in order); otherwise each
    /// partition has at most one batch in flight, which keeps records in order across retries.
    pub max_in_flight_requests_per_connection: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            enable_idempotence: None,
            linger: Duration::from_millis(5),
            batch_size: 16384,
            backlog_batch_size: 1_000_000,
            compression: Compression::None,
            max_request_size: 1024 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            max_block: Duration::from_secs(60),
            delivery_timeout: Duration::from_secs(120),
            retries: i32::MAX as u32,
            max_in_flight_requests_per_connection: 5,
        }
    }
}

impl ProducerConfig {
    /// Whether idempotence is on once defaults are applied; errors on contradictory settings.
    pub fn idempotence(&self) -> Result<bool> {
        match self.enable_idempotence {
            Some(true) if self.acks != Acks::All => {
                Err(Error::Config("enable_idempotence requires acks=all".into()))
            }
            Some(true) if self.max_in_flight_requests_per_connection > 5 => Err(Error::Config(
                "enable_idempotence requires max_in_flight_requests_per_connection <= 5".into(),
            )),
            Some(x) => Ok(x),
            None => Ok(self.acks == Acks::All && self.max_in_flight_requests_per_connection <= 5),
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.idempotence()?;
        if self.max_in_flight_requests_per_connection == 0 {
            return Err(Error::Config(
                "max_in_flight_requests_per_connection must be at least 1".into(),
            ));
        }
        if matches!(self.compression, Compression::Unknown(_)) {
            return Err(Error::Config("unknown compression codec".into()));
        }
        if self.batch_size == 0 || self.max_request_size == 0 || self.buffer_memory == 0 {
            return Err(Error::Config(
                "batch_size, max_request_size and buffer_memory must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// `auto.offset.reset`: where to start when a partition has no valid position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoOffsetReset {
    /// `earliest`: the log start.
    Earliest,
    /// `latest` (the default): the log end, i.e. only new records.
    #[default]
    Latest,
    /// `none`: fail with [`Error::NoOffset`].
    None,
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `auto.offset.reset` (latest).
    pub auto_offset_reset: AutoOffsetReset,
    /// `fetch.min.bytes` (1).
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes` (50 MiB): per fetch response.
    pub fetch_max_bytes: i32,
    /// `fetch.max.wait.ms` (500 ms): how long the broker may hold a fetch waiting for data.
    pub fetch_max_wait: Duration,
    /// `max.partition.fetch.bytes` (1 MiB): per partition per fetch.
    pub max_partition_fetch_bytes: i32,
    /// `max.poll.records` (500): most records one `poll` returns.
    pub max_poll_records: usize,
    /// `allow.auto.create.topics` (true): let metadata requests create missing topics where the
    /// broker allows it.
    pub allow_auto_create_topics: bool,
    /// Cap on one batch's decompressed size (256 MiB). No Java equivalent: it bounds the memory
    /// a corrupt or hostile compressed batch can claim.
    pub max_uncompressed_batch_bytes: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Latest,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            fetch_max_wait: Duration::from_millis(500),
            max_partition_fetch_bytes: 1024 * 1024,
            max_poll_records: 500,
            allow_auto_create_topics: true,
            max_uncompressed_batch_bytes: 256 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_list_parses() {
        let c = ClientConfig::new(" a:1, b:2 ,,");
        assert_eq!(c.bootstrap_servers, vec!["a:1", "b:2"]);
    }

    #[test]
    fn idempotence_follows_kafka_defaults() {
        let mut p = ProducerConfig::default();
        assert!(p.idempotence().unwrap());
        p.acks = Acks::Leader;
        assert!(!p.idempotence().unwrap());
        p.enable_idempotence = Some(true);
        assert!(p.idempotence().is_err());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = ClientConfig::default();
        assert!(c.backoff(1) <= Duration::from_millis(120));
        assert!(c.backoff(1) >= Duration::from_millis(80));
        assert!(c.backoff(30) <= Duration::from_secs(1));
        assert!(c.backoff(5) >= Duration::from_millis(800));
    }
}
