//! A consumer of explicitly assigned partitions (no group membership; that builds on this).
//!
//! ```text
//! assign/seek -> positions -> (ListOffsets for earliest/latest/timestamp resets)
//!   -> one Fetch in flight per leader broker, run by a task of its own: it is sent and
//!      answered while the application works on what an earlier poll returned; the task also
//!      checks the batches' CRCs
//!   -> buffer of fetched bytes -> poll_records() decodes records as they are taken (at most
//!      `max.poll.records`, as Java's consumer does; decompressed with a cap), skipping records
//!      before the fetch offset (a fetch may start mid-batch), into a ConsumerRecords: the
//!      batches' bytes plus where each record's fields lie in them
//!   -> poll() / stream() make an owned ConsumerRecord of each
//! ```
//!
//! A partition is fetched again while one answer of it is still buffered, from where that
//! answer ends (librdkafka fetches ahead too; Java's consumer waits until the buffer is drained,
//! so its fetch round trip is not overlapped for a single partition). So at most two answers
//! per partition are buffered: up to twice `max.partition.fetch.bytes` (and twice
//! `fetch.max.bytes` per broker) of records.
//!
//! Reads with `isolation.level=read_uncommitted` (Kafka's default): records of aborted
//! transactions are returned; transaction markers (control batches) are not.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use indexmap::IndexMap;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spool_protocol::batch::{BatchError, Batches};
use spool_protocol::records::{DecodedBatches, RecordError, RecordIter};
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;

