//! The record accumulator: per-partition queues of batches waiting to be sent.
//!
//! Pure bookkeeping, no I/O and no clock of its own (callers pass `now`), so batching and linger
//! are tested directly. The sender task drains it; `Producer::send` appends to it.
//!
//! Rules (as in Kafka's `RecordAccumulator`):
//! - a record joins the newest batch of its partition if it fits, else starts a new batch;
//! - a partition's first batch is *ready* when it is full (`batch_size`, or a newer batch
//!   exists), its `linger` has passed, a flush covers it, or the producer is closing;
//! - at most `max_in_flight_per_partition` batches per partition are in flight: one unless the
//!   producer is idempotent, whose sequence numbers let the broker refuse a batch that overtook
//!   a failed one (then up to five, as Kafka allows, once a batch of the partition was written
//!   under the producer id); a retried batch waits until nothing of its partition is in
//!   flight, and batches are requeued in creation order, so retries cannot reorder records;
//! - a batch not delivered within `delivery_timeout` of its creation fails.
//!
//! Two additions: a batch that cannot go yet may grow past `batch_size` (up to
//! `backlog_batch_size`), and a batch the broker refuses as too large is split in its place
//! ([`Accumulator::split`], as Kafka's Java producer does).

use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use spool_protocol::batch::BatchHeader;
use spool_protocol::records::{decode_batch, BatchBuilder, Record};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::delivery::{Completer, DeliveryFuture};
use super::idempotence::increment_sequence;
use crate::error::Result;

/// A topic-partition; the topic name is shared by every batch and record of the topic.
pub(crate) type Tp = (Arc<str>, i32);

/// Orders batches by creation. New batches are [`ID_SPAN`] apart, so that the parts of a batch
/// split after the broker refused it take ids between it and the next (see
/// [`Accumulator::split`]): they count as created where it was.
pub(crate) type BatchId = u128;

/// The ids a new batch owns: itself and those its split parts may take.
const ID_SPAN: BatchId = 1 << 64;

/// One batch of records for one partition.
pub(crate) struct ProducerBatch {
    pub id: BatchId,
    /// Ids from `id` up to `id + id_span` belong to this batch (for its parts if it is split).
    id_span: BatchId,
    pub tp: Tp,
    /// Open while records are appended; taken when the batch is built.
    pub builder: Option<BatchBuilder>,
    /// False for the parts of a split batch: their records (and sequence numbers) are fixed.
    appendable: bool,
    /// The encoded batch once built.
    pub built: Option<Bytes>,
    /// Producer id, epoch and base sequence written into `built`.
    pub stamped: Option<(i64, i16, i32)>,
    /// Records appended so far.
    pub records: i32,
    /// Completes the records' delivery futures.
    pub completer: Completer,
    pub created: Instant,
    /// Sends so far.
    pub attempts: u32,
    pub retry_at: Option<Instant>,
    /// Bytes of `buffer.memory` held until the batch completes.
    pub memory: Lease,
}

/// Bytes of `buffer.memory` held by a batch's records, given back when the batch is dropped.
/// Each record's bytes come from a borrowed permit that is forgotten into its batch's lease:
/// one update of the pool's counter per record, where an owned permit per record would also
/// clone and drop a reference to the pool.
pub(crate) struct Lease {
    pool: Arc<Semaphore>,
    bytes: usize,
}

impl Lease {
    fn add(&mut self, permit: SemaphorePermit<'_>) {
        self.bytes += permit.num_permits();
        permit.forget();
    }

    /// Moves up to `bytes` of this lease into a new one.
    fn take(&mut self, bytes: usize) -> Lease {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        Lease {
            pool: self.pool.clone(),
            bytes,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.pool.add_permits(self.bytes);
        }
    }
}

impl ProducerBatch {
    pub fn record_count(&self) -> i32 {
        self.records
    }

    /// Encoded size: exact once built, the uncompressed estimate before.
    pub fn size(&self) -> usize {
        match (&self.built, &self.builder) {
            (Some(b), _) => b.len(),
            (None, Some(b)) => b.estimated_size(),
            (None, None) => 0,
        }
    }

    /// The batch's records, decoded from its encoded form (for a split); `None` if it was never
    /// built or cannot be read back in `max_uncompressed` bytes.
    fn records(&self, max_uncompressed: usize) -> Option<Vec<Record>> {
        let built = self.built.as_ref()?;
        let header = BatchHeader::parse(built).ok()?;
        decode_batch(&header, built, max_uncompressed)
            .ok()?
            .collect::<std::result::Result<Vec<_>, _>>()
            .ok()
    }

    /// Completes every record of the batch. Offsets are `base_offset + index` (or -1 when
    /// unknown); timestamps are the log-append time when the broker set one.
    pub fn complete(self, result: Result<(i64, i64)>) {
        self.completer.complete(result);
    }
}

#[derive(Default)]
struct PartitionQueue {
    batches: VecDeque<ProducerBatch>,
    /// Ids of this partition's batches in flight.
    in_flight: BTreeSet<BatchId>,
}

/// What [`Accumulator::append`] did.
pub(crate) enum Append<'a> {
    /// The record is in a batch; `new_batch` when it started one.
    Appended {
        delivery: DeliveryFuture,
        new_batch: bool,
    },
    /// The record would have started a new batch and the caller asked to be told first (the
    /// sticky partitioner switches partition then). Nothing was appended.
    WouldStartBatch(SemaphorePermit<'a>),
}

/// What [`Accumulator::split`] did.
pub(crate) enum Split {
    /// The batch was replaced by this many parts.
    Parts(usize),
    /// It cannot be split (one record): here it is back.
    Whole(Box<ProducerBatch>),
}

/// A record's headers as [`BatchBuilder`] takes them.
type HeaderRefs<'a> = Vec<(&'a str, Option<&'a [u8]>)>;

