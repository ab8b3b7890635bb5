//! Idempotent-producer state of one partition: Kafka's `ProducerStateManager` rules.
//!
//! Per producer id the log keeps the epoch and the sequence/offset ranges of its last five
//! batches (a producer has at most five requests in flight, so a retry always matches one).
//! As in Kafka: a retry of one of those five gets the original offsets and no error; an older
//! retry, or any gap, is OUT_OF_ORDER_SEQUENCE_NUMBER; a lower epoch is INVALID_PRODUCER_EPOCH;
//! an unknown producer (new, or expired) may start at any sequence, so the broker never answers
//! UNKNOWN_PRODUCER_ID or DUPLICATE_SEQUENCE_NUMBER.
//!
//! The state outlives the segments holding a producer's batches (only
//! [`PRODUCER_ID_EXPIRATION_MS`] of idleness forgets it) and survives restarts through snapshots,
//! `<offset>.snapshot`, taken at every segment roll and at close: recovery loads the newest one
//! within the recovered log and replays the batches after it (see `recovery`).

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use spool_protocol::batch::BatchHeader;

use crate::error::LogError;

/// Batches remembered per producer for duplicate detection (Kafka's `NUM_BATCHES_TO_RETAIN`).
const BATCHES_TO_RETAIN: usize = 5;
/// Kafka's "no epoch": a producer entry in that state accepts any sequence.
const NO_PRODUCER_EPOCH: i16 = -1;
/// Kafka's default `producer.id.expiration.ms`: state of producers idle this long is dropped.
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 86_400_000;

/// Sequence and offset range of one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    first_offset: i64,
    last_offset: i64,
}

/// What the log knows about one producer id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    /// Broker time of the last append, for expiration.
    last_append_ms: i64,
}

/// Outcome of checking a batch against the producer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Append it.
    Append,
    /// A retry of a batch already in the log at these offsets: answer success, write nothing.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// Producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

/// On-disk form (JSON; written whole with `write_atomic`, so never torn).
#[derive(Serialize, Deserialize)]
struct Snapshot {
    /// Log end offset the state corresponds to.
    end_offset: i64,
    producers: Vec<(i64, ProducerEntry)>,
}

fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    i64::from(next_seq) == i64::from(last_seq) + 1 || (next_seq == 0 && last_seq == i32::MAX)
}

fn next_sequence(last_seq: i32) -> i32 {
    if last_seq == i32::MAX {
        0
    } else {
        last_seq + 1
    }
}

impl ProducerStates {
    /// Applies Kafka's epoch, duplicate and sequence rules to a batch about to be appended.
    pub(crate) fn check(&self, h: &BatchHeader) -> Result<Verdict, LogError> {
        if !h.has_producer_id() {
            return Ok(Verdict::Append);
        }
        // Unknown producer (new, expired, or its data deleted by retention): any sequence.
        let Some(entry) = self.producers.get(&h.producer_id) else {
            return Ok(Verdict::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(LogError::InvalidProducerEpoch {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: entry.epoch,
            });
        }
        // Transaction markers carry no sequence.
        if h.is_control() {
            return Ok(Verdict::Append);
        }
        let out_of_order = |expected| LogError::OutOfOrderSequence {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            expected,
            received: h.base_sequence,
        };
        if h.producer_epoch != entry.epoch {
            if h.base_sequence != 0 && entry.epoch != NO_PRODUCER_EPOCH {
                return Err(out_of_order(0));
            }
            return Ok(Verdict::Append);
        }
        let last_seq = h.last_sequence();
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return Ok(Verdict::Duplicate {
                base_offset: b.first_offset,
                last_offset: b.last_offset,
            });
        }
        let prev = entry.batches.back().map_or(-1, |b| b.last_seq);
        if entry.epoch != NO_PRODUCER_EPOCH && !in_sequence(prev, h.base_sequence) {
            return Err(out_of_order(next_sequence(prev)));
        }
        Ok(Verdict::Append)
    }

