//! Idempotent-producer state: producer id, epoch and the next sequence number per partition.
//!
//! Kafka's rules for a non-transactional idempotent producer (KIP-98, KIP-360), as its Java
//! client applies them:
//! - `InitProducerId` (no transactional id) hands out a producer id and epoch;
//! - each partition's batches carry consecutive sequence numbers starting at 0; a retried batch
//!   keeps its sequence, so the broker drops it if the first attempt was written;
//! - `OUT_OF_ORDER_SEQUENCE_NUMBER` or `UNKNOWN_PRODUCER_ID` mean the broker's and the
//!   producer's views diverged: the producer *bumps its epoch* (locally, epoch + 1; a new producer
//!   id once the epoch is exhausted) and restarts every partition's sequence at 0. The broker
//!   accepts a higher epoch starting at sequence 0. Bumping waits until nothing is in flight.
//! - a batch that failed for certain (the broker rejected it) gives its sequence numbers back;
//!   one whose fate is unknown (timed out) forces a bump instead, so no sequence is ever reused
//!   for different records under one epoch.

use std::collections::HashMap;

use super::accumulator::Tp;

/// Producer id state of an idempotent producer.
#[derive(Debug)]
pub(crate) struct ProducerIdState {
    producer_id: i64,
    epoch: i16,
    next_sequence: HashMap<Tp, i32>,
    bump_requested: bool,
}

/// Kafka's sequence arithmetic: sequences wrap from `i32::MAX` to 0.
pub(crate) fn increment_sequence(sequence: i32, by: i32) -> i32 {
    if sequence > i32::MAX - by {
        by - (i32::MAX - sequence) - 1
    } else {
        sequence + by
    }
}

impl ProducerIdState {
    pub fn new() -> Self {
        ProducerIdState {
            producer_id: -1,
            epoch: -1,
            next_sequence: HashMap::new(),
            bump_requested: false,
        }
    }

    /// True once a producer id was obtained.
    pub fn has_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Current producer id and epoch.
    pub fn id_and_epoch(&self) -> (i64, i16) {
        (self.producer_id, self.epoch)
    }

    /// Installs a fresh id from `InitProducerId`; sequences restart.
    pub fn set_id(&mut self, producer_id: i64, epoch: i16) {
        self.producer_id = producer_id;
        self.epoch = epoch;
        self.next_sequence.clear();
        self.bump_requested = false;
    }

    /// Stamps a batch of `count` records for `tp`: returns (producer id, epoch, base sequence).
    pub fn assign(&mut self, tp: &Tp, count: i32) -> (i64, i16, i32) {
        let next = self.next_sequence.entry(tp.clone()).or_insert(0);
        let base = *next;
        *next = increment_sequence(base, count);
        (self.producer_id, self.epoch, base)
    }

    /// True when a batch stamped with `stamp` may be resent as is (same id and epoch).
    pub fn is_current(&self, stamp: Option<(i64, i16, i32)>) -> bool {
        matches!(stamp, Some((p, e, _)) if p == self.producer_id && e == self.epoch)
    }

    /// Gives back the sequences of a batch that was stamped and then not sent (its build
    /// failed). Only valid while it is the partition's latest stamped batch, as it is then.
    pub fn rollback(&mut self, tp: &Tp, stamp: (i64, i16, i32)) {
        if stamp.0 == self.producer_id && stamp.1 == self.epoch {
            self.next_sequence.insert(tp.clone(), stamp.2);
        }
    }

    /// Asks for an epoch bump; it happens once nothing is in flight.
    pub fn request_bump(&mut self) {
        self.bump_requested = true;
    }

    pub fn bump_requested(&self) -> bool {
        self.bump_requested
    }

    /// Bumps the epoch and restarts all sequences. Returns false when the epoch is exhausted and
    /// a new producer id must be fetched instead.
    pub fn bump(&mut self) -> bool {
        if self.epoch == i16::MAX {
            self.producer_id = -1;
            self.epoch = -1;
            self.next_sequence.clear();
            self.bump_requested = false;
            return false;
        }
        self.epoch += 1;
        self.next_sequence.clear();
        self.bump_requested = false;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn tp(p: i32) -> Tp {
        (Arc::from("t"), p)
    }

    #[test]
    fn sequences_are_per_partition_and_consecutive() {
        let mut s = ProducerIdState::new();
        s.set_id(7, 0);
        assert_eq!(s.assign(&tp(0), 3), (7, 0, 0));
        assert_eq!(s.assign(&tp(0), 2), (7, 0, 3));
        assert_eq!(s.assign(&tp(1), 1), (7, 0, 0));
        assert!(s.is_current(Some((7, 0, 3))));
    }

    #[test]
    fn rollback_gives_sequences_back() {
        let mut s = ProducerIdState::new();
        s.set_id(7, 0);
        s.assign(&tp(0), 3);
        let stamp = s.assign(&tp(0), 2);
        s.rollback(&tp(0), stamp);
        assert_eq!(s.assign(&tp(0), 1).2, 3);
    }

    #[test]
    fn bump_restarts_sequences_under_a_new_epoch() {
        let mut s = ProducerIdState::new();
        s.set_id(7, 4);
        let old = s.assign(&tp(0), 5);
        s.request_bump();
        assert!(s.bump_requested());
        assert!(s.bump());
        assert!(!s.bump_requested());
        assert!(!s.is_current(Some(old)), "old stamps must be re-stamped");
        assert_eq!(s.assign(&tp(0), 1), (7, 5, 0));
        // A stale rollback (old epoch) changes nothing.
        s.rollback(&tp(0), old);
        assert_eq!(s.assign(&tp(0), 1).2, 1);
    }

    #[test]
    fn exhausted_epoch_needs_a_new_id() {
        let mut s = ProducerIdState::new();
        s.set_id(7, i16::MAX);
        assert!(!s.bump());
        assert!(!s.has_id());
    }

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 3), 8);
    }
}
