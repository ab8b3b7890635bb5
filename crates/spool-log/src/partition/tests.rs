use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use spool_protocol::batch::{seal_crc, BatchHeader, Batches};

use super::*;
use crate::testutil::{batch, idempotent, BatchSpec};

fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, config).unwrap()
}

/// (base offset, last offset) of every batch in `bytes`, checking CRCs.
fn ranges(bytes: &Bytes) -> Vec<(i64, i64)> {
    Batches::checked(bytes)
        .map(|b| {
            let (h, _) = b.unwrap();
            (h.base_offset, h.last_offset())
        })
        .collect()
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// Appends `n` batches of `records` records; timestamps 1000, 1001, ...
fn fill(log: &PartitionLog, n: usize, records: i32) {
    for i in 0..n {
        log.append(batch(records, 1000 + i as i64), 0).unwrap();
    }
}

/// A config where every batch of `records` records gets its own segment.
fn one_batch_per_segment(records: i32) -> LogConfig {
    LogConfig {
        segment_bytes: batch(records, 0).len() as u64,
        index_interval_bytes: 0,
        ..LogConfig::default()
    }
}

#[test]
fn append_assigns_offsets_and_read_returns_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let watch = log.subscribe();
    let infos: Vec<_> = [2, 3, 1]
        .into_iter()
        .map(|n| log.append(batch(n, 1000), 0).unwrap())
        .collect();
    let got: Vec<_> = infos
        .iter()
        .map(|i| (i.base_offset, i.last_offset))
        .collect();
    assert_eq!(got, [(0, 1), (2, 4), (5, 5)]);
    assert!(infos
        .iter()
        .all(|i| !i.duplicate && i.log_append_time == -1));
    assert_eq!(*watch.borrow(), 6);
    assert_eq!(
        log.offsets(),
        LogOffsets {
            log_start_offset: 0,
            log_end_offset: 6,
            high_watermark: 6
        }
    );

    assert_eq!(
        ranges(&log.read(0, 1 << 20).unwrap()),
        [(0, 1), (2, 4), (5, 5)]
    );
    // Mid-batch offset: the containing batch, whole, even though max_bytes is 1.
    let one = log.read(3, 1).unwrap();
    assert_eq!(ranges(&one), [(2, 4)]);
    assert_eq!(one.len(), batch(3, 1000).len());
    // max_bytes cuts at batch boundaries.
    let two = batch(2, 0).len() + batch(3, 0).len();
    assert_eq!(ranges(&log.read(1, two + 5).unwrap()), [(0, 1), (2, 4)]);
    assert!(log.read(6, 100).unwrap().is_empty());
    for bad in [-1, 7] {
        assert!(matches!(
            log.read(bad, 100),
            Err(LogError::OffsetOutOfRange {
                log_start: 0,
                log_end: 6,
                ..
            })
        ));
    }
}

#[test]
fn stored_batches_get_leader_epoch_and_log_append_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            log_append_time: true,
            ..LogConfig::default()
        },
    );
    log.set_leader_epoch(4);
    let info = log.append(batch(2, 1000), 5_000).unwrap();
    assert_eq!(info.log_append_time, 5_000);
    let bytes = log.read(0, 1000).unwrap();
    let h = BatchHeader::parse_checked(&bytes).unwrap();
    assert!(h.is_log_append_time());
    assert_eq!((h.max_timestamp, h.partition_leader_epoch), (5_000, 4));
    assert_eq!(log.offset_for_timestamp(4_000).unwrap(), Some((0, 5_000)));
}

