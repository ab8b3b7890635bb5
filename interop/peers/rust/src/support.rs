//! What every scenario needs: a client, topics that exist before they are used, deadlines,
//! and reading a known number of records back.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use spool_client::{Admin, Client, ClientConfig, ConsumerConfig, ConsumerRecord, NewTopic, Offset};
use tokio::time::Instant;

/// The whole scenario's limit (the pytest side kills the peer at 120 s).
pub const SCENARIO_LIMIT: Duration = Duration::from_secs(90);

/// How long any single wait (metadata, records, assignments) may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// Pause between two looks at a condition that has no event to await (metadata, assignments).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The broker address and the prefix of everything a scenario creates.
pub struct Ctx {
    pub bootstrap: String,
    pub prefix: String,
}

impl Ctx {
    pub fn new(bootstrap: &str, prefix: &str) -> Ctx {
        Ctx {
            bootstrap: bootstrap.to_string(),
            prefix: prefix.to_string(),
        }
    }

    /// `PREFIX-suffix`.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    pub async fn client(&self) -> Result<Client> {
        let mut config = ClientConfig::new(&self.bootstrap);
        config.client_id = "spool-interop-peer".to_string();
        Client::connect(config)
            .await
            .with_context(|| format!("connect to {}", self.bootstrap))
    }
}

/// A deadline for one wait, named for the error message.
pub struct Deadline {
    what: String,
    at: Instant,
}

impl Deadline {
    pub fn new(what: impl Into<String>) -> Deadline {
        Deadline {
            what: what.into(),
            at: Instant::now() + WAIT,
        }
    }

    /// Fails once the deadline passed; otherwise waits a little before the next look.
    pub async fn tick(&self, last_seen: impl std::fmt::Display) -> Result<()> {
        if Instant::now() >= self.at {
            bail!(
                "timed out after {WAIT:?} waiting for {}; last seen: {last_seen}",
                self.what
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        Ok(())
    }

    pub fn left(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// Creates a topic and waits until metadata shows all its partitions (Kafka's controller
/// answers CreateTopics before every broker knows the topic).
pub async fn create_topic(admin: &Admin, topic: NewTopic) -> Result<()> {
    let name = topic.name.clone();
    let partitions = topic.partitions;
    admin
        .create_topics(vec![topic])
        .await
        .with_context(|| format!("create topic {name}"))?;
    wait_for_partitions(admin, &name, partitions as usize).await
}

/// Waits until `describe_topics` shows `partitions` partitions of `name`, each with a leader.
pub async fn wait_for_partitions(admin: &Admin, name: &str, partitions: usize) -> Result<()> {
    let deadline = Deadline::new(format!("{name} to have {partitions} partitions"));
    loop {
        let seen = match admin.describe_topics(&[name]).await {
            Ok(d) if d.len() == 1 => {
                let ready = d[0].partitions.iter().filter(|p| p.leader >= 0).count();
                if d[0].partitions.len() == partitions && ready == partitions {
                    admin.client().invalidate(name);
                    return Ok(());
                }
                format!(
                    "{} partitions, {ready} with a leader",
                    d[0].partitions.len()
                )
            }
            Ok(d) => format!("{} descriptions", d.len()),
            Err(e) => e.to_string(),
        };
        deadline.tick(seen).await?;
    }
}

/// Reads `count` records from the given partitions of `topic`, each from `start`, with a
/// consumer outside any group.
pub async fn read(
    client: &Client,
    topic: &str,
    partitions: &[i32],
    start: Offset,
    count: usize,
) -> Result<Vec<ConsumerRecord>> {
    let mut consumer = client.consumer(ConsumerConfig::default());
    consumer.assign(partitions.iter().map(|p| (topic.to_string(), *p)).collect());
    for p in partitions {
        consumer.seek(topic, *p, start)?;
    }
    let deadline = Deadline::new(format!("{count} records of {topic}"));
    let mut out = Vec::new();
    while out.len() < count {
        if deadline.left().is_zero() {
            bail!(
                "timed out reading {topic}: {} of {count} records arrived",
                out.len()
            );
        }
        out.extend(
            consumer
                .poll(deadline.left().min(Duration::from_secs(1)))
                .await?,
        );
    }
    Ok(out)
}

/// `Some(bytes)` of a string, for comparing keys and values.
pub fn b(s: &str) -> Option<bytes::Bytes> {
    Some(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

/// A record as text for error messages.
pub fn show(r: &ConsumerRecord) -> String {
    let text = |v: &Option<bytes::Bytes>| match v {
        None => "null".to_string(),
        Some(v) => format!("{:?}", String::from_utf8_lossy(v)),
    };
    let headers: Vec<String> = r
        .headers
        .iter()
        .map(|(k, v)| format!("{k}={}", text(v)))
        .collect();
    format!(
        "{}-{}@{} key={} value={} headers=[{}]",
        r.topic,
        r.partition,
        r.offset,
        text(&r.key),
        text(&r.value),
        headers.join(",")
    )
}
