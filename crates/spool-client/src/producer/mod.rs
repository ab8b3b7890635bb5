//! The producer: partitions records, batches them per partition and sends them in the
//! background, idempotently by default.
//!
//! ```text
//! send(record) -> partitioner -> accumulator (per-partition batches, linger, batch.size)
//!                                    | ready batches, grouped by leader broker
//!                                    v
//!                 sender task -> Produce request per broker (up to max.in.flight per broker,
//!                                one batch per partition) -> response -> delivery futures
//!                                    '-> retry with backoff / metadata refresh / epoch bump
//! ```

mod accumulator;
mod delivery;
mod idempotence;
mod sender;

use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
#[cfg(test)]
use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;
use spool_protocol::records::BatchBuilder;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::cluster::{Client, TopicInfo};
use crate::config::ProducerConfig;
use crate::error::{Error, Result};
use crate::partitioner::{partition_for_key, Sticky};
use accumulator::{Accumulator, Append};
pub use delivery::DeliveryFuture;
use idempotence::ProducerIdState;

/// A record to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Topic.
    pub topic: String,
    /// Explicit partition; `None` lets the partitioner choose (by key, else sticky).
    pub partition: Option<i32>,
    /// Key; records with equal keys go to the same partition.
    pub key: Option<Bytes>,
    /// Value; `None` is a tombstone on compacted topics.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Create time in ms since the epoch; `None` means now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value and nothing else.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets an explicit partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((key.into(), Some(value.into())));
        self
    }

    /// Sets the timestamp (ms since the epoch).
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset, or -1 with `acks=0`.
    pub offset: i64,
    /// The record's timestamp: its create time, or the broker's log-append time when the topic
    /// uses `LogAppendTime`.
    pub timestamp: i64,
}

/// State shared by the producer handles, the sender task and its request tasks.
pub(crate) struct Shared {
    client: Client,
    config: ProducerConfig,
    idempotent: AtomicBool,
    acc: Mutex<Accumulator>,
    pid: Mutex<ProducerIdState>,
    /// Wakes the sender: new batch, flush, close, a request finished, metadata arrived.
    wake: Notify,
    /// Bumped whenever batches complete; flush waits on it.
    completions: watch::Sender<u64>,
    memory: Arc<Semaphore>,
    /// Set when the producer can no longer work (e.g. it may not obtain a producer id).
    fatal: Mutex<Option<Error>>,
    /// True once `fatal` is set: a load per record instead of a lock.
    has_fatal: AtomicBool,
    /// True once the producer is closing (the accumulator has the authoritative flag; this is
    /// the per-record early check, without its lock).
    closing: AtomicBool,
    /// Produce requests outstanding per broker.
    in_flight: Mutex<HashMap<i32, usize>>,
    /// The order produce requests are written in, per broker.
    write_order: sender::WriteOrder,
    /// Per topic sent to: its interned name (shared by batches and results), the metadata
    /// last looked up, valid while the client's metadata generation is unchanged, and the
    /// sticky partition for keyless records.
    topics: Mutex<FxHashMap<Box<str>, TopicEntry>>,
}

/// What the producer keeps per topic, so that a record costs one map lookup.
struct TopicEntry {
    name: Arc<str>,
    info: Option<Arc<TopicInfo>>,
    /// [`Client::metadata_generation`] when `info` was looked up.
    generation: u64,
    sticky: Sticky,
}

impl TopicEntry {
    /// A topic not looked up yet.
    fn new(topic: &str) -> TopicEntry {
        TopicEntry {
            name: Arc::from(topic),
            info: None,
            generation: u64::MAX,
            sticky: Sticky::default(),
        }
    }
}

/// What [`Shared::topic`] returns for one record.
struct TopicLookup {
    name: Arc<str>,
    /// The cached metadata if fresh.
    info: Option<Arc<TopicInfo>>,
    /// The sticky partition if one is chosen and within the partition count of `info`.
    sticky: Option<i32>,
}

impl Shared {
    fn idempotent(&self) -> bool {
        self.idempotent.load(Ordering::Relaxed)
    }