#[test]
fn rejects_invalid_batches_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            max_message_bytes: 500,
            ..LogConfig::default()
        },
    );
    let mut corrupt = batch(1, 0);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(matches!(log.append(corrupt, 0), Err(LogError::Corrupt(_))));

    let mut two = batch(1, 0);
    two.extend_from_slice(&batch(1, 0));
    assert!(matches!(
        log.append(two, 0),
        Err(LogError::InvalidRecord(_))
    ));

    let big = BatchSpec {
        value_len: 600,
        ..Default::default()
    }
    .build();
    assert!(matches!(
        log.append(big, 0),
        Err(LogError::RecordTooLarge { max: 500, .. })
    ));

    let mut lying = batch(2, 0);
    lying[23..27].copy_from_slice(&5i32.to_be_bytes()); // lastOffsetDelta
    seal_crc(&mut lying);
    assert!(matches!(
        log.append(lying, 0),
        Err(LogError::InvalidRecord(_))
    ));

    let mut no_seq = idempotent(1, 0, 0, 1);
    no_seq[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    seal_crc(&mut no_seq);
    assert!(matches!(
        log.append(no_seq, 0),
        Err(LogError::InvalidRecord(_))
    ));

    assert_eq!(log.offsets().log_end_offset, 0);
    assert_eq!(fs::metadata(&files(dir.path(), "log")[0]).unwrap().len(), 0);
}

#[test]
fn rolls_by_size_and_reads_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let len = batch(2, 0).len() as u64;
    let config = LogConfig {
        segment_bytes: 3 * len,
        index_interval_bytes: 0,
        ..LogConfig::default()
    };
    let log = open(dir.path(), config);
    fill(&log, 10, 2);
    assert_eq!(log.segment_count(), 4);
    let names: Vec<_> = files(dir.path(), "log")
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "00000000000000000000.log",
            "00000000000000000006.log",
            "00000000000000000012.log",
            "00000000000000000018.log"
        ]
    );
    // Sealed segments have their index files.
    assert_eq!(files(dir.path(), "index").len(), 3);
    for offset in 0..20 {
        let got = ranges(&log.read(offset, 1).unwrap());
        let base = offset - offset % 2;
        assert_eq!(got, [(base, base + 1)], "offset {offset}");
    }
    // A read stays within one segment.
    assert_eq!(ranges(&log.read(4, 1 << 20).unwrap()), [(4, 5)]);
}

#[test]
fn rolls_by_age_on_append_and_on_retention_tick() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            segment_ms: 100,
            ..LogConfig::default()
        },
    );
    log.append(batch(1, 1_000), 0).unwrap();
    log.append(batch(1, 1_100), 0).unwrap();
    assert_eq!(log.segment_count(), 1, "exactly segment.ms old: not yet");
    log.append(batch(1, 1_101), 0).unwrap();
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.enforce_retention(1_150).unwrap(), 0);
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.enforce_retention(1_202).unwrap(), 0);
    assert_eq!(
        log.segment_count(),
        3,
        "idle active segment rolled by the tick"
    );
    // An empty active segment is never rolled.
    assert_eq!(log.enforce_retention(10_000).unwrap(), 0);
    assert_eq!(log.segment_count(), 3);
    assert_eq!(log.append(batch(1, 10_000), 0).unwrap().base_offset, 3);
}

#[test]
fn retention_by_time_deletes_old_sealed_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            retention_ms: 1_500,
            segment_ms: i64::MAX,
            ..one_batch_per_segment(1)
        },
    );
    for ts in [1_000, 2_000, 3_000, 4_000] {
        log.append(batch(1, ts), 0).unwrap();
    }
    assert_eq!(log.segment_count(), 4);
    assert_eq!(log.enforce_retention(4_400).unwrap(), 2);
    assert_eq!(log.offsets().log_start_offset, 2);
    assert_eq!(files(dir.path(), "log").len(), 2);
    assert!(matches!(
        log.read(1, 100),
        Err(LogError::OffsetOutOfRange { log_start: 2, .. })
    ));
    assert_eq!(ranges(&log.read(2, 100).unwrap()), [(2, 2)]);
    // Everything expired: the active segment stays.
    assert_eq!(log.enforce_retention(1_000_000).unwrap(), 1);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.offsets().log_start_offset, 3);
    assert_eq!(ranges(&log.read(3, 100).unwrap()), [(3, 3)]);
}

#[test]
fn retention_by_size_keeps_the_newest_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let len = batch(1, 0).len() as i64;
    let log = open(
        dir.path(),
        LogConfig {
            retention_bytes: 2 * len + len / 2,
            retention_ms: -1,
            ..one_batch_per_segment(1)
        },
    );
    fill(&log, 5, 1);
    assert_eq!(log.enforce_retention(0).unwrap(), 2);
    assert_eq!(log.offsets().log_start_offset, 2);
    assert_eq!(log.segment_count(), 3);
    assert_eq!(log.enforce_retention(0).unwrap(), 0);
    // Reopening after deletion keeps the new log start.
    drop(log);
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.offsets().log_start_offset, 2);
    assert_eq!(log.offsets().log_end_offset, 5);
}

