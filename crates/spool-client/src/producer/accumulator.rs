//! The record accumulator: per-partition queues of batches waiting to be sent.
//!
//! Pure bookkeeping, no I/O and no clock of its own (callers pass `now`), so batching and linger
//! are tested directly. The sender task drains it; `Producer::send` appends to it.
//!
//! Rules (as in Kafka's `RecordAccumulator`):
//! - a record joins the newest batch of its partition if it fits, else starts a new batch;
//! - a partition's first batch is *ready* when it is full (a newer batch exists), its `linger`
//!   has passed, a flush covers it, or the producer is closing;
//! - at most `max_in_flight_per_partition` batches per partition are in flight: one unless the
//!   producer is idempotent, whose sequence numbers let the broker refuse a batch that overtook
//!   a failed one (then up to five, as Kafka allows); a retried batch waits until nothing of its
//!   partition is in flight, and batches are requeued in creation order, so retries cannot
//!   reorder records;
//! - a batch not delivered within `delivery_timeout` of its creation fails.

use rustc_hash::FxHashMap;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use spool_protocol::records::BatchBuilder;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::delivery::{Completer, DeliveryFuture};
use crate::error::Result;

/// A topic-partition; the topic name is shared by every batch and record of the topic.
pub(crate) type Tp = (Arc<str>, i32);

/// One batch of records for one partition.
pub(crate) struct ProducerBatch {
    pub id: u64,
    pub tp: Tp,
    /// Open while records are appended; taken when the batch is built.
    pub builder: Option<BatchBuilder>,
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
    in_flight: BTreeSet<u64>,
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
    next_id: u64,
    /// Ids of batches not yet completed (queued or in flight).
    incomplete: BTreeSet<u64>,
    /// Batches with an id below this are ready at once (set by flush).
    flush_upto: u64,
    closing: bool,
    /// Rotates where draining starts so no partition starves.
    drain_start: usize,
    /// Gives records without a timestamp their create time.
    wall_clock: WallClock,
    /// Batches of one partition that may be in flight at once.
    max_in_flight_per_partition: usize,
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
        }
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
        if let Some(last) = queue.batches.back_mut() {
            if let Some(builder) = last.builder.as_mut() {
                if builder.try_append(timestamp, key, value, headers) {
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
        self.next_id += 1;
        self.incomplete.insert(id);
        queue.batches.push_back(ProducerBatch {
            id,
            tp: tp.clone(),
            builder: Some(builder),
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
    pub fn begin_flush(&mut self) -> u64 {
        self.flush_upto = self.next_id;
        self.next_id
    }

    /// True when no batch with an id below `upto` is incomplete.
    pub fn flushed(&self, upto: u64) -> bool {
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
            let queue = self.queues.get_mut(&tp).expect("key from map");
            if queue.in_flight.len() >= self.max_in_flight_per_partition {
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
            // behind it and must come back first, in order.
            if front.attempts > 0 && !queue.in_flight.is_empty() {
                continue;
            }
            let deadline = front.created + self.delivery_timeout;
            let mut wake = deadline;
            let ready_at = match front.retry_at {
                Some(t) => t,
                None if queue.batches.len() > 1 || front.id < self.flush_upto || self.closing => {
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
            if !queue.batches.is_empty() && queue.in_flight.len() < self.max_in_flight_per_partition
            {
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
    pub fn has_earlier_unresolved(&self, tp: &Tp, id: u64) -> bool {
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
        a
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
        assert_eq!(sent.iter().map(|b| b.id).collect::<Vec<_>>(), [0, 1, 2]);
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
        let order: Vec<u64> = (0..2)
            .map(|_| {
                let d = drain(&mut a);
                assert_eq!(d.len(), 1);
                let id = d[0].id;
                a.finish(&d[0]);
                id
            })
            .collect();
        assert_eq!(order, [0, 1], "retried batches go first, oldest first");
        // The last batch is still open (lingering) until its linger passes.
        let later = now + Duration::from_millis(10);
        let d = a.drain(later, true, 1 << 20, |_| Some(1), |_| true);
        assert_eq!(d.by_broker[&1][0].id, 3);
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

    #[test]
    fn buffer_memory_comes_back_when_a_batch_is_done() {
        let mut a = acc(200);
        let pool = a.memory.clone();
        let full = pool.available_permits();
        let t0 = Instant::now();
        add(&mut a, 0, &[1; 50], t0);
        add(&mut a, 0, &[1; 50], t0);
        assert_eq!(pool.available_permits(), full - 100);
        let d = a.drain(
            t0 + Duration::from_secs(1),
            true,
            1 << 20,
            |_| Some(1),
            |_| true,
        );
        let batch = d.by_broker.into_values().flatten().next().unwrap();
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
        let r = a.append(
            &tp(0),
            Some(0),
            None,
            Some(&[0; 80]),
            &[],
            permit(),
            true,
            t0,
        );
        assert!(matches!(r, Append::WouldStartBatch(_)));
        let r = a.append(
            &tp(1),
            Some(0),
            None,
            Some(&[0; 80]),
            &[],
            permit(),
            true,
            t0,
        );
        assert!(
            matches!(r, Append::WouldStartBatch(_)),
            "also for an empty partition"
        );
        let r = a.append(
            &tp(1),
            Some(0),
            None,
            Some(&[0; 80]),
            &[],
            permit(),
            false,
            t0,
        );
        assert!(matches!(
            r,
            Append::Appended {
                new_batch: true,
                ..
            }
        ));
    }
}
