//! `spool bench`: load generators in the spirit of Kafka's `kafka-producer-perf-test` and
//! `kafka-consumer-perf-test`, plus an end-to-end latency test.
//!
//! ```text
//! produce: send loop (Schedule: due times, or as fast as possible)
//!            -> Producer::send -> (due or send time, DeliveryFuture) -> collector task
//!                                                                       ack time - that time -> Latencies
//! consume: Consumer (assigned, from the earliest offsets) -> poll -> counts
//! e2e:     send loop (first 8 bytes of each value: due time) ... Consumer -> now - due -> Latencies
//! progress task: counters -> one line on stderr (1 s on a terminal, else 5 s)
//! ```

mod acks;
mod consume;
mod e2e;
mod produce;
mod progress;
mod rate;
mod report;
mod timer;

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use rand::Rng;
use spool_client::{Acks, Client, Compression, NewTopic, ProducerConfig, ResponseError};

use super::common::Connect;
use super::produce::{parse_acks, parse_compression};

/// Flags of `spool bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Bench,
    #[command(flatten)]
    connect: Connect,
    /// Worker threads of the client's async runtime. The client's background tasks (the
    /// producer's sender, the readers) run on these; so does the benchmark's own loop at a
    /// constant rate (e2e, produce --throughput), which at full speed runs on the main thread.
    /// One measured fastest on a 2-core machine shared with the broker (see BENCHMARKS.md).
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
}

#[derive(Debug, clap::Subcommand)]
enum Bench {
    /// Produce records of a fixed size, as fast as possible or at a constant rate, and report
    /// throughput and acknowledgement latency.
    ///
    /// Latency is measured per record up to its acknowledgement. At a constant rate
    /// (--throughput R) it is measured from the time the record was *due* by the schedule
    /// (start + i/R), not from when it was actually handed to the producer: when the producer
    /// or broker stalls, the records that should have gone out meanwhile are sent late and
    /// their latency includes the wait, so the stall shows in the percentiles instead of being
    /// hidden (coordinated omission). At full speed (--throughput -1) there is no schedule and
    /// latency is measured from the send call.
    Produce(produce::Args),
    /// Read a topic from the earliest offset of every partition (no consumer group) and report
    /// throughput.
    Consume(consume::Args),
    /// Produce at a constant rate while consuming the same topic, and report end-to-end
    /// latency: the time a record is read minus the time it was due to be sent (carried in the
    /// first 8 bytes of its value).
    E2e(e2e::Args),
}

/// Runs one benchmark.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = args.connect.client().await?;
    // At full speed the send loop on the main thread and the client's tasks on a worker run in
    // parallel. At a constant rate everything runs on the worker(s) instead: with one worker
    // (the default), the paced send, the sender, the acknowledgement and (e2e) the consumer of
    // a record then meet on one thread, with no wake-up of another thread between them, whose
    // cost (tens of microseconds on a busy 2-core machine) would count as latency.
    match args.command {
        Bench::Produce(a) if a.throughput > 0.0 => {
            on_worker(async move { produce::run(&client, a).await }).await
        }
        Bench::Produce(a) => produce::run(&client, a).await,
        Bench::Consume(a) => consume::run(&client, a).await,
        Bench::E2e(a) => on_worker(async move { e2e::run(&client, a).await }).await,
    }
}

/// Runs `f` as a task of the runtime (on a worker thread) and waits for it.
async fn on_worker(
    f: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
) -> anyhow::Result<()> {
    tokio::spawn(f)
        .await
        .context("the benchmark's task failed")?
}

/// Producer settings shared by `produce` and `e2e`.
#[derive(Debug, Clone, clap::Args)]
struct ProducerFlags {
    /// Acknowledgements: all, 1 or 0 (idempotence is on with all).
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: Acks,
    /// Compression: none, gzip, snappy, lz4, zstd.
    #[arg(short = 'z', long, default_value = "none", value_parser = parse_compression)]
    compression: Compression,
    /// Bytes per partition batch (batch.size).
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Bytes a partition's batch may grow to while it waits behind a full in-flight window
    /// (Spool's client only; --batch-size or less gives the Java client's batches).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..))]
    backlog_batch_size: u32,
    /// How long a batch waits for more records, in ms (linger.ms).
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
}