    /// Records an appended batch (offsets assigned). Also used to replay the log on recovery,
    /// where the log is the authority and nothing is checked.
    pub(crate) fn record(&mut self, h: &BatchHeader, now_ms: i64) {
        if !h.has_producer_id() {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::with_capacity(BATCHES_TO_RETAIN),
                last_append_ms: now_ms,
            });
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if !h.is_control() && h.base_sequence >= 0 {
            if entry.batches.len() == BATCHES_TO_RETAIN {
                entry.batches.pop_front();
            }
            entry.batches.push_back(BatchMeta {
                first_seq: h.base_sequence,
                last_seq: h.last_sequence(),
                first_offset: h.base_offset,
                last_offset: h.last_offset(),
            });
        }
        entry.last_append_ms = now_ms;
    }

    /// Forgets producers idle for `expiration_ms` or longer.
    pub(crate) fn expire(&mut self, now_ms: i64, expiration_ms: i64) {
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_append_ms) < expiration_ms);
    }

    /// Number of producers known.
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// Serialises the state as of log end `end_offset`.
    pub(crate) fn to_snapshot(&self, end_offset: i64) -> Vec<u8> {
        let mut producers: Vec<_> = self
            .producers
            .iter()
            .map(|(&id, e)| (id, e.clone()))
            .collect();
        producers.sort_unstable_by_key(|&(id, _)| id);
        serde_json::to_vec(&Snapshot {
            end_offset,
            producers,
        })
        .unwrap_or_default()
    }

    /// Reads a snapshot: the state and the log end it belongs to. `None` if unreadable.
    pub(crate) fn from_snapshot(bytes: &[u8]) -> Option<(i64, Self)> {
        let s: Snapshot = serde_json::from_slice(bytes).ok()?;
        Some((
            s.end_offset,
            ProducerStates {
                producers: s.producers.into_iter().collect(),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::idempotent;
    use spool_protocol::batch::set_base_offset;

    fn header(pid: i64, epoch: i16, seq: i32, records: i32, base: i64) -> BatchHeader {
        let mut b = idempotent(pid, epoch, seq, records);
        set_base_offset(&mut b, base);
        BatchHeader::parse(&b).unwrap()
    }

    #[test]
    fn sequence_rules() {
        let mut s = ProducerStates::default();
        let h = header(1, 0, 7, 3, 0);
        assert_eq!(
            s.check(&h).unwrap(),
            Verdict::Append,
            "unknown producer: any sequence"
        );
        s.record(&h, 0);
        assert_eq!(
            s.check(&header(1, 0, 7, 3, 99)).unwrap(),
            Verdict::Duplicate {
                base_offset: 0,
                last_offset: 2
            }
        );
        assert!(matches!(
            s.check(&header(1, 0, 11, 1, 3)),
            Err(LogError::OutOfOrderSequence {
                expected: 10,
                received: 11,
                ..
            })
        ));
        assert_eq!(s.check(&header(1, 0, 10, 1, 3)).unwrap(), Verdict::Append);
        assert!(matches!(
            s.check(&header(1, 1, 5, 1, 3)),
            Err(LogError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(s.check(&header(1, 1, 0, 1, 3)).unwrap(), Verdict::Append);
        s.record(&header(1, 1, 0, 1, 3), 0);
        assert!(matches!(
            s.check(&header(1, 0, 10, 1, 4)),
            Err(LogError::InvalidProducerEpoch { current: 1, .. })
        ));
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut s = ProducerStates::default();
        s.record(&header(1, 0, i32::MAX, 1, 0), 0);
        assert_eq!(s.check(&header(1, 0, 0, 1, 1)).unwrap(), Verdict::Append);
        assert!(s.check(&header(1, 0, 1, 1, 1)).is_err());
    }

    #[test]
    fn only_the_last_five_batches_are_duplicates() {
        let mut s = ProducerStates::default();
        for i in 0..6 {
            s.record(&header(1, 0, i, 1, i64::from(i)), 0);
        }
        assert!(matches!(
            s.check(&header(1, 0, 1, 1, 9)).unwrap(),
            Verdict::Duplicate { base_offset: 1, .. }
        ));
        assert!(
            s.check(&header(1, 0, 0, 1, 9)).is_err(),
            "evicted: out of order"
        );
    }

    #[test]
    fn snapshot_round_trip_and_expire() {
        let mut s = ProducerStates::default();
        s.record(&header(1, 0, 0, 1, 0), 10);
        s.record(&header(2, 3, 0, 1, 5), 20);
        let (end, back) = ProducerStates::from_snapshot(&s.to_snapshot(6)).unwrap();
        assert_eq!((end, &back), (6, &s));
        s.expire(
            20 + PRODUCER_ID_EXPIRATION_MS - 1,
            PRODUCER_ID_EXPIRATION_MS,
        );
        assert_eq!(
            s.len(),
            1,
            "only the producer idle for the whole expiration goes"
        );
        s.expire(20 + PRODUCER_ID_EXPIRATION_MS, PRODUCER_ID_EXPIRATION_MS);
        assert_eq!(s.len(), 0);
        assert!(ProducerStates::from_snapshot(b"{").is_none());
    }
}
