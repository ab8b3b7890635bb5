//! `spool bench produce`, and the send loop `e2e` shares.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use spool_client::{Client, DeliveryFuture, Producer, ProducerRecord};
use tokio::sync::{mpsc, watch};

use super::acks::Unacked;
use super::progress::{Counters, Progress};
use super::rate::Schedule;
use super::report::{Latencies, Report};
use super::timer::Timer;
use super::{ensure_topic, parse_secs, parse_throughput, schedule, Payload, ProducerFlags};

/// Flags of `spool bench produce`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Topic to write to.
    #[arg(long)]
    topic: String,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    partitions: Option<i32>,
    /// Bytes per record value.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1..))]
    record_size: u32,
    /// Send this many records.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..),
          required_unless_present = "duration", conflicts_with = "duration")]
    num_records: Option<u64>,
    /// Send for this long (seconds; fractions allowed). At a constant rate: the records due
    /// within it, late ones too, unless twice as long has passed.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Records per second at a constant rate, or -1 for as fast as possible. At a constant
    /// rate, latency counts from each record's due time (see above).
    #[arg(long, value_name = "RECS_PER_SEC", default_value = "-1", value_parser = parse_throughput,
          allow_negative_numbers = true)]
    pub(super) throughput: f64,
    #[command(flatten)]
    pub(super) producer: ProducerFlags,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// How many records to send and how fast.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    /// Due times; `None` is as fast as possible.
    pub schedule: Option<Schedule>,
    /// Stop after this many records.
    pub count: Option<u64>,
    /// Stop sending after this long.
    pub duration: Option<Duration>,
    /// Time zero of the schedule and of the run.
    pub start: Instant,
}

/// What the send loop saw.
pub(super) struct Sent {
    /// Acknowledged records.
    pub acked: u64,
    /// Records not acknowledged, or refused by `send`.
    pub failed: u64,
    /// The first failure.
    pub first_error: Option<spool_client::Error>,
    /// Acknowledgement latencies.
    pub latencies: Latencies,
    /// From the start to the last acknowledgement.
    pub elapsed: Duration,
}

impl Sent {
    fn new() -> Sent {
        Sent {
            acked: 0,
            failed: 0,
            first_error: None,
            latencies: Latencies::default(),
            elapsed: Duration::ZERO,
        }
    }
}

/// Sends records by `plan` until it is done or `stop` turns true, then waits for every
/// acknowledgement. `value(i, due)` makes record `i`'s value; `due` is its due time relative
/// to `plan.start` (its send time when there is no schedule). Acknowledged records count in
/// `counters` as `bytes_per_record` each.
pub(super) async fn send_loop(
    producer: &Producer,
    topic: &str,
    plan: Plan,
    value: impl FnMut(u64, Duration) -> Bytes,
    bytes_per_record: u64,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Sent> {
    let start = plan.start;
    let (mut sent, refused) = match plan.schedule {
        Some(schedule) => {
            let (tx, rx) = mpsc::unbounded_channel();
            let collector = tokio::spawn(collect(rx, start, bytes_per_record, counters.clone()));
            let mut send = Sender {
                producer,
                topic,
                value,
            };
            let refused = pace(schedule, plan, &mut send, &tx, &stop).await?;
            drop(tx);
            // Acknowledgement failures are reported through the delivery futures.
            let _ = producer.flush().await;
            let sent = collector.await.expect("the collector does not panic");
            (sent, refused)
        }
        None => {
            let mut send = Sender {
                producer,
                topic,
                value,
            };
            let mut sent = Sent::new();
            let mut unacked = Unacked::new(start, bytes_per_record);
            let refused =
                full_speed(plan, &mut send, &mut unacked, &mut sent, &counters, &stop).await;
            // Acknowledgements keep being collected while the flush runs.
            let (_, ()) = tokio::join!(producer.flush(), unacked.finish(&mut sent, &counters));
            (sent, refused)
        }
    };
    if let Some(e) = refused {
        counters.fail();
        sent.failed += 1;
        sent.first_error.get_or_insert(e);
    }
    Ok(sent)
}

/// Hands records to the producer.
struct Sender<'a, F> {
    producer: &'a Producer,
    topic: &'a str,
    value: F,
}

impl<F: FnMut(u64, Duration) -> Bytes> Sender<'_, F> {
    /// Sends record `i`, due `due` after the start; an error when the producer refused it (not
    /// queued: buffer or metadata wait timed out, producer failed).
    async fn send(&mut self, i: u64, due: Duration) -> Result<DeliveryFuture, spool_client::Error> {
        let record = ProducerRecord {
            topic: self.topic.to_string(),
            partition: None,
            key: None,
            value: Some((self.value)(i, due)),
            headers: Vec::new(),
            timestamp: None,
        };
        self.producer.send(record).await
    }
}

/// The send loop at full speed: latency from each send call.
async fn full_speed<F: FnMut(u64, Duration) -> Bytes>(
    plan: Plan,
    send: &mut Sender<'_, F>,
    unacked: &mut Unacked,
    sent: &mut Sent,
    counters: &Counters,
    stop: &watch::Receiver<bool>,
) -> Option<spool_client::Error> {
    let start = plan.start;
    let limit = plan.count.unwrap_or(u64::MAX);
    let mut i = 0u64;
    let mut last = start;
    while i < limit && !*stop.borrow() {
        let now = Instant::now();
        if plan.duration.is_some_and(|d| now - start >= d) {
            break;
        }
        // Acknowledgements that arrived meanwhile: every few records (microseconds apart), and
        // after any send that had to wait (for buffer memory).
        if i.is_multiple_of(16) || now - last > Duration::from_micros(50) {
            unacked.collect_done(now, sent, counters);
        }
        last = now;
        match send.send(i, now - start).await {
            Ok(delivery) => unacked.push(now, delivery),
            Err(e) => return Some(e),
        }
        i += 1;
    }
    None
}