impl ProducerFlags {
    fn config(&self) -> ProducerConfig {
        ProducerConfig {
            acks: self.acks,
            enable_idempotence: Some(self.acks == Acks::All),
            compression: self.compression,
            batch_size: self.batch_size as usize,
            backlog_batch_size: self.backlog_batch_size as usize,
            linger: Duration::from_millis(self.linger_ms),
            ..ProducerConfig::default()
        }
    }
}

/// `--throughput`: records per second, or -1 for as fast as possible.
fn parse_throughput(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of records per second"))?;
    if r == -1.0 || (r.is_finite() && r > 0.0) {
        Ok(r)
    } else {
        Err(format!(
            "{s:?}: the rate must be positive, or -1 for no limit"
        ))
    }
}

/// The schedule for a `--throughput` value; `None` (as fast as possible) for -1.
fn schedule(throughput: f64) -> Option<rate::Schedule> {
    (throughput > 0.0).then(|| rate::Schedule::new(throughput))
}

/// A duration in seconds (fractions allowed), positive.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if secs.is_finite() && secs > 0.0 && secs < 1e9 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("{s:?}: the duration must be positive"))
    }
}

/// Creates the topic with `partitions` unless it exists (then says so if its count differs);
/// without `partitions`, lets the broker auto-create it as `spool produce` does.
async fn ensure_topic(client: &Client, topic: &str, partitions: Option<i32>) -> anyhow::Result<()> {
    if let Some(n) = partitions {
        match client
            .admin()
            .create_topics(vec![NewTopic::new(topic, n, 1)])
            .await
        {
            Ok(()) => {}
            Err(e) if e.is(ResponseError::TopicAlreadyExists) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("cannot create topic {topic:?}")))
            }
        }
    }
    let info = client
        .topic_with(topic, true)
        .await
        .with_context(|| format!("topic {topic:?} is not available"))?;
    if let Some(n) = partitions {
        if info.partition_count() != n {
            eprintln!(
                "note: topic {topic:?} already exists with {} partitions",
                info.partition_count()
            );
        }
    }
    Ok(())
}

/// Record values: random letters (like Kafka's perf test) generated once; each record is a
/// slice of them at a shifting offset, so values differ without a copy per record.
#[derive(Debug, Clone)]
struct Payload {
    pool: Bytes,
    size: usize,
}

/// How far the slices' start moves across the pool.
const PAYLOAD_SPREAD: usize = 4096;

impl Payload {
    fn new(size: usize) -> Payload {
        let mut rng = rand::thread_rng();
        let pool: Vec<u8> = (0..size + PAYLOAD_SPREAD)
            .map(|_| rng.gen_range(b'A'..=b'Z'))
            .collect();
        Payload {
            pool: Bytes::from(pool),
            size,
        }
    }