/// Batches drained for sending, and what the sender should do next.
#[derive(Default)]
pub(crate) struct Drained {
    /// Ready batches grouped by leader broker; each group fits one request.
    pub by_broker: HashMap<i32, Vec<ProducerBatch>>,
    /// Batches past their delivery timeout.
    pub expired: Vec<ProducerBatch>,
    /// Topics with ready batches but no known leader.
    pub unknown_leaders: HashSet<Arc<str>>,
    /// When the next batch becomes ready (linger or backoff), if any is waiting.
    pub next_wake: Option<Instant>,
}

/// The wall-clock time of the monotonic instants the producer reads anyway: the system clock is
/// read again only when the last reading is older than [`WallClock::REREAD`], so a record costs
/// one clock read, not two. Between readings the two clocks drift apart by at most NTP's slew
/// (0.5 ms/s: microseconds here), and a step of the system clock shows within `REREAD`.
#[derive(Default)]
struct WallClock {
    /// The last reading: (monotonic, since the epoch).
    last: Option<(Instant, Duration)>,
}

impl WallClock {
    const REREAD: Duration = Duration::from_millis(100);

    /// Milliseconds since the epoch at `now`.
    fn ms_at(&mut self, now: Instant) -> i64 {
        let since_epoch = match self.last {
            Some((at, epoch)) if now.saturating_duration_since(at) < Self::REREAD => {
                epoch + now.saturating_duration_since(at)
            }
            _ => {
                let epoch = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                self.last = Some((now, epoch));
                epoch
            }
        };
        since_epoch.as_millis() as i64
    }
}

/// Per-partition batch queues.
pub(crate) struct Accumulator {
    batch_size: usize,
    linger: Duration,
    delivery_timeout: Duration,
    /// `buffer.memory`: what records' permits are taken from and batches give back.
    memory: Arc<Semaphore>,
    queues: FxHashMap<Tp, PartitionQueue>,
    next_id: BatchId,
    /// Ids of batches not yet completed (queued or in flight).
    incomplete: BTreeSet<BatchId>,
    /// Batches with an id below this are ready at once (set by flush).
    flush_upto: BatchId,
    closing: bool,
    /// Rotates where draining starts so no partition starves.
    drain_start: usize,
    /// Gives records without a timestamp their create time.
    wall_clock: WallClock,
    /// Batches of one partition that may be in flight at once.
    max_in_flight_per_partition: usize,
    /// How far a partition's open batch may grow while it cannot be sent yet.
    backlog_batch_size: usize,
    /// Partitions with a batch written under the current producer id. Until then a partition
    /// has one batch in flight at a time: a broker with no state for a producer takes any
    /// first sequence, so a later batch could be written ahead of an earlier one refused
    /// meanwhile (e.g. as too large, then split and sent again).
    acknowledged: FxHashSet<Tp>,
    /// Partitions that refused a batch as too large: their batches no longer grow.
    no_growth: FxHashSet<Tp>,
}

/// Batches of `tp` allowed in flight now.
fn window(acknowledged: &FxHashSet<Tp>, tp: &Tp, max_in_flight: usize) -> usize {
    if acknowledged.contains(tp) {
        max_in_flight
    } else {
        1
    }
}

impl Accumulator {
    /// An empty accumulator; records' buffer memory is taken from, and given back to, `memory`.
    pub fn new(
        batch_size: usize,
        linger: Duration,
        delivery_timeout: Duration,
        memory: Arc<Semaphore>,
    ) -> Self {
        Accumulator {
            batch_size,
            linger,
            delivery_timeout,
            memory,
            queues: FxHashMap::default(),
            next_id: 0,
            incomplete: BTreeSet::new(),
            flush_upto: 0,
            closing: false,
            drain_start: 0,
            wall_clock: WallClock::default(),
            max_in_flight_per_partition: 1,
            backlog_batch_size: batch_size,
            acknowledged: FxHashSet::default(),
            no_growth: FxHashSet::default(),
        }
    }

    /// Lets a partition's open batch grow to `size` bytes while it cannot be sent yet (see
    /// `ProducerConfig::backlog_batch_size`).
    pub fn set_backlog_batch_size(&mut self, size: usize) {
        self.backlog_batch_size = size;
    }

    /// Batches of one partition allowed in flight at once (1 keeps order without sequence
    /// numbers; an idempotent producer may allow up to 5).
    pub fn set_max_in_flight_per_partition(&mut self, max: usize) {
        self.max_in_flight_per_partition = max.max(1);
    }

