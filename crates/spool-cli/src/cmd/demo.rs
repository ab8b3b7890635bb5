//! `spool demo`: the seed's program. A producer sends a random integer (0..999) to a topic every
//! 500 ms; a high-level consumer in group `group1` reads them back with N threads, each driving
//! one stream of the group's partitions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use spool_broker::{BrokerConfig, EmbeddedBroker};
use spool_client::{
    AutoOffsetReset, Client, ClientConfig, GroupConfig, NewTopic, ProducerConfig, ProducerRecord,
    ResponseError,
};
use tokio::sync::Notify;

/// Flags of `spool demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Topic to send to and read from (created with one partition per thread if missing).
    topic: String,
    /// Number of consumer threads (streams of the group's partitions).
    #[arg(value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: u16,
    /// Use this broker instead of starting an embedded one.
    #[arg(short = 'b', long, value_name = "HOST:PORT")]
    bootstrap_server: Option<String>,
    /// Data directory of the embedded broker (default: a temporary directory).
    #[arg(long, conflicts_with = "bootstrap_server")]
    data_dir: Option<PathBuf>,
    /// Address of the embedded broker, so another demo can join with -b.
    #[arg(
        long,
        default_value = "127.0.0.1:0",
        conflicts_with = "bootstrap_server"
    )]
    listen: SocketAddr,
    /// Consumer group of the consumer threads.
    #[arg(short, long, default_value = "group1")]
    group: String,
    /// Milliseconds between two sends.
    #[arg(long, default_value_t = 500)]
    interval_ms: u64,
    /// Stop after sending this many numbers (and receiving them back).
    #[arg(long)]
    count: Option<u64>,
    /// Only consume: join the group and print what arrives, sending nothing.
    #[arg(long, conflicts_with = "count")]
    no_produce: bool,
}

/// Runs until Ctrl-C, SIGTERM, or --count numbers made the round trip.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let broker = match &args.bootstrap_server {
        Some(_) => None,
        None => {
            let config = match &args.data_dir {
                Some(dir) => BrokerConfig::new(dir),
                None => BrokerConfig::new(
                    tempfile::Builder::new()
                        .prefix("spool-demo-")
                        .tempdir()
                        .context("cannot create a temporary data directory")?
                        .keep(),
                ),
            };
            let temporary = args.data_dir.is_none().then(|| config.data_dir.clone());
            let mut config = config;
            // A demo should answer at once; Kafka's 3 s wait for more members suits clusters.
            config.group.initial_rebalance_delay_ms = 0;
            let broker = EmbeddedBroker::start_with(config, args.listen)
                .await
                .context("cannot start the embedded broker")?;
            eprintln!(
                "Embedded broker listening on {} (join with: spool demo {} {} -b {})",
                broker.bootstrap(),
                args.topic,
                args.threads,
                broker.bootstrap()
            );
            Some((broker, temporary))
        }
    };
    let bootstrap = match (&broker, &args.bootstrap_server) {
        (Some((b, _)), _) => b.bootstrap(),
        (None, Some(s)) => s.clone(),
        (None, None) => unreachable!("one of the two is set above"),
    };
    let outcome = demo(&bootstrap, &args).await;
    if let Some((broker, temporary)) = broker {
        broker
            .shutdown()
            .await
            .context("embedded broker did not shut down cleanly")?;
        if let Some(dir) = temporary {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    outcome
}

async fn demo(bootstrap: &str, args: &Args) -> anyhow::Result<()> {
    let client = Client::connect(ClientConfig::new(bootstrap))
        .await
        .with_context(|| format!("cannot reach the cluster at {bootstrap}"))?;
    let threads = args.threads as usize;
    match client
        .admin()
        .create_topics(vec![NewTopic::new(&args.topic, threads as i32, -1)])
        .await
    {
        Ok(()) => {}
        Err(e) if e.is(ResponseError::TopicAlreadyExists) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create topic {}", args.topic)),
    }

    // The seed's consumer: group1, offsets committed every second. A group without commits
    // starts at the beginning, so numbers sent before the first assignment are not missed.
    let mut config = GroupConfig::new(&args.group).auto_offset_reset(AutoOffsetReset::Earliest);
    config.auto_commit_interval = Duration::from_secs(1);
    config.session_timeout = Duration::from_secs(10);
    let mut consumer = client
        .group_consumer(config)
        .context("cannot create the group consumer")?;
    consumer.subscribe([args.topic.clone()]);
    let streams = consumer.streams(threads);
    let group = streams[0].group().clone();

    let received = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());
    let mut workers = Vec::with_capacity(threads);
    for mut stream in streams {
        let thread = stream.index();
        println!("Starting thread {thread}");
        let received = received.clone();
        let progress = progress.clone();
        workers.push(tokio::spawn(async move {
            while let Some(batch) = stream.next_batch().await {
                for r in batch? {
                    let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or(b""));
                    println!("Received on thread {thread}: {value}");
                    received.fetch_add(1, Ordering::SeqCst);
                    progress.notify_waiters();
                }
            }
            Ok::<(), anyhow::Error>(())
        }));
    }

    let terminated = super::signal::terminated();
    tokio::pin!(terminated);
    let mut failure = None;
    let mut sent = 0u64;
    if args.no_produce {
        (&mut terminated).await;
    } else {
        let producer = client.producer(ProducerConfig::default())?;
        let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms.max(1)));
        loop {
            if args.count.is_some_and(|c| sent >= c) {
                break;
            }
            tokio::select! {
                _ = &mut terminated => break,
                _ = tick.tick() => {}
            }
            let n: u32 = rand::thread_rng().gen_range(0..1000);
            println!("Sending to Kafka topic {}: {n}", args.topic);
            let record = ProducerRecord::new(&args.topic, n.to_string());
            if let Err(e) = producer.send(record).await {
                failure = Some(anyhow::Error::new(e).context("cannot send"));
                break;
            }
            sent += 1;
        }
        producer.close().await.ok();
    }
    if failure.is_none() && args.count.is_some() {
        // Let the last numbers arrive (bounded, so a lost record fails instead of hanging).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            // Register before checking, so a record arriving in between still wakes us.
            let wait = progress.notified();
            if received.load(Ordering::SeqCst) >= sent {
                break;
            }
            tokio::select! {
                _ = wait => {}
                _ = tokio::time::sleep_until(deadline) => break,
                _ = &mut terminated => break,
            }
        }
        let got = received.load(Ordering::SeqCst);
        if got < sent {
            failure = Some(anyhow::anyhow!(
                "sent {sent} numbers but received only {got}"
            ));
        }
    }
    // Leaving the group commits what was consumed and hands the partitions to the others.
    if let Err(e) = group.close().await {
        failure.get_or_insert(anyhow::Error::new(e).context("cannot leave the group"));
    }
    for (thread, worker) in workers.into_iter().enumerate() {
        let result = worker.await;
        println!("Stopping thread {thread}");
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure.get_or_insert(e.context(format!("consumer thread {thread} failed")));
            }
            Err(e) => {
                failure.get_or_insert(anyhow::anyhow!("consumer thread {thread} panicked: {e}"));
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