    /// The value of record `i`: `size` bytes.
    fn value(&self, i: u64) -> Bytes {
        let start = (i.wrapping_mul(7919) % (PAYLOAD_SPREAD as u64 + 1)) as usize;
        self.pool.slice(start..start + self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(flags: &[&str]) -> Result<Args, String> {
        Cli::try_parse_from(["bench"].iter().chain(flags))
            .map(|c| c.args)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn throughput_is_positive_or_minus_one() {
        assert_eq!(parse_throughput("-1"), Ok(-1.0));
        assert_eq!(schedule(-1.0), None);
        assert_eq!(parse_throughput("1000"), Ok(1000.0));
        assert_eq!(schedule(1000.0), Some(rate::Schedule::new(1000.0)));
        assert_eq!(parse_throughput("0.5"), Ok(0.5));
        for bad in ["0", "-2", "abc", "inf", "NaN", ""] {
            assert!(parse_throughput(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_are_positive_seconds() {
        assert_eq!(parse_secs("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["0", "-1", "x", "inf"] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn produce_needs_a_size_and_exactly_one_of_count_and_duration() {
        let a = parse(&[
            "produce",
            "--topic",
            "t",
            "--record-size",
            "100",
            "--num-records",
            "10",
            "--acks",
            "1",
            "-z",
            "lz4",
            "--batch-size",
            "1000",
            "--linger-ms",
            "0",
            "-b",
            "h:1",
        ])
        .unwrap();
        assert_eq!(a.connect.bootstrap, "h:1");
        let Bench::Produce(p) = a.command else {
            panic!("not produce")
        };
        let c = p.producer.config();
        assert_eq!(c.acks, Acks::Leader);
        assert_eq!(c.enable_idempotence, Some(false));
        assert_eq!(c.compression, Compression::Lz4);
        assert_eq!((c.batch_size, c.linger), (1000, Duration::ZERO));
        assert_eq!(p.throughput, -1.0, "as fast as possible by default");

        let base = ["produce", "--topic", "t", "--record-size", "100"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        assert!(with(&[]).is_err(), "neither count nor duration");
        assert!(with(&["--num-records", "5", "--duration", "1"]).is_err());
        assert!(with(&["--duration", "1", "--throughput", "0"]).is_err());
        assert!(with(&["--num-records", "0"]).is_err());
        assert!(with(&["--duration", "1", "--acks", "2"]).is_err());
        assert!(with(&["--duration", "1", "--batch-size", "0"]).is_err());
        assert!(parse(&[
            "produce",
            "--topic",
            "t",
            "--record-size",
            "0",
            "--num-records",
            "1"
        ])
        .is_err());
        assert!(parse(&["produce", "--topic", "t", "--num-records", "1"]).is_err());
        assert!(with(&["--duration", "1", "--partitions", "0"]).is_err());
        assert!(with(&[
            "--duration",
            "2.5",
            "--throughput",
            "100",
            "--partitions",
            "6"
        ])
        .is_ok());
    }

    #[test]
    fn client_threads_default_to_one_and_are_at_least_one() {
        let base = ["consume", "--topic", "t"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        assert_eq!(with(&[]).unwrap().threads, 1);
        assert_eq!(with(&["--threads", "4"]).unwrap().threads, 4);
        assert!(with(&["--threads", "0"]).is_err());
    }

    #[test]
    fn e2e_needs_a_rate_and_room_for_the_timestamp() {
        let base = ["e2e", "--topic", "t", "--duration", "1"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        assert!(with(&["--record-size", "8", "--throughput", "10"]).is_ok());
        assert!(with(&["--record-size", "7", "--throughput", "10"]).is_err());
        assert!(with(&["--record-size", "100", "--throughput", "-1"]).is_err());
        assert!(with(&["--record-size", "100"]).is_err());
    }

    #[test]
    fn consume_takes_a_count_or_a_duration_or_neither() {
        assert!(parse(&["consume", "--topic", "t"]).is_ok());
        assert!(parse(&["consume", "--topic", "t", "--num-records", "5"]).is_ok());
        assert!(parse(&["consume", "--topic", "t", "--duration", "5"]).is_ok());
        assert!(parse(&[
            "consume",
            "--topic",
            "t",
            "--num-records",
            "5",
            "--duration",
            "5"
        ])
        .is_err());
    }

    #[test]
    fn payloads_have_the_size_asked_and_differ_between_records() {
        let p = Payload::new(100);
        let a = p.value(0);
        let b = p.value(1);
        assert_eq!((a.len(), b.len()), (100, 100));
        assert_ne!(a, b);
        assert!(a.iter().all(u8::is_ascii_uppercase));
        for i in [2, 1000, u64::MAX] {
            assert_eq!(p.value(i).len(), 100);
        }
        assert_eq!(Payload::new(1).value(5).len(), 1);
    }
}
