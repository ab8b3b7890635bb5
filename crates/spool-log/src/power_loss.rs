//! Power-loss tests: what a cut at an arbitrary instant leaves must recover to a log holding
//! every acknowledged (`sync_to` returned Ok) record, byte for byte.
//!
//! The `durability` observer records what each fsync covered; the "disk after the cut" is a copy
//! of the data directory holding only entries whose directory was synced and, per file, only its
//! synced prefix, plus (chosen at random) nothing, a prefix of the unsynced bytes as partial
//! write-back would leave, garbage, or both. The copy is reopened (unclean: never closed) and
//! checked against the original log. Seeded, so a failure names its seed and replays.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use spool_protocol::batch::{BatchHeader, Batches};

use crate::durability::{power_loss_copy, synced_len, CopiedFile};
use crate::fsutil::{parse_segment_name, LOG_EXT};
use crate::testutil::{batch, BatchSpec};
use crate::{LogConfig, LogError, LogManager, PartitionLog};

/// xorshift64*: small, seedable, good enough to pick cut points.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }
}

/// One stored batch of the original log.
#[derive(Debug, Clone)]
struct Stored {
    segment: PathBuf,
    pos: usize,
    bytes: Bytes,
    header: BatchHeader,
}

/// Every batch of the log in `dir`, by base offset, read from its files.
fn stored_batches(dir: &Path) -> BTreeMap<i64, Stored> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if parse_segment_name(&name, LOG_EXT).is_none() {
            continue;
        }
        let bytes = Bytes::from(fs::read(&path).unwrap());
        for b in Batches::checked(&bytes) {
            // Live files hold whole valid batches only (a write in progress at most at the end).
            let Ok((header, range)) = b else { break };
            out.insert(
                header.base_offset,
                Stored {
                    segment: path.clone(),
                    pos: range.start,
                    bytes: bytes.slice(range),
                    header,
                },
            );
        }
    }
    out
}

/// Decides the bytes past a file's synced length that the cut leaves: none, some of the pending
/// ones (partial write-back), garbage (pages torn or never written), or both.
fn random_tail(rng: &Mutex<Rng>) -> impl FnMut(&Path, &[u8]) -> Vec<u8> + '_ {
    move |_, unsynced| {
        let mut rng = rng.lock().unwrap();
        let mut tail = Vec::new();
        // A file gains bytes past its synced end only where writes were pending.
        if unsynced.is_empty() {
            return tail;
        }
        let kind = rng.range(0, 8);
        if kind & 1 == 1 {
            let n = rng.range(0, unsynced.len() as u64 + 1) as usize;
            tail.extend_from_slice(&unsynced[..n]);
            // Pages written back out of order: over allocated blocks (a runway) nothing keeps
            // later pages from reaching the disk before earlier ones, which read back as zeros.
            if kind & 4 == 4 && n > 0 {
                let from = rng.range(0, n as u64) as usize;
                let to = rng.range(from as u64, n as u64 + 1) as usize;
                tail[from..to].fill(0);
            }
        }
        if kind & 2 == 2 {
            for _ in 0..rng.range(1, 80) {
                tail.push(rng.next() as u8);
            }
        }
        tail
    }
}

/// The log end a recovery must reach: the longest run of original batches, in offset order,
/// whose bytes are all in the copy unchanged.
fn expected_end(
    original: &BTreeMap<i64, Stored>,
    src: &Path,
    dst: &Path,
    copied: &[CopiedFile],
) -> i64 {
    let copies: HashMap<&Path, Vec<u8>> = copied
        .iter()
        .map(|c| (c.path.as_path(), fs::read(&c.path).unwrap()))
        .collect();
    let mut end = original.keys().next().copied().unwrap_or(0);
    for (&base, s) in original {
        assert_eq!(base, end, "original log is contiguous");
        let copy_path = dst.join(s.segment.strip_prefix(src).unwrap());
        let whole = copies
            .get(copy_path.as_path())
            .and_then(|c| c.get(s.pos..s.pos + s.bytes.len()))
            .is_some_and(|b| b == &s.bytes[..]);
        if !whole {
            break;
        }
        end = s.header.last_offset() + 1;
    }
    end
}