    /// The topic's interned name, its sticky partition and, when fresh at `now`, its cached
    /// metadata (what [`Client::cached_topic`] says, looked up again only after the client's
    /// metadata changed).
    fn topic(&self, topic: &str, now: Instant) -> TopicLookup {
        let generation = self.client.metadata_generation();
        let mut topics = self.topics.lock().unwrap();
        let entry = match topics.get_mut(topic) {
            Some(e) => e,
            None => topics
                .entry(topic.into())
                .or_insert_with(|| TopicEntry::new(topic)),
        };
        if entry.generation != generation {
            entry.info = self.client.cached_topic_at(topic, now);
            entry.generation = generation;
        }
        let max_age = self.client.config().metadata_max_age;
        let info = entry
            .info
            .as_ref()
            .filter(|t| now.saturating_duration_since(t.fetched_at) < max_age)
            .cloned();
        let sticky = info
            .as_ref()
            .and_then(|t| entry.sticky.current(t.partition_count()));
        TopicLookup {
            name: entry.name.clone(),
            info,
            sticky,
        }
    }

    /// Runs `f` on the topic's sticky partition state (the topic has been looked up before).
    fn with_sticky<R>(&self, topic: &str, f: impl FnOnce(&mut Sticky) -> R) -> R {
        let mut topics = self.topics.lock().unwrap();
        if let Some(entry) = topics.get_mut(topic) {
            return f(&mut entry.sticky);
        }
        let entry = topics
            .entry(topic.into())
            .or_insert_with(|| TopicEntry::new(topic));
        f(&mut entry.sticky)
    }

    /// Stops accepting records; the sender sends what is queued and exits.
    fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.acc.lock().unwrap().close();
        self.wake.notify_one();
    }

    /// Makes the producer unusable: records queued and sent later fail with `e`.
    fn set_fatal(&self, e: Error) {
        *self.fatal.lock().unwrap() = Some(e);
        self.has_fatal.store(true, Ordering::Release);
    }
}

struct Handle {
    shared: Arc<Shared>,
    sender: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The sender finishes what is queued (delivery futures may still be awaited), then exits.
        self.shared.close();
    }
}

/// A Kafka producer. Cheap to clone; clones share batches and the background sender.
///
/// ```no_run
/// # async fn demo() -> spool_client::Result<()> {
/// use spool_client::{Client, ClientConfig, ProducerConfig, ProducerRecord};
/// let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let producer = client.producer(ProducerConfig::default())?;
/// let delivery = producer.send(ProducerRecord::new("orders", "hello").key("k1")).await?;
/// let meta = delivery.await?;
/// println!("written to {}-{} at offset {}", meta.topic, meta.partition, meta.offset);
/// producer.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("idempotent", &self.handle.shared.idempotent())
            .finish()
    }
}

impl Producer {
    /// Starts a producer on `client`; spawns its sender task (needs a Tokio runtime).
    pub fn new(client: Client, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let idempotent = config.idempotence()?;
        let memory = Arc::new(Semaphore::new(
            config.buffer_memory.min(Semaphore::MAX_PERMITS),
        ));
        let shared = Arc::new(Shared {
            acc: Mutex::new({
                let mut acc = Accumulator::new(
                    config.batch_size,
                    config.linger,
                    config.delivery_timeout,
                    memory.clone(),
                );
                acc.set_backlog_batch_size(config.backlog_batch_size.min(config.max_request_size));
                acc
            }),
            memory,
            client,
            idempotent: AtomicBool::new(idempotent),
            pid: Mutex::new(ProducerIdState::new()),
            wake: Notify::new(),
            completions: watch::channel(0).0,
            fatal: Mutex::new(None),
            has_fatal: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            in_flight: Mutex::new(HashMap::new()),
            topics: Mutex::new(FxHashMap::default()),
            write_order: sender::WriteOrder::default(),
            config,
        });
        let sender = tokio::spawn(sender::run(shared.clone()));
        Ok(Producer {
            handle: Arc::new(Handle {
                shared,
                sender: Mutex::new(Some(sender)),
            }),
        })
    }

