//! `spool broker`: a standalone broker.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use spool_broker::BrokerConfig;

/// Flags of `spool broker`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: SocketAddr,
    /// Data directory (created if missing); topics and data survive restarts.
    #[arg(long, default_value = "spool-data")]
    data_dir: PathBuf,
    /// host:port announced to clients, if not the listen address.
    #[arg(long, value_name = "HOST:PORT")]
    advertised: Option<String>,
    /// Partitions of auto-created topics (Kafka's num.partitions).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    default_partitions: i32,
    /// Do not create unknown topics on Metadata and Produce.
    #[arg(long)]
    no_auto_create_topics: bool,
    /// Largest request accepted, in bytes (socket.request.max.bytes).
    #[arg(long, default_value_t = spool_protocol::frame::DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: usize,
    /// Bytes of large requests buffered at once across all connections; a connection waits
    /// for room before reading more (queued.max.request.bytes).
    #[arg(long, default_value_t = spool_broker::config::DEFAULT_MAX_QUEUED_REQUEST_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    queued_max_request_bytes: u64,
    /// Connections accepted at once.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// How long a new consumer group waits for more members before its first rebalance
    /// (group.initial.rebalance.delay.ms).
    #[arg(long, default_value_t = 3000)]
    group_initial_rebalance_delay_ms: i32,
    /// How long a consumer-protocol (KIP-848) group member lives without a heartbeat
    /// (group.consumer.session.timeout.ms).
    #[arg(long, default_value_t = 45_000, value_parser = clap::value_parser!(i32).range(1..))]
    group_consumer_session_timeout_ms: i32,
    /// The heartbeat interval given to consumer-protocol (KIP-848) group members; must be less
    /// than the session timeout (group.consumer.heartbeat.interval.ms).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(i32).range(1..))]
    group_consumer_heartbeat_interval_ms: i32,
}

/// Runs until SIGINT or SIGTERM, then shuts down cleanly.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = BrokerConfig::new(&args.data_dir);
    config.default_partitions = args.default_partitions;
    config.auto_create_topics = !args.no_auto_create_topics;
    config.max_request_bytes = args.max_request_bytes;
    config.max_connections = args.max_connections;
    config.max_queued_request_bytes =
        usize::try_from(args.queued_max_request_bytes).unwrap_or(usize::MAX);
    config.group.initial_rebalance_delay_ms = args.group_initial_rebalance_delay_ms;
    config.group.consumer_session_timeout_ms = args.group_consumer_session_timeout_ms;
    config.group.consumer_heartbeat_interval_ms = args.group_consumer_heartbeat_interval_ms;
    if let Some(adv) = &args.advertised {
        let (host, port) = adv
            .rsplit_once(':')
            .with_context(|| format!("--advertised {adv:?} is not HOST:PORT"))?;
        let port = port
            .parse()
            .with_context(|| format!("--advertised {adv:?} has an invalid port"))?;
        config.advertised = Some((host.trim_matches(['[', ']']).to_string(), port));
    }
    let listener = spool_broker::server::bind(args.listen).await?;
    spool_broker::run(listener, config, super::signal::terminated())
        .await
        .context("broker failed")?;
    Ok(())
}