#[test]
fn offset_for_timestamp_finds_first_record_reaching_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), one_batch_per_segment(2));
    // Two records per batch, at ts and ts + 1. Batches start at offsets 0, 2, 4, 6.
    for ts in [100, 200, 150, 300] {
        log.append(batch(2, ts), 0).unwrap();
    }
    let cases = [
        (0, Some((0, 100))),
        (101, Some((1, 101))),
        (102, Some((2, 200))),
        (152, Some((2, 200))),
        (201, Some((3, 201))),
        (202, Some((6, 300))),
        (302, None),
    ];
    for (ts, want) in cases {
        assert_eq!(log.offset_for_timestamp(ts).unwrap(), want, "ts {ts}");
    }
    assert_eq!(log.max_timestamp().unwrap(), Some((7, 301)));

    // Within one segment, through the time index.
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            index_interval_bytes: 0,
            ..LogConfig::default()
        },
    );
    for i in 0..50 {
        log.append(batch(1, 1_000 + i * 10), 0).unwrap();
    }
    for i in 0..50 {
        assert_eq!(
            log.offset_for_timestamp(995 + i * 10).unwrap(),
            Some((i, 1_000 + i * 10))
        );
    }
}

/// Writes three batches, then returns (dir, file, byte length before the last batch).
fn three_batches(dir: &Path) -> (PathBuf, u64) {
    let log = open(dir, LogConfig::default());
    fill(&log, 3, 2);
    drop(log);
    let file = files(dir, "log").remove(0);
    let len = fs::metadata(&file).unwrap().len();
    (file, len - batch(2, 0).len() as u64)
}

fn assert_two_batches_then_appends_continue(dir: &Path) {
    let log = open(dir, LogConfig::default());
    assert_eq!(log.offsets().log_end_offset, 4);
    assert_eq!(ranges(&log.read(0, 1 << 20).unwrap()), [(0, 1), (2, 3)]);
    assert_eq!(log.append(batch(1, 0), 0).unwrap().base_offset, 4);
    assert_eq!(ranges(&log.read(4, 100).unwrap()), [(4, 4)]);
}

#[test]
fn recovers_from_a_tail_cut_at_every_byte() {
    let total = batch(2, 0).len() as u64;
    for cut in 0..total {
        let dir = tempfile::tempdir().unwrap();
        let (file, before) = three_batches(dir.path());
        fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(before + cut)
            .unwrap();
        assert_two_batches_then_appends_continue(dir.path());
        assert_eq!(
            fs::metadata(&file).unwrap().len(),
            before + batch(1, 0).len() as u64
        );
    }
}

#[test]
fn recovers_from_a_corrupt_byte_in_the_last_batch() {
    let total = batch(2, 0).len();
    // partitionLeaderEpoch (12..16) is outside the CRC and not checked, as in Kafka.
    for at in (0..12).chain(16..total) {
        let dir = tempfile::tempdir().unwrap();
        let (file, before) = three_batches(dir.path());
        let mut bytes = fs::read(&file).unwrap();
        bytes[before as usize + at] ^= 0x40;
        fs::write(&file, &bytes).unwrap();
        assert_two_batches_then_appends_continue(dir.path());
    }
}

#[test]
fn recovery_after_clean_shutdown_still_checks_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (file, before) = three_batches(dir.path());
    let log = open(dir.path(), LogConfig::default());
    log.close().unwrap();
    drop(log);
    assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(before + 7)
        .unwrap();
    assert_two_batches_then_appends_continue(dir.path());
}

