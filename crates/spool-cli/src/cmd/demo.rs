//! `spool demo`: the seed's program. A producer sends a random integer (0..999) to a topic every
//! 500 ms; N consumer threads read them back and print them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use spool_broker::{BrokerConfig, EmbeddedBroker};
use spool_client::{
    Client, ClientConfig, ConsumerConfig, NewTopic, Offset, ProducerConfig, ProducerRecord,
    ResponseError,
};
use tokio::sync::{watch, Notify};

/// Flags of `spool demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Topic to send to and read from (created with one partition per thread if missing).
    topic: String,
    /// Number of consumer threads.
    #[arg(value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: u16,
    /// Use this broker instead of starting an embedded one.
    #[arg(short = 'b', long, value_name = "HOST:PORT")]
    bootstrap_server: Option<String>,
    /// Data directory of the embedded broker (default: a temporary directory).
    #[arg(long, conflicts_with = "bootstrap_server")]
    data_dir: Option<PathBuf>,
    /// Milliseconds between two sends.
    #[arg(long, default_value_t = 500)]
    interval_ms: u64,
    /// Stop after sending this many numbers (and receiving them back).
    #[arg(long)]
    count: Option<u64>,
}

/// Runs until Ctrl-C, SIGTERM, or --count numbers made the round trip.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let broker = match (&args.bootstrap_server, &args.data_dir) {
        (Some(_), _) => None,
        (None, None) => Some(
            EmbeddedBroker::start()
                .await
                .context("cannot start the embedded broker")?,
        ),
        (None, Some(dir)) => Some(
            EmbeddedBroker::start_with(BrokerConfig::new(dir), "127.0.0.1:0".parse()?)
                .await
                .with_context(|| {
                    format!("cannot start the embedded broker in {}", dir.display())
                })?,
        ),
    };
    let bootstrap = match (&broker, &args.bootstrap_server) {
        (Some(b), _) => b.bootstrap(),
        (None, Some(s)) => s.clone(),
        (None, None) => unreachable!("one of the two is set above"),
    };
    let outcome = demo(&bootstrap, &args).await;
    if let Some(broker) = broker {
        broker
            .shutdown()
            .await
            .context("embedded broker did not shut down cleanly")?;
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
    let partitions = client.topic(&args.topic).await?.partition_count();

    let (stop_tx, stop_rx) = watch::channel(false);
    let received = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());
    let mut workers = Vec::with_capacity(threads);
    for thread in 0..threads {
        // Static assignment: partition p goes to thread p mod N.
        let mine: Vec<(String, i32)> = (0..partitions)
            .filter(|p| *p as usize % threads == thread)
            .map(|p| (args.topic.clone(), p))
            .collect();
        // Each consumer fetches on connections of its own, so its long polls do not hold
        // back the producer sharing this client.
        let mut consumer = client.consumer(ConsumerConfig::default());
        consumer.assign(mine.clone());
        // Resolve the starting positions before the producer starts, so no number is missed.
        for (topic, p) in &mine {
            consumer.seek(topic, *p, Offset::Latest)?;
            consumer.position(topic, *p).await?;
        }
        println!("Starting thread {thread}");
        let mut stop = stop_rx.clone();
        let received = received.clone();
        let progress = progress.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let records = tokio::select! {
                    _ = stop.wait_for(|s| *s) => return Ok::<(), anyhow::Error>(()),
                    r = consumer.poll(Duration::from_millis(500)) => r?,
                };
                for r in records {
                    let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or(b""));
                    println!("Received on thread {thread}: {value}");
                    received.fetch_add(1, Ordering::SeqCst);
                    progress.notify_waiters();
                }
            }
        }));
    }

    let producer = client.producer(ProducerConfig::default())?;
    let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms.max(1)));
    let terminated = super::signal::terminated();
    tokio::pin!(terminated);
    let mut sent = 0u64;
    let mut failure = None;
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
        let delivery = producer
            .send(ProducerRecord::new(&args.topic, n.to_string()))
            .await;
        if let Err(e) = delivery {
            failure = Some(anyhow::Error::new(e).context("cannot send"));
            break;
        }
        sent += 1;
    }
    producer.close().await.ok();
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
    let _ = stop_tx.send(true);
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