/// The send loop at a constant rate: sleeps until each record is due (on a [`Timer`], to
/// within tens of microseconds) and sends it; latency from the due time.
async fn pace<F: FnMut(u64, Duration) -> Bytes>(
    schedule: Schedule,
    plan: Plan,
    send: &mut Sender<'_, F>,
    tx: &mpsc::UnboundedSender<(Instant, DeliveryFuture)>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Option<spool_client::Error>> {
    let start = plan.start;
    let mut limit = plan.count.unwrap_or(u64::MAX);
    if let Some(d) = plan.duration {
        limit = limit.min(schedule.count_before(d));
    }
    let mut timer = Timer::new().context("cannot create a timer to pace the sends")?;
    let mut i = 0u64;
    while i < limit && !*stop.borrow() {
        let due = schedule.due(i);
        let now = Instant::now();
        if let Some(wait) = (start + due).checked_duration_since(now) {
            // Short naps, so that a stop is seen within a tenth of a second.
            timer
                .sleep(wait.min(Duration::from_millis(100)))
                .await
                .context("the pacing timer failed")?;
            continue;
        }
        // A constant-rate run sends the records due within its duration, late ones too (their
        // latency shows how late); it gives up only when twice as long has passed.
        if let Some(d) = plan.duration {
            if now.duration_since(start) >= 2 * d {
                eprintln!(
                    "note: could not keep up with the rate; {} due records were not sent",
                    limit - i
                );
                break;
            }
        }
        match send.send(i, due).await {
            Ok(delivery) => {
                let _ = tx.send((start + due, delivery));
            }
            Err(e) => return Ok(Some(e)),
        }
        // Behind schedule, sends complete without waiting for anything: let the sender, the
        // collector (and e2e's consumer) on this worker run now and then, or nothing would go
        // out until the buffer memory ran out.
        tokio::task::consume_budget().await;
        i += 1;
    }
    Ok(None)
}

/// Awaits the delivery futures as they come, recording each acknowledgement's latency from
/// the time given with it.
async fn collect(
    mut rx: mpsc::UnboundedReceiver<(Instant, DeliveryFuture)>,
    start: Instant,
    bytes_per_record: u64,
    counters: Arc<Counters>,
) -> Sent {
    let mut pending = FuturesUnordered::new();
    let mut sent = Sent::new();
    let mut last = start;
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some((from, result)) = pending.next(), if !pending.is_empty() => {
                let now = Instant::now();
                last = now;
                match result {
                    Ok(_) => {
                        sent.acked += 1;
                        sent.latencies.record(now.saturating_duration_since(from));
                        counters.add(1, bytes_per_record);
                    }
                    Err(e) => {
                        sent.failed += 1;
                        counters.fail();
                        sent.first_error.get_or_insert(e);
                    }
                }
            }
            msg = rx.recv(), if open => match msg {
                Some((from, delivery)) => {
                    pending.push(async move { (from, delivery.await) });
                }
                None => open = false,
            },
            else => break,
        }
    }
    sent.elapsed = last.saturating_duration_since(start);
    sent
}

/// A watch that turns true on Ctrl-C or SIGTERM, so a run can end early with a report.
pub(super) fn stop_on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        crate::cmd::signal::terminated().await;
        let _ = tx.send(true);
    });
    rx
}

/// Prints the report; an error (exit 1) when any record failed.
pub(super) fn finish(report: &Report, json: bool, sent: &Sent) -> anyhow::Result<()> {
    if json {
        outln!("{}", report.json())?;
    } else {
        outln!("{}", report.text().trim_end())?;
    }
    if let Some(e) = &sent.first_error {
        anyhow::bail!(
            "{} of {} records were not delivered to {}; the first error: {e}",
            sent.failed,
            sent.failed + sent.acked,
            report.topic
        );
    }
    Ok(())
}

/// Runs the producer benchmark and prints its report.
pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    ensure_topic(client, &args.topic, args.partitions).await?;
    let producer = client
        .producer(args.producer.config())
        .context("cannot create the producer")?;
    let payload = Payload::new(args.record_size as usize);
    let plan = Plan {
        schedule: schedule(args.throughput),
        count: args.num_records,
        duration: args.duration,
        start: Instant::now(),
    };
    let counters = Arc::new(Counters::default());
    let progress = Progress::start("produce", counters.clone());
    let stop = stop_on_signal();
    let sent = send_loop(
        &producer,
        &args.topic,
        plan,
        move |i, _| payload.value(i),
        u64::from(args.record_size),
        counters,
        stop,
    )
    .await?;
    progress.finish().await;
    producer.close().await.ok();
    let report = Report::new(
        "produce",
        &args.topic,
        sent.acked,
        sent.failed,
        sent.acked * u64::from(args.record_size),
        sent.elapsed,
        sent.latencies.summary(),
    );
    finish(&report, args.json, &sent)
}