#[test]
fn rebuilds_missing_or_corrupt_indexes() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 5 * batch(1, 0).len() as u64,
            index_interval_bytes: 0,
            ..LogConfig::default()
        };
        let log = open(dir.path(), config);
        for i in 0..23 {
            log.append(batch(1, 1_000 + i * 10), 0).unwrap();
        }
        if clean {
            log.close().unwrap();
        }
        drop(log);
        let indexes = files(dir.path(), "index");
        assert_eq!(indexes.len(), if clean { 5 } else { 4 });
        fs::remove_file(&indexes[0]).unwrap();
        fs::write(&indexes[1], b"garbage").unwrap();
        fs::remove_file(&files(dir.path(), "timeindex")[2]).unwrap();

        let log = open(dir.path(), config);
        assert_eq!(log.offsets().log_end_offset, 23);
        for offset in 0..23 {
            assert_eq!(ranges(&log.read(offset, 1).unwrap()), [(offset, offset)]);
            assert_eq!(
                log.offset_for_timestamp(995 + offset * 10).unwrap(),
                Some((offset, 1_000 + offset * 10))
            );
        }
        let rebuilt = fs::read(&indexes[1]).unwrap();
        assert_eq!(rebuilt.len() % 8, 0, "garbage index replaced");
        assert!(indexes[0].exists(), "missing index rewritten");
    }
}

#[test]
fn reopen_keeps_data_offsets_and_continues() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 4 * batch(3, 0).len() as u64,
            ..LogConfig::default()
        };
        let log = open(dir.path(), config);
        fill(&log, 10, 3);
        let before = log.read(0, 1 << 20).unwrap();
        if clean {
            log.close().unwrap();
            assert!(matches!(
                log.append(batch(1, 0), 0),
                Err(LogError::Closed { .. })
            ));
        }
        drop(log);
        let log = open(dir.path(), config);
        assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
        assert_eq!(log.offsets().log_end_offset, 30);
        assert_eq!(log.segment_count(), 3);
        assert_eq!(log.read(0, 1 << 20).unwrap(), before);
        assert_eq!(log.append(batch(1, 0), 0).unwrap().base_offset, 30);
    }
}

#[test]
fn producer_sequence_rules() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    log.append(batch(1, 0), 0).unwrap();
    // Unknown producer: a nonzero first sequence is accepted.
    let first = log.append(idempotent(7, 0, 42, 3), 0).unwrap();
    assert_eq!((first.base_offset, first.last_offset), (1, 3));
    // Retry of the same batch: original offsets, nothing written.
    let dup = log.append(idempotent(7, 0, 42, 3), 0).unwrap();
    assert!(dup.duplicate);
    assert_eq!((dup.base_offset, dup.last_offset), (1, 3));
    assert_eq!(log.offsets().log_end_offset, 4);
    // Gap in sequence.
    assert!(matches!(
        log.append(idempotent(7, 0, 46, 1), 0),
        Err(LogError::OutOfOrderSequence {
            expected: 45,
            received: 46,
            ..
        })
    ));
    assert_eq!(
        log.append(idempotent(7, 0, 45, 1), 0).unwrap().base_offset,
        4
    );
    // New epoch must start at 0; then the old epoch is fenced.
    assert!(matches!(
        log.append(idempotent(7, 1, 46, 1), 0),
        Err(LogError::OutOfOrderSequence { expected: 0, .. })
    ));
    assert_eq!(
        log.append(idempotent(7, 1, 0, 1), 0).unwrap().base_offset,
        5
    );
    assert!(matches!(
        log.append(idempotent(7, 0, 46, 1), 0),
        Err(LogError::InvalidProducerEpoch {
            epoch: 0,
            current: 1,
            ..
        })
    ));
    assert_eq!(log.offsets().log_end_offset, 6);
}

#[test]
fn producer_state_survives_reopen() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let config = one_batch_per_segment(2);
        let log = open(dir.path(), config);
        log.append(idempotent(7, 3, 0, 2), 0).unwrap();
        log.append(idempotent(7, 3, 2, 2), 0).unwrap();
        log.append(idempotent(8, 0, 0, 2), 0).unwrap();
        if clean {
            log.close().unwrap();
        }
        drop(log);
        let log = open(dir.path(), config);
        assert_eq!(log.producer_count(), 2);
        let dup = log.append(idempotent(7, 3, 2, 2), 0).unwrap();
        assert!(dup.duplicate, "clean={clean}");
        assert_eq!(dup.base_offset, 2);
        assert!(matches!(
            log.append(idempotent(7, 3, 5, 1), 0),
            Err(LogError::OutOfOrderSequence { expected: 4, .. })
        ));
        assert!(matches!(
            log.append(idempotent(7, 2, 0, 1), 0),
            Err(LogError::InvalidProducerEpoch { .. })
        ));
        assert_eq!(
            log.append(idempotent(7, 3, 4, 1), 0).unwrap().base_offset,
            6
        );
    }
}

