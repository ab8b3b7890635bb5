//! `spool consume`: print records of a topic.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use spool_client::{
    AutoOffsetReset, ConsumerConfig, ConsumerRecord, GroupConfig, Offset, OffsetSpec,
};

use super::common::Connect;

/// Flags of `spool consume`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Topic to read.
    topic: String,
    #[command(flatten)]
    connect: Connect,
    /// Consume as a member of this consumer group: partitions are shared with the group's
    /// other members and offsets are committed (every 5 s and on exit).
    #[arg(short = 'g', long, conflicts_with_all = ["offset", "partition", "exit_at_end"])]
    group: Option<String>,
    /// Start at the earliest offset (default: only new records). With --group, only where the
    /// group has no committed offset.
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset (in every partition read).
    #[arg(short, long)]
    offset: Option<i64>,
    /// Start at the first record with a timestamp at or after this one (ms since the epoch),
    /// found per partition with ListOffsets; partitions with none start at their end.
    #[arg(long, value_name = "MS", conflicts_with_all = ["offset", "from_beginning", "group"])]
    from_timestamp: Option<i64>,
    /// Print a null key, value or header value as this string (default: as empty).
    #[arg(long, value_name = "MARKER")]
    null_marker: Option<String>,
    /// Read only this partition (default: all).
    #[arg(short, long)]
    partition: Option<i32>,
    /// Stop after this many records.
    #[arg(short = 'c', long)]
    count: Option<usize>,
    /// Stop once every partition has been read to its end.
    #[arg(short = 'e', long)]
    exit_at_end: bool,
    /// Output format: %t topic, %p partition, %o offset, %T timestamp, %k key, %v (or %s)
    /// value, %h headers, \n newline, \t tab.
    #[arg(short, long, default_value = "%v")]
    format: String,
}

/// Prints records until --count, --exit-at-end, Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = args.connect.client().await?;
    if let Some(group) = &args.group {
        return run_group(&client, group, &args).await;
    }
    let topic = client
        .topic(&args.topic)
        .await
        .with_context(|| format!("topic {:?} is not available", args.topic))?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) => {
            anyhow::ensure!(
                p >= 0 && p < topic.partition_count(),
                "topic {:?} has no partition {p} (it has {})",
                args.topic,
                topic.partition_count()
            );
            vec![p]
        }
        None => (0..topic.partition_count()).collect(),
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
    let start = match (args.from_beginning, args.offset) {
        (true, _) => Offset::Earliest,
        (_, Some(o)) => Offset::At(o),
        _ => Offset::Latest,
    };
    for &p in &partitions {
        match args.from_timestamp {
            Some(ts) => consumer.seek_to_timestamp(&args.topic, p, ts)?,
            None => consumer.seek(&args.topic, p, start)?,
        }
    }
    // For --exit-at-end: the log end offsets when we started.
    let mut ends: HashMap<i32, i64> = HashMap::new();
    if args.exit_at_end {
        let specs: Vec<(&str, i32, OffsetSpec)> = partitions
            .iter()
            .map(|&p| (args.topic.as_str(), p, OffsetSpec::Latest))
            .collect();
        for ((_, p), listed) in client.admin().list_offsets(&specs).await? {
            ends.insert(p, listed.offset);
        }
    }
    let mut printed = 0usize;
    let stdout = std::io::stdout();
    let stop = super::signal::terminated();
    tokio::pin!(stop);
    loop {
        if args.count.is_some_and(|c| printed >= c) {
            break;
        }
        if args.exit_at_end {
            let mut all_done = true;
            for (&p, &end) in &ends {
                if consumer.position(&args.topic, p).await? < end {
                    all_done = false;
                }
            }
            if all_done {
                break;
            }
        }
        let records = tokio::select! {
            _ = &mut stop => break,
            r = consumer.poll(Duration::from_millis(500)) => r.context("cannot fetch")?,
        };
        let mut out = stdout.lock();
        for r in records {
            if args.count.is_some_and(|c| printed >= c) {
                break;
            }
            out.write_all(&format_record(
                &args.format,
                &r,
                args.null_marker.as_deref(),
            ))?;
            out.write_all(b"\n")?;
            printed += 1;
        }
        out.flush()?;
    }
    Ok(())
}