    /// The producer's configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.handle.shared.config
    }

    /// Queues a record and returns a future for its delivery.
    ///
    /// Waits (up to `max_block`) for the topic's metadata and for buffer space; errors here mean
    /// the record was not queued. The record is sent once its batch is ready (`linger`,
    /// `batch_size`, [`Producer::flush`]).
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let s = &self.handle.shared;
        if s.has_fatal.load(Ordering::Acquire) {
            if let Some(e) = s.fatal.lock().unwrap().clone() {
                return Err(e);
            }
        }
        if s.closing.load(Ordering::Acquire) {
            return Err(Error::Closed("producer"));
        }
        let headers: Vec<(&str, Option<&[u8]>)> = record
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        let key = record.key.as_deref();
        let value = record.value.as_deref();
        let size = BatchBuilder::estimate_single(key, value, &headers);
        let max = s
            .config
            .max_request_size
            .min(s.config.buffer_memory)
            .min(u32::MAX as usize);
        if size > max {
            return Err(Error::RecordTooLarge { size, max });
        }
        // One clock read serves the deadline, the metadata's freshness, the batch's creation
        // time and the record's timestamp (the accumulator's `WallClock`); the fast paths below
        // (cached metadata, free buffer memory) skip the timers their slow paths need.
        let mut now = Instant::now();
        let deadline = now + s.config.max_block;
        let TopicLookup { name, info, sticky } = s.topic(&record.topic, now);
        let topic = match info {
            Some(t) if t.partition_count() > 0 => t,
            _ => {
                let t = self.wait_for_topic(&record.topic, deadline).await?;
                now = Instant::now();
                t
            }
        };
        let count = topic.partition_count();
        let partition = match (record.partition, key) {
            (Some(p), _) => {
                if p < 0 || p >= count {
                    return Err(Error::Kafka {
                        error: ResponseError::UnknownTopicOrPartition,
                        message: Some(format!("partition {p} is not in [0, {count})")),
                        context: format!("send to {}", record.topic),
                    });
                }
                p
            }
            (None, Some(k)) => partition_for_key(k, count),
            (None, None) => sticky.unwrap_or_else(|| {
                s.with_sticky(&record.topic, |st| {
                    st.partition(count, &topic.available_partitions())
                })
            }),
        };
        let permit = match s.memory.try_acquire_many(size as u32) {
            Ok(p) => p,
            Err(_) => {
                match tokio::time::timeout_at(deadline.into(), s.memory.acquire_many(size as u32))
                    .await
                {
                    Ok(Ok(p)) => {
                        now = Instant::now();
                        p
                    }
                    Ok(Err(_)) => return Err(Error::Closed("producer")),
                    Err(_) => {
                        return Err(Error::Timeout {
                            what: "waiting for buffer memory".into(),
                            after: s.config.max_block,
                        })
                    }
                }
            }
        };
        let mut abort_on_new_batch = record.partition.is_none() && key.is_none();
        let mut permit = Some(permit);
        let mut tp = (name, partition);
        loop {
            let outcome = {
                let mut acc = s.acc.lock().unwrap();
                if acc.is_closing() {
                    return Err(Error::Closed("producer"));
                }
                acc.append(
                    &tp,
                    record.timestamp,
                    key,
                    value,
                    &headers,
                    permit.take().expect("permit present"),
                    abort_on_new_batch,
                    now,
                )
            };
            match outcome {
                Append::Appended {
                    delivery,
                    new_batch,
                } => {
                    if new_batch {
                        s.wake.notify_one();
                    }
                    return Ok(delivery);
                }
                Append::WouldStartBatch(p) => {
                    // Keyless records move to another partition when a batch completes.
                    permit = Some(p);
                    abort_on_new_batch = false;
                    tp.1 = s.with_sticky(&record.topic, |st| {
                        st.on_new_batch(count, &topic.available_partitions(), tp.1)
                    });
                }
            }
        }
    }

    /// Waits until the topic's metadata lists partitions, retrying retriable errors (a topic
    /// being auto-created answers LEADER_NOT_AVAILABLE or UNKNOWN_TOPIC_OR_PARTITION at first).
    async fn wait_for_topic(&self, name: &str, deadline: Instant) -> Result<Arc<TopicInfo>> {
        let s = &self.handle.shared;
        let mut attempt = 0;
        let timeout = || Error::Timeout {
            what: format!("metadata for topic {name}"),
            after: s.config.max_block,
        };
        loop {
            match tokio::time::timeout_at(deadline.into(), s.client.topic_with(name, true)).await {
                Ok(Ok(t)) if t.partition_count() > 0 => return Ok(t),
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.is_retriable() => {
                    tracing::debug!(topic = name, error = %e, "waiting for topic metadata");
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(timeout()),
            }
            attempt += 1;
            s.client.invalidate(name);
            let pause = s.client.config().backoff(attempt);
            if Instant::now() + pause >= deadline {
                return Err(timeout());
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Sends everything queued now, without waiting for `linger`, and waits until it is
    /// acknowledged or failed (failures are reported through the delivery futures).
    pub async fn flush(&self) -> Result<()> {
        let s = &self.handle.shared;
        let mut changes = s.completions.subscribe();
        let upto = s.acc.lock().unwrap().begin_flush();
        s.wake.notify_one();
        loop {
            if s.acc.lock().unwrap().flushed(upto) {
                return Ok(());
            }
            if changes.changed().await.is_err() {
                return Err(Error::Closed("producer"));
            }
        }
    }

    /// Stops accepting records, sends everything queued and waits for the sender to finish.
    /// Other clones of this producer are closed too.
    pub async fn close(&self) -> Result<()> {
        let s = &self.handle.shared;
        s.close();
        let sender = self.handle.sender.lock().unwrap().take();
        match sender {
            Some(task) => {
                let _ = task.await;
            }
            None => {
                // Another clone is closing: wait for the queue to drain.
                let mut changes = s.completions.subscribe();
                while !s.acc.lock().unwrap().is_empty() {
                    if changes.changed().await.is_err() {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits for delivery of one record: [`Producer::send`] then the delivery future.
    pub async fn send_and_wait(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        self.send(record).await?.await
    }
}

impl Client {
    /// A producer using this client's connections. See [`Producer::new`].
    pub fn producer(&self, config: ProducerConfig) -> Result<Producer> {
        Producer::new(self.clone(), config)
    }
}

/// How long to wait at most when nothing is scheduled (a safety net; every state change wakes
/// the sender explicitly).
const IDLE_WAKE: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Acks, ClientConfig, Compression};
    use crate::testing::MiniBroker;

    async fn setup(topics: &[(&str, i32)], config: ProducerConfig) -> (MiniBroker, Producer) {
        let broker = MiniBroker::start(topics).await;
        let client = Client::connect(ClientConfig::new(&broker.addr))
            .await
            .unwrap();
        let producer = client.producer(config).unwrap();
        (broker, producer)
    }

    #[tokio::test]
    async fn keyed_records_land_on_java_partitions_in_order() {
        let (broker, producer) = setup(&[("t", 3)], ProducerConfig::default()).await;
        let mut futures = Vec::new();
        for i in 0..30 {
            let key = format!("key-{}", i % 5);
            let rec = ProducerRecord::new("t", format!("v{i}")).key(key.clone());
            futures.push((key, producer.send(rec).await.unwrap()));
        }
        let mut last: HashMap<i32, i64> = HashMap::new();
        for (key, f) in futures {
            let m = f.await.unwrap();
            assert_eq!(m.partition, partition_for_key(key.as_bytes(), 3));
            let prev = last.insert(m.partition, m.offset);
            assert!(
                prev.is_none_or(|p| p + 1 == m.offset),
                "offsets consecutive per partition"
            );
        }
        let total: usize = (0..3).map(|p| broker.record_values("t", p).len()).sum();
        assert_eq!(total, 30);
        // The broker saw an idempotent producer: InitProducerId happened, sequences checked.
        assert!(broker.state.lock().unwrap().produce_requests >= 1);
        producer.close().await.unwrap();
    }

    #[tokio::test]
    async fn retriable_errors_are_retried_without_duplicates() {
        let (broker, producer) = setup(&[("t", 1)], ProducerConfig::default()).await;
        broker.state.lock().unwrap().produce_faults.extend([6, 7]);
        let m = producer
            .send_and_wait(ProducerRecord::new("t", "a"))
            .await
            .unwrap();
        assert_eq!(m.offset, 0);
        let m = producer
            .send_and_wait(ProducerRecord::new("t", "b"))
            .await
            .unwrap();
        assert_eq!(m.offset, 1);
        assert_eq!(broker.record_values("t", 0).len(), 2);
        assert!(broker.state.lock().unwrap().produce_requests >= 4);
    }

    #[tokio::test]
    async fn out_of_order_sequence_bumps_the_epoch_and_recovers() {
        let (broker, producer) = setup(&[("t", 1)], ProducerConfig::default()).await;
        producer
            .send_and_wait(ProducerRecord::new("t", "a"))
            .await
            .unwrap();
        broker.state.lock().unwrap().produce_faults.push_back(45);
        let m = producer
            .send_and_wait(ProducerRecord::new("t", "b"))
            .await
            .unwrap();
        assert_eq!(m.offset, 1);
        let (epoch, _) = {
            let pid = producer.handle.shared.pid.lock().unwrap();
            (pid.id_and_epoch().1, ())
        };
        assert_eq!(epoch, 1, "epoch bumped once");
        // New sequences start at 0 under the new epoch and keep flowing.
        let m = producer
            .send_and_wait(ProducerRecord::new("t", "c"))
            .await
            .unwrap();
        assert_eq!(m.offset, 2);
    }

    #[tokio::test]
    async fn fatal_errors_fail_the_records() {
        let (broker, producer) = setup(&[("t", 1)], ProducerConfig::default()).await;
        broker.state.lock().unwrap().produce_faults.push_back(10);
        let err = producer
            .send_and_wait(ProducerRecord::new("t", "a"))
            .await
            .unwrap_err();
        assert!(err.is(ResponseError::MessageTooLarge), "{err}");
        // The producer keeps working afterwards (epoch bumped, sequences restart).
        let m = producer
            .send_and_wait(ProducerRecord::new("t", "b"))
            .await
            .unwrap();
        assert_eq!(m.offset, 0);
    }

    #[tokio::test]
    async fn flush_sends_without_waiting_for_linger() {
        let config = ProducerConfig {
            linger: Duration::from_secs(3600),
            ..Default::default()
        };
        let (broker, producer) = setup(&[("t", 2)], config).await;
        let mut fs = Vec::new();
        for i in 0..10 {
            fs.push(
                producer
                    .send(ProducerRecord::new("t", format!("{i}")).partition(i % 2))
                    .await
                    .unwrap(),
            );
        }
        tokio::time::timeout(Duration::from_secs(5), producer.flush())
            .await
            .expect("flush finished")
            .unwrap();
        for f in fs {
            f.await.unwrap();
        }
        assert_eq!(
            broker.record_values("t", 0).len() + broker.record_values("t", 1).len(),
            10
        );
    }

    #[tokio::test]
    async fn every_codec_round_trips_through_the_broker() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let config = ProducerConfig {
                compression: codec,
                ..Default::default()
            };
            let (broker, producer) = setup(&[("t", 1)], config).await;
            let mut deliveries = Vec::new();
            for i in 0..20 {
                deliveries.push(
                    producer
                        .send(ProducerRecord::new("t", format!("value-{i}")))
                        .await
                        .unwrap(),
                );
            }
            producer.flush().await.unwrap();
            for d in deliveries {
                d.await.unwrap();
            }
            let values = broker.record_values("t", 0);
            assert_eq!(values.len(), 20, "{codec:?}");
            assert_eq!(values[7].1.as_deref(), Some(&b"value-7"[..]));
        }
    }

    #[tokio::test]
    async fn acks_zero_completes_without_offsets() {
        let config = ProducerConfig {
            acks: Acks::None,
            ..Default::default()
        };
        let (broker, producer) = setup(&[("t", 1)], config).await;
        let m = producer
            .send_and_wait(ProducerRecord::new("t", "a"))
            .await
            .unwrap();
        assert_eq!(m.offset, -1);
        producer.close().await.unwrap();
        // The broker got it even though it never answered.
        for _ in 0..50 {
            if broker.record_values("t", 0).len() == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("record never arrived");
    }

    #[tokio::test]
    async fn keyless_records_stick_to_a_partition_per_batch() {
        let config = ProducerConfig {
            batch_size: 200,
            linger: Duration::from_millis(50),
            ..Default::default()
        };
        let (broker, producer) = setup(&[("t", 4)], config).await;
        let mut fs = Vec::new();
        for i in 0..40 {
            fs.push(
                producer
                    .send(ProducerRecord::new("t", format!("value-{i:04}")))
                    .await
                    .unwrap(),
            );
        }
        let mut partitions = Vec::new();
        for f in fs {
            partitions.push(f.await.unwrap().partition);
        }
        // Consecutive records share partitions in runs (batches), not round-robin.
        let switches = partitions.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(switches < 20, "{partitions:?}");
        let total: usize = (0..4).map(|p| broker.record_values("t", p).len()).sum();
        assert_eq!(total, 40);
    }

    #[tokio::test]
    async fn produce_v12_uses_names_and_v13_uses_ids() {
        for max in [12i16, 13] {
            let broker = MiniBroker::start(&[("t", 1)]).await;
            broker
                .state
                .lock()
                .unwrap()
                .max_versions
                .insert(ApiKey::Produce as i16, max);
            let client = Client::connect(ClientConfig::new(&broker.addr))
                .await
                .unwrap();
            let producer = client.producer(ProducerConfig::default()).unwrap();
            let m = producer
                .send_and_wait(ProducerRecord::new("t", "x"))
                .await
                .unwrap();
            assert_eq!((m.topic.as_ref(), m.offset), ("t", 0), "v{max}");
        }
    }

    #[tokio::test]
    async fn oversized_records_and_bad_partitions_are_refused() {
        let config = ProducerConfig {
            max_request_size: 1000,
            ..Default::default()
        };
        let (_broker, producer) = setup(&[("t", 2)], config).await;
        let err = producer
            .send(ProducerRecord::new("t", vec![0u8; 2000]))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::RecordTooLarge { .. }), "{err}");
        let err = producer
            .send(ProducerRecord::new("t", "x").partition(5))
            .await
            .unwrap_err();
        assert!(err.is(ResponseError::UnknownTopicOrPartition), "{err}");
        producer.close().await.unwrap();
        let err = producer
            .send(ProducerRecord::new("t", "x"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Closed(_)));
    }

    #[tokio::test]
    async fn routes_to_each_leader_and_follows_leader_moves() {
        let broker = MiniBroker::cluster(3, &[("t", 6)]).await;
        let client = Client::connect(ClientConfig::new(&broker.addr))
            .await
            .unwrap();
        assert_eq!(client.metadata().brokers.len(), 3);
        let producer = client.producer(ProducerConfig::default()).unwrap();
        for p in 0..6 {
            let m = producer
                .send_and_wait(ProducerRecord::new("t", "x").partition(p))
                .await
                .unwrap();
            assert_eq!((m.partition, m.offset), (p, 0));
        }
        // Partition 0 moves from broker 1 to broker 3: the old leader answers
        // NOT_LEADER_OR_FOLLOWER, the producer refreshes metadata and retries there.
        broker
            .state
            .lock()
            .unwrap()
            .leaders
            .insert(("t".into(), 0), 3);
        let m = producer
            .send_and_wait(ProducerRecord::new("t", "y").partition(0))
            .await
            .unwrap();
        assert_eq!(m.offset, 1);
        assert_eq!(client.metadata().leader("t", 0), Some(3));
        assert_eq!(broker.record_values("t", 0).len(), 2);
    }

    #[tokio::test]
    async fn topics_are_auto_created_on_first_send() {
        let (broker, producer) = setup(&[], ProducerConfig::default()).await;
        let m = producer
            .send_and_wait(ProducerRecord::new("fresh", "x").key("k"))
            .await
            .unwrap();
        assert_eq!(m.topic.as_ref(), "fresh");
        assert!(broker.state.lock().unwrap().topics.contains_key("fresh"));
    }
}
