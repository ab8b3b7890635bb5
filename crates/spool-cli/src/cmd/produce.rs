//! `spool produce`: one record per stdin line.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
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
    /// Add this header to every record (repeatable; order and duplicates are kept).
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// A key or value equal to this string is sent as null (Kafka's console producer
    /// `null.marker`); without it every line has a non-null value.
    #[arg(long, value_name = "MARKER")]
    null_marker: Option<String>,
}

/// `NAME=VALUE`, split at the first `=`; the value may be empty.
fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

/// The record for one input line: key and value split at `key_separator`, the marker turned
/// into null, the headers added.
fn line_to_record(args: &Args, line: &str) -> ProducerRecord {
    let nullable = |s: &str| -> Option<Bytes> {
        (args.null_marker.as_deref() != Some(s)).then(|| Bytes::copy_from_slice(s.as_bytes()))
    };
    let (key, value) = match &args.key_separator {
        Some(sep) => match line.split_once(sep.as_str()) {
            Some((k, v)) => (nullable(k), nullable(v)),
            None => (None, nullable(line)),
        },
        None => (None, nullable(line)),
    };
    ProducerRecord {
        topic: args.topic.clone(),
        partition: args.partition,
        key,
        value,
        headers: args
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Some(Bytes::copy_from_slice(v.as_bytes()))))
            .collect(),
        timestamp: None,
    }
}

pub fn parse_acks(s: &str) -> Result<Acks, String> {
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
        let record = line_to_record(&args, &line);
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(flags: &[&str]) -> Args {
        Cli::try_parse_from(["produce"].iter().chain(flags))
            .unwrap()
            .args
    }

    #[test]
    fn lines_become_records_with_keys_nulls_and_headers() {
        let a = args(&[
            "t",
            "-K",
            ":",
            "--null-marker",
            "NULL",
            "-H",
            "h1=x",
            "-H",
            "h1=",
            "-p",
            "2",
        ]);
        let r = line_to_record(&a, "k:v:w");
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v:w"[..]));
        assert_eq!(r.partition, Some(2));
        let h: Vec<_> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        assert_eq!(h, [("h1", Some(&b"x"[..])), ("h1", Some(&b""[..]))]);
        let r = line_to_record(&a, "NULL:v");
        assert_eq!((r.key, r.value.as_deref()), (None, Some(&b"v"[..])));
        let r = line_to_record(&a, "k:NULL");
        assert_eq!((r.key.as_deref(), r.value), (Some(&b"k"[..]), None));
        let r = line_to_record(&a, "no separator");
        assert_eq!(
            (r.key, r.value.as_deref()),
            (None, Some(&b"no separator"[..]))
        );
        let r = line_to_record(&args(&["t"]), "");
        assert_eq!(
            r.value.as_deref(),
            Some(&b""[..]),
            "an empty line is an empty value"
        );
    }

    #[test]
    fn a_header_needs_a_name_and_an_equals_sign() {
        assert!(parse_header("novalue").is_err());
        assert!(parse_header("=v").is_err());
        assert_eq!(parse_header("a=b=c"), Ok(("a".into(), "b=c".into())));
    }
}