/// Kafka keeps a producer's state after retention deletes its batches (KIP-360), until
/// `producer.id.expiration.ms` of idleness; a retry must stay a duplicate across restarts too.
#[test]
fn retention_keeps_producers_whose_data_is_gone_across_restarts() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            retention_bytes: 0,
            retention_ms: -1,
            ..one_batch_per_segment(1)
        };
        let log = open(dir.path(), config);
        log.append(idempotent(7, 0, 0, 1), 0).unwrap();
        log.append(idempotent(7, 0, 1, 1), 0).unwrap();
        log.append(batch(1, 0), 0).unwrap();
        assert_eq!(log.enforce_retention(0).unwrap(), 2);
        assert_eq!(log.offsets().log_start_offset, 2);
        assert_eq!(log.producer_count(), 1);
        if clean {
            log.close().unwrap();
        }
        drop(log);
        let log = open(dir.path(), config);
        assert_eq!(log.producer_count(), 1, "clean={clean}");
        let dup = log.append(idempotent(7, 0, 1, 1), 0).unwrap();
        assert!(dup.duplicate, "clean={clean}");
        assert_eq!(dup.base_offset, 1, "the original offset, though deleted");
        assert!(matches!(
            log.append(idempotent(7, 0, 9, 1), 0),
            Err(LogError::OutOfOrderSequence {
                expected: 2,
                received: 9,
                ..
            })
        ));
        // Expiry is what forgets it; then any sequence starts afresh.
        log.enforce_retention(PRODUCER_ID_EXPIRATION_MS).unwrap();
        assert_eq!(log.producer_count(), 0, "clean={clean}");
        assert!(!log.append(idempotent(7, 0, 9, 1), 0).unwrap().duplicate);
    }
}

/// A snapshot beyond the recovered log end (its data lost to a power cut) must be deleted, not
/// just skipped: once new batches reach its offset again it would describe the wrong ones.
#[test]
fn snapshot_past_a_cut_tail_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let config = one_batch_per_segment(1);
    let log = open(dir.path(), config);
    for seq in 0..3 {
        log.append(idempotent(7, 0, seq, 1), 0).unwrap();
    }
    drop(log);
    let snapshots = files(dir.path(), "snapshot");
    assert_eq!(snapshots.len(), 2, "one per roll: {snapshots:?}");
    // The cut lost offsets 1 and 2, but the snapshot at 2 survived.
    for base in [1, 2] {
        Segment::delete_files(dir.path(), base).unwrap();
    }
    fs::remove_file(&snapshots[0]).unwrap();
    let log = open(dir.path(), config);
    assert_eq!(log.offsets().log_end_offset, 1);
    assert!(files(dir.path(), "snapshot").is_empty());
    // A different history from offset 1 on.
    assert_eq!(
        log.append(idempotent(8, 0, 0, 1), 0).unwrap().base_offset,
        1
    );
    assert_eq!(
        log.append(idempotent(8, 0, 1, 1), 0).unwrap().base_offset,
        2
    );
    drop(log);
    let log = open(dir.path(), config);
    let next = log.append(idempotent(7, 0, 1, 1), 0).unwrap();
    assert!(
        !next.duplicate,
        "producer 7's sequence 1 is not in this log"
    );
    assert_eq!(next.base_offset, 3);
    assert!(log.append(idempotent(8, 0, 1, 1), 0).unwrap().duplicate);
}

