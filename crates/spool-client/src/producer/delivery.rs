//! Delivery futures that share one outcome per batch.
//!
//! Every record of a batch succeeds or fails together, so the batch holds a single shared
//! outcome and each record's future holds a reference to it plus the record's index: one
//! allocation per batch instead of a channel per record, and completing a batch is one store
//! and one wake per waiting task.

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
    /// Tasks waiting for `result`; drained when it is set.
    waiting: Mutex<Vec<Waker>>,
}

impl Outcome {
    fn set(&self, result: Result<(i64, i64)>) {
        if self.result.set(result).is_ok() {
            let waiting = std::mem::take(&mut *self.waiting.lock().unwrap());
            for w in waiting {
                w.wake();
            }
        }
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
            waiting: Mutex::default(),
        }))
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
        self.outcome.result.get().is_some()
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
        if let Some(r) = self.outcome.result.get() {
            return Poll::Ready(self.metadata(r));
        }
        let outcome = self.outcome.clone();
        let mut waiting = outcome.waiting.lock().unwrap();
        // `set` stores the result before it takes the lock: seen here, or our waker is woken.
        if let Some(r) = outcome.result.get() {
            return Poll::Ready(self.metadata(r));
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
        Poll::Pending
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
