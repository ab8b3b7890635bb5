//! `spool bench consume`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use spool_client::{Client, ConsumerConfig, Offset, OffsetSpec};

use super::parse_secs;
use super::produce::stop_on_signal;
use super::progress::{Counters, Progress};
use super::report::Report;

/// Flags of `spool bench consume`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Topic to read.
    #[arg(long)]
    topic: String,
    /// Stop after this many records (default: at the end offsets the partitions had at start).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..),
          conflicts_with = "duration")]
    num_records: Option<u64>,
    /// Stop after this long (seconds; fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Give up when no record arrives for this long (seconds).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    timeout: Duration,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Reads the topic from its earliest offsets and prints the report.
pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let topic = client
        .topic(&args.topic)
        .await
        .with_context(|| format!("topic {:?} is not available", args.topic))?;
    let partitions: Vec<i32> = (0..topic.partition_count()).collect();
    // Without a count or duration: read what the topic held when we started.
    let mut remaining: u64 = match (args.num_records, args.duration) {
        (Some(n), _) => n,
        (None, Some(_)) => u64::MAX,
        (None, None) => {
            let specs = |spec: OffsetSpec| -> Vec<(&str, i32, OffsetSpec)> {
                partitions
                    .iter()
                    .map(|&p| (args.topic.as_str(), p, spec))
                    .collect()
            };
            let admin = client.admin();
            let start = admin.list_offsets(&specs(OffsetSpec::Earliest)).await?;
            let end = admin.list_offsets(&specs(OffsetSpec::Latest)).await?;
            end.iter()
                .map(|(tp, e)| {
                    let s = start.get(tp).map_or(0, |s| s.offset);
                    (e.offset - s).max(0) as u64
                })
                .sum()
        }
    };
    let config = ConsumerConfig {
        allow_auto_create_topics: false,
        ..ConsumerConfig::default()
    };
    let mut consumer = client.consumer(config);
    consumer.assign(
        partitions
            .iter()
            .map(|&p| (args.topic.clone(), p))
            .collect(),
    );
    for &p in &partitions {
        consumer.seek(&args.topic, p, Offset::Earliest)?;
    }
    let counters = Arc::new(Counters::default());
    let progress = Progress::start("consume", counters.clone());
    let stop = stop_on_signal();
    let start = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut last = start;
    let mut stalled = false;
    while remaining > 0 && !*stop.borrow() {
        if args.duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        if last.elapsed() >= args.timeout {
            stalled = true;
            break;
        }
        // Read in place, as an application that parses each record's bytes would.
        let batch = consumer
            .poll_records(Duration::from_millis(100))
            .await
            .context("cannot fetch")?;
        if batch.is_empty() {
            continue;
        }
        last = Instant::now();
        let (mut n, mut b) = (0u64, 0u64);
        for r in batch.iter().take(remaining.min(usize::MAX as u64) as usize) {
            n += 1;
            b += (r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len)) as u64;
        }
        records += n;
        bytes += b;
        remaining -= n;
        counters.add(n, b);
    }
    progress.finish().await;
    let elapsed = if args.duration.is_some() && !stalled {
        start.elapsed()
    } else {
        last - start
    };
    let report = Report::new("consume", &args.topic, records, 0, bytes, elapsed, None);
    if args.json {
        outln!("{}", report.json())?;
    } else {
        outln!("{}", report.text().trim_end())?;
    }
    if stalled && args.duration.is_none() {
        anyhow::bail!(
            "no record arrived for {:?}: read {records} of the {} asked",
            args.timeout,
            records + remaining
        );
    }
    Ok(())
}