/// Unclean recovery takes the newest snapshot and replays only the batches after it.
#[test]
fn unclean_recovery_starts_from_the_newest_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 2 * idempotent(1, 0, 0, 1).len() as u64,
        ..LogConfig::default()
    };
    let log = open(dir.path(), config);
    for seq in 0..7 {
        log.append(idempotent(7, 0, seq, 1), 0).unwrap();
    }
    drop(log);
    let names: Vec<_> = files(dir.path(), "snapshot")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [2, 4, 6].map(|o| format!("{o:020}.snapshot")),
        "one per roll"
    );
    // Rename the producer in the snapshot: only a state loaded from it knows producer 9, and
    // the replay of the batch after it (offset 6) still brings producer 7.
    let snapshot = dir.path().join(&names[2]);
    let state = fs::read_to_string(&snapshot).unwrap();
    assert!(state.contains("[[7,"), "{state}");
    fs::write(&snapshot, state.replace("[[7,", "[[9,")).unwrap();
    let log = open(dir.path(), config);
    assert_eq!(log.producer_count(), 2);
    let dup = log.append(idempotent(9, 0, 5, 1), 0).unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.base_offset, 5);
    let dup = log.append(idempotent(7, 0, 6, 1), 0).unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.base_offset, 6);
}

/// Data directories from before per-offset snapshots hold `producer-state.json` after a clean
/// shutdown; it is still read once (then removed).
#[test]
fn legacy_close_snapshot_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    log.append(idempotent(7, 0, 0, 2), 0).unwrap();
    log.close().unwrap();
    drop(log);
    let [snapshot] = &files(dir.path(), "snapshot")[..] else {
        panic!("one snapshot at close");
    };
    let legacy = dir.path().join("producer-state.json");
    // Renamed producer: only the snapshot knows producer 9, a rebuild from the log would not.
    let state = fs::read_to_string(snapshot).unwrap();
    fs::write(&legacy, state.replace("[[7,", "[[9,")).unwrap();
    fs::remove_file(snapshot).unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert!(!legacy.exists());
    assert!(log.append(idempotent(9, 0, 0, 2), 0).unwrap().duplicate);
}

#[test]
fn concurrent_appends_get_distinct_contiguous_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(
        dir.path(),
        LogConfig {
            segment_bytes: 20 * batch(2, 0).len() as u64,
            ..LogConfig::default()
        },
    ));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..50)
                    .map(|_| log.append(batch(2, 0), 0).unwrap().base_offset)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut bases: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    bases.sort_unstable();
    assert_eq!(bases, (0..400).map(|i| i * 2).collect::<Vec<_>>());
    for offset in (0..800).step_by(7) {
        let base = offset - offset % 2;
        assert_eq!(ranges(&log.read(offset, 1).unwrap()), [(base, base + 1)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_shares_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), LogConfig::default()));
    log.sync_to(0).await.unwrap();
    assert_eq!(log.fsync_count(), 0, "nothing to sync");

    // Everything appended before anyone waits: one round covers all callers.
    let mut last = Vec::new();
    for _ in 0..64 {
        last.push(log.append(batch(1, 0), 0).unwrap().last_offset);
    }
    let waiters: Vec<_> = last
        .iter()
        .map(|&o| {
            let log = Arc::clone(&log);
            tokio::spawn(async move { log.sync_to(o).await })
        })
        .collect();
    for w in waiters {
        w.await.unwrap().unwrap();
    }
    assert_eq!(log.fsync_count(), 1);

    // Appends and waits interleaved from many tasks: all complete, fewer rounds than callers.
    let before = log.fsync_count();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let info = log.append(batch(1, 0), 0).unwrap();
                log.sync_to(info.last_offset).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let rounds = log.fsync_count() - before;
    assert!((1..=64).contains(&rounds), "{rounds} rounds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_arriving_during_a_round_waits_for_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), LogConfig::default()));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel();
    *log.commit().gate.lock().unwrap() = Some((started_tx, release_rx));

    let a = log.append(batch(1, 0), 0).unwrap().last_offset;
    let first = tokio::spawn({
        let log = Arc::clone(&log);
        async move { log.sync_to(a).await }
    });
    tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
        .await
        .unwrap();
    // Round one is running and covers only `a`.
    let b = log.append(batch(1, 0), 0).unwrap().last_offset;
    let second = tokio::spawn({
        let log = Arc::clone(&log);
        async move { log.sync_to(b).await }
    });
    tokio::task::yield_now().await;
    assert!(!second.is_finished());
    release_tx.send(()).unwrap();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(log.fsync_count(), 2);
    log.sync_to(b).await.unwrap();
    assert_eq!(log.fsync_count(), 2, "already durable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_sync_runs_rounds_with_no_one_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), LogConfig::default()));
    let gate = || {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        ((started_tx, release_rx), started_rx, release_tx)
    };
    let (gate_one, started_one, release_one) = gate();
    *log.commit().gate.lock().unwrap() = Some(gate_one);
    let a = log.append(batch(1, 0), 0).unwrap().last_offset;
    log.start_sync(a);
    tokio::task::spawn_blocking(move || started_one.recv().unwrap())
        .await
        .unwrap();
    // Round one runs and covers only `a`; `b` is asked for meanwhile, and nobody waits.
    let b = log.append(batch(1, 0), 0).unwrap().last_offset;
    log.start_sync(b);
    let (gate_two, started_two, release_two) = gate();
    *log.commit().gate.lock().unwrap() = Some(gate_two);
    release_one.send(()).unwrap();
    // The chain starts round two by itself.
    tokio::task::spawn_blocking(move || started_two.recv().unwrap())
        .await
        .unwrap();
    release_two.send(()).unwrap();
    log.sync_to(b).await.unwrap();
    assert_eq!(log.fsync_count(), 2);
}

#[test]
fn a_deleted_log_syncs_without_its_renamed_away_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("t-0");
    fs::create_dir(&dir).unwrap();
    let log = open(&dir, one_batch_per_segment(1));
    fill(&log, 2, 1);
    log.flush().unwrap();
    // Rolls: a segment created since the directory was last synced.
    fill(&log, 1, 1);
    log.mark_deleted();
    fs::rename(&dir, root.path().join("t-0.deleted")).unwrap();
    log.flush().unwrap();
    assert!(log.commit().durable().is_ok(), "the log went offline");
}