    /// Appends one record to `tp`. When `abort_on_new_batch` and the record does not fit the
    /// open batch, nothing is appended and the permit is handed back.
    #[allow(clippy::too_many_arguments)]
    pub fn append<'a>(
        &mut self,
        tp: &Tp,
        timestamp: Option<i64>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
        permit: SemaphorePermit<'a>,
        abort_on_new_batch: bool,
        now: Instant,
    ) -> Append<'a> {
        let timestamp = timestamp.unwrap_or_else(|| self.wall_clock.ms_at(now));
        // Look up before `entry`: a record joining a batch clones no topic name.
        let queue = match self.queues.get_mut(tp) {
            Some(q) => q,
            None => self.queues.entry(tp.clone()).or_default(),
        };
        let (queued, in_flight) = (queue.batches.len(), queue.in_flight.len());
        if let Some(last) = queue.batches.back_mut().filter(|b| b.appendable) {
            if let Some(builder) = last.builder.as_mut() {
                let mut fits = builder.try_append(timestamp, key, value, headers);
                // A full batch that cannot go yet (an older batch waits before it, or the
                // in-flight window is full) may grow; not for long (its records share its
                // delivery timeout), nor on a partition that refused a batch as too large.
                if !fits
                    && builder.max_size() < self.backlog_batch_size
                    && (queued > 1
                        || in_flight
                            >= window(&self.acknowledged, tp, self.max_in_flight_per_partition))
                    && now.saturating_duration_since(last.created) < self.delivery_timeout / 8
                    && !self.no_growth.contains(tp)
                {
                    builder.raise_limit(self.backlog_batch_size);
                    fits = builder.try_append(timestamp, key, value, headers);
                }
                if fits {
                    let delivery = last.completer.future(last.records, timestamp);
                    last.records += 1;
                    last.memory.add(permit);
                    return Append::Appended {
                        delivery,
                        new_batch: false,
                    };
                }
            }
        }
        if abort_on_new_batch {
            return Append::WouldStartBatch(permit);
        }
        // A record bigger than batch.size gets a batch of its own size.
        let size = BatchBuilder::estimate_single(key, value, headers).max(self.batch_size);
        let mut builder = BatchBuilder::new(size);
        let appended = builder.try_append(timestamp, key, value, headers);
        debug_assert!(appended, "an empty batch accepts any record");
        let completer = Completer::new(tp.0.clone(), tp.1);
        let delivery = completer.future(0, timestamp);
        let mut memory = Lease {
            pool: self.memory.clone(),
            bytes: 0,
        };
        memory.add(permit);
        let id = self.next_id;
        self.next_id += ID_SPAN;
        self.incomplete.insert(id);
        queue.batches.push_back(ProducerBatch {
            id,
            id_span: ID_SPAN,
            tp: tp.clone(),
            builder: Some(builder),
            appendable: true,
            built: None,
            stamped: None,
            records: 1,
            completer,
            created: now,
            attempts: 0,
            retry_at: None,
            memory,
        });
        Append::Appended {
            delivery,
            new_batch: true,
        }
    }

    /// Makes every batch existing now ready at once; returns the id bound to wait for.
    pub fn begin_flush(&mut self) -> BatchId {
        self.flush_upto = self.next_id;
        self.next_id
    }

    /// True when no batch with an id below `upto` is incomplete.
    pub fn flushed(&self, upto: BatchId) -> bool {
        self.incomplete.first().is_none_or(|first| *first >= upto)
    }

    /// Stops accepting records; everything queued becomes ready.
    pub fn close(&mut self) {
        self.closing = true;
    }

    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// True when nothing is queued or in flight.
    pub fn is_empty(&self) -> bool {
        self.incomplete.is_empty()
    }

    /// Takes ready batches whose leader is known and whose broker has room, at most one per
    /// partition and one request's worth (`max_request_size`) per broker. Batches past their
    /// delivery timeout are taken as `expired`. With `send` false only expiry happens (e.g. while
    /// the producer id is being fetched).
    pub fn drain(
        &mut self,
        now: Instant,
        send: bool,
        max_request_size: usize,
        mut leader: impl FnMut(&Tp) -> Option<i32>,
        mut broker_has_room: impl FnMut(i32) -> bool,
    ) -> Drained {
        let mut out = Drained::default();
        let mut sizes: HashMap<i32, usize> = HashMap::new();
        let mut full_brokers: HashSet<i32> = HashSet::new();
        let mut keys: Vec<Tp> = self.queues.keys().cloned().collect();
        keys.sort();
        if !keys.is_empty() {
            let start = self.drain_start % keys.len();
            keys.rotate_left(start);
            self.drain_start = self.drain_start.wrapping_add(1);
        }
        for tp in keys {
            let window = window(&self.acknowledged, &tp, self.max_in_flight_per_partition);
            let queue = self.queues.get_mut(&tp).expect("key from map");
            if queue.in_flight.len() >= window {
                continue;
            }
            // Expire from the front: batches are queued in creation order.
            while let Some(front) = queue.batches.front() {
                if now.saturating_duration_since(front.created) >= self.delivery_timeout {
                    let b = queue.batches.pop_front().expect("front exists");
                    self.incomplete.remove(&b.id);
                    out.expired.push(b);
                } else {
                    break;
                }
            }
            let Some(front) = queue.batches.front() else {
                continue;
            };
            // A retry goes alone: the batches that were in flight with it may have failed
            // behind it and must come back first, in order. So does the part of a split batch
            // that kept its sequence numbers (Java's producer drains such a batch only when it
            // is the next in sequence): a later part must not reach the broker while an earlier
            // one may still be refused (a broker with no state for the producer takes any first
            // sequence, and the earlier records would land after it).
            if (front.attempts > 0 || front.stamped.is_some()) && !queue.in_flight.is_empty() {
                continue;
            }
            let deadline = front.created + self.delivery_timeout;
            let mut wake = deadline;
            let ready_at = match front.retry_at {
                Some(t) => t,
                None if queue.batches.len() > 1
                    || front.size() >= self.batch_size
                    || front.id < self.flush_upto
                    || self.closing =>
                {
                    now
                }
                None => front.created + self.linger,
            };
            if ready_at > now || !send {
                wake = wake.min(ready_at.max(now));
                out.next_wake = Some(out.next_wake.map_or(wake, |w| w.min(wake)));
                continue;
            }
            let Some(broker) = leader(&tp) else {
                out.unknown_leaders.insert(tp.0.clone());
                out.next_wake = Some(out.next_wake.map_or(deadline, |w| w.min(deadline)));
                continue;
            };
            if full_brokers.contains(&broker) {
                continue;
            }
            let first_for_broker = !out.by_broker.contains_key(&broker);
            if first_for_broker && !broker_has_room(broker) {
                full_brokers.insert(broker);
                continue;
            }
            let used = sizes.entry(broker).or_default();
            // The first batch always goes, even when it alone exceeds the limit (it was
            // checked against max.request.size when its record was appended).
            if !first_for_broker && *used + front.size() > max_request_size {
                continue;
            }
            *used += front.size();
            let mut batch = queue.batches.pop_front().expect("front exists");
            batch.retry_at = None;
            queue.in_flight.insert(batch.id);
            if !queue.batches.is_empty() && queue.in_flight.len() < window {
                // The next batch may go in the next request: come back at once.
                out.next_wake = Some(now);
            }
            out.by_broker.entry(broker).or_default().push(batch);
        }
        self.queues
            .retain(|_, q| !q.batches.is_empty() || !q.in_flight.is_empty());
        out
    }

    /// True when a batch of `tp` created before batch `id` is still unresolved (in flight, or
    /// queued again for a retry). Then an OUT_OF_ORDER_SEQUENCE_NUMBER for `id` only means it
    /// overtook that batch, not that sequences diverged.
    pub fn has_earlier_unresolved(&self, tp: &Tp, id: BatchId) -> bool {
        self.queues.get(tp).is_some_and(|q| {
            q.in_flight.range(..id).next().is_some() || q.batches.iter().any(|b| b.id < id)
        })
    }

    /// Puts a batch that will be retried back in its partition's queue, ahead of every batch
    /// created after it.
    pub fn reenqueue(&mut self, batch: ProducerBatch) {
        let queue = self.queues.entry(batch.tp.clone()).or_default();
        queue.in_flight.remove(&batch.id);
        let at = queue
            .batches
            .iter()
            .position(|b| b.id > batch.id)
            .unwrap_or(queue.batches.len());
        queue.batches.insert(at, batch);
    }

    /// Splits a batch the broker refused as too large (MESSAGE_TOO_LARGE) into smaller ones that
    /// take its place in its partition's queue, as Kafka's Java producer does. The parts are
    /// `batch.size` each when the batch was bigger than that, else halves (again if still too
    /// large), so a topic whose `max.message.bytes` is below `batch.size` still gets every
    /// record that fits on its own. They keep the batch's creation time (its delivery timeout)
    /// and count as never sent; with `keep_sequences` (the batch's producer id and epoch are
    /// still current) they take consecutive parts of its sequence numbers, so the batches sent
    /// after it stay in sequence behind them.
    pub fn split(&mut self, mut batch: ProducerBatch, keep_sequences: bool) -> Split {
        // A batch of several records was built within these (one bigger record has a batch of
        // its own, which is not split).
        let max_uncompressed = self.batch_size.max(self.backlog_batch_size);
        let Some(records) = batch.records(max_uncompressed).filter(|r| r.len() > 1) else {
            return Split::Whole(Box::new(batch));
        };
        let bigger = batch.size() > self.batch_size;
        self.no_growth.insert(batch.tp.clone());
        let headers: Vec<HeaderRefs> = records
            .iter()
            .map(|r| {
                r.headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_deref()))
                    .collect()
            })
            .collect();
        // Each record's encoded size in a batch (close enough for any offset delta), and the
        // batch header's.
        let sizes: Vec<usize> = records
            .iter()
            .zip(&headers)
            .map(|(r, h)| BatchBuilder::record_size(0, 0, r.key.as_deref(), r.value.as_deref(), h))
            .collect();
        let header = BatchBuilder::new(0).estimated_size();
        let total: usize = header + sizes.iter().sum::<usize>();
        // Parts of at most `target` bytes each, and a new part at record `cut` if given.
        let pack = |target: usize, cut: Option<usize>| {
            let mut parts: Vec<(usize, BatchBuilder)> = Vec::new();
            for (i, (r, h)) in records.iter().zip(&headers).enumerate() {
                let (key, value) = (r.key.as_deref(), r.value.as_deref());
                let fits = cut != Some(i)
                    && parts
                        .last_mut()
                        .is_some_and(|(_, b)| b.try_append(r.timestamp, key, value, h));
                if !fits {
                    let mut b = BatchBuilder::new(target);
                    let appended = b.try_append(r.timestamp, key, value, h);
                    debug_assert!(appended, "an empty batch accepts any record");
                    parts.push((i, b));
                }
            }
            parts
        };
        let target = if bigger {
            self.batch_size
        } else {
            header + (total - header).div_ceil(2)
        };
        let mut parts = pack(target, None);
        if parts.len() < 2 {
            // Batch overhead kept it whole: halve by count.
            parts = pack(total, Some(records.len() / 2));
        }
        let span = batch.id_span / parts.len() as BatchId;
        if span == 0 {
            return Split::Whole(Box::new(batch));
        }
        let count = records.len();
        let starts: Vec<usize> = parts.iter().map(|(start, _)| *start).collect();
        let mut children = Vec::with_capacity(parts.len());
        for (j, (start, builder)) in parts.into_iter().enumerate() {
            let end = starts.get(j + 1).copied().unwrap_or(count);
            let stamped = batch
                .stamped
                .filter(|_| keep_sequences)
                .map(|(pid, epoch, base)| (pid, epoch, increment_sequence(base, start as i32)));
            let memory = if end == count {
                batch.memory.take(usize::MAX)
            } else {
                // What the records' permits were taken for: each as if alone in a batch.
                batch
                    .memory
                    .take(sizes[start..end].iter().sum::<usize>() + header * (end - start))
            };
            children.push(ProducerBatch {
                id: batch.id + span * j as BatchId,
                id_span: span,
                tp: batch.tp.clone(),
                builder: Some(builder),
                appendable: false,
                built: None,
                stamped,
                records: (end - start) as i32,
                completer: batch.completer.part(),
                created: batch.created,
                attempts: 0,
                retry_at: None,
                memory,
            });
        }
        let moved: Vec<(i32, &Completer)> = children
            .iter()
            .zip(&starts)
            .map(|(c, start)| (*start as i32, &c.completer))
            .collect();
        batch.completer.split_into(&moved);
        self.incomplete.remove(&batch.id);
        let n = children.len();
        for child in children {
            self.incomplete.insert(child.id);
            self.reenqueue(child);
        }
        if let Some(q) = self.queues.get_mut(&batch.tp) {
            q.in_flight.remove(&batch.id);
        }
        Split::Parts(n)
    }

    /// A batch of `tp` was written: the partition may have its full window in flight.
    pub fn acknowledged(&mut self, tp: &Tp) {
        if !self.acknowledged.contains(tp) {
            self.acknowledged.insert(tp.clone());
        }
    }

    /// A new producer id: no partition has a batch written under it yet.
    pub fn forget_acknowledged(&mut self) {
        self.acknowledged.clear();
    }

    /// Marks an in-flight batch finished (the caller completes its records).
    pub fn finish(&mut self, batch: &ProducerBatch) {
        self.incomplete.remove(&batch.id);
        if let Some(q) = self.queues.get_mut(&batch.tp) {
            q.in_flight.remove(&batch.id);
        }
        self.queues
            .retain(|_, q| !q.batches.is_empty() || !q.in_flight.is_empty());
    }

    /// Removes every queued (not in-flight) batch, e.g. to fail them after a fatal error.
    pub fn take_all_queued(&mut self) -> Vec<ProducerBatch> {
        let mut out = Vec::new();
        for q in self.queues.values_mut() {
            out.extend(q.batches.drain(..));
        }
        for b in &out {
            self.incomplete.remove(&b.id);
        }
        self.queues.retain(|_, q| !q.in_flight.is_empty());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spool_protocol::compression::Compression;

    fn tp(p: i32) -> Tp {
        (Arc::from("t"), p)
    }

    fn acc(batch_size: usize) -> Accumulator {
        Accumulator::new(
            batch_size,
            Duration::from_millis(10),
            Duration::from_secs(60),
            Arc::new(Semaphore::new(1 << 20)),
        )
    }

    /// Appends a record holding `value.len()` bytes of buffer memory.
    fn add(a: &mut Accumulator, p: i32, value: &[u8], now: Instant) -> bool {
        let pool = a.memory.clone();
        let permit = pool.try_acquire_many(value.len() as u32).unwrap();
        let new_batch = match a.append(&tp(p), Some(0), None, Some(value), &[], permit, false, now)
        {
            Append::Appended { new_batch, .. } => new_batch,
            Append::WouldStartBatch(_) => panic!("not asked to abort"),
        };
        new_batch
    }

    #[test]
    fn records_share_a_batch_until_it_is_full() {
        let mut a = acc(200);
        let now = Instant::now();
        assert!(add(&mut a, 0, &[1; 50], now));
        assert!(!add(&mut a, 0, &[1; 50], now));
        // The third does not fit in 200 bytes: a new batch, and the first becomes ready.
        assert!(add(&mut a, 0, &[1; 50], now) || add(&mut a, 0, &[1; 50], now));
        let d = a.drain(now, true, 1 << 20, |_| Some(1), |_| true);
        let sent = &d.by_broker[&1];
        assert_eq!(sent.len(), 1, "one batch per partition in flight");
        assert!(sent[0].record_count() >= 2);
        // Nothing more for this partition while one is in flight.
        let d2 = a.drain(
            now + Duration::from_secs(1),
            true,
            1 << 20,
            |_| Some(1),
            |_| true,
        );
        assert!(d2.by_broker.is_empty());
    }

    /// Three full batches of one partition queued, and a fourth still open.
    fn three_full_batches(a: &mut Accumulator, now: Instant) {
        for _ in 0..4 {
            // 150 bytes of value in a 200-byte batch: each record starts a new batch.
            add(a, 0, &[1; 150], now);
        }
    }

    /// An idempotent producer's accumulator (5 batches of a partition in flight) holding
    /// `three_full_batches`.
    fn pipelined(now: Instant) -> Accumulator {
        let mut a = acc(200);
        a.set_max_in_flight_per_partition(5);
        three_full_batches(&mut a, now);
        a.acknowledged(&tp(0));
        a
    }

    #[test]
    fn a_partition_pipelines_only_once_a_batch_of_it_was_written_under_the_producer_id() {
        let now = Instant::now();
        let mut a = acc(200);
        a.set_max_in_flight_per_partition(5);
        three_full_batches(&mut a, now);
        let first = drain_to_broker_1(&mut a, now).pop().unwrap();
        assert!(
            drain_to_broker_1(&mut a, now).is_empty(),
            "one at a time at first"
        );
        a.acknowledged(&first.tp);
        a.finish(&first);
        assert_eq!(drain_to_broker_1(&mut a, now).len(), 1);
        assert_eq!(drain_to_broker_1(&mut a, now).len(), 1, "pipelined now");
        a.forget_acknowledged();
        add(&mut a, 0, &[1; 150], now);
        assert!(
            drain_to_broker_1(&mut a, now + Duration::from_millis(10)).is_empty(),
            "a new producer id starts again at one"
        );
    }

    /// What a drain at `now` hands to broker 1 (every partition leads there).
    fn drain_to_broker_1(a: &mut Accumulator, now: Instant) -> Vec<ProducerBatch> {
        a.drain(now, true, 1 << 20, |_| Some(1), |_| true)
            .by_broker
            .remove(&1)
            .unwrap_or_default()
    }

    #[test]
    fn an_idempotent_partition_pipelines_batches_in_order_and_retries_go_alone() {
        let now = Instant::now();
        let mut a = pipelined(now);
        let drain = |a: &mut Accumulator| drain_to_broker_1(a, now);
        // One batch of a partition per request, but the next request may carry the next one.
        let mut sent = Vec::new();
        for _ in 0..3 {
            let mut d = drain(&mut a);
            assert_eq!(d.len(), 1);
            sent.push(d.remove(0));
        }
        let nth = |b: &ProducerBatch| b.id / ID_SPAN;
        assert_eq!(sent.iter().map(nth).collect::<Vec<_>>(), [0, 1, 2]);
        // The first two fail and come back (in any order): they are requeued by creation order,
        // ahead of the batch that never left.
        let mut second = sent.remove(1);
        let mut first = sent.remove(0);
        first.attempts = 1;
        second.attempts = 1;
        a.reenqueue(second);
        a.reenqueue(first);
        // Batch 2 is still in flight: the retry waits for it.
        assert!(
            drain(&mut a).is_empty(),
            "a retry waits for its partition's in-flight batches"
        );
        a.finish(&sent[0]);
        let order: Vec<BatchId> = (0..2)
            .map(|_| {
                let d = drain(&mut a);
                assert_eq!(d.len(), 1);
                let id = nth(&d[0]);
                a.finish(&d[0]);
                id
            })
            .collect();
        assert_eq!(order, [0, 1], "retried batches go first, oldest first");
        // The last batch is still open (lingering) until its linger passes.
        let later = now + Duration::from_millis(10);
        let d = a.drain(later, true, 1 << 20, |_| Some(1), |_| true);
        assert_eq!(nth(&d.by_broker[&1][0]), 3);
    }

    #[test]
    fn a_batch_knows_when_an_earlier_one_of_its_partition_is_unresolved() {
        let now = Instant::now();
        let mut a = pipelined(now);
        let take = |a: &mut Accumulator| drain_to_broker_1(a, now).remove(0);
        let (b0, b1) = (take(&mut a), take(&mut a));
        let tp = b1.tp.clone();
        assert!(a.has_earlier_unresolved(&tp, b1.id), "b0 is in flight");
        assert!(!a.has_earlier_unresolved(&tp, b0.id));
        // b0 comes back for a retry: still unresolved, now queued.
        a.reenqueue(b0);
        assert!(
            a.has_earlier_unresolved(&tp, b1.id),
            "b0 is queued for a retry"
        );
        let b0 = a.queues.get_mut(&tp).unwrap().batches.pop_front().unwrap();
        a.finish(&b0);
        assert!(!a.has_earlier_unresolved(&tp, b1.id), "b0 settled");
    }

    #[test]
    fn without_idempotence_a_partition_has_one_batch_in_flight() {
        let mut a = acc(200);
        let now = Instant::now();
        three_full_batches(&mut a, now);
        let d = a.drain(now, true, 1 << 20, |_| Some(1), |_| true);
        assert_eq!(d.by_broker[&1].len(), 1);
        let d = a.drain(now, true, 1 << 20, |_| Some(1), |_| true);
        assert!(d.by_broker.is_empty());
    }

    #[test]
    fn linger_holds_a_partial_batch() {
        let mut a = acc(16384);
        let t0 = Instant::now();
        add(&mut a, 0, b"x", t0);
        let d = a.drain(
            t0 + Duration::from_millis(5),
            true,
            1 << 20,
            |_| Some(1),
            |_| true,
        );
        assert!(d.by_broker.is_empty());
        assert_eq!(d.next_wake, Some(t0 + Duration::from_millis(10)));
        let d = a.drain(
            t0 + Duration::from_millis(10),
            true,
            1 << 20,
            |_| Some(1),
            |_| true,
        );
        assert_eq!(d.by_broker[&1].len(), 1);
    }

    #[test]
    fn flush_makes_batches_ready_and_tracks_completion() {
        let mut a = acc(16384);
        let t0 = Instant::now();
        add(&mut a, 0, b"x", t0);
        add(&mut a, 1, b"y", t0);
        let upto = a.begin_flush();
        assert!(!a.flushed(upto));
        let mut d = a.drain(t0, true, 1 << 20, |_| Some(7), |_| true);
        let batches = d.by_broker.remove(&7).unwrap();
        assert_eq!(batches.len(), 2, "both partitions in one request");
        for b in &batches {
            a.finish(b);
        }
        assert!(a.flushed(upto));
        assert!(a.is_empty());
    }

    #[test]
    fn retries_go_first_after_backoff() {
        let mut a = acc(100);
        let t0 = Instant::now();
        add(&mut a, 0, &[1; 60], t0);
        add(&mut a, 0, &[2; 60], t0);
        let mut d = a.drain(t0, true, 1 << 20, |_| Some(1), |_| true);
        let mut first = d.by_broker.remove(&1).unwrap().pop().unwrap();
        let first_id = first.id;
        first.retry_at = Some(t0 + Duration::from_millis(100));
        a.reenqueue(first);
        let d = a.drain(
            t0 + Duration::from_millis(50),
            true,
            1 << 20,
            |_| Some(1),
            |_| true,
        );
        assert!(d.by_broker.is_empty(), "backing off");
        let mut d = a.drain(
            t0 + Duration::from_millis(100),
            true,
            1 << 20,
            |_| Some(1),
            |_| true,
        );
        assert_eq!(
            d.by_broker.remove(&1).unwrap()[0].id,
            first_id,
            "order kept"
        );
    }

    #[test]
    fn unknown_leaders_and_full_brokers_wait() {
        let mut a = acc(16384);
        let t0 = Instant::now();
        add(&mut a, 0, b"x", t0);
        a.close();
        let d = a.drain(t0, true, 1 << 20, |_| None, |_| true);
        assert!(d.unknown_leaders.contains("t"));
        let d = a.drain(t0, true, 1 << 20, |_| Some(1), |_| false);
        assert!(d.by_broker.is_empty());
        let d = a.drain(t0, true, 1 << 20, |_| Some(1), |_| true);
        assert_eq!(d.by_broker[&1].len(), 1);
    }

    #[test]
    fn request_size_caps_a_drain_but_not_its_first_batch() {
        let mut a = acc(16384);
        let t0 = Instant::now();
        for p in 0..3 {
            add(&mut a, p, &[0; 1000], t0);
        }
        a.close();
        let d = a.drain(t0, true, 500, |_| Some(1), |_| true);
        assert_eq!(d.by_broker[&1].len(), 1);
        let d = a.drain(t0, true, 2500, |_| Some(1), |_| true);
        assert_eq!(d.by_broker[&1].len(), 2);
    }

    #[test]
    fn batches_expire_after_delivery_timeout() {
        let mut a = Accumulator::new(
            16384,
            Duration::ZERO,
            Duration::from_secs(1),
            Arc::new(Semaphore::new(1000)),
        );
        let t0 = Instant::now();
        add(&mut a, 0, b"x", t0);
        let d = a.drain(
            t0 + Duration::from_secs(2),
            false,
            1 << 20,
            |_| None,
            |_| true,
        );
        assert_eq!(d.expired.len(), 1);
        assert!(a.is_empty());
    }

    #[test]
    fn wall_clock_reads_the_system_clock_at_most_every_reread() {
        let sys = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
        };
        let mut c = WallClock::default();
        let t0 = Instant::now();
        let before = sys();
        let a = c.ms_at(t0);
        assert!(before <= a && a <= sys());
        // Within REREAD: the monotonic clock's progress, exactly.
        assert_eq!(c.ms_at(t0 + Duration::from_millis(50)), a + 50);
        assert_eq!(c.last.unwrap().0, t0);
        // An instant before the reading (read by another caller earlier) does not go back.
        assert_eq!(c.ms_at(t0 - Duration::from_millis(5)), a);
        // Past REREAD: read again.
        let later = t0 + WallClock::REREAD;
        c.ms_at(later);
        assert_eq!(c.last.unwrap().0, later);
    }

    /// Builds a drained batch as the sender does, stamped with producer id 7, epoch 0.
    fn build(b: &mut ProducerBatch, base_sequence: i32, compression: Compression) {
        let builder = b.builder.take().unwrap();
        b.built = Some(builder.build(7, 0, base_sequence, compression).unwrap());
        b.stamped = Some((7, 0, base_sequence));
    }

    #[tokio::test]
    async fn a_split_batch_keeps_its_place_its_sequences_its_memory_and_its_records() {
        for compression in [Compression::None, Compression::Lz4] {
            let mut a = acc(16384);
            a.set_max_in_flight_per_partition(5);
            let pool = a.memory.clone();
            let full = pool.available_permits();
            let t0 = Instant::now();
            let mut futures = Vec::new();
            for i in 0..10u8 {
                let permit = pool.try_acquire_many(100).unwrap();
                let ts = Some(1000 + i64::from(i));
                match a.append(&tp(0), ts, None, Some(&[i; 100]), &[], permit, false, t0) {
                    Append::Appended { delivery, .. } => futures.push(delivery),
                    Append::WouldStartBatch(_) => unreachable!(),
                }
            }
            a.acknowledged(&tp(0));
            let later = t0 + Duration::from_millis(10);
            let mut big = drain_to_broker_1(&mut a, later).pop().unwrap();
            build(&mut big, 0, compression);
            // The next batch (sequence 10) is in flight behind it.
            add(&mut a, 0, &[99; 100], later);
            let mut next = drain_to_broker_1(&mut a, later + Duration::from_millis(10))
                .pop()
                .unwrap();
            build(&mut next, 10, compression);
            let (big_id, next_id) = (big.id, next.id);

            assert!(
                matches!(a.split(big, true), Split::Parts(2)),
                "halves: it was below batch.size"
            );
            assert_eq!(
                pool.available_permits(),
                full - 1100,
                "memory moves to the parts"
            );
            assert!(
                a.has_earlier_unresolved(&tp(0), next_id),
                "the parts come first"
            );
            // The parts carry sequence numbers: each goes alone, so not while `next` is in
            // flight; `next` then fails (out of sequence) and comes back behind them.
            assert!(drain_to_broker_1(&mut a, later).is_empty());
            next.attempts = 1;
            next.retry_at = Some(later);
            a.reenqueue(next);
            let mut parts = Vec::new();
            for base in [40, 60] {
                let mut part = drain_to_broker_1(&mut a, later).pop().unwrap();
                assert!(
                    drain_to_broker_1(&mut a, later).is_empty(),
                    "one part at a time"
                );
                let sequence = part.stamped.unwrap().2;
                build(&mut part, sequence, compression);
                let values: Vec<u8> = part
                    .records(1 << 20)
                    .unwrap()
                    .iter()
                    .map(|r| r.value.as_ref().unwrap()[0])
                    .collect();
                parts.push((part.id, part.stamped, values));
                a.finish(&part);
                part.complete(Ok((base, -1)));
            }
            assert!(big_id <= parts[0].0 && parts[0].0 < parts[1].0 && parts[1].0 < next_id);
            assert_eq!(parts[0].1, Some((7, 0, 0)));
            assert_eq!(parts[1].1, Some((7, 0, 5)), "consecutive sequences");
            assert_eq!(parts[0].2, [0, 1, 2, 3, 4]);
            assert_eq!(parts[1].2, [5, 6, 7, 8, 9]);
            let next = drain_to_broker_1(&mut a, later).pop().unwrap();
            assert_eq!(next.id, next_id, "then the batch after it");
            a.finish(&next);
            next.complete(Ok((70, -1)));
            let mut got = Vec::new();
            for f in futures {
                let m = f.await.unwrap();
                got.push((m.offset, m.timestamp));
            }
            let want: Vec<(i64, i64)> = (0..10)
                .map(|i| ((if i < 5 { 40 + i } else { 55 + i }), 1000 + i))
                .collect();
            assert_eq!(got, want, "{compression:?}");
            assert_eq!(pool.available_permits(), full);
            assert!(a.is_empty());
        }
    }

    #[test]
    fn a_batch_too_large_for_batch_size_splits_into_batch_size_parts_and_one_record_does_not_split()
    {
        let mut a = acc(1000);
        let t0 = Instant::now();
        // A batch grown past batch.size cannot be made by `add`; build one by hand.
        let mut big = BatchBuilder::new(10_000);
        for i in 0..30u8 {
            assert!(big.try_append(0, None, Some(&[i; 100]), &[]));
        }
        add(&mut a, 0, &[1; 10], t0);
        let mut b = drain_to_broker_1(&mut a, t0 + Duration::from_millis(10))
            .pop()
            .unwrap();
        b.builder = Some(big);
        b.records = 30;
        build(&mut b, 0, Compression::None);
        let Split::Parts(parts) = a.split(b, false) else {
            panic!("not split")
        };
        assert!((3..=5).contains(&parts), "about 1000 bytes each: {parts}");
        assert!(
            add(&mut a, 0, &[7; 10], t0),
            "a split part takes no new records"
        );
        assert!(
            a.no_growth.contains(&tp(0)),
            "nor do its batches grow any more"
        );
        let mut sizes = Vec::new();
        while let Some(p) = drain_to_broker_1(&mut a, t0 + Duration::from_millis(10)).pop() {
            assert_eq!(
                p.stamped, None,
                "sequences not kept: stamped again when sent"
            );
            sizes.push(p.size());
            a.finish(&p);
        }
        assert_eq!(sizes.len(), parts + 1);
        assert!(sizes.iter().all(|s| *s <= 1000), "{sizes:?}");

        add(&mut a, 1, &[1; 10], t0);
        let mut one = drain_to_broker_1(&mut a, t0 + Duration::from_millis(10))
            .pop()
            .unwrap();
        build(&mut one, 0, Compression::None);
        assert!(
            matches!(a.split(one, true), Split::Whole(_)),
            "a single record cannot be split"
        );
    }

    #[test]
    fn a_backlogged_partition_grows_its_waiting_batch_which_goes_as_soon_as_there_is_room() {
        let mut a = acc(200);
        a.set_backlog_batch_size(1000);
        let t0 = Instant::now();
        add(&mut a, 0, &[1; 150], t0);
        let first = drain_to_broker_1(&mut a, t0 + Duration::from_millis(10))
            .pop()
            .unwrap();
        // One batch of the partition is in flight, as many as it may have: the records behind
        // it go into one batch past batch.size instead of a batch each.
        let new_batches = (0..5).filter(|_| add(&mut a, 0, &[2; 150], t0)).count();
        assert_eq!(new_batches, 1);
        assert!(
            drain_to_broker_1(&mut a, t0).is_empty(),
            "no room in flight"
        );
        a.finish(&first);
        // Full: it goes without waiting for its linger.
        let grown = drain_to_broker_1(&mut a, t0).pop().unwrap();
        assert_eq!(grown.record_count(), 5);
        assert!((200..=1000).contains(&grown.size()), "{}", grown.size());
        // Up to backlog_batch_size (five of these), then a new batch, which grows too: it
        // waits behind the older one.
        let more = (0..7).filter(|_| add(&mut a, 0, &[3; 150], t0)).count();
        assert_eq!(more, 2);
        a.finish(&grown);
        // A partition with room in flight: a full batch is followed by a new one (it goes at
        // the next drain); only a batch with an older one still waiting before it grows.
        let fresh = (0..3).filter(|_| add(&mut a, 1, &[4; 150], t0)).count();
        assert_eq!(fresh, 2);
    }

    #[test]
    fn an_old_batch_does_not_grow() {
        let mut a = acc(200);
        a.set_backlog_batch_size(1000);
        let t0 = Instant::now();
        assert!(add(&mut a, 1, &[1; 150], t0));
        assert!(add(&mut a, 1, &[1; 150], t0), "room in flight: a new batch");
        // The newer batch waits behind the older: it would grow, but it is past an eighth of
        // the delivery timeout (60 s here).
        assert!(add(&mut a, 1, &[1; 150], t0 + Duration::from_secs(8)));
        assert!(
            !add(&mut a, 1, &[1; 150], t0 + Duration::from_secs(8)),
            "a young one grows"
        );
    }

    #[test]
    fn buffer_memory_comes_back_when_a_batch_is_done() {
        let mut a = acc(200);
        let pool = a.memory.clone();
        let full = pool.available_permits();
        let t0 = Instant::now();
        add(&mut a, 0, &[1; 50], t0);
        add(&mut a, 0, &[1; 50], t0);
        assert_eq!(pool.available_permits(), full - 100);
        let batch = drain_to_broker_1(&mut a, t0 + Duration::from_secs(1))
            .pop()
            .unwrap();
        assert_eq!(pool.available_permits(), full - 100, "held while in flight");
        batch.complete(Ok((0, -1)));
        assert_eq!(pool.available_permits(), full);
    }

    #[test]
    fn abort_on_new_batch_hands_the_permit_back() {
        let mut a = acc(100);
        let pool = a.memory.clone();
        let permit = || pool.try_acquire_many(1).unwrap();
        let t0 = Instant::now();
        add(&mut a, 0, &[0; 80], t0);
        // Some(new_batch) when appended, None when handed back.
        let mut try_add = |p: i32, abort: bool| match a.append(
            &tp(p),
            Some(0),
            None,
            Some(&[0; 80]),
            &[],
            permit(),
            abort,
            t0,
        ) {
            Append::Appended { new_batch, .. } => Some(new_batch),
            Append::WouldStartBatch(_) => None,
        };
        assert_eq!(try_add(0, true), None);
        assert_eq!(try_add(1, true), None, "also for an empty partition");
        assert_eq!(try_add(1, false), Some(true));
    }
}
