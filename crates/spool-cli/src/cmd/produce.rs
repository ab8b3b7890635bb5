//! `spool produce`: one record per stdin line.

use std::time::Duration;

use anyhow::Context;
use spool_client::{Acks, Compression, ProducerConfig, ProducerRecord};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::common::Connect;

/// Flags of `spool produce`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Topic to write to.
    topic: String,
    #[command(flatten)]
    connect: Connect,
    /// Split each line into key and value at the first occurrence of this string.
    #[arg(short = 'K', long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Write every record to this partition instead of using the partitioner.
    #[arg(short, long)]
    partition: Option<i32>,
    /// Acknowledgements: all, 1 or 0.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: Acks,
    /// Compression: none, gzip, snappy, lz4, zstd.
    #[arg(short = 'z', long, default_value = "none", value_parser = parse_compression)]
    compression: Compression,
    /// How long to wait for more records before sending a batch, in ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    match s {
        "all" | "-1" => Ok(Acks::All),
        "1" => Ok(Acks::Leader),
        "0" => Ok(Acks::None),
        _ => Err(format!("{s:?} is not one of all, 1, 0")),
    }
}

/// Parses a codec name as Kafka spells it.
pub fn parse_compression(s: &str) -> Result<Compression, String> {
    Compression::from_name(s)
        .ok_or_else(|| format!("{s:?} is not one of none, gzip, snappy, lz4, zstd"))
}

/// Reads stdin to the end, sending each line; fails if any record is not acknowledged.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = args.connect.client().await?;
    // Fail at once on a topic the cluster neither has nor creates, instead of letting the
    // producer wait max.block.ms for it (this also auto-creates it where the broker does).
    let topic = client
        .topic_with(&args.topic, true)
        .await
        .with_context(|| format!("topic {:?} is not available", args.topic))?;
    if let Some(p) = args.partition {
        anyhow::ensure!(
            p >= 0 && p < topic.partition_count(),
            "topic {:?} has no partition {p} (it has {})",
            args.topic,
            topic.partition_count()
        );
    }
    let config = ProducerConfig {
        acks: args.acks,
        // Idempotence needs acks=all; with weaker acks the user asked for less.
        enable_idempotence: Some(args.acks == Acks::All),
        compression: args.compression,
        linger: Duration::from_millis(args.linger_ms),
        ..ProducerConfig::default()
    };
    let producer = client
        .producer(config)
        .context("cannot create the producer")?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut deliveries = Vec::new();
    while let Some(line) = lines.next_line().await.context("cannot read stdin")? {
        let mut record = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => ProducerRecord::new(&args.topic, v.to_string()).key(k.to_string()),
                None => ProducerRecord::new(&args.topic, line),
            },
            None => ProducerRecord::new(&args.topic, line),
        };
        if let Some(p) = args.partition {
            record = record.partition(p);
        }
        deliveries.push(
            producer
                .send(record)
                .await
                .with_context(|| format!("cannot send to {}", args.topic))?,
        );
    }
    producer
        .flush()
        .await
        .context("cannot flush the producer")?;
    let total = deliveries.len();
    let mut failed = 0;
    let mut first_error = None;
    for d in deliveries {
        if let Err(e) = d.await {
            failed += 1;
            first_error.get_or_insert(e);
        }
    }
    producer.close().await.ok();
    if let Some(e) = first_error {
        anyhow::bail!(
            "{failed} of {total} records were not delivered to {}: {e}",
            args.topic
        );
    }
    Ok(())
}