#[test]
fn flush_policy_by_message_count() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            flush_messages: Some(3),
            ..LogConfig::default()
        },
    );
    fill(&log, 2, 1);
    assert_eq!(log.fsync_count(), 0);
    fill(&log, 1, 1);
    assert_eq!(log.fsync_count(), 1);
    fill(&log, 1, 5);
    assert_eq!(log.fsync_count(), 2);

    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            flush_ms: Some(1_000),
            ..LogConfig::default()
        },
    );
    let now = crate::fsutil::now_ms();
    log.append(batch(1, 0), now).unwrap();
    assert!(!log.flush_if_due(now + 10).unwrap());
    assert!(log.flush_if_due(now + 1_000).unwrap());
    assert!(
        !log.flush_if_due(now + 5_000).unwrap(),
        "nothing new to flush"
    );
}

#[test]
fn shareable_across_tasks() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<PartitionLog>();
    send_sync::<crate::LogManager>();
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    // The broker spawns tasks that await this.
    send(&log.sync_to(0));
}

#[tokio::test]
async fn an_fsynced_log_keeps_a_zeroed_runway_that_reads_and_recovery_skip() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(1, 0).len() as u64;
    let log = open(dir.path(), LogConfig::default());
    log.append(batch(1, 1000), 0).unwrap();
    let file = files(dir.path(), "log").pop().unwrap();
    assert_eq!(
        fs::metadata(&file).unwrap().len(),
        one,
        "no runway before any fsync"
    );
    log.sync_to(0).await.unwrap();
    log.append(batch(1, 1001), 0).unwrap();
    let len = fs::metadata(&file).unwrap().len();
    assert!(len > 2 * one && len <= 2 * one + crate::segment::RUNWAY_BYTES);
    assert!(fs::read(&file).unwrap()[2 * one as usize..]
        .iter()
        .all(|&b| b == 0));
    assert_eq!(ranges(&log.read(0, 1 << 20).unwrap()), vec![(0, 0), (1, 1)]);
    assert_eq!(ranges(&log.read(1, 1 << 20).unwrap()), vec![(1, 1)]);
    log.sync_to(1).await.unwrap();
    drop(log); // a crash: no close

    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.offsets().log_end_offset, 2);
    assert_eq!(ranges(&log.read(0, 1 << 20).unwrap()), vec![(0, 0), (1, 1)]);
    assert_eq!(
        fs::metadata(&file).unwrap().len(),
        2 * one,
        "recovery cut the zeros off"
    );
    log.sync_to(1).await.unwrap();
    log.append(batch(1, 1002), 0).unwrap();
    assert!(fs::metadata(&file).unwrap().len() > 3 * one);
    log.close().unwrap();
    assert_eq!(
        fs::metadata(&file).unwrap().len(),
        3 * one,
        "a clean shutdown leaves the data only"
    );
    drop(log);
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(ranges(&log.read(0, 1 << 20).unwrap()).len(), 3);
    log.close().unwrap();
}

