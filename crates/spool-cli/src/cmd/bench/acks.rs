//! Acknowledgements of a full-speed run, tracked without a task or a channel message per
//! record.
//!
//! At a million records a second, a task per delivery future (and a wake per record) costs
//! the benchmark as much CPU as the producer itself. A partition's records are acknowledged
//! in the order they were sent, so each partition keeps its futures in a queue and only the
//! front of each queue needs looking at: [`Unacked::collect_done`] takes the resolved fronts
//! (a cheap check, no waker) after sends, [`Unacked::finish`] awaits the rest.

use std::collections::VecDeque;
use std::time::Instant;

use futures::future::{select_all, FutureExt};
use spool_client::DeliveryFuture;

use super::produce::Sent;
use super::progress::Counters;

/// Records sent and not yet seen acknowledged, per partition in send order.
pub(super) struct Unacked {
    queues: Vec<VecDeque<(Instant, DeliveryFuture)>>,
    bytes_per_record: u64,
    /// The run's start: `Sent::elapsed` runs from here to the last acknowledgement.
    start: Instant,
}

impl Unacked {
    pub fn new(start: Instant, bytes_per_record: u64) -> Unacked {
        Unacked {
            queues: Vec::new(),
            bytes_per_record,
            start,
        }
    }

    /// Tracks a record sent at `from` (latency counts from there).
    pub fn push(&mut self, from: Instant, delivery: DeliveryFuture) {
        let p = usize::try_from(delivery.partition()).unwrap_or(0);
        if p >= self.queues.len() {
            self.queues.resize_with(p + 1, VecDeque::new);
        }
        self.queues[p].push_back((from, delivery));
    }

    /// Moves every acknowledged record at the front of its partition's queue into `sent`
    /// and `counters`, with `now` as its acknowledgement time.
    pub fn collect_done(&mut self, now: Instant, sent: &mut Sent, counters: &Counters) {
        let mut acked = 0;
        for queue in &mut self.queues {
            while let Some((from, delivery)) = queue.pop_front() {
                if !delivery.is_done() {
                    queue.push_front((from, delivery));
                    break;
                }
                let result = delivery
                    .now_or_never()
                    .expect("a delivery future whose outcome is known is ready");
                match result {
                    Ok(_) => {
                        acked += 1;
                        sent.latencies.record(now.saturating_duration_since(from));
                    }
                    Err(e) => {
                        sent.failed += 1;
                        counters.fail();
                        sent.first_error.get_or_insert(e);
                    }
                }
                sent.elapsed = now.saturating_duration_since(self.start);
            }
        }
        sent.acked += acked;
        counters.add(acked, acked * self.bytes_per_record);
    }

    /// Waits for every tracked record, collecting each as its partition's front resolves.
    pub async fn finish(mut self, sent: &mut Sent, counters: &Counters) {
        loop {
            self.collect_done(Instant::now(), sent, counters);
            let fronts: Vec<&mut DeliveryFuture> = self
                .queues
                .iter_mut()
                .filter_map(|q| q.front_mut().map(|(_, delivery)| delivery))
                .collect();
            if fronts.is_empty() {
                return;
            }
            // The outcome is read again by `collect_done`; a delivery future can be polled
            // after it was ready.
            let _ = select_all(fronts).await;
        }
    }
}
