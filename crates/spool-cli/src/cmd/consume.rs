//! `spool consume`: print records of a topic.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use spool_client::{ConsumerConfig, ConsumerRecord, Offset, OffsetSpec};

use super::common::Connect;

/// Flags of `spool consume`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Topic to read.
    topic: String,
    #[command(flatten)]
    connect: Connect,
    /// Start at the earliest offset (default: only new records).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset (in every partition read).
    #[arg(short, long)]
    offset: Option<i64>,
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
        consumer.seek(&args.topic, p, start)?;
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
            out.write_all(&format_record(&args.format, &r))?;
            out.write_all(b"\n")?;
            printed += 1;
        }
        out.flush()?;
    }
    Ok(())
}

/// Renders one record with a kcat-like format string.
pub fn format_record(format: &str, r: &ConsumerRecord) -> Vec<u8> {
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
                    'k' => out.extend_from_slice(r.key.as_deref().unwrap_or(b"")),
                    'v' | 's' => out.extend_from_slice(r.value.as_deref().unwrap_or(b"")),
                    'h' => {
                        let headers: Vec<String> = r
                            .headers
                            .iter()
                            .map(|(k, v)| {
                                format!(
                                    "{k}={}",
                                    String::from_utf8_lossy(v.as_deref().unwrap_or(b""))
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
            format_record("%t/%p@%o %k=%v %h %T %%", &r),
            b"t/2@7 k=v h=x 99 %"
        );
        assert_eq!(format_record("%s\\t%q", &r), b"v\t%q");
    }
}