use crate::admin::{list_offsets, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use crate::cluster::{Client, ConnectionPool};
use crate::config::{AutoOffsetReset, ConsumerConfig};
use crate::error::{metadata_error, Error, Result};

pub mod records;
pub use records::{ConsumerRecords, RecordRef};

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Create or log-append time, ms since the epoch.
    pub timestamp: i64,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Where to position a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// The log start.
    Earliest,
    /// The log end: only records produced from now on.
    Latest,
    /// An exact offset.
    At(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reset {
    Earliest,
    Latest,
    Timestamp(i64),
}

type Tp = (Arc<str>, i32);

/// Kafka's `default.api.timeout.ms`: bound on blocking lookups such as [`Consumer::position`].
const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct PartitionState {
    /// Next offset to return; `None` until resolved.
    position: Option<i64>,
    /// How to resolve a missing position; `None` means `auto.offset.reset`.
    pending: Option<Reset>,
    /// Bumped by every seek so answers to older fetches are dropped.
    generation: u64,
    in_flight: bool,
    /// Fetch answers of this partition in the buffer (at most [`MAX_BUFFERED_ANSWERS`]).
    buffered: u8,
    /// Where the next fetch starts while answers are buffered: after the last of them.
    fetch_from: i64,
    /// A fetch ahead of the buffer failed: fetch again only once the buffer is drained, from
    /// the position the application reached.
    no_fetch_ahead: bool,
    high_watermark: i64,
}

/// One answer being read plus one fetched ahead.
const MAX_BUFFERED_ANSWERS: u8 = 2;

impl PartitionState {
    /// The offset the next fetch of this partition starts at, if known.
    fn next_fetch(&self) -> Option<i64> {
        if self.buffered > 0 {
            Some(self.fetch_from)
        } else {
            self.position
        }
    }

    fn fetchable(&self) -> bool {
        !self.in_flight
            && self.next_fetch().is_some()
            && (self.buffered == 0
                || (self.buffered < MAX_BUFFERED_ANSWERS && !self.no_fetch_ahead))
    }
}

/// A fetch answer of one partition, its records decoded as polls take them.
struct Buffered {
    tp: Tp,
    generation: u64,
    batches: DecodedBatches,
    /// Records of the batch being taken.
    records: Option<RecordIter>,
    /// Records below this offset are skipped: a fetch may start mid-batch.
    skip_below: i64,
    /// Position once every record here is consumed (past trailing control batches too).
    next_position: i64,
}

impl Buffered {
    /// Moves records into `out` until it holds `max`, noting the last offset taken in `last`.
    /// `Ok(true)` once this answer is used up.
    fn take_into(
        &mut self,
        out: &mut ConsumerRecords,
        max: usize,
        last: &mut Option<i64>,
    ) -> Result<bool> {
        loop {
            if let Some(records) = &mut self.records {
                // The batch's bytes go into `out` once, with its first record taken.
                let mut batch = None;
                while let Some(span) = records.next_span() {
                    let span = span.map_err(|e| corrupt(&self.tp, e))?;
                    if span.offset < self.skip_below {
                        continue;
                    }
                    *last = Some(span.offset);
                    let batch = *batch.get_or_insert_with(|| {
                        // Room for what this batch can still give, once per batch.
                        out.reserve((records.remaining() + 1).min(max - out.len()));
                        out.add_batch(&self.tp.0, self.tp.1, records.data())
                    });
                    out.push(batch, span);
                    if out.len() >= max {
                        return Ok(false);
                    }
                }
                self.records = None;
            }
            match self.batches.next() {
                Some(batch) => {
                    self.records = Some(batch.map_err(|e| corrupt(&self.tp, e))?.records);
                }
                None => return Ok(true),
            }
        }
    }
}

fn corrupt(tp: &Tp, e: RecordError) -> Error {
    Error::CorruptRecords {
        topic: tp.0.to_string(),
        partition: tp.1,
        source: Arc::new(e),
    }
}

struct FetchDone {
    broker: i32,
    /// (partition, fetch offset, generation)
    requested: Vec<(Tp, i64, u64)>,
    result: Result<Vec<Fetched>>,
}

/// One partition's part of a fetch answer, checked by the fetch task.
struct Fetched {
    tp: Tp,
    fetch_offset: i64,
    generation: u64,
    error_code: i16,
    high_watermark: i64,
    /// For error code 0: the answer's whole batches, CRC-checked.
    checked: Result<Checked>,
}

/// A partition's fetched bytes, cut to whole batches whose CRCs match.
#[derive(Debug)]
struct Checked {
    bytes: Bytes,
    /// Whether any batch holds records at or after the fetch offset (not only control batches).
    has_records: bool,
    /// The position after the last batch.
    next: i64,
}

/// A consumer of assigned partitions.
///
/// ```no_run
/// # async fn demo() -> spool_client::Result<()> {
/// use std::time::Duration;
/// use spool_client::{Client, ClientConfig, ConsumerConfig, Offset};
/// let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let mut consumer = client.consumer(ConsumerConfig::default());
/// consumer.assign(vec![("orders".to_string(), 0)]);
/// consumer.seek("orders", 0, Offset::Earliest)?;
/// for record in consumer.poll(Duration::from_secs(1)).await? {
///     println!("{}@{}: {:?}", record.partition, record.offset, record.value);
/// }
/// # Ok(()) }
/// ```
pub struct Consumer {
    client: Client,
    /// Fetch connections of this consumer alone (see [`ConnectionPool`]).
    fetch_pool: Arc<ConnectionPool>,
    config: ConsumerConfig,
    parts: IndexMap<Tp, PartitionState>,
    fetches: FuturesUnordered<BoxFuture<'static, FetchDone>>,
    brokers_in_flight: HashSet<i32>,
    buffer: VecDeque<Buffered>,
    /// No fetch or offset lookup before this (backoff after errors).
    retry_at: Option<Instant>,
    attempt: u32,
    pending_error: Option<Error>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("assignment", &self.assignment())
            .finish()
    }
}

impl Client {
    /// A consumer sharing this client's metadata. Its fetches use connections of their own,
    /// so long polls never delay the client's other requests.
    pub fn consumer(&self, config: ConsumerConfig) -> Consumer {
        Consumer::new(self.clone(), config)
    }
}

impl Consumer {
    /// A consumer with nothing assigned.
    pub fn new(client: Client, config: ConsumerConfig) -> Consumer {
        Consumer {
            client,
            fetch_pool: Arc::default(),
            config,
            parts: IndexMap::new(),
            fetches: FuturesUnordered::new(),
            brokers_in_flight: HashSet::new(),
            buffer: VecDeque::new(),
            retry_at: None,
            attempt: 0,
            pending_error: None,
        }
    }

    /// Replaces the assignment. Partitions kept keep their positions; new ones start per
    /// `auto.offset.reset` unless sought.
    pub fn assign(&mut self, partitions: Vec<(String, i32)>) {
        let wanted: Vec<Tp> = partitions
            .into_iter()
            .map(|(t, p)| (Arc::<str>::from(t), p))
            .collect();
        let keep: HashSet<&Tp> = wanted.iter().collect();
        self.parts.retain(|tp, _| keep.contains(tp));
        self.buffer.retain(|b| keep.contains(&b.tp));
        for tp in wanted {
            self.parts.entry(tp).or_insert(PartitionState {
                position: None,
                pending: None,
                generation: 0,
                in_flight: false,
                buffered: 0,
                fetch_from: 0,
                no_fetch_ahead: false,
                high_watermark: -1,
            });
        }
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.parts
            .keys()
            .map(|(t, p)| (t.to_string(), *p))
            .collect()
    }

    fn state_mut(&mut self, topic: &str, partition: i32) -> Result<&mut PartitionState> {
        let key: Tp = (Arc::from(topic), partition);
        self.parts.get_mut(&key).ok_or_else(|| Error::NotAssigned {
            topic: topic.to_string(),
            partition,
        })
    }

    fn reposition(
        &mut self,
        topic: &str,
        partition: i32,
        position: Option<i64>,
        pending: Option<Reset>,
    ) -> Result<()> {
        let st = self.state_mut(topic, partition)?;
        st.position = position;
        st.pending = pending;
        st.generation += 1;
        st.buffered = 0;
        st.no_fetch_ahead = false;
        let tp: Tp = (Arc::from(topic), partition);
        self.buffer.retain(|b| b.tp != tp);
        Ok(())
    }

    /// Moves a partition's position; takes effect on the next poll.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: Offset) -> Result<()> {
        match offset {
            Offset::At(o) => self.reposition(topic, partition, Some(o), None),
            Offset::Earliest => self.reposition(topic, partition, None, Some(Reset::Earliest)),
            Offset::Latest => self.reposition(topic, partition, None, Some(Reset::Latest)),
        }
    }

    /// Positions a partition at the first record with a timestamp at or after `timestamp_ms`
    /// (the log end when there is none), as found by ListOffsets.
    pub fn seek_to_timestamp(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
    ) -> Result<()> {
        self.reposition(topic, partition, None, Some(Reset::Timestamp(timestamp_ms)))
    }

    /// The offset of the next record `poll` will return for a partition, resolving a pending
    /// seek or reset first.
    ///
    /// Gives up after `default.api.timeout.ms` (60 s) of retriable failures.
    pub async fn position(&mut self, topic: &str, partition: i32) -> Result<i64> {
        let deadline = Instant::now() + DEFAULT_API_TIMEOUT;
        loop {
            if let Some(p) = self.state_mut(topic, partition)?.position {
                return Ok(p);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("position of {topic}-{partition}"),
                    after: DEFAULT_API_TIMEOUT,
                });
            }
            let before = self.attempt;
            self.resolve_positions(true).await?;
            if self.attempt != before {
                if let Some(t) = self.retry_at {
                    tokio::time::sleep_until(t.min(deadline).into()).await;
                }
            }
        }
    }

    /// The partition's high watermark from the latest fetch (-1 before one).
    pub fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        self.parts
            .get(&(Arc::from(topic), partition))
            .map(|s| s.high_watermark)
    }

    /// Waits up to `timeout` for records; returns at most `max_poll_records`, possibly none.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        Ok(self.poll_records(timeout).await?.to_vec())
    }

    /// [`Consumer::poll`] for reading the records in place: the same records, kept as the
    /// fetched bytes (see [`ConsumerRecords`]), without a reference count or an owned struct per
    /// record.
    pub async fn poll_records(&mut self, timeout: Duration) -> Result<ConsumerRecords> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.pending_error.take() {
                return Err(e);
            }
            self.resolve_positions(false).await?;
            self.refresh_fetch_metadata().await;
            // Nothing awaits from here until the records are returned: positions move as they
            // are taken, so a `poll` cancelled in between would lose them (and a group member
            // would commit past them).
            let out = self.take_buffered();
            self.send_fetches();
            if !out.is_empty() {
                return Ok(out);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(ConsumerRecords::default());
            }
            if self.fetches.is_empty() {
                let wake = self
                    .retry_at
                    .unwrap_or(now + Duration::from_millis(100))
                    .clamp(now + Duration::from_millis(1), deadline);
                tokio::time::sleep_until(wake.into()).await;
                continue;
            }
            tokio::select! {
                Some(done) = self.fetches.next() => self.handle_fetch(done),
                _ = tokio::time::sleep_until(deadline.into()) => return Ok(ConsumerRecords::default()),
            }
        }
    }

    /// Records as an endless stream (polling in one-second rounds). Errors are yielded, and the
    /// stream goes on after them.
    pub fn stream(&mut self) -> impl Stream<Item = Result<ConsumerRecord>> + '_ {
        futures::stream::unfold((self, VecDeque::new()), |(c, mut buf)| async move {
            loop {
                if let Some(r) = buf.pop_front() {
                    return Some((Ok(r), (c, buf)));
                }
                match c.poll(Duration::from_secs(1)).await {
                    Ok(records) => buf.extend(records),
                    Err(e) => return Some((Err(e), (c, buf))),
                }
            }
        })
    }

    fn backoff(&mut self) {
        self.attempt += 1;
        self.retry_at = Some(Instant::now() + self.client.config().backoff(self.attempt));
    }

    /// Looks up offsets for partitions without a position. With `force`, ignores the backoff.
    async fn resolve_positions(&mut self, force: bool) -> Result<()> {
        if !force && self.retry_at.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        let mut specs = Vec::new();
        for ((t, p), st) in &self.parts {
            if st.position.is_some() {
                continue;
            }
            let reset = match st.pending {
                Some(r) => r,
                None => match self.config.auto_offset_reset {
                    AutoOffsetReset::Earliest => Reset::Earliest,
                    AutoOffsetReset::Latest => Reset::Latest,
                    AutoOffsetReset::None => {
                        return Err(Error::NoOffset {
                            topic: t.to_string(),
                            partition: *p,
                        })
                    }
                },
            };
            let ts = match reset {
                Reset::Earliest => EARLIEST_TIMESTAMP,
                Reset::Latest => LATEST_TIMESTAMP,
                Reset::Timestamp(ts) => ts,
            };
            specs.push((t.to_string(), *p, ts));
        }
        if specs.is_empty() {
            return Ok(());
        }
        let found = match list_offsets(&self.client, &specs).await {
            Ok(f) => f,
            Err(e) if e.is_retriable() => {
                tracing::debug!(error = %e, "offset lookup failed; will retry");
                self.backoff();
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        for (t, p, _) in specs {
            let Some(listed) = found.get(&(t.clone(), p)) else {
                continue;
            };
            let Ok(st) = self.state_mut(&t, p) else {
                continue;
            };
            if listed.offset >= 0 {
                st.position = Some(listed.offset);
                st.pending = None;
            } else {
                // No record at or after the timestamp: Kafka's answer is "none", go to the end.
                st.pending = Some(Reset::Latest);
            }
        }
        Ok(())
    }

    fn take_buffered(&mut self) -> ConsumerRecords {
        if self.buffer.is_empty() {
            return ConsumerRecords::default();
        }
        let max = self.config.max_poll_records.max(1);
        let mut out = ConsumerRecords::default();
        while out.len() < max {
            let Some(front) = self.buffer.front_mut() else {
                break;
            };
            let Some(st) = self.parts.get_mut(&front.tp) else {
                self.buffer.pop_front();
                continue;
            };
            if st.generation != front.generation {
                self.buffer.pop_front();
                continue;
            }
            let mut last = None;
            let taken = front.take_into(&mut out, max, &mut last);
            if let Some(offset) = last {
                // Saturating: the offset came from the wire.
                st.position = Some(offset.saturating_add(1));
            }
            match taken {
                Ok(false) => {}
                Ok(true) => {
                    if st.position.is_none_or(|p| p < front.next_position) {
                        st.position = Some(front.next_position);
                    }
                    st.buffered = st.buffered.saturating_sub(1);
                    if st.buffered == 0 {
                        st.no_fetch_ahead = false;
                        // Answers of control batches only, fetched ahead, moved `fetch_from`
                        // past this answer's end; there is nothing to return in between.
                        if st.position.is_none_or(|p| p < st.fetch_from) {
                            st.position = Some(st.fetch_from);
                        }
                    }
                    self.buffer.pop_front();
                }
                Err(e) => {
                    // The records before the bad one are returned; the error comes with the
                    // next poll, and the position stays at the bad batch (as in Java). Answers
                    // fetched beyond it are dropped.
                    self.pending_error = Some(e);
                    st.generation += 1;
                    st.buffered = 0;
                    st.no_fetch_ahead = false;
                    let tp = front.tp.clone();
                    self.buffer.retain(|b| b.tp != tp);
                    break;
                }
            }
        }
        out
    }

    /// Refreshes metadata that fetches about to be sent need: topics whose cached metadata is
    /// stale or has no leader for a partition that could be fetched after this poll's take.
    async fn refresh_fetch_metadata(&mut self) {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let md = self.client.metadata();
        let needs_refresh: HashSet<Arc<str>> = self
            .parts
            .iter()
            .filter(|(_, s)| !s.in_flight && s.next_fetch().is_some())
            .map(|(tp, _)| tp)
            .filter(|(t, p)| self.client.is_stale(t) || md.leader(t, *p).is_none())
            .map(|(t, _)| t.clone())
            .collect();
        if !needs_refresh.is_empty() {
            let names: Vec<&str> = needs_refresh.iter().map(|t| t.as_ref()).collect();
            match self
                .client
                .refresh(&names, self.config.allow_auto_create_topics)
                .await
            {
                Ok(outcomes) => {
                    for (t, o) in outcomes {
                        if let Err(e) = o {
                            tracing::warn!(topic = %t, error = %e, "cannot fetch: no metadata");
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "metadata refresh failed");
                    self.backoff();
                }
            }
        }
    }

    /// Sends a Fetch to every leader that has fetchable partitions and none in flight, with the
    /// metadata at hand (see [`Consumer::refresh_fetch_metadata`]).
    fn send_fetches(&mut self) {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let fetchable: Vec<Tp> = self
            .parts
            .iter()
            .filter(|(_, s)| s.fetchable())
            .map(|(tp, _)| tp.clone())
            .collect();
        if fetchable.is_empty() {
            return;
        }
        let md = self.client.metadata();
        let mut by_broker: HashMap<i32, Vec<(Tp, i64, u64)>> = HashMap::new();
        let mut leaderless = false;
        for tp in fetchable {
            let Some(leader) = md.leader(&tp.0, tp.1) else {
                leaderless = true;
                continue;
            };
            if self.brokers_in_flight.contains(&leader) {
                continue;
            }
            let st = &self.parts[&tp];
            by_broker.entry(leader).or_default().push((
                tp.clone(),
                st.next_fetch().expect("fetchable"),
                st.generation,
            ));
        }
        if leaderless {
            self.backoff();
        }
        for (broker, requested) in by_broker {
            for (tp, _, _) in &requested {
                if let Some(st) = self.parts.get_mut(tp) {
                    st.in_flight = true;
                }
            }
            self.brokers_in_flight.insert(broker);
            let ids: HashMap<Arc<str>, Uuid> = requested
                .iter()
                .map(|(tp, _, _)| {
                    let id = md
                        .topics
                        .get(tp.0.as_ref())
                        .map(|t| t.id)
                        .unwrap_or(Uuid::nil());
                    (tp.0.clone(), id)
                })
                .collect();
            let client = self.client.clone();
            let pool = self.fetch_pool.clone();
            let config = self.config.clone();
            let asked = requested.clone();
            // A task of its own, so the fetch goes out and its answer is decoded while the
            // application works on the records of the last poll (not only inside `poll`).
            // Aborted if nobody waits for its answer any more (the consumer was dropped).
            let task = AbortOnDropHandle::new(tokio::spawn(async move {
                let response = fetch(&client, &pool, &config, broker, &asked, &ids).await?;
                check_response(&client, response, asked)
            }));
            self.fetches.push(Box::pin(async move {
                // A task that panicked is a bug; the fetch is retried like a lost connection.
                let result = task.await.unwrap_or_else(|e| {
                    tracing::warn!(broker, "fetch task failed: {e}");
                    Err(Error::Disconnected {
                        addr: format!("broker {broker}"),
                        reason: format!("the fetch task failed: {e}"),
                    })
                });
                FetchDone {
                    broker,
                    requested,
                    result,
                }
            }));
        }
    }

    fn handle_fetch(&mut self, done: FetchDone) {
        self.brokers_in_flight.remove(&done.broker);
        for (tp, _, _) in &done.requested {
            if let Some(st) = self.parts.get_mut(tp) {
                st.in_flight = false;
            }
        }
        let fetched = match done.result {
            Ok(fetched) => fetched,
            Err(e) => {
                tracing::debug!(broker = done.broker, error = %e, "fetch failed");
                if e.invalidates_metadata() {
                    for (tp, _, _) in &done.requested {
                        self.client.invalidate(&tp.0);
                    }
                }
                if e.is_retriable() || e.invalidates_metadata() {
                    self.backoff();
                } else {
                    self.pending_error = Some(e);
                }
                return;
            }
        };
        let mut any_ok = false;
        for f in fetched {
            let Some(st) = self.parts.get_mut(&f.tp) else {
                continue;
            };
            if st.generation != f.generation || st.next_fetch() != Some(f.fetch_offset) {
                continue; // sought elsewhere meanwhile
            }
            if st.buffered > 0 && (f.error_code != 0 || f.checked.is_err()) {
                // A fetch ahead of the buffer failed: the application has not reached that
                // offset yet. Fetch it again once the buffer is drained, from the position the
                // application reached, and deal with the error then (at the right offset).
                st.no_fetch_ahead = true;
                continue;
            }
            if f.error_code == 0 {
                any_ok = true;
                st.high_watermark = f.high_watermark;
                match f.checked {
                    Ok(c) if c.has_records => {
                        st.buffered += 1;
                        st.fetch_from = c.next;
                        self.buffer.push_back(Buffered {
                            tp: f.tp,
                            generation: f.generation,
                            batches: DecodedBatches::prechecked(
                                c.bytes,
                                self.config.max_uncompressed_batch_bytes,
                            ),
                            records: None,
                            skip_below: f.fetch_offset,
                            next_position: c.next,
                        });
                    }
                    Ok(c) => {
                        // Nothing to return (control batches only): skip past it.
                        if c.next > f.fetch_offset {
                            if st.buffered > 0 {
                                st.fetch_from = c.next;
                            } else {
                                st.position = Some(c.next);
                            }
                        }
                    }
                    Err(e) => self.pending_error = Some(e),
                }
                continue;
            }
            let tp = &f.tp;
            let err = Error::from_code(f.error_code, None, format!("fetch {}-{}", tp.0, tp.1))
                .expect("nonzero");
            if err.is(ResponseError::OffsetOutOfRange) {
                tracing::info!(topic = %tp.0, partition = tp.1, offset = f.fetch_offset, "offset out of range; resetting");
                st.position = None;
                st.pending = None;
                st.generation += 1;
            } else if metadata_error(f.error_code) {
                self.client.invalidate(&tp.0);
                self.retry_at = Some(Instant::now() + self.client.config().retry_backoff);
            } else if err.is_retriable() {
                self.retry_at = Some(Instant::now() + self.client.config().retry_backoff);
            } else {
                self.pending_error = Some(err);
            }
        }
        if any_ok {
            self.attempt = 0;
        }
    }
}

/// Matches a fetch answer's partitions to what was asked and checks their batches.
fn check_response(
    client: &Client,
    response: FetchResponse,
    requested: Vec<(Tp, i64, u64)>,
) -> Result<Vec<Fetched>> {
    if let Some(e) = Error::from_code(response.error_code, None, "fetch") {
        return Err(e);
    }
    let mut asked: HashMap<(String, i32), (Tp, i64, u64)> = requested
        .into_iter()
        .map(|(tp, offset, generation)| ((tp.0.to_string(), tp.1), (tp, offset, generation)))
        .collect();
    let md = client.metadata();
    let mut out = Vec::with_capacity(asked.len());
    for topic in response.responses {
        let name = if topic.topic.is_empty() {
            md.topic_name(&topic.topic_id)
                .unwrap_or_default()
                .to_string()
        } else {
            topic.topic.0.to_string()
        };
        for p in topic.partitions {
            let Some((tp, fetch_offset, generation)) =
                asked.remove(&(name.clone(), p.partition_index))
            else {
                continue;
            };
            let checked = check(&tp, fetch_offset, p.records.unwrap_or_default());
            out.push(Fetched {
                tp,
                fetch_offset,
                generation,
                error_code: p.error_code,
                high_watermark: p.high_watermark,
                checked,
            });
        }
    }
    Ok(out)
}

/// Builds and sends one Fetch to `broker`.
async fn fetch(
    client: &Client,
    pool: &ConnectionPool,
    config: &ConsumerConfig,
    broker: i32,
    requested: &[(Tp, i64, u64)],
    ids: &HashMap<Arc<str>, Uuid>,
) -> Result<FetchResponse> {
    let conn = pool.broker(client, broker).await?;
    let mut version = conn.version(ApiKey::Fetch)?;
    // v13 addresses topics by id; fall back when an id is unknown.
    if version >= 13 && ids.values().any(|id| id.is_nil()) {
        version = 12;
    }
    let mut topics: IndexMap<Arc<str>, Vec<FetchPartition>> = IndexMap::new();
    for ((t, p), offset, _) in requested {
        topics.entry(t.clone()).or_default().push(
            FetchPartition::default()
                .with_partition(*p)
                .with_fetch_offset(*offset)
                .with_partition_max_bytes(config.max_partition_fetch_bytes),
        );
    }
    let max_wait_ms = config.fetch_max_wait.as_millis().min(i32::MAX as u128) as i32;
    // Sessionless full fetches: session id 0, epoch -1 (FINAL_EPOCH).
    let req = FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(config.fetch_min_bytes)
        .with_max_bytes(config.fetch_max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, parts)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_topic_id(ids.get(&t).copied().unwrap_or(Uuid::nil()))
                        .with_partitions(parts)
                })
                .collect(),
        );
    let timeout = client.config().request_timeout + config.fetch_max_wait;
    conn.send_with_timeout(&req, version, timeout).await
}

