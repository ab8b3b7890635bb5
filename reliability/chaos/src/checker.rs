//! The history checker, in the spirit of Jepsen's Kafka workload: pure functions over what the
//! producers were told, what the consumers saw and what the log holds, so each rule is unit
//! tested on fabricated histories.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use bytes::Bytes;
use serde::Serialize;

/// How many examples of each kind of violation are kept for the report.
const MAX_EXAMPLES: usize = 20;

/// A record value: the producer that wrote it and its sequence number, encoded `p<producer>-<seq>`.
/// Every value is sent once, so a value names exactly one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value {
    /// Producer index.
    pub producer: u32,
    /// Sequence number within that producer, from 0.
    pub seq: u64,
}

impl Value {
    /// The bytes written to the log.
    pub fn encode(&self) -> String {
        format!("p{}-{}", self.producer, self.seq)
    }

    /// Parses bytes written by [`Value::encode`]; `None` for anything else.
    pub fn parse(bytes: &[u8]) -> Option<Value> {
        let s = std::str::from_utf8(bytes).ok()?;
        let (p, n) = s.strip_prefix('p')?.split_once('-')?;
        Some(Value {
            producer: p.parse().ok()?,
            seq: n.parse().ok()?,
        })
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}-{}", self.producer, self.seq)
    }
}

/// A send the broker acknowledged: the record is at `offset` of `partition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Partition.
    pub partition: i32,
    /// Offset the broker returned.
    pub offset: i64,
    /// The value sent.
    pub value: Value,
}

/// A record a group consumer handed to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Consumer index.
    pub consumer: usize,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Value bytes as read.
    pub value: Option<Bytes>,
}

/// One partition as read by the checker: every record from offset 0 up to `end`, the log end
/// offset listed before reading.
#[derive(Debug, Clone, Default)]
pub struct PartitionRead {
    /// Log end offset (ListOffsets latest) taken after the acknowledgements being checked.
    pub end: i64,
    /// `(offset, value)` in the order the consumer returned them.
    pub records: Vec<(i64, Option<Bytes>)>,
}

/// Counts from one check of the log; any non-zero field other than `checked`, `uncertain_*`
/// and `consumer_seen_checked` is a violation.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct LogVerdict {
    /// Acknowledged records verified.
    pub checked: u64,
    /// Records in the log.
    pub log_records: u64,
    /// Acknowledged records whose value is nowhere in the log.
    pub lost: u64,
    /// Acknowledged records whose value is in the log, but not at the acknowledged offset.
    pub misplaced: u64,
    /// Log records whose value is also at an earlier offset.
    pub duplicated: u64,
    /// Places where offsets are not contiguous from 0 to the log end.
    pub gaps: u64,
    /// Records of one producer in one partition out of send order.
    pub reordered: u64,
    /// Log records whose value no producer sent.
    pub phantom: u64,
    /// Records a group consumer saw that differ from the log at that offset.
    pub consumer_mismatch: u64,
    /// Consumer observations verified against the log.
    pub consumer_seen_checked: u64,
    /// Sends that failed or whose outcome is unknown, found in the log (allowed).
    pub uncertain_present: u64,
    /// Sends that failed or whose outcome is unknown, absent from the log (allowed).
    pub uncertain_absent: u64,
    /// The first few violations, described.
    pub examples: Vec<String>,
}

impl LogVerdict {
    /// Number of violations found.
    pub fn violations(&self) -> u64 {
        self.lost
            + self.misplaced
            + self.duplicated
            + self.gaps
            + self.reordered
            + self.phantom
            + self.consumer_mismatch
    }

    fn example(&mut self, what: impl FnOnce() -> String) {
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(what());
        }
    }
}

