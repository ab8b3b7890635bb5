//! `spool bench e2e`: produce at a constant rate and consume the same records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use spool_client::{Client, ConsumerConfig, Offset, OffsetSpec};

use super::produce::{finish, send_loop, stop_on_signal, Plan, Sent};
use super::progress::{Counters, Progress};
use super::rate::Schedule;
use super::report::{Latencies, Report};
use super::{ensure_topic, parse_secs, Payload, ProducerFlags};

/// Flags of `spool bench e2e`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Topic to write and read.
    #[arg(long)]
    topic: String,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    partitions: Option<i32>,
    /// Bytes per record value, at least 8 (the due time is in the first 8).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(8..))]
    record_size: u32,
    /// Records per second, constant.
    #[arg(long, value_name = "RECS_PER_SEC", value_parser = parse_rate)]
    throughput: f64,
    /// How long to produce (seconds; fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    duration: Duration,
    /// After producing, give up on records still unread when none has arrived for this long
    /// (seconds); unread records fail the run.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    timeout: Duration,
    #[command(flatten)]
    producer: ProducerFlags,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// `--throughput` for e2e: a positive rate (no "as fast as possible": latency would only
/// measure the queue).
fn parse_rate(s: &str) -> Result<f64, String> {
    match super::parse_throughput(s)? {
        r if r > 0.0 => Ok(r),
        _ => Err("e2e needs a constant rate, not -1".into()),
    }
}

/// The value of a record due `due` after the start: the due time in nanoseconds (big-endian
/// u64), then payload bytes.
fn stamped(payload: &Payload, i: u64, due: Duration) -> Bytes {
    let body = payload.value(i);
    let mut v = BytesMut::with_capacity(body.len());
    v.put_u64(u64::try_from(due.as_nanos()).unwrap_or(u64::MAX));
    v.extend_from_slice(&body[8..]);
    v.freeze()
}

/// The due time in a value made by [`stamped`].
fn stamp(value: &[u8]) -> Option<Duration> {
    let nanos = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
    Some(Duration::from_nanos(nanos))
}

/// Runs the end-to-end benchmark and prints its report.
pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    ensure_topic(client, &args.topic, args.partitions).await?;
    let topic = client
        .topic(&args.topic)
        .await
        .with_context(|| format!("topic {:?} is not available", args.topic))?;
    let partitions: Vec<i32> = (0..topic.partition_count()).collect();
    // Start at the current ends, resolved now: only this run's records are read.
    let specs: Vec<(&str, i32, OffsetSpec)> = partitions
        .iter()
        .map(|&p| (args.topic.as_str(), p, OffsetSpec::Latest))
        .collect();
    let ends = client.admin().list_offsets(&specs).await?;
    let mut consumer = client.consumer(ConsumerConfig {
        allow_auto_create_topics: false,
        ..ConsumerConfig::default()
    });
    consumer.assign(
        partitions
            .iter()
            .map(|&p| (args.topic.clone(), p))
            .collect(),
    );
    for ((t, p), listed) in &ends {
        consumer.seek(t, *p, Offset::At(listed.offset))?;
    }
    let producer = client
        .producer(args.producer.config())
        .context("cannot create the producer")?;

    let stop = stop_on_signal();
    let counters = Arc::new(Counters::default());
    let progress = Progress::start("e2e", counters.clone());
    let start = Instant::now();
    let sending = {
        let (producer, topic, stop) = (producer.clone(), args.topic.clone(), stop.clone());
        let payload = Payload::new(args.record_size as usize);
        let plan = Plan {
            schedule: Some(Schedule::new(args.throughput)),
            count: None,
            duration: Some(args.duration),
            start,
        };
        let size = u64::from(args.record_size);
        tokio::spawn(async move {
            // Acknowledgements are not what this run counts: they go to counters of their own.
            let acks = Arc::new(Counters::default());
            send_loop(
                &producer,
                &topic,
                plan,
                move |i, due| stamped(&payload, i, due),
                size,
                acks,
                stop,
            )
            .await
        })
    };
    tokio::pin!(sending);

    let mut latencies = Latencies::default();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut sent: Option<Sent> = None;
    let mut last = start;
    let mut done_at = None;
    let mut unread = 0;
    loop {
        if let Some(s) = &sent {
            if records >= s.acked || *stop.borrow() {
                break;
            }
            let since = *done_at.get_or_insert_with(Instant::now);
            if since.elapsed().min(last.elapsed()) >= args.timeout {
                unread = s.acked - records;
                break;
            }
        }
        let batch = tokio::select! {
            r = consumer.poll(Duration::from_millis(100)) => r.context("cannot fetch")?,
            s = &mut sending, if sent.is_none() => {
                sent = Some(s.context("the send loop failed")??);
                continue;
            }
        };
        let now = Instant::now();
        for r in &batch {
            let Some(value) = &r.value else { continue };
            let Some(due) = stamp(value) else { continue };
            latencies.record(now.saturating_duration_since(start + due));
            records += 1;
            bytes += value.len() as u64;
            counters.add(1, value.len() as u64);
            last = now;
        }
    }
    progress.finish().await;
    producer.close().await.ok();
    let sent = match sent {
        Some(s) => s,
        None => sending.await.context("the send loop failed")??,
    };
    let report = Report::new(
        "e2e",
        &args.topic,
        records,
        sent.failed,
        bytes,
        last.saturating_duration_since(start),
        latencies.summary(),
    );
    finish(&report, args.json, &sent)?;
    anyhow::ensure!(
        unread == 0,
        "{unread} of {} acknowledged records were not read back within {:?} of the last one",
        sent.acked,
        args.timeout
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_due_time_travels_in_the_first_eight_bytes() {
        let p = Payload::new(100);
        let due = Duration::from_nanos(1_234_567_890_123);
        let v = stamped(&p, 3, due);
        assert_eq!(v.len(), 100);
        assert_eq!(stamp(&v), Some(due));
        assert_eq!(&v[8..], &p.value(3)[8..]);
        assert_eq!(
            stamp(&stamped(&Payload::new(8), 0, Duration::ZERO)),
            Some(Duration::ZERO)
        );
        assert_eq!(stamp(b"short"), None);
    }
}