/// Checks a partition's fetched bytes: whole batches with matching CRCs (a partial batch at
/// the end is normal, the broker cuts at a byte limit), whether any holds records at or after
/// `fetch_offset`, and the position after the last.
fn check(tp: &Tp, fetch_offset: i64, records: Bytes) -> Result<Checked> {
    let mut next = fetch_offset;
    let mut has_records = false;
    let mut end = 0;
    for batch in Batches::checked(&records) {
        let (header, range) = match batch {
            Ok(b) => b,
            Err(BatchError::Truncated { .. }) => break,
            Err(e) => return Err(corrupt(tp, e.into())),
        };
        next = next.max(header.last_offset().saturating_add(1));
        has_records |=
            !header.is_control() && header.record_count > 0 && header.last_offset() >= fetch_offset;
        end = range.end;
    }
    Ok(Checked {
        bytes: records.slice(..end),
        has_records,
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientConfig;
    use crate::producer::ProducerRecord;
    use crate::testing::MiniBroker;
    use crate::ProducerConfig;
    use spool_protocol::compression::Compression;
    use spool_protocol::records::BatchBuilder;

    async fn setup(topics: &[(&str, i32)]) -> (MiniBroker, Client) {
        let broker = MiniBroker::start(topics).await;
        let client = Client::connect(ClientConfig::new(&broker.addr))
            .await
            .unwrap();
        (broker, client)
    }

    async fn produce(
        client: &Client,
        topic: &str,
        partition: i32,
        n: usize,
        compression: Compression,
    ) {
        let p = client
            .producer(ProducerConfig {
                compression,
                ..Default::default()
            })
            .unwrap();
        let mut deliveries = Vec::new();
        for i in 0..n {
            deliveries.push(
                p.send(ProducerRecord::new(topic, format!("v{i}")).partition(partition))
                    .await
                    .unwrap(),
            );
        }
        p.flush().await.unwrap();
        for d in deliveries {
            d.await.unwrap();
        }
    }

    async fn poll_n(c: &mut Consumer, n: usize) -> Vec<ConsumerRecord> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while out.len() < n && Instant::now() < deadline {
            out.extend(c.poll(Duration::from_millis(200)).await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn reads_from_earliest_across_codecs_and_partitions() {
        let (_b, client) = setup(&[("t", 2)]).await;
        produce(&client, "t", 0, 50, Compression::Zstd).await;
        produce(&client, "t", 1, 30, Compression::None).await;
        let mut c = client.consumer(ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            max_poll_records: 7,
            ..Default::default()
        });
        c.assign(vec![("t".into(), 0), ("t".into(), 1)]);
        let recs = poll_n(&mut c, 80).await;
        assert_eq!(recs.len(), 80);
        for p in 0..2 {
            let offs: Vec<i64> = recs
                .iter()
                .filter(|r| r.partition == p)
                .map(|r| r.offset)
                .collect();
            assert!(offs.windows(2).all(|w| w[1] == w[0] + 1), "in order");
            assert_eq!(offs[0], 0);
        }
        assert_eq!(c.position("t", 0).await.unwrap(), 50);
        assert_eq!(c.high_watermark("t", 1), Some(30));
    }

    #[tokio::test]
    async fn records_read_in_place_are_the_records_poll_returns() {
        let (_b, client) = setup(&[("t", 2)]).await;
        produce(&client, "t", 0, 30, Compression::Zstd).await;
        produce(&client, "t", 1, 20, Compression::None).await;
        let config = ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            max_poll_records: 7,
            ..Default::default()
        };
        let mut owned = client.consumer(config.clone());
        owned.assign(vec![("t".into(), 0), ("t".into(), 1)]);
        let expected = poll_n(&mut owned, 50).await;
        let mut in_place = client.consumer(config);
        in_place.assign(vec![("t".into(), 0), ("t".into(), 1)]);
        let mut read = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while read.len() < 50 && Instant::now() < deadline {
            let records = in_place
                .poll_records(Duration::from_millis(200))
                .await
                .unwrap();
            assert!(records.len() <= 7, "max.poll.records holds");
            read.extend(records.iter().map(|r| r.to_record()));
        }
        // Polls may split the partitions differently; each partition's records are the same.
        let by_partition = |records: &[ConsumerRecord], p: i32| -> Vec<ConsumerRecord> {
            records
                .iter()
                .filter(|r| r.partition == p)
                .cloned()
                .collect()
        };
        for p in 0..2 {
            assert_eq!(by_partition(&read, p), by_partition(&expected, p));
        }
        assert_eq!(read.len(), 50);
        assert_eq!(in_place.position("t", 0).await.unwrap(), 30);
        assert_eq!(in_place.position("t", 1).await.unwrap(), 20);
    }

    #[tokio::test]
    async fn seek_skips_records_before_the_offset_inside_a_batch() {
        let (_b, client) = setup(&[("t", 1)]).await;
        produce(&client, "t", 0, 10, Compression::Lz4).await;
        let mut c = client.consumer(ConsumerConfig::default());
        c.assign(vec![("t".into(), 0)]);
        c.seek("t", 0, Offset::At(4)).unwrap();
        let recs = poll_n(&mut c, 6).await;
        assert_eq!(recs.first().map(|r| r.offset), Some(4));
        assert_eq!(recs.len(), 6);
        assert_eq!(recs[0].value.as_deref(), Some(&b"v4"[..]));
    }

    #[tokio::test]
    async fn latest_sees_only_new_records() {
        let (_b, client) = setup(&[("t", 1)]).await;
        produce(&client, "t", 0, 5, Compression::None).await;
        let mut c = client.consumer(ConsumerConfig::default());
        c.assign(vec![("t".into(), 0)]);
        assert_eq!(c.position("t", 0).await.unwrap(), 5);
        assert!(c.poll(Duration::from_millis(100)).await.unwrap().is_empty());
        produce(&client, "t", 0, 2, Compression::None).await;
        let recs = poll_n(&mut c, 2).await;
        assert_eq!(
            recs.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![5, 6]
        );
    }

    #[tokio::test]
    async fn out_of_range_resets_per_policy() {
        let (_b, client) = setup(&[("t", 1)]).await;
        produce(&client, "t", 0, 3, Compression::None).await;
        let mut c = client.consumer(ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            ..Default::default()
        });
        c.assign(vec![("t".into(), 0)]);
        c.seek("t", 0, Offset::At(100)).unwrap();
        let recs = poll_n(&mut c, 3).await;
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].offset, 0);

        let mut strict = client.consumer(ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::None,
            ..Default::default()
        });
        strict.assign(vec![("t".into(), 0)]);
        let err = strict.poll(Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(err, Error::NoOffset { .. }), "{err}");
    }

    #[tokio::test]
    async fn seek_to_timestamp_uses_list_offsets() {
        let (_b, client) = setup(&[("t", 1)]).await;
        let p = client.producer(ProducerConfig::default()).unwrap();
        for (i, ts) in [1000i64, 2000, 3000].iter().enumerate() {
            p.send_and_wait(
                ProducerRecord::new("t", format!("v{i}"))
                    .partition(0)
                    .timestamp(*ts),
            )
            .await
            .unwrap();
        }
        let mut c = client.consumer(ConsumerConfig::default());
        c.assign(vec![("t".into(), 0)]);
        c.seek_to_timestamp("t", 0, 1500).unwrap();
        assert_eq!(c.position("t", 0).await.unwrap(), 1);
        c.seek_to_timestamp("t", 0, 99_999).unwrap();
        assert_eq!(c.position("t", 0).await.unwrap(), 3, "none later: the end");
        assert!(c.seek("other", 0, Offset::Earliest).is_err());
    }

    #[tokio::test]
    async fn fetches_from_every_leader_and_follows_leader_moves() {
        let broker = MiniBroker::cluster(2, &[("t", 4)]).await;
        let client = Client::connect(ClientConfig::new(&broker.addr))
            .await
            .unwrap();
        for p in 0..4 {
            produce(&client, "t", p, 5, Compression::None).await;
        }
        let mut c = client.consumer(ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            ..Default::default()
        });
        c.assign((0..4).map(|p| ("t".to_string(), p)).collect());
        assert_eq!(poll_n(&mut c, 20).await.len(), 20);
        broker
            .state
            .lock()
            .unwrap()
            .leaders
            .insert(("t".into(), 1), 1);
        produce(&client, "t", 1, 3, Compression::None).await;
        let recs = poll_n(&mut c, 3).await;
        assert_eq!(
            recs.iter()
                .map(|r| (r.partition, r.offset))
                .collect::<Vec<_>>(),
            vec![(1, 5), (1, 6), (1, 7)]
        );
    }

    #[tokio::test]
    async fn stream_yields_records() {
        let (_b, client) = setup(&[("t", 1)]).await;
        produce(&client, "t", 0, 3, Compression::Snappy).await;
        let mut c = client.consumer(ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            ..Default::default()
        });
        c.assign(vec![("t".into(), 0)]);
        let recs: Vec<_> = tokio::time::timeout(
            Duration::from_secs(5),
            c.stream().take(3).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        let offsets: Vec<i64> = recs.into_iter().map(|r| r.unwrap().offset).collect();
        assert_eq!(offsets, vec![0, 1, 2]);
    }

    /// Checks `data` as a fetch answer from `fetch_offset` and takes its records: their
    /// offsets and the position after it.
    fn take_all(fetch_offset: i64, data: Vec<u8>) -> Result<(Vec<i64>, i64)> {
        let tp: Tp = (Arc::from("t"), 0);
        let c = check(&tp, fetch_offset, Bytes::from(data))?;
        let mut b = Buffered {
            tp,
            generation: 0,
            batches: DecodedBatches::prechecked(c.bytes, 1 << 20),
            records: None,
            skip_below: fetch_offset,
            next_position: c.next,
        };
        let (mut out, mut last) = (ConsumerRecords::default(), None);
        assert!(b.take_into(&mut out, usize::MAX, &mut last)?);
        assert_eq!(last, out.iter().last().map(|r| r.offset));
        Ok((out.iter().map(|r| r.offset).collect(), c.next))
    }

    fn batch(base_offset: i64, values: &[&[u8]]) -> Vec<u8> {
        let mut b = BatchBuilder::new(1024);
        for v in values {
            assert!(b.try_append(0, None, Some(v), &[]));
        }
        let mut data = b.build(-1, -1, -1, Compression::None).unwrap().to_vec();
        spool_protocol::batch::set_base_offset(&mut data, base_offset);
        data
    }

    /// A transaction marker (control batch) at `base_offset`.
    fn control(base_offset: i64) -> Vec<u8> {
        let mut ctrl = BatchBuilder::new(1024);
        ctrl.try_append(0, Some(b"\0\0\0\0"), Some(b"\0\0\0\0\0\0"), &[]);
        let mut c = ctrl.build(1, 0, 0, Compression::None).unwrap().to_vec();
        spool_protocol::batch::set_base_offset(&mut c, base_offset);
        c[22] |= 0x20; // control bit
        spool_protocol::batch::seal_crc(&mut c);
        c
    }

    #[test]
    fn control_batches_are_skipped_and_advanced_past() {
        let mut data = batch(10, &[b"x", b"y"]);
        let c = control(12);
        data.extend_from_slice(&c);
        assert_eq!(take_all(11, data).unwrap(), (vec![11], 13));
        let tp: Tp = (Arc::from("t"), 0);
        let only_control = check(&tp, 12, Bytes::from(c)).unwrap();
        assert!(!only_control.has_records);
        assert_eq!(only_control.next, 13);
    }

    #[test]
    fn a_partial_batch_at_the_end_is_cut_off() {
        let mut data = batch(0, &[b"a", b"b"]);
        let second = batch(2, &[b"c"]);
        data.extend_from_slice(&second[..second.len() - 3]);
        assert_eq!(take_all(0, data).unwrap(), (vec![0, 1], 2));
    }

    #[test]
    fn corruption_is_reported() {
        let mut data = batch(0, &[b"x"]);
        let last = data.len() - 1;
        data[last] ^= 0xff;
        let err = take_all(0, data).unwrap_err();
        assert!(matches!(err, Error::CorruptRecords { .. }), "{err}");
    }

    #[test]
    fn records_are_taken_up_to_the_limit_and_resume_where_they_stopped() {
        let tp: Tp = (Arc::from("t"), 0);
        let mut data = batch(0, &[b"a", b"b", b"c"]);
        data.extend_from_slice(&batch(3, &[b"d", b"e"]));
        let c = check(&tp, 1, Bytes::from(data)).unwrap();
        let mut b = Buffered {
            tp,
            generation: 0,
            batches: DecodedBatches::prechecked(c.bytes, 1 << 20),
            records: None,
            skip_below: 1,
            next_position: c.next,
        };
        let mut offsets = Vec::new();
        loop {
            let (mut out, mut last) = (ConsumerRecords::default(), None);
            let done = b.take_into(&mut out, 2, &mut last).unwrap();
            offsets.push(out.iter().map(|r| r.offset).collect::<Vec<_>>());
            if done {
                break;
            }
        }
        assert_eq!(offsets, vec![vec![1, 2], vec![3, 4], vec![]]);
    }

    /// One batch per fetch answer (`max.partition.fetch.bytes` = 1) and one record per poll.
    async fn one_batch_per_fetch(client: &Client) -> Consumer {
        for _ in 0..3 {
            produce(client, "t", 0, 2, Compression::None).await;
        }
        let mut c = client.consumer(ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            max_partition_fetch_bytes: 1,
            max_poll_records: 1,
            ..Default::default()
        });
        c.assign(vec![("t".into(), 0)]);
        c
    }

    #[tokio::test]
    async fn fetches_ahead_of_the_buffered_answer() {
        let (_b, client) = setup(&[("t", 1)]).await;
        let mut c = one_batch_per_fetch(&client).await;
        let first = poll_n(&mut c, 1).await;
        assert_eq!(first[0].offset, 0);
        // The answer holding offset 1 is buffered, and the next batch is being fetched already.
        let tp: Tp = (Arc::from("t"), 0);
        let st = &c.parts[&tp];
        assert_eq!((st.buffered, st.in_flight), (1, true));
        assert_eq!(st.next_fetch(), Some(2));
        let rest = poll_n(&mut c, 5).await;
        let offsets: Vec<i64> = rest.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![1, 2, 3, 4, 5]);
        assert_eq!(c.position("t", 0).await.unwrap(), 6);
    }

    /// A consumer positioned at offset 0 of t-0 and a maker of fetch answers for it, to drive
    /// `handle_fetch` directly.
    async fn answered_directly(client: &Client) -> (Consumer, impl Fn(i64, Vec<u8>) -> FetchDone) {
        let mut c = client.consumer(ConsumerConfig {
            max_poll_records: 1,
            ..Default::default()
        });
        c.assign(vec![("t".into(), 0)]);
        c.seek("t", 0, Offset::At(0)).unwrap();
        let tp: Tp = (Arc::from("t"), 0);
        let generation = c.parts[&tp].generation;
        let answer = move |offset: i64, bytes: Vec<u8>| FetchDone {
            broker: 0,
            requested: vec![(tp.clone(), offset, generation)],
            result: Ok(vec![Fetched {
                tp: tp.clone(),
                fetch_offset: offset,
                generation,
                error_code: 0,
                high_watermark: 10,
                checked: check(&tp, offset, Bytes::from(bytes)),
            }]),
        };
        (c, answer)
    }

    fn offsets(records: Vec<ConsumerRecord>) -> Vec<i64> {
        records.iter().map(|r| r.offset).collect()
    }

    /// Takes the buffered answer holding offsets 0 and 1, one record per poll, to its end.
    fn take_offsets_0_and_1(c: &mut Consumer) {
        assert_eq!(offsets(c.take_buffered().to_vec()), vec![0]);
        assert_eq!(offsets(c.take_buffered().to_vec()), vec![1]);
        assert_eq!(
            offsets(c.take_buffered().to_vec()),
            Vec::<i64>::new(),
            "used up"
        );
    }

    #[tokio::test]
    async fn a_failed_fetch_ahead_is_reported_only_once_the_application_gets_there() {
        let (_b, client) = setup(&[("t", 1)]).await;
        let (mut c, answer) = answered_directly(&client).await;
        c.handle_fetch(answer(0, batch(0, &[b"a", b"b"])));
        let mut bad = batch(2, &[b"c"]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff; // CRC mismatch
        c.handle_fetch(answer(2, bad));
        assert!(c.pending_error.is_none(), "not before the good records");
        take_offsets_0_and_1(&mut c);
        let st = &c.parts[&(Arc::from("t"), 0)];
        assert!(c.pending_error.is_none());
        assert_eq!((st.position, st.next_fetch()), (Some(2), Some(2)));
        assert!(
            st.fetchable(),
            "fetched again from where the application is"
        );
        // Fetched from there, the same answer is an error for the application.
        let mut bad = batch(2, &[b"c"]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        c.handle_fetch(answer(2, bad));
        assert!(matches!(
            c.pending_error,
            Some(Error::CorruptRecords { .. })
        ));
    }

    #[tokio::test]
    async fn markers_fetched_ahead_move_the_position_once_the_buffer_is_drained() {
        let (_b, client) = setup(&[("t", 1)]).await;
        let (mut c, answer) = answered_directly(&client).await;
        c.handle_fetch(answer(0, batch(0, &[b"a", b"b"])));
        c.handle_fetch(answer(2, control(2)));
        let tp: Tp = (Arc::from("t"), 0);
        assert_eq!(c.parts[&tp].next_fetch(), Some(3));
        take_offsets_0_and_1(&mut c);
        let st = &c.parts[&tp];
        assert_eq!((st.position, st.next_fetch()), (Some(3), Some(3)));
    }

    #[tokio::test]
    async fn a_poll_cancelled_while_metadata_is_refreshed_loses_no_record() {
        let (_b, client) = setup(&[("t", 1), ("u", 1)]).await;
        let mut c = one_batch_per_fetch(&client).await;
        assert_eq!(offsets(poll_n(&mut c, 1).await), vec![0]);
        // Offset 1 is buffered. A newly assigned partition needs its topic's metadata: the
        // next poll refreshes it before it can fetch.
        c.assign(vec![("t".into(), 0), ("u".into(), 0)]);
        c.seek("u", 0, Offset::At(0)).unwrap();
        client.invalidate("u");
        {
            let mut cancelled = Box::pin(c.poll(Duration::from_secs(5)));
            assert!(
                futures::poll!(&mut cancelled).is_pending(),
                "waits for the refresh"
            );
        }
        assert_eq!(offsets(poll_n(&mut c, 5).await), vec![1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn a_seek_drops_answers_fetched_ahead() {
        let (_b, client) = setup(&[("t", 1)]).await;
        let mut c = one_batch_per_fetch(&client).await;
        assert_eq!(poll_n(&mut c, 2).await.len(), 2);
        // Offsets 2.. are buffered or being fetched; going back must not return them first.
        c.seek("t", 0, Offset::At(1)).unwrap();
        let offsets: Vec<i64> = poll_n(&mut c, 5).await.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![1, 2, 3, 4, 5]);
    }
}
