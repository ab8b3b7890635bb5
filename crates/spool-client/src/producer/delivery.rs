//! Delivery futures that share one outcome per batch.
//!
//! Every record of a batch succeeds or fails together, so the batch holds a single shared
//! outcome and each record's future holds a reference to it plus the record's index: one
//! allocation per batch instead of a channel per record, and completing a batch is one store
//! and one wake per waiting task.
//!
//! A batch the broker found too large is split (as Kafka's Java producer does): its outcome then
//! says where each record went instead of how it ended, and the futures follow their record.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use super::RecordMetadata;
use crate::error::{Error, Result};

/// A batch's partition and outcome: (base offset, log-append time) or why it failed.
#[derive(Debug)]
struct Outcome {
    topic: Arc<str>,
    partition: i32,
    result: OnceLock<Result<(i64, i64)>>,
    /// Set instead of `result` when the batch was split: its parts in record order, each with
    /// the index (in this batch) of its first record.
    moved: OnceLock<Vec<(i32, Arc<Outcome>)>>,
    /// Tasks waiting for `result` or `moved`; drained when either is set.
    waiting: Mutex<Vec<Waker>>,
}

impl Outcome {
    fn set(&self, result: Result<(i64, i64)>) {
        // A split batch's records are completed by its parts.
        if self.moved.get().is_none() && self.result.set(result).is_ok() {
            self.wake_all();
        }
    }

    fn wake_all(&self) {
        let waiting = std::mem::take(&mut *self.waiting.lock().unwrap());
        for w in waiting {
            w.wake();
        }
    }

    /// Where record `index` of this batch went, if the batch was split: its part's outcome
    /// and its index there.
    fn moved_to(&self, index: i32) -> Option<(&Arc<Outcome>, i32)> {
        let parts = self.moved.get()?;
        let at = parts.partition_point(|(first, _)| *first <= index).max(1) - 1;
        let (first, part) = &parts[at];
        Some((part, index - first))
    }
}

/// The batch's side. Completing twice keeps the first outcome; dropping it uncompleted (the
/// producer went away) fails the batch's records with [`Error::Closed`].
#[derive(Debug)]
pub(crate) struct Completer(Arc<Outcome>);

impl Completer {
    /// The completer of a batch for `partition` of `topic`.
    pub fn new(topic: Arc<str>, partition: i32) -> Self {
        Completer(Arc::new(Outcome {
            topic,
            partition,
            result: OnceLock::new(),
            moved: OnceLock::new(),
            waiting: Mutex::default(),
        }))
    }

    /// A completer for part of this batch, after a split (same topic and partition).
    pub fn part(&self) -> Completer {
        Completer::new(self.0.topic.clone(), self.0.partition)
    }

    /// The batch was split: its records' futures follow them into `parts`, given in record
    /// order with the index (in this batch) of each part's first record.
    pub fn split_into(self, parts: &[(i32, &Completer)]) {
        let moved = parts
            .iter()
            .map(|(first, c)| (*first, c.0.clone()))
            .collect();
        if self.0.result.get().is_none() && self.0.moved.set(moved).is_ok() {
            self.0.wake_all();
        }
    }

    /// The future of the batch's record number `index`. It holds only the batch's outcome (no
    /// per-record reference to the topic name: fewer shared counters touched per record).
    pub fn future(&self, index: i32, timestamp: i64) -> DeliveryFuture {
        DeliveryFuture {
            outcome: self.0.clone(),
            index,
            timestamp,
            slot: None,
        }
    }

    pub fn complete(self, result: Result<(i64, i64)>) {
        self.0.set(result);
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        self.0.set(Err(Error::Closed("producer")));
    }
}

/// Resolves when the broker has acknowledged (or definitively rejected) one record.
#[derive(Debug)]
#[must_use = "a delivery future reports whether the record was written"]
pub struct DeliveryFuture {
    outcome: Arc<Outcome>,
    /// The record's position in its batch.
    index: i32,
    /// The record's create time.
    timestamp: i64,
    /// Where this future's waker sits in `outcome.waiting`, once registered.
    slot: Option<usize>,
}

impl DeliveryFuture {
    /// The partition the record was queued for.
    pub fn partition(&self) -> i32 {
        self.outcome.partition
    }

    /// Whether the outcome is known: awaiting the future then returns at once. A cheap check
    /// (one atomic load) for callers that track many records without a task per record.
    pub fn is_done(&self) -> bool {
        let (mut outcome, mut index) = (&self.outcome, self.index);
        loop {
            if outcome.result.get().is_some() {
                return true;
            }
            match outcome.moved_to(index) {
                Some((part, i)) => (outcome, index) = (part, i),
                None => return false,
            }
        }
    }

    /// Follows the record into the part of a split batch; false when it was not split.
    fn follow_split(&mut self) -> bool {
        let Some((part, index)) = self.outcome.moved_to(self.index) else {
            return false;
        };
        self.outcome = part.clone();
        self.index = index;
        self.slot = None;
        true
    }