/// Checks a read of the whole log against the history.
///
/// `sent` is how many values each producer has sent (so values `0..sent` exist); `acked` must
/// have been captured before the log end offsets were listed, so every one of them is below its
/// partition's `end`. Consumer observations at or past `end` cannot be verified yet and are
/// returned for the next check.
pub fn check_log(
    read: &BTreeMap<i32, PartitionRead>,
    acked: &[Ack],
    uncertain: &[Value],
    sent: &HashMap<u32, u64>,
    seen: Vec<Seen>,
) -> (LogVerdict, Vec<Seen>) {
    let mut v = LogVerdict::default();
    // value -> (partition, offset) of its first occurrence.
    let mut place: HashMap<Value, (i32, i64)> = HashMap::new();
    let mut at: HashMap<(i32, i64), Option<&Bytes>> = HashMap::new();
    for (&p, part) in read {
        let mut expected = 0i64;
        let mut last_seq: HashMap<u32, u64> = HashMap::new();
        for (offset, bytes) in &part.records {
            v.log_records += 1;
            if *offset != expected {
                v.gaps += 1;
                v.example(|| format!("partition {p}: offset {offset} where {expected} was next"));
            }
            expected = offset + 1;
            at.insert((p, *offset), bytes.as_ref());
            let value = bytes.as_deref().and_then(Value::parse);
            let Some(value) = value.filter(|x| sent.get(&x.producer).is_some_and(|n| x.seq < *n))
            else {
                v.phantom += 1;
                v.example(|| {
                    format!("partition {p} offset {offset}: value {bytes:?} was never sent")
                });
                continue;
            };
            if let Some((fp, fo)) = place.get(&value) {
                v.duplicated += 1;
                v.example(|| format!("{value} at {p}@{offset} duplicates the one at {fp}@{fo}"));
                continue;
            }
            place.insert(value, (p, *offset));
            if let Some(prev) = last_seq.insert(value.producer, value.seq) {
                if prev > value.seq {
                    v.reordered += 1;
                    v.example(|| {
                        format!(
                            "partition {p} offset {offset}: {value} follows p{}-{prev}",
                            value.producer
                        )
                    });
                }
            }
        }
        if expected < part.end {
            v.gaps += 1;
            v.example(|| {
                format!(
                    "partition {p}: read ended at {expected}, log end is {}",
                    part.end
                )
            });
        }
    }
    for ack in acked {
        v.checked += 1;
        let here = at
            .get(&(ack.partition, ack.offset))
            .and_then(|b| b.map(|b| Value::parse(b)))
            .flatten();
        if here == Some(ack.value) {
            continue;
        }
        match place.get(&ack.value) {
            Some((p, o)) => {
                v.misplaced += 1;
                v.example(|| {
                    format!(
                        "{} acknowledged at {}@{} is at {p}@{o}",
                        ack.value, ack.partition, ack.offset
                    )
                });
            }
            None => {
                v.lost += 1;
                v.example(|| {
                    format!(
                        "{} acknowledged at {}@{} is not in the log (there: {})",
                        ack.value,
                        ack.partition,
                        ack.offset,
                        here.map_or("nothing".to_string(), |x| x.to_string())
                    )
                });
            }
        }
    }
    for u in uncertain {
        if place.contains_key(u) {
            v.uncertain_present += 1;
        } else {
            v.uncertain_absent += 1;
        }
    }
    let mut pending = Vec::new();
    for s in seen {
        let end = read.get(&s.partition).map_or(0, |p| p.end);
        if s.offset >= end {
            pending.push(s);
            continue;
        }
        v.consumer_seen_checked += 1;
        match at.get(&(s.partition, s.offset)) {
            Some(b) if b.map(|b| &b[..]) == s.value.as_deref() => {}
            other => {
                v.consumer_mismatch += 1;
                let log = other.map(|b| format!("{b:?}")).unwrap_or("nothing".into());
                v.example(|| {
                    format!(
                        "consumer {} saw {:?} at {}@{}, the log has {log}",
                        s.consumer, s.value, s.partition, s.offset
                    )
                });
            }
        }
    }
    (v, pending)
}

/// Committed offsets must never go backwards (nor disappear), never fall below what a
/// successful commit covered (`acked`, captured before `now` was fetched), and never pass the
/// log end. Returns descriptions of violations.
pub fn check_commits(
    previous: &BTreeMap<i32, i64>,
    acked: &BTreeMap<i32, i64>,
    now: &BTreeMap<i32, i64>,
    ends: &BTreeMap<i32, i64>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (p, a) in acked {
        match now.get(p) {
            Some(o) if o >= a => {}
            other => out.push(format!(
                "partition {p}: a commit of {a} was acknowledged, the committed offset is {other:?}"
            )),
        }
    }
    for (p, before) in previous {
        match now.get(p) {
            Some(o) if o >= before => {}
            Some(o) => out.push(format!(
                "committed offset of partition {p} went back from {before} to {o}"
            )),
            None => out.push(format!(
                "committed offset of partition {p} ({before}) disappeared"
            )),
        }
    }
    for (p, o) in now {
        // The end was listed after the commits were fetched, so it can only be larger.
        if let Some(end) = ends.get(p) {
            if o > end {
                out.push(format!(
                    "committed offset {o} of partition {p} is past the log end {end}"
                ));
            }
        }
    }
    out
}