#[tokio::test]
async fn a_log_no_longer_fsynced_stops_topping_up_its_runway() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let file = || {
        fs::metadata(files(dir.path(), "log").pop().unwrap())
            .unwrap()
            .len()
    };
    log.append(batch(1, 1000), now_ms()).unwrap();
    log.sync_to(0).await.unwrap();
    let now = now_ms();
    log.append(batch(1, 1001), now).unwrap();
    let topped_up = file();
    log.append(batch(1, 1002), now).unwrap();
    assert!(
        file() > topped_up,
        "recently fsynced: each append tops the runway up"
    );
    let topped_up = file();
    log.append(batch(1, 1003), now + RUNWAY_KEEP_MS + 1)
        .unwrap();
    assert_eq!(file(), topped_up, "no fsync asked for since: no more zeros");
    log.sync_to(3).await.unwrap();
    log.append(batch(1, 1004), now_ms()).unwrap();
    assert!(file() > topped_up, "fsynced again: topped up again");
    log.close().unwrap();
}

#[tokio::test]
async fn a_sealed_segment_whose_runway_came_back_keeps_the_segments_after_it() {
    // Unclean: a power loss before the roll's cut was durable. Clean: the same file after a
    // clean shutdown (close cuts every runway durably; the open checks anyway).
    for clean in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let one = batch(1, 0).len() as u64;
        let config = LogConfig {
            segment_bytes: 3 * one,
            index_interval_bytes: 0,
            ..LogConfig::default()
        };
        let log = open(dir.path(), config);
        for i in 0..7 {
            let info = log.append(batch(1, 1000 + i), 0).unwrap();
            log.sync_to(info.last_offset).await.unwrap();
        }
        let segments = files(dir.path(), "log");
        assert_eq!(segments.len(), 3);
        for sealed in &segments[..2] {
            assert_eq!(
                fs::metadata(sealed).unwrap().len(),
                3 * one,
                "a roll cuts the runway"
            );
        }
        assert!(fs::metadata(&segments[2]).unwrap().len() > one);
        if clean {
            log.close().unwrap();
            assert_eq!(fs::metadata(&segments[2]).unwrap().len(), one);
        }
        drop(log);
        // The zeros are back. Recovery must take them for the end of the data, not for a torn
        // tail (which would drop every later segment), nor for data.
        fs::OpenOptions::new()
            .write(true)
            .open(&segments[0])
            .unwrap()
            .set_len(3 * one + 4096)
            .unwrap();
        let log = open(dir.path(), config);
        assert_eq!(log.offsets().log_end_offset, 7, "clean: {clean}");
        assert_eq!(log.segment_count(), 3);
        assert_eq!(fs::metadata(&segments[0]).unwrap().len(), 3 * one);
        let mut all = Vec::new();
        let mut at = 0;
        while at < 7 {
            let got = ranges(&log.read(at, 1 << 20).unwrap());
            at = got.last().unwrap().1 + 1;
            all.extend(got);
        }
        assert_eq!(all, (0..7).map(|o| (o, o)).collect::<Vec<_>>());
        log.close().unwrap();
    }
}

#[tokio::test]
async fn batches_as_large_as_the_runway_get_none() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let big = BatchSpec {
        records: 1,
        value_len: (crate::segment::RUNWAY_BYTES / 4) as usize,
        ..BatchSpec::default()
    }
    .build();
    let len = big.len() as u64;
    log.append(big.clone(), 0).unwrap();
    log.sync_to(0).await.unwrap();
    log.append(big, 0).unwrap();
    let file = files(dir.path(), "log").pop().unwrap();
    assert_eq!(fs::metadata(&file).unwrap().len(), 2 * len);
    log.close().unwrap();
}