/// The group variant: records of whatever partitions the group assigns to this member.
async fn run_group(client: &spool_client::Client, group: &str, args: &Args) -> anyhow::Result<()> {
    client
        .topic(&args.topic)
        .await
        .with_context(|| format!("topic {:?} is not available", args.topic))?;
    let reset = if args.from_beginning {
        AutoOffsetReset::Earliest
    } else {
        AutoOffsetReset::Latest
    };
    let mut consumer = client
        .group_consumer(GroupConfig::new(group).auto_offset_reset(reset))
        .context("cannot create the group consumer")?;
    consumer.subscribe([args.topic.clone()]);
    let stdout = std::io::stdout();
    let stop = super::signal::terminated();
    tokio::pin!(stop);
    let mut printed = 0usize;
    let mut failure = None;
    while args.count.is_none_or(|c| printed < c) {
        let records = tokio::select! {
            _ = &mut stop => break,
            r = consumer.poll(Duration::from_millis(500)) => r,
        };
        let records = match records {
            Ok(r) => r,
            Err(e) => {
                failure = Some(anyhow::Error::new(e).context("cannot consume"));
                break;
            }
        };
        let mut out = stdout.lock();
        let mut unprinted = records.iter();
        for r in unprinted.by_ref() {
            out.write_all(&format_record(&args.format, r, args.null_marker.as_deref()))?;
            out.write_all(b"\n")?;
            printed += 1;
            if args.count.is_some_and(|c| printed >= c) {
                break;
            }
        }
        out.flush()?;
        // Only what was printed counts as consumed: rewind each partition to its first record
        // left unprinted, so the commit on close does not skip it.
        let mut rewound = std::collections::HashSet::new();
        for r in unprinted {
            if rewound.insert((r.topic.clone(), r.partition)) {
                consumer.seek(&r.topic, r.partition, Offset::At(r.offset))?;
            }
        }
    }
    // Commits the positions and leaves the group, so the partitions move on at once.
    let closed = consumer.close().await;
    match (failure, closed) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(anyhow::Error::new(e).context("cannot leave the group")),
        (None, Ok(())) => Ok(()),
    }
}

/// Renders one record with a kcat-like format string.
pub fn format_record(format: &str, r: &ConsumerRecord, null_marker: Option<&str>) -> Vec<u8> {
    let null = null_marker.unwrap_or("").as_bytes();
    let mut out = Vec::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('%', Some(spec)) => {
                chars.next();
                match spec {
                    't' => out.extend_from_slice(r.topic.as_bytes()),
                    'p' => out.extend_from_slice(r.partition.to_string().as_bytes()),
                    'o' => out.extend_from_slice(r.offset.to_string().as_bytes()),
                    'T' => out.extend_from_slice(r.timestamp.to_string().as_bytes()),
                    'k' => out.extend_from_slice(r.key.as_deref().unwrap_or(null)),
                    'v' | 's' => out.extend_from_slice(r.value.as_deref().unwrap_or(null)),
                    'h' => {
                        let headers: Vec<String> = r
                            .headers
                            .iter()
                            .map(|(k, v)| {
                                format!(
                                    "{k}={}",
                                    String::from_utf8_lossy(v.as_deref().unwrap_or(null))
                                )
                            })
                            .collect();
                        out.extend_from_slice(headers.join(",").as_bytes());
                    }
                    '%' => out.push(b'%'),
                    other => {
                        out.push(b'%');
                        out.extend_from_slice(other.to_string().as_bytes());
                    }
                }
            }
            ('\\', Some('n')) => {
                chars.next();
                out.push(b'\n');
            }
            ('\\', Some('t')) => {
                chars.next();
                out.push(b'\t');
            }
            (c, _) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn formats_fields() {
        let r = ConsumerRecord {
            topic: "t".into(),
            partition: 2,
            offset: 7,
            timestamp: 99,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
        };
        assert_eq!(
            format_record("%t/%p@%o %k=%v %h %T %%", &r, None),
            b"t/2@7 k=v h=x 99 %"
        );
        assert_eq!(format_record("%s\\t%q", &r, None), b"v\t%q");
        let nulls = ConsumerRecord {
            key: None,
            value: None,
            headers: vec![("h".into(), None)],
            ..r
        };
        assert_eq!(format_record("%k|%v|%h", &nulls, None), b"||h=");
        assert_eq!(
            format_record("%k|%v|%h", &nulls, Some("NULL")),
            b"NULL|NULL|h=NULL"
        );
    }
}