/// Every batch of `log` from its start to its end, with its bytes.
fn read_all(log: &PartitionLog) -> Vec<(BatchHeader, Bytes)> {
    let mut out = Vec::new();
    let mut offset = log.offsets().log_start_offset;
    loop {
        let bytes = log.read(offset, 1 << 20).unwrap();
        if bytes.is_empty() {
            return out;
        }
        for b in Batches::checked(&bytes) {
            let (h, range) = b.unwrap();
            offset = h.last_offset() + 1;
            out.push((h, bytes.slice(range)));
        }
    }
}

/// Concurrent writers per cycle: two idempotent producers and a plain one.
const WRITERS: i64 = 3;
/// Power cuts per case, each on the log recovered from the previous one.
const CYCLES: i64 = 2;

/// Producer id of writer `w` in `cycle` (fresh ids each cycle, so sequences start at 0); -1 for
/// the plain writer.
fn writer_pid(cycle: i64, w: i64) -> i64 {
    if w == WRITERS - 1 {
        -1
    } else {
        100 * (cycle + 1) + w
    }
}

/// Runs concurrent writers on `log` (in `src`) and cuts the power after `cut` appends, while
/// they still run; returns the copy and the offsets acknowledged by then.
async fn write_and_cut(
    log: &Arc<PartitionLog>,
    src: &Path,
    dst: &Path,
    rng: &Mutex<Rng>,
    cycle: i64,
) -> (Vec<CopiedFile>, BTreeSet<i64>, String) {
    let (seed, cut, total) = {
        let mut r = rng.lock().unwrap();
        let cut = r.range(1, 120) as usize;
        (r.next(), cut, cut + r.range(0, 40) as usize)
    };
    let appended = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
    let cut_reached = Arc::new(tokio::sync::Notify::new());
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (log, appended, acked, cut_reached) = (
                Arc::clone(log),
                Arc::clone(&appended),
                Arc::clone(&acked),
                Arc::clone(&cut_reached),
            );
            let mut r = Rng::new(seed ^ ((w as u64 + 1) << 32));
            tokio::spawn(async move {
                let mut seq = 0;
                loop {
                    let n = appended.fetch_add(1, Ordering::SeqCst);
                    if n >= total {
                        return;
                    }
                    if n + 1 == cut {
                        cut_reached.notify_one();
                    }
                    let records = r.range(1, 5) as i32;
                    let pid = writer_pid(cycle, w);
                    let spec = BatchSpec {
                        records,
                        producer_id: pid,
                        epoch: if pid < 0 { -1 } else { 0 },
                        sequence: if pid < 0 { -1 } else { seq },
                        value_len: r.range(0, 120) as usize,
                        timestamp: 1_000 + n as i64,
                    };
                    let info = log.append(spec.build(), 0).unwrap();
                    seq += records;
                    // acks=all for about half the batches, acks=1 for the rest.
                    if r.chance(2) {
                        log.sync_to(info.last_offset).await.unwrap();
                        acked.lock().unwrap().insert(info.last_offset);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    // The cut, at an instant while the writers (and maybe an fsync round) are running: what was
    // acknowledged first, then what was durable, so every ack is backed by a recorded fsync.
    cut_reached.notified().await;
    let acked_at_cut = acked.lock().unwrap().clone();
    let copied = power_loss_copy(src, dst, &mut random_tail(rng));
    for w in writers {
        w.await.unwrap();
    }
    let files: Vec<String> = copied
        .iter()
        .map(|c| {
            let name = c.path.file_name().unwrap().to_string_lossy();
            format!("{name}: {} synced + {} tail", c.synced, c.tail.len())
        })
        .collect();
    let ctx = format!("cycle {cycle}: cut after {cut} of {total} appends; copy: {files:?}");
    (copied, acked_at_cut, ctx)
}

/// What the cuts covered, printed at the end (`--nocapture`) so a run shows it tested something.
#[derive(Debug, Default)]
struct Tally {
    cuts: u64,
    acked_batches: u64,
    batches_compared: u64,
    batches_lost_unacked: u64,
    producers_checked: u64,
    /// Segment copies ending in the zeros of a durable runway.
    runway_copies: u64,
}

async fn run_case(seed: u64, tally: &mut Tally) {
    let rng = Mutex::new(Rng::new(seed));
    let tmp = tempfile::tempdir().unwrap();
    let config = {
        let mut r = rng.lock().unwrap();
        LogConfig {
            segment_bytes: r.range(700, 3000),
            index_interval_bytes: r.range(0, 600) as u32,
            ..LogConfig::default()
        }
    };
    let mut src = tmp.path().join("p");
    let mut log = Arc::new(PartitionLog::open(&src, config).unwrap());
    for cycle in 0..CYCLES {
        let dst = tmp.path().join(format!("after-power-loss-{cycle}"));
        let (copied, acked, ctx) = write_and_cut(&log, &src, &dst, &rng, cycle).await;
        let ctx = format!("seed {seed}, {ctx}");
        let original = stored_batches(&src);
        let expected = expected_end(&original, &src, &dst, &copied);
        let recovered = PartitionLog::open(&dst, config).unwrap();
        check_recovered(&recovered, &original, expected, &acked, &ctx, tally).await;
        tally.cuts += 1;
        tally.runway_copies += copied.iter().filter(|c| c.zeros > 0).count() as u64;
        tally.acked_batches += acked.len() as u64;
        tally.batches_lost_unacked += original.range(expected..).count() as u64;
        log.close().unwrap();
        (log, src) = (Arc::new(recovered), dst);
    }
    log.close().unwrap();
}

/// The recovered log is exactly the longest intact prefix of the original, holds every
/// acknowledged offset, has producer state matching it, and takes appends at its end.
async fn check_recovered(
    recovered: &PartitionLog,
    original: &BTreeMap<i64, Stored>,
    expected: i64,
    acked: &BTreeSet<i64>,
    ctx: &str,
    tally: &mut Tally,
) {
    let offsets = recovered.offsets();
    assert_eq!(offsets.log_start_offset, 0, "{ctx}");
    assert_eq!(
        offsets.log_end_offset, expected,
        "recovery must cut exactly the torn tail; {ctx}"
    );
    if let Some(&last_acked) = acked.iter().next_back() {
        assert!(
            last_acked < offsets.log_end_offset,
            "acknowledged offset {last_acked} lost; {ctx}"
        );
    }
    let batches = read_all(recovered);
    let mut next = 0;
    for (h, bytes) in &batches {
        assert_eq!(h.base_offset, next, "{ctx}");
        assert_eq!(
            bytes, &original[&h.base_offset].bytes,
            "batch at {next} differs; {ctx}"
        );
        next = h.last_offset() + 1;
    }
    assert_eq!(next, expected, "{ctx}");
    tally.batches_compared += batches.len() as u64;

    // Producer state matches the recovered log: each producer's last batch there is a
    // duplicate (original offsets, nothing written), its next sequence appends at the end, and
    // a gap is out of order.
    let pids: BTreeSet<i64> = batches
        .iter()
        .map(|(h, _)| h.producer_id)
        .filter(|&p| p >= 0)
        .collect();
    tally.producers_checked += pids.len() as u64;
    for pid in pids {
        let (h, bytes) = batches
            .iter()
            .rev()
            .find(|(h, _)| h.producer_id == pid)
            .unwrap();
        let dup = recovered
            .append(BytesMut::from(&bytes[..]), 0)
            .unwrap_or_else(|e| panic!("retry of producer {pid}: {e}; {ctx}"));
        assert!(dup.duplicate, "{ctx}");
        assert_eq!(
            (dup.base_offset, dup.last_offset),
            (h.base_offset, h.last_offset()),
            "{ctx}"
        );
        let end = recovered.offsets().log_end_offset;
        let next_batch = BatchSpec {
            records: 1,
            producer_id: pid,
            epoch: 0,
            sequence: h.last_sequence() + 1,
            ..Default::default()
        };
        let info = recovered.append(next_batch.build(), 0).unwrap();
        assert_eq!((info.base_offset, info.duplicate), (end, false), "{ctx}");
        let gap = BatchSpec {
            sequence: h.last_sequence() + 3,
            ..next_batch
        };
        assert!(
            matches!(
                recovered.append(gap.build(), 0),
                Err(LogError::OutOfOrderSequence { .. })
            ),
            "{ctx}"
        );
    }
    let end = recovered.offsets().log_end_offset;
    assert_eq!(recovered.append(batch(1, 0), 0).unwrap().base_offset, end);
    recovered.sync_to(end).await.unwrap();
}

/// Seeds run per `cargo test`; `SPOOL_POWER_LOSS_CASES` raises it for a longer soak.
fn cases() -> u64 {
    std::env::var("SPOOL_POWER_LOSS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_power_loss_at_random_cuts() {
    let first = std::env::var("SPOOL_POWER_LOSS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut tally = Tally::default();
    for seed in first..first + cases() {
        run_case(seed, &mut tally).await;
    }
    eprintln!("power loss: {tally:?}");
    assert!(
        tally.acked_batches > 0 && tally.batches_lost_unacked > 0 && tally.runway_copies > 0,
        "{tally:?}"
    );
}

/// The first segment of a new partition is acknowledged from before any roll: its directory
/// entry, and the partition directory's own, must be durable by then.
#[tokio::test]
async fn first_segment_and_partition_dir_are_durable_before_the_first_ack() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let manager = LogManager::open(&data).unwrap();
    let meta = manager.create_topic("t", 2, BTreeMap::new()).unwrap();
    let log = manager.partition("t", 1).unwrap();
    let info = log.append(batch(3, 0), 0).unwrap();
    log.sync_to(info.last_offset).await.unwrap();
    let stored = log.read(0, 1 << 20).unwrap();

    let copy = tmp.path().join("copy");
    power_loss_copy(&data, &copy, &mut |_, _| Vec::new());
    let after = LogManager::open(&copy).unwrap();
    let topic = after.topic("t").expect("topic creation was acknowledged");
    assert_eq!((topic.id, topic.partitions), (meta.id, 2));
    let log = after.partition("t", 1).unwrap();
    assert_eq!(log.offsets().log_end_offset, 3);
    assert_eq!(log.read(0, 1 << 20).unwrap(), stored);
    manager.shutdown().unwrap();
    after.shutdown().unwrap();
}

/// Snapshots are written whole before they are named: a cut leaves the previous state or the
/// new one, and recovery gives the same producer state either way.
#[test]
fn producer_snapshots_are_durable_when_written() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: batch(1, 0).len() as u64,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(tmp.path(), config).unwrap();
    for seq in 0..3 {
        let spec = BatchSpec {
            producer_id: 5,
            epoch: 0,
            sequence: seq,
            ..Default::default()
        };
        log.append(spec.build(), 0).unwrap();
    }
    // Rolls at offsets 1 and 2 wrote snapshots, each synced in full.
    for offset in [1, 2] {
        let path = crate::fsutil::segment_file(tmp.path(), offset, crate::recovery::SNAPSHOT_EXT);
        let len = fs::metadata(&path).unwrap().len();
        assert_eq!(synced_len(&path), Some(len), "{}", path.display());
    }
    drop(log);
}