    fn metadata(&self, result: &Result<(i64, i64)>) -> Result<RecordMetadata> {
        match result {
            Ok((base, log_append_time)) => Ok(RecordMetadata {
                topic: self.outcome.topic.clone(),
                partition: self.outcome.partition,
                offset: if *base >= 0 {
                    base + i64::from(self.index)
                } else {
                    -1
                },
                timestamp: if *log_append_time >= 0 {
                    *log_append_time
                } else {
                    self.timestamp
                },
            }),
            Err(e) => Err(e.clone()),
        }
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            if let Some(r) = self.outcome.result.get() {
                return Poll::Ready(self.metadata(r));
            }
            if self.follow_split() {
                continue;
            }
            let outcome = self.outcome.clone();
            let mut waiting = outcome.waiting.lock().unwrap();
            // `set` and `split_into` store before they take the lock: seen here (look again),
            // or our waker is woken.
            if outcome.result.get().is_some() || outcome.moved.get().is_some() {
                continue;
            }
            match self.slot {
                Some(i) if i < waiting.len() => {
                    if !waiting[i].will_wake(cx.waker()) {
                        waiting[i] = cx.waker().clone();
                    }
                }
                _ => {
                    self.slot = Some(waiting.len());
                    waiting.push(cx.waker().clone());
                }
            }
            return Poll::Pending;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_of_a_batch_get_consecutive_offsets_and_their_own_timestamps() {
        let c = Completer::new(Arc::from("t"), 3);
        let a = c.future(0, 100);
        let b = c.future(1, 200);
        let waiter = tokio::spawn(b);
        tokio::task::yield_now().await;
        c.complete(Ok((40, -1)));
        let b = waiter.await.unwrap().unwrap();
        assert!(a.is_done());
        assert_eq!(a.partition(), 3);
        let a = a.await.unwrap();
        assert_eq!((a.offset, a.timestamp, a.partition), (40, 100, 3));
        assert_eq!((b.offset, b.timestamp), (41, 200));
    }

    #[tokio::test]
    async fn futures_follow_their_records_into_the_parts_of_a_split_batch() {
        let c = Completer::new(Arc::from("t"), 2);
        let futures: Vec<_> = (0..5).map(|i| c.future(i, 100 + i64::from(i))).collect();
        // One record is awaited across the split, the others are looked at afterwards.
        let mut futures = futures.into_iter();
        let first = tokio::spawn(futures.next().unwrap());
        tokio::task::yield_now().await;
        let (a, b) = (c.part(), c.part());
        c.split_into(&[(0, &a), (3, &b)]);
        let rest: Vec<_> = futures.collect();
        assert!(rest.iter().all(|f| !f.is_done()), "moved is not done");
        // The second part splits again.
        let (b1, b2) = (b.part(), b.part());
        b.split_into(&[(0, &b1), (1, &b2)]);
        b2.complete(Ok((70, -1)));
        assert!(rest[3].is_done() && !rest[2].is_done());
        a.complete(Ok((10, -1)));
        b1.complete(Ok((60, -1)));
        let first = first.await.unwrap().unwrap();
        assert_eq!(
            (first.offset, first.timestamp, first.partition),
            (10, 100, 2)
        );
        let mut got = Vec::new();
        for f in rest {
            let m = f.await.unwrap();
            got.push((m.offset, m.timestamp));
        }
        assert_eq!(got, [(11, 101), (12, 102), (60, 103), (70, 104)]);
    }

    #[tokio::test]
    async fn a_split_batch_is_not_failed_by_its_drop() {
        let c = Completer::new(Arc::from("t"), 0);
        let f = c.future(1, 5);
        let p = c.part();
        c.split_into(&[(0, &p)]);
        p.complete(Ok((7, -1)));
        assert_eq!(f.await.unwrap().offset, 8);
    }

    #[tokio::test]
    async fn log_append_time_and_unknown_offsets() {
        let c = Completer::new(Arc::from("t"), 3);
        let f = c.future(5, 1);
        assert!(!f.is_done());
        c.complete(Ok((-1, 777)));
        let m = f.await.unwrap();
        assert_eq!((m.offset, m.timestamp), (-1, 777));
    }

    #[tokio::test]
    async fn a_dropped_batch_fails_its_records_and_the_first_outcome_wins() {
        let c = Completer::new(Arc::from("t"), 3);
        let f = c.future(0, 1);
        drop(c);
        assert!(matches!(f.await, Err(Error::Closed(_))));
        let c = Completer::new(Arc::from("t"), 3);
        let f = c.future(0, 1);
        let outcome = c.0.clone();
        c.complete(Ok((9, -1)));
        outcome.set(Err(Error::Closed("producer")));
        assert_eq!(f.await.unwrap().offset, 9);
    }
}