/// Follows one group consumer: offsets of a partition must strictly increase within one
/// assignment.
///
/// Assignment changes are known from a counter the rebalance listener bumps. The client bumps
/// its assignment epoch before it calls the listener, so records of a new assignment can be
/// returned before the counter moves; but the listener runs for the old assignment's end
/// (revoked or lost) before any record of the next one is fetched. Two polls are therefore
/// certainly in one assignment when the counter read before the earlier one equals the counter
/// read after the later one.
#[derive(Debug, Default)]
pub struct ConsumerTracker {
    /// partition -> (counter before the poll that returned it, last offset).
    last: HashMap<i32, (u64, i64)>,
}

impl ConsumerTracker {
    /// Records one poll's `(partition, offset)` pairs, read between counter values `before` and
    /// `after`; returns violations.
    pub fn observe(&mut self, before: u64, after: u64, records: &[(i32, i64)]) -> Vec<String> {
        let mut out = Vec::new();
        let mut in_poll: HashSet<i32> = HashSet::new();
        for &(p, o) in records {
            let compare = match self.last.get(&p) {
                Some(&(c, last)) if in_poll.contains(&p) || c == after => Some(last),
                _ => None,
            };
            if let Some(last) = compare {
                if o <= last {
                    out.push(format!(
                        "partition {p}: offset {o} after {last} within one assignment"
                    ));
                }
            }
            in_poll.insert(p);
            self.last.insert(p, (before, o));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(producer: u32, seq: u64) -> Value {
        Value { producer, seq }
    }

    fn rec(offset: i64, v: Value) -> (i64, Option<Bytes>) {
        (offset, Some(Bytes::from(v.encode())))
    }

    fn part(end: i64, records: Vec<(i64, Option<Bytes>)>) -> PartitionRead {
        PartitionRead { end, records }
    }

    fn sent(n: u64) -> HashMap<u32, u64> {
        [(0, n), (1, n)].into_iter().collect()
    }

    fn ack(partition: i32, offset: i64, v: Value) -> Ack {
        Ack {
            partition,
            offset,
            value: v,
        }
    }

    #[test]
    fn values_round_trip_and_junk_is_refused() {
        let v = val(3, 1234);
        assert_eq!(Value::parse(v.encode().as_bytes()), Some(v));
        assert_eq!(Value::parse(b"p3"), None);
        assert_eq!(Value::parse(b"x3-4"), None);
        assert_eq!(Value::parse(b"p-1-4"), None);
    }

    #[test]
    fn a_clean_history_passes() {
        let read: BTreeMap<i32, PartitionRead> = [
            (0, part(2, vec![rec(0, val(0, 0)), rec(1, val(1, 0))])),
            (1, part(1, vec![rec(0, val(0, 1))])),
        ]
        .into_iter()
        .collect();
        let acked = [ack(0, 0, val(0, 0)), ack(1, 0, val(0, 1))];
        let seen = vec![Seen {
            consumer: 0,
            partition: 0,
            offset: 1,
            value: Some(Bytes::from("p1-0")),
        }];
        let (v, pending) = check_log(&read, &acked, &[val(1, 0), val(1, 1)], &sent(2), seen);
        assert_eq!(v.violations(), 0, "{:?}", v.examples);
        assert_eq!(v.checked, 2);
        assert_eq!(v.log_records, 3);
        assert_eq!((v.uncertain_present, v.uncertain_absent), (1, 1));
        assert_eq!(v.consumer_seen_checked, 1);
        assert!(pending.is_empty());
    }

    #[test]
    fn lost_and_misplaced_acknowledgements_are_caught() {
        let read: BTreeMap<i32, PartitionRead> =
            [(0, part(2, vec![rec(0, val(0, 1)), rec(1, val(0, 2))]))]
                .into_iter()
                .collect();
        let acked = [
            ack(0, 0, val(0, 0)), // nowhere
            ack(0, 1, val(0, 1)), // at offset 0 instead
        ];
        let (v, _) = check_log(&read, &acked, &[], &sent(3), Vec::new());
        assert_eq!((v.lost, v.misplaced), (1, 1), "{:?}", v.examples);
        // Acknowledged past what could be read counts as lost too.
        let (v, _) = check_log(&read, &[ack(0, 5, val(1, 0))], &[], &sent(3), Vec::new());
        assert_eq!(v.lost, 1);
    }

    #[test]
    fn duplicates_gaps_reordering_and_phantoms_are_caught() {
        let read: BTreeMap<i32, PartitionRead> = [
            (
                0,
                part(
                    5,
                    vec![
                        rec(0, val(0, 0)),
                        rec(1, val(0, 2)),
                        rec(2, val(0, 1)), // reordered
                        rec(4, val(0, 3)), // gap at 3
                        rec(5, val(0, 0)), // duplicate (also past end: read ran on)
                    ],
                ),
            ),
            (
                1,
                part(3, vec![rec(0, val(1, 0)), (1, Some(Bytes::from("junk")))]),
            ),
        ]
        .into_iter()
        .collect();
        let (v, _) = check_log(&read, &[], &[], &sent(4), Vec::new());
        assert_eq!(v.reordered, 1, "{:?}", v.examples);
        assert_eq!(v.duplicated, 1, "{:?}", v.examples);
        // Partition 0: offset 4 after 2; partition 1: read stopped at 2 of 3.
        assert_eq!(v.gaps, 2, "{:?}", v.examples);
        assert_eq!(v.phantom, 1);
        // A value with a sequence number never sent is a phantom too.
        let read: BTreeMap<i32, PartitionRead> = [(0, part(1, vec![rec(0, val(0, 9))]))]
            .into_iter()
            .collect();
        let (v, _) = check_log(&read, &[], &[], &sent(4), Vec::new());
        assert_eq!(v.phantom, 1);
    }

    #[test]
    fn consumer_observations_are_verified_or_kept_for_later() {
        let read: BTreeMap<i32, PartitionRead> = [(0, part(1, vec![rec(0, val(0, 0))]))]
            .into_iter()
            .collect();
        let seen = |offset, value: &str| Seen {
            consumer: 1,
            partition: 0,
            offset,
            value: Some(Bytes::from(value.to_string())),
        };
        let (v, pending) = check_log(
            &read,
            &[],
            &[],
            &sent(2),
            vec![seen(0, "p0-1"), seen(1, "p0-1")],
        );
        assert_eq!(v.consumer_mismatch, 1);
        assert_eq!(pending, vec![seen(1, "p0-1")]);
    }

    #[test]
    fn commits_may_only_move_forward_and_stay_below_the_end() {
        let m = |v: &[(i32, i64)]| v.iter().copied().collect::<BTreeMap<_, _>>();
        let ends = m(&[(0, 100), (1, 100)]);
        let none = m(&[]);
        let ok = check_commits(&m(&[(0, 5)]), &m(&[(1, 3)]), &m(&[(0, 5), (1, 3)]), &ends);
        assert!(ok.is_empty(), "{ok:?}");
        assert_eq!(
            check_commits(&m(&[(0, 5)]), &none, &m(&[(0, 4)]), &ends).len(),
            1
        );
        assert_eq!(check_commits(&m(&[(0, 5)]), &none, &none, &ends).len(), 1);
        assert_eq!(check_commits(&none, &none, &m(&[(1, 101)]), &ends).len(), 1);
        // An acknowledged commit that is not (or no longer) there.
        assert_eq!(
            check_commits(&none, &m(&[(1, 7)]), &m(&[(1, 6)]), &ends).len(),
            1
        );
        assert_eq!(check_commits(&none, &m(&[(1, 7)]), &none, &ends).len(), 1);
    }

    #[test]
    fn consumer_offsets_must_increase_within_an_assignment() {
        let mut t = ConsumerTracker::default();
        assert!(t.observe(0, 0, &[(0, 5), (0, 6), (1, 0)]).is_empty());
        // Same assignment (counter unchanged): going back is a violation.
        assert_eq!(t.observe(0, 0, &[(0, 6)]).len(), 1);
        // Within one poll too, whatever the counter did.
        assert_eq!(t.observe(0, 1, &[(1, 3), (1, 3)]).len(), 1);
        // A rebalance between polls: starting over from a committed offset is fine.
        assert!(t.observe(1, 1, &[(0, 2)]).is_empty());
        // The counter moved during the earlier poll (it read 0 before): still a new assignment.
        assert!(t.observe(2, 2, &[(1, 0)]).is_empty());
        assert_eq!(t.observe(2, 2, &[(1, 0)]).len(), 1);
    }
}
